"""Built-in method plugins: one package per method, whose `__init__.py` defines `METHODS` (a list of
`asr_bench.methods.spec.MethodSpec`), its presets and its builder; the network sits beside it (`net.py`), and how
its checkpoints are recognised (`detect.py`, the spec's `detector`)."""
