"""Built-in method plugins: one package per method, whose `__init__.py` defines `METHODS` (a list of
`asr_bench.registry.MethodSpec`), its presets and its builder; the network sits beside it (`net.py`)."""
