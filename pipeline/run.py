"""Runs the pipeline: `python -m pipeline.run --flagfile=configs/sentiment.flags`.

The runner is the only code that knows the stage order. A stage's key is the code that
makes it (a fingerprint of this package's sources), the settings it reads (declared by
the stage, the task and the pruning method, and the only settings it can read) and the
hashes of the outputs it reads. A stage whose record holds the same key is skipped;
otherwise it runs into `<stage>.partial/` (kept across a crash so training can resume)
and is swapped into place only when it succeeds, leaving the previous good output
untouched on failure.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from absl import app, flags, logging

import models
import pipeline
from pipeline import artifacts, cli, determinism, distribute, methods, tasks
from pipeline import flags as pipeline_flags
from pipeline.config import SECTIONS, ConfigError, PipelineConfig
from pipeline.data import DataError
from pipeline.stages import STAGES, Stage, StageError

KEY_FILE = "key.json"

# What a finished run suggests trying with its bundle, by task.
NEXT_COMMAND = {
    "sentiment": 'python -m pipeline.predict --bundle {bundle} "a gorgeous, funny film"',
    "textgen": 'python -m pipeline.generate --bundle {bundle} --prompt "ROMEO:" --length 200',
}
# What --help shows (pipeline.cli.short_help); --helpfull lists every setting by section.
QUICK_FLAGS = ("flagfile", "output_dir", "seed", "stages", "force", "verbosity")
EXAMPLES = """
python -m pipeline.run --flagfile=configs/sentiment_smoke.flags   # every stage in ~1 min
python -m pipeline.run --flagfile=configs/sentiment.flags         # the shipped recipe
python -m pipeline.run --flagfile=configs/textgen.flags --stages=evaluate,bundle
"""


def source_fingerprint(packages: dict[str, Path], version: str) -> str:
    """sha256 of a version string and every .py file (path and bytes) under the folders."""
    digest = hashlib.sha256(version.encode() + b"\0")
    for name, root in sorted(packages.items()):
        for path in sorted(Path(root).rglob("*.py")):
            digest.update(f"{name}/{path.relative_to(root).as_posix()}".encode() + b"\0"
                          + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """The installed version and the sources of `pipeline` and `models`.

    Part of every stage key: output made by other code is never reused, from the run
    directory or from the shared cache.
    """
    return source_fingerprint({p.__name__: Path(p.__file__).parent for p in (pipeline, models)},
                              metadata.version("prune-pipeline"))


def later_stages(name: str) -> list[str]:
    """`name` and every stage after it: what must rerun when its output is redone."""
    names = [s.name for s in STAGES]
    return names[names.index(name):]


def stage_settings(stage: Stage, config: PipelineConfig) -> tuple[str, ...]:
    """Everything the stage may read: its own, its task's and its pruning method's reads."""
    own = tuple(SECTIONS) if stage.reads_everything else stage.reads
    extra = getattr(stage.module, "reads", lambda _: ())(config)
    return (("task",) + own + extra + tasks.for_config(config).reads(stage.name, config)
            + methods.for_config(config).reads(stage.name, config))


class Hashes(dict):
    """sha256 of each stage folder of one run, computed once per folder and invocation."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir

    def __missing__(self, name: str) -> str:
        self[name] = artifacts.sha256_tree(self.run_dir / name)
        return self[name]


def stage_key(stage: Stage, config: PipelineConfig, run_dir: Path,
              hashes: Hashes | None = None) -> dict:
    """What a stage's output depends on: code, the settings it reads, the outputs it reads.

    Each input is re-hashed and must match the record of the stage that made it, so a file
    changed or truncated since is never read as if it were that stage's output.
    """
    hashes = Hashes(run_dir) if hashes is None else hashes
    inputs, records = {}, {}
    for name in stage.inputs:
        record = records[name] = artifacts.stage_record(run_dir / name)
        if record is None:
            raise StageError(f"stage {stage.name} needs the output of stage {name}, which "
                             f"has not run in {run_dir}; add {name} to --stages")
        if hashes[name] != record["output_hash"]:
            raise StageError(f"{run_dir / name} was changed after stage {name} made it (its "
                             f"files no longer match {artifacts.STAGE_RECORD}); stage "
                             f"{stage.name} will not read it. Rerun from there: --stages="
                             + ",".join(later_stages(name)))
        inputs[name] = record["output_hash"]
        upstream = next(s for s in STAGES if s.name == name)
        wanted = config.settings(stage_settings(upstream, config))
        made = record.get("settings")
        if made != wanted and name not in config.stages:
            # What a stage makes would be labelled with settings that did not make its
            # inputs (a bundle of the seed-1 model called seed 2): refused, naming them.
            changed = sorted(k for k in set(wanted) | set(made or {})
                             if (made or {}).get(k) != wanted.get(k))
            raise StageError(
                f"stage {stage.name} reads the output of {name}, which was made with other "
                f"settings ({', '.join(f'--{k}' for k in changed[:4])}"
                f"{', ...' if len(changed) > 4 else ''}); add {name} to --stages to redo it "
                "with these, or run with the settings that made it")
    view = config.view(stage_settings(stage, config), f"stage {stage.name}")
    external = getattr(stage.module, "external_inputs", lambda _: {})(view)
    return {"code": code_fingerprint(), "settings": config.settings(stage_settings(stage, config)),
            "inputs": inputs, "external": external,
            "lineage": lineage(stage, records, run_dir)}


