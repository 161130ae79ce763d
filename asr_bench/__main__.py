"""`python -m asr_bench ...` = `asr-bench ...`."""
from asr_bench.cli import main

main()
