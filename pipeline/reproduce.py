"""Checks that a finished run reproduces: `python -m pipeline.reproduce RUN_DIR`.

It reruns the run's recorded config (RUN_DIR/config.json) from scratch into a fresh
folder, in this process, without the stage cache, then compares every stage's files with
the first run's, stage by stage in pipeline order, and names the first stage and the
files that differ. Exit 0: every output identical apart from timings; 1: a difference (or
the rerun failed); 2: RUN_DIR is not a finished run.

What "apart from timings" means: JSON files are compared as values with every timing
left out (a record or key that metrics.is_timing names: latencies, rates, elapsed
seconds); stage records by their settings and summary; evaluate's report.md is a
rendering of metrics.json and TensorBoard logs hold wall-clock times, so both are skipped.
Every other file (models, .tflite files, data, the bundle's files) must be identical
byte for byte.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

from absl import app, flags, logging

from pipeline import artifacts, cli, metrics, run
from pipeline.config import ConfigError, config_from_dict
from pipeline.stages import STAGES

flags.DEFINE_string("rerun_dir", None, "Where to rerun (a new folder); by default a "
                    "temporary folder, removed afterwards.")
FLAGS = flags.FLAGS
QUICK_FLAGS = ("rerun_dir",)
EXAMPLES = """
python -m pipeline.reproduce runs/sentiment   # exit 0: reproduced; 1: names the stage
"""

SKIPPED_FOLDERS = ("tensorboard",)
SKIPPED_FILES = {("evaluate", "report.md")}


def comparable(path: Path):
    """What of one output file must repeat: a JSON value without timings, or the sha256."""
    if path.suffix == ".json":
        try:
            value = artifacts.read_json(path)
        except (OSError, UnicodeDecodeError, ValueError):
            return artifacts.sha256_file(path)
        if path.name == artifacts.STAGE_RECORD:
            value = {key: value.get(key) for key in ("settings", "summary")}
        return without_timings(value)
    return artifacts.sha256_file(path)


def without_timings(value):
    """`value` with every timing key, and every record whose name is a timing, left out."""
    if isinstance(value, dict):
        if isinstance(value.get("name"), str) and metrics.is_timing(value["name"]):
            return None
        return {key: without_timings(item) for key, item in value.items()
                if not metrics.is_timing(key)}
    if isinstance(value, list):
        return [item for item in map(without_timings, value) if item is not None]
    return value


def stage_files(folder: Path) -> dict[str, object]:
    """Relative path → comparable value of every file a stage's folder holds."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (not path.is_file() or set(relative.parts) & set(SKIPPED_FOLDERS)
                or (folder.name, relative.as_posix()) in SKIPPED_FILES):
            continue
        found[relative.as_posix()] = comparable(path)
    return found


def first_difference(first_run: Path, second_run: Path) -> tuple[str, list[str]] | None:
    """(stage, files that differ) for the first stage, in pipeline order, whose outputs
    differ between two runs; None when every stage both runs made is identical."""
    for stage in STAGES:
        one, two = first_run / stage.name, second_run / stage.name
        if not (artifacts.stage_record(one) and artifacts.stage_record(two)):
            continue
        files_one, files_two = stage_files(one), stage_files(two)
        differing = sorted(name for name in set(files_one) | set(files_two)
                           if files_one.get(name) != files_two.get(name))
        if differing:
            return stage.name, differing
    return None


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m pipeline.reproduce RUN_DIR [--rerun_dir=DIR]\n")
        sys.exit(2)
    run_dir = Path(argv[1])
    try:
        recorded = artifacts.read_json(run_dir / "config.json")
        config = config_from_dict(recorded)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        sys.stderr.write(f"error: {run_dir} is not a finished run of pipeline.run "
                         f"({error}); give the --output_dir of a run\n")
        sys.exit(2)
    if config.train.distribution == "multi_worker":
        sys.stderr.write("error: a multi_worker run is not reproduced by one process: rerun "
                         "it with the same launcher and compare the two runs' bundles\n")
        sys.exit(2)
    logging.set_verbosity(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="reproduce-") as scratch:
        rerun_dir = Path(FLAGS.rerun_dir or Path(scratch) / "rerun")
        if rerun_dir.exists():
            sys.stderr.write(f"error: --rerun_dir={rerun_dir} exists; give a new folder\n")
            sys.exit(2)
        logging.info("reproduce: rerunning %s into %s", run_dir, rerun_dir)
        try:
            run.run_pipeline(dataclasses.replace(config, output_dir=str(rerun_dir),
                                                 cache_dir="", force=False))
        except Exception as error:  # the rerun failed: say so, no traceback
            sys.stderr.write(f"error: the rerun failed ({type(error).__name__}: {error})\n")
            sys.exit(1)
        found = first_difference(run_dir, rerun_dir)
    if found is None:
        print(f"reproduced: every stage of {run_dir} gave the same outputs again "
              "(timings aside)")
        return
    stage, files = found
    print(f"not reproduced: stage {stage} differs first, in {len(files)} file(s): "
          + ", ".join(files))
    sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
