# qrt plan decodes the quantized tensors, so it refuses what qrt run would (bad_inputs.sh)
plan {DATA}/bad/gptq_nan_scales --device cpu
expect: model.layers.0.mlp.up_proj.scales: value 5 is NaN
