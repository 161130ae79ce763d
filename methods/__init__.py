"""Built-in method plugins: each module defines `METHODS`, a list of `asr_bench.registry.MethodSpec`."""
