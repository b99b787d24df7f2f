"""Nightly sweep: python -m pipeline.bench --flagfile=configs/nightly.flags

Runs task x method x target sparsity through pipeline.run and writes results.jsonl/.csv,
report.md/.html and plots; with --baseline, exits 1 on a regression (see the flags below).
"""
from absl import app

from pipeline import cli
from pipeline.bench import main

QUICK_FLAGS = ("flagfile", "output_dir", "smoke", "seeds", "baseline", "jobs", "executor")
EXAMPLES = """
python -m pipeline.bench --flagfile=configs/nightly.flags --smoke --output_dir=runs/smoke
python -m pipeline.bench --flagfile=configs/nightly.flags --seeds=1,2,3 \\
    --baseline=bench/baseline/results.jsonl
python -m pipeline.bench --flagfile=configs/nightly.flags --executor=ray --ray_address=HEAD:6379
"""

app.run(main, flags_parser=cli.parse_or_exit)
