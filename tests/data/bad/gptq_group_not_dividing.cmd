# made by tools/make_quant_fixtures.py
dequantize {CASE} /tmp/qrt-bad-out-gptq_group_not_dividing --force
expect: quantization_config.group_size 24 does not divide in_features 32
