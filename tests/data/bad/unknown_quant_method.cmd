# made by tools/make_quant_fixtures.py
dequantize {CASE} /tmp/qrt-bad-out-unknown_quant_method --force
expect: quantization_config.quant_method: 'aqlm' is not supported; known methods: gptq
