"""Nightly sweep: python -m pipeline.bench --flagfile=configs/nightly.flags

Runs task x method x target sparsity through pipeline.run and writes results.jsonl/.csv,
report.md/.html and plots; with --baseline, exits 1 on a regression (see the flags below).
"""
from absl import app

from pipeline import cli
from pipeline.bench import main

app.run(main, flags_parser=cli.parse_or_exit)
