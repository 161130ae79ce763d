"""Entry point: `python run_bench.py --config configs/x4.yml` (see README)."""
from asr_bench.cli import main

if __name__ == "__main__":
    main()
