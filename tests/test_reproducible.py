"""Same seed, same bundle: a run killed with SIGKILL at chosen steps and rerun with the same
command ends with the files of a run that was never interrupted; pipeline.reproduce names
the first stage that differs."""
import os
import shutil
import subprocess
import sys

import pytest

from pipeline import artifacts, determinism, reproduce
from tests.conftest import REPO, run_smoke

pytestmark = pytest.mark.slow  # real data and training: the integration layer

KILLED = -9  # subprocess's return code for SIGKILL

# textgen_smoke.flags as configs/textgen_structured.flags changes textgen.flags
TEXTGEN_STRUCTURED = ("--pruning_method=structured", "--structured_units=0.5",
                      "--structured_embedding=0", "--structured_criterion=l2",
                      "--structured_steps=2", "--structured_epochs=3", "--final_sparsity=0",
                      "--stages=data,train,prune")


def killed_at(target: str, flagfile: str, run_dir, data_dir, *extra):
    """The smoke run, killed after batch BATCH of epoch EPOCH of fit STREAM."""
    os.environ[determinism.KILL_VARIABLE] = target
    try:
        result = run_smoke(flagfile, run_dir, data_dir, *extra)
    finally:
        del os.environ[determinism.KILL_VARIABLE]
    assert result.returncode == KILLED, result.stderr[-3000:]
    return result


def bundle_hashes(run_dir):
    manifest = artifacts.read_json(run_dir / "bundle" / "manifest.json")
    return {name: artifacts.sha256_file(run_dir / "bundle" / name) for name in manifest["files"]}


def test_a_run_killed_in_training_and_in_pruning_ships_the_same_bundle(
        sentiment_smoke, shared_data, tmp_path):
    uninterrupted, _, _ = sentiment_smoke
    run_dir = tmp_path / "killed"
    flagfile = "configs/sentiment_smoke.flags"
    killed_at("train:1:20", flagfile, run_dir, shared_data)  # mid-epoch, dropout on
    assert (run_dir / "train.partial" / "progress" / "checkpoint").is_dir()
    killed_at("prune:1:3", flagfile, run_dir, shared_data)  # fine-tuning, masks moving
    assert (run_dir / "train" / artifacts.STAGE_RECORD).is_file()
    result = run_smoke(flagfile, run_dir, shared_data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prune: resuming from" in result.stderr
    assert bundle_hashes(run_dir) == bundle_hashes(uninterrupted)
    assert reproduce.first_difference(uninterrupted, run_dir) is None


def test_a_structured_fine_tune_killed_and_rerun_gives_the_same_model(
        textgen_smoke, shared_data, tmp_path):
    # Data and training come from the smoke run's cache; each run gets its own copy, so
    # neither restores the other's pruning.
    _, _, cache = textgen_smoke
    runs = {}
    for name in ("once", "killed"):
        shutil.copytree(cache, tmp_path / f"cache_{name}")
        runs[name] = tmp_path / name
    arguments = ("configs/textgen_smoke.flags",)
    once = run_smoke(*arguments, runs["once"], shared_data, *TEXTGEN_STRUCTURED,
                     f"--cache_dir={tmp_path / 'cache_once'}")
    assert once.returncode == 0, once.stderr[-3000:]
    cache_flag = f"--cache_dir={tmp_path / 'cache_killed'}"
    killed_at("structured:1:5", *arguments, runs["killed"], shared_data, *TEXTGEN_STRUCTURED,
              cache_flag)
    rerun = run_smoke(*arguments, runs["killed"], shared_data, *TEXTGEN_STRUCTURED, cache_flag)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    pruned = [artifacts.sha256_file(runs[name] / "prune" / "pruned.keras") for name in runs]
    assert pruned[0] == pruned[1]
    assert reproduce.first_difference(runs["once"], runs["killed"]) is None


def test_reproduce_reruns_a_run_and_names_the_first_stage_that_differs(shared_data, tmp_path):
    run_dir, doctored, rerun = tmp_path / "run", tmp_path / "doctored", tmp_path / "rerun"
    first = run_smoke("configs/sentiment_smoke.flags", run_dir, shared_data,
                      "--stages=data,train", "--epochs=1", "--train_limit=600")
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(run_dir, doctored)
    history = doctored / "train" / "history.json"  # as if the first run had trained longer
    artifacts.atomic_write_json(history, {**artifacts.read_json(history), "epochs_run": 2})
    check = subprocess.run(
        [sys.executable, "-m", "pipeline.reproduce", str(doctored), f"--rerun_dir={rerun}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PIPELINE_DATA_DIR": str(shared_data)})
    assert check.returncode == 1, check.stderr[-3000:]
    assert "not reproduced: stage train differs first, in 1 file(s): history.json" in \
        check.stdout
    assert reproduce.first_difference(run_dir, rerun) is None  # the real run reproduced
    (rerun / "data" / "vocab.txt").write_text("[PAD]\n")  # an earlier stage is named first
    assert reproduce.first_difference(run_dir, rerun) == ("data", ["vocab.txt"])


def test_reproduce_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    """One line and exit 2, no traceback, nothing rerun."""
    with pytest.raises(SystemExit) as stopped:
        reproduce.main(["pipeline.reproduce", str(tmp_path / "nothing")])
    assert stopped.value.code == 2
    assert "is not a finished run of pipeline.run" in capsys.readouterr().err
