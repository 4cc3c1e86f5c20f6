# made by tools/make_quant_fixtures.py
dequantize {CASE} /tmp/qrt-bad-out-gptq_qweight_shape --force
expect: model.layers.0.self_attn.q_proj.qweight: shape [8, 32] does not match [4, 32]
