"""The C++/CUDA sources of the custom ops, shipped as package data (built at first use by asr_bench.ops.build)."""