def lineage(stage: Stage, records: dict[str, dict], run_dir: Path) -> dict[str, str]:
    """The output hash of every stage the inputs descend from, the inputs included, from
    the inputs' records.

    Each stage checks only that its direct inputs are unchanged; this makes sure they also
    come from one history: a vocabulary redone since the model was trained (say) is never
    shipped beside it.
    """
    merged: dict[str, str] = {}
    for name, record in records.items():
        for ancestor, digest in {**record.get("lineage", {}), name: record["output_hash"]}.items():
            if merged.setdefault(ancestor, digest) != digest:
                raise StageError(
                    f"stage {stage.name} reads outputs made from different outputs of stage "
                    f"{ancestor} ({ancestor} was redone in {run_dir} after some of them were "
                    f"made); it will not mix them. Redo what follows it: --stages="
                    + ",".join(later_stages(ancestor)[1:]))
    return merged


def cache_entry(config: PipelineConfig, stage: Stage, key: dict) -> Path | None:
    """Where a stage output with this key lives in the shared --cache_dir, if one is set."""
    if not config.cache_dir:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(config.cache_dir) / stage.name / digest


def restore_from_cache(entry: Path | None, stage: Stage, run_dir: Path) -> dict | None:
    """Copies a cached output in, if one exists and its files still match its record. An
    entry that is damaged or planted (a link, a FIFO, a record that is not JSON) is
    skipped with a warning naming it: a cache is a shortcut, never a reason to stop."""
    if entry is None or not (entry.exists() or entry.is_symlink()):
        return None
    try:
        if entry.is_symlink():
            raise artifacts.LinkInOutputError(f"{entry} is a link")
        record = artifacts.stage_record(entry)
        if record is None:
            return None
        if not artifacts.matches_record(entry):
            raise ValueError("its files no longer match its record")
        artifacts.check_keras_files(entry)
    except (OSError, ValueError) as error:  # UnsafeModelError and JsonError among them
        logging.warning("%s: ignoring the cached output %s: %s", stage.name, entry, error)
        return None
    artifacts.copy_tree(entry, run_dir / stage.name)
    if artifacts.sha256_tree(run_dir / stage.name) != record["output_hash"]:
        raise StageError(f"copying {entry} to {run_dir / stage.name} changed its files; check "
                         "the disk and rerun")
    return record


def run_stage(stage: Stage, config: PipelineConfig, run_dir: Path, key: dict) -> dict:
    partial = run_dir / f"{stage.name}.partial"
    resuming = False
    if partial.exists():
        previous = partial / KEY_FILE
        try:
            resuming = not config.force and previous.is_file() and \
                artifacts.read_json(previous) == key
        except (OSError, UnicodeDecodeError, ValueError):
            resuming = False  # a damaged record of an interrupted attempt: start again
        if resuming:
            logging.info("%s: resuming from %s", stage.name, partial)
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_json(partial / KEY_FILE, key)
    start = time.monotonic()
    view = config.view(stage_settings(stage, config), f"stage {stage.name}")
    with distribute.scope(stage.name):
        try:
            summary = stage.module.run(view, artifacts.RunFiles(run_dir), partial)
        except Exception as error:
            import tensorflow as tf
            if resuming and isinstance(error, tf.errors.OpError):  # e.g. a truncated backup
                raise StageError(f"{partial} holds a checkpoint that cannot be restored "
                                 f"({type(error).__name__}: {error.message.splitlines()[0]}); "
                                 "rerun the stage with --force to start it again") from None
            raise
    (partial / KEY_FILE).unlink()
    record = {**key, "stage": stage.name, "summary": summary,
              "elapsed_s": round(time.monotonic() - start, 2),
              "output_hash": artifacts.sha256_tree(partial)}
    artifacts.atomic_write_json(partial / artifacts.STAGE_RECORD, record)
    artifacts.replace_dir(partial, run_dir / stage.name)
    entry = cache_entry(config, stage, key)
    if entry is not None:
        artifacts.check_keras_files(run_dir / stage.name)  # only what loads safely is shared
        try:
            if entry.is_symlink():
                raise artifacts.LinkInOutputError(f"{entry} is a link")
            artifacts.copy_tree(run_dir / stage.name, entry)
        except (OSError, ValueError) as error:  # a planted entry: the run's output stands
            logging.warning("%s: not stored in the cache (%s)", stage.name, error)
    return summary


def run_pipeline(config: PipelineConfig) -> dict:
    """Runs the selected stages in order; returns each stage's summary."""
    run_dir = Path(config.output_dir)
    determinism.enable()  # same seed, same outputs: see pipeline.determinism
    claim_folders(config)
    with artifacts.run_lock(run_dir), run_temp_folder(run_dir):
        return _run_locked(config, run_dir)


