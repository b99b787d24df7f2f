"""Runs the pipeline: `python -m pipeline.run --flagfile=configs/sentiment.flags`.

The runner is the only code that knows the stage order. A stage is skipped when its
record shows the same config hash and the same input hashes; otherwise it runs into
`<stage>.partial/` (kept across a crash so training can resume) and is swapped into place
only when it succeeds, leaving the previous good output untouched on failure.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

from absl import app, logging

from pipeline import artifacts, cli
from pipeline import flags as pipeline_flags
from pipeline.config import ConfigError, PipelineConfig
from pipeline.data import DataError, check_dataset
from pipeline.stages import StageError
from pipeline.stages import bundle, convert, evaluate, prune, strip, train
from pipeline.stages import data as data_stage

KEY_FILE = "key.json"


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    module: ModuleType
    sections: tuple[str, ...]  # config sections whose change reruns the stage
    inputs: tuple[str, ...]    # earlier stages whose outputs it reads


STAGES = (
    Stage("data", data_stage, ("data", "tokenizer"), ()),
    Stage("train", train, ("model", "train", "regularization"), ("data",)),
    Stage("prune", prune, ("pruning", "train"), ("data", "train")),
    Stage("strip", strip, (), ("prune",)),
    Stage("convert", convert, ("convert", "tokenizer", "pruning", "eval"), ("train", "strip")),
    Stage("evaluate", evaluate, ("eval", "pruning"), ("data", "train", "strip", "convert")),
    Stage("bundle", bundle, ("bundle",), ("data", "convert", "evaluate")),
)


def stage_key(stage: Stage, config: PipelineConfig, run_dir: Path) -> dict:
    """What a stage's output depends on: its settings and the outputs it reads."""
    inputs = {}
    for name in stage.inputs:
        record = artifacts.stage_record(run_dir / name)
        if record is None:
            raise StageError(f"stage {stage.name} needs the output of stage {name}, which "
                             f"has not run in {run_dir}; add {name} to --stages")
        inputs[name] = record["output_hash"]
        upstream = next(s for s in STAGES if s.name == name)
        if record["config_hash"] != config.section_hash(upstream.sections) and \
                name not in config.stages:
            logging.warning("%s: reads the output of %s, which was made with other settings "
                            "than these; add %s to --stages to refresh it", stage.name, name,
                            name)
    external = getattr(stage.module, "external_inputs", lambda _: {})(config)
    return {"config_hash": config.section_hash(stage.sections), "inputs": inputs,
            "external": external}


def cache_entry(config: PipelineConfig, stage: Stage, key: dict) -> Path | None:
    """Where a stage output with this key lives in the shared --cache_dir, if one is set."""
    if not config.cache_dir:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(config.cache_dir) / stage.name / digest


def restore_from_cache(entry: Path | None, stage: Stage, run_dir: Path) -> dict | None:
    if entry is None or artifacts.stage_record(entry) is None:
        return None
    artifacts.copy_tree(entry, run_dir / stage.name)
    return artifacts.stage_record(run_dir / stage.name)


def run_stage(stage: Stage, config: PipelineConfig, run_dir: Path, key: dict) -> dict:
    partial = run_dir / f"{stage.name}.partial"
    if partial.exists():
        previous = partial / KEY_FILE
        if previous.is_file() and artifacts.read_json(previous) == key:
            logging.info("%s: resuming from %s", stage.name, partial)
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_json(partial / KEY_FILE, key)
    start = time.monotonic()
    summary = stage.module.run(config, run_dir, partial)
    (partial / KEY_FILE).unlink()
    record = {**key, "stage": stage.name, "summary": summary,
              "elapsed_s": round(time.monotonic() - start, 2),
              "output_hash": artifacts.sha256_tree(partial)}
    artifacts.atomic_write_json(partial / artifacts.STAGE_RECORD, record)
    artifacts.replace_dir(partial, run_dir / stage.name)
    entry = cache_entry(config, stage, key)
    if entry is not None:
        artifacts.copy_tree(run_dir / stage.name, entry)
    return summary


def run_pipeline(config: PipelineConfig) -> dict:
    """Runs the selected stages in order; returns each stage's summary."""
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_json(run_dir / "config.json", config.to_dict())
    selected = [s for s in STAGES if s.name in config.stages]
    summaries = {}
    for position, stage in enumerate(selected, start=1):
        prefix = f"[{position}/{len(selected)}] {stage.name}"
        key = stage_key(stage, config, run_dir)
        record = artifacts.stage_record(run_dir / stage.name)
        if not config.force and record and all(record.get(k) == v for k, v in key.items()):
            logging.info("%s: unchanged, skipped (use --force to redo)", prefix)
            summaries[stage.name] = record["summary"]
            continue
        if not config.force:
            cached = restore_from_cache(cache_entry(config, stage, key), stage, run_dir)
            if cached is not None:
                logging.info("%s: restored from the cache %s", prefix, config.cache_dir)
                summaries[stage.name] = cached["summary"]
                continue
        if record:
            logging.info("%s: settings or inputs changed since the last run; the old output "
                         "is replaced once this stage succeeds", prefix)
        logging.info("%s: started", prefix)
        start = time.monotonic()
        summaries[stage.name] = run_stage(stage, config, run_dir, key)
        logging.info("%s: finished in %.1f s: %s", prefix, time.monotonic() - start,
                     summaries[stage.name])
    return summaries


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.stderr.write(f"error: unexpected arguments {argv[1:]}; every setting is a flag "
                         "(see --helpfull)\n")
        sys.exit(2)
    try:
        config = pipeline_flags.config_from_flags()
        check_dataset(config.data)
    except (ConfigError, DataError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    logging.set_verbosity(logging.INFO)
    try:
        run_pipeline(config)
    except (StageError, DataError, FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)
    logging.info("done: bundle in %s", Path(config.output_dir) / "bundle")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
