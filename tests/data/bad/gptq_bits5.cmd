# made by tools/make_quant_fixtures.py
dequantize {CASE} /tmp/qrt-bad-out-gptq_bits5 --force
expect: quantization_config.bits: 5 is not one of 2, 3, 4, 8