TEMP_FOLDER = ".tmp"


@contextlib.contextmanager
def run_temp_folder(run_dir: Path):
    """Temporary files (the converter's SavedModels, Keras's) go in RUN/.tmp, emptied when
    the run starts and when it ends, so even a crashed converter leaves nothing in the
    machine's temp folder and nothing behind for long."""
    folder = run_dir / TEMP_FOLDER
    if folder.is_symlink():
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    previous, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def claim_folders(config: PipelineConfig) -> None:
    """Marks the run and cache folders as the pipeline's, or refuses folders it did not make."""
    artifacts.claim_folder(Path(config.output_dir), "--output_dir")
    if config.cache_dir:
        artifacts.claim_folder(Path(config.cache_dir), "--cache_dir")


def _run_locked(config: PipelineConfig, run_dir: Path) -> dict:
    artifacts.atomic_write_json(run_dir / "config.json", config.to_dict())
    selected = [s for s in STAGES if s.name in config.stages]
    summaries, hashes = {}, Hashes(run_dir)
    for position, stage in enumerate(selected, start=1):
        prefix = f"[{position}/{len(selected)}] {stage.name}"
        key = stage_key(stage, config, run_dir, hashes)
        record = artifacts.stage_record(run_dir / stage.name)
        unchanged = record and all(record.get(k) == v for k, v in key.items())
        if unchanged and hashes[stage.name] != record.get("output_hash"):
            logging.warning("%s: %s was changed after the stage made it; redoing it", prefix,
                            run_dir / stage.name)
            unchanged = False
        everywhere = distribute.runs_on_every_worker(stage.name)  # never skipped alone
        if not config.force and unchanged and not everywhere:
            logging.info("%s: unchanged, skipped (use --force to redo)", prefix)
            summaries[stage.name] = record["summary"]
            continue
        if not config.force and not everywhere:
            cached = restore_from_cache(cache_entry(config, stage, key), stage, run_dir)
            if cached is not None:
                logging.info("%s: restored from the cache %s", prefix, config.cache_dir)
                summaries[stage.name] = cached["summary"]
                hashes.pop(stage.name, None)
                continue
        if record:
            logging.info("%s: settings or inputs changed since the last run; the old output "
                         "is replaced once this stage succeeds", prefix)
        logging.info("%s: started", prefix)
        start = time.monotonic()
        summaries[stage.name] = run_stage(stage, config, run_dir, key)
        hashes.pop(stage.name, None)
        logging.info("%s: finished in %.1f s: %s", prefix, time.monotonic() - start,
                     summaries[stage.name])
    return summaries


def exit_for_os_error(error: OSError, config: PipelineConfig) -> None:
    """Permissions, a full disk, a folder where a file should be: one line, exit 1."""
    sys.stderr.write(f"error: {error.strerror or error} ({error.filename}); check that "
                     f"{config.output_dir} is writable and the disk has room\n")
    sys.exit(1)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Exit 2: bad input, before any work; exit 1: a stage or the machine failed."""
    if len(argv) > 1:
        sys.stderr.write(f"error: unexpected arguments {argv[1:]}; every setting is a flag "
                         "(see --helpfull)\n")
        sys.exit(2)
    try:
        config = pipeline_flags.config_from_flags(flag_values)
        tasks.for_config(config).check_inputs(config)
        distribute.check(config)
    except (ConfigError, DataError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    try:
        claim_folders(config)  # before any worker writes, so none sees another's first file
    except artifacts.ForeignFolderError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    except OSError as error:
        exit_for_os_error(error, config)
    verbosity = flag_values["verbosity"].value if "verbosity" in flag_values else 0
    logging.set_verbosity(max(logging.INFO, verbosity))
    cli.keep_own_info_lines(verbosity)
    distribute.start(config)
    config = distribute.for_this_worker(config)
    try:
        run_pipeline(config)
        distribute.barrier()
    except DataError as error:  # the dataset's contents: bad input, as a bad flag is
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    except (StageError, artifacts.RunLockedError, FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)
    except OSError as error:
        exit_for_os_error(error, config)
    if "bundle" in config.stages:
        run_dir = Path(config.output_dir)
        logging.info("done: bundle in %s; report: %s", run_dir / "bundle",
                     artifacts.RunFiles(run_dir).metrics.with_name("report.md"))
        logging.info("next: %s", NEXT_COMMAND[config.data.task].format(bundle=run_dir / "bundle"))
    else:
        logging.info("done: %s in %s", ", ".join(config.stages), config.output_dir)


def parse_flags(argv: list[str]) -> list[str]:
    """cli.parse_or_exit, and with --only_check_args the config's own checks too (absl
    stops before main then, so a bad value would otherwise pass the check)."""
    remaining = cli.parse_or_exit(argv)
    if flags.FLAGS.only_check_args:
        try:
            pipeline_flags.config_from_flags(flags.FLAGS)
        except ConfigError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.exit(2)
    return remaining


if __name__ == "__main__":
    pipeline_flags.define_flags()
    app.run(main, flags_parser=parse_flags)
