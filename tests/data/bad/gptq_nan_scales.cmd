# made by tools/make_quant_fixtures.py
dequantize {CASE} /tmp/qrt-bad-out-gptq_nan_scales --force
expect: model.layers.0.mlp.up_proj.scales: value 5 is NaN
