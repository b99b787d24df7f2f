"""Shared fixtures. Real data comes from $PIPELINE_DATA_DIR (CI: ../shared/data)."""
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # Absolute: tests run commands from other folders (CI passes ../shared/data).
    folder = Path(os.environ.get("PIPELINE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    if not (folder / "sst2" / "test.tsv").is_file():
        pytest.fail(f"real data not found in {folder}: set PIPELINE_DATA_DIR to the folder "
                    "holding sst2/ (../shared/data in CI)")
    return folder


def run_smoke(flagfile: str, run_dir: Path, data_dir: Path, *extra: str):
    """pipeline.run on a smoke flagfile in a subprocess, as a user runs it."""
    env = {**os.environ, "PIPELINE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run", f"--flagfile={flagfile}",
         f"--output_dir={run_dir}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def run_sentiment_smoke(run_dir: Path, data_dir: Path, *extra: str):
    return run_smoke("configs/sentiment_smoke.flags", run_dir, data_dir, *extra)


def smoke_once(name: str, data_dir: Path, tmp_path_factory):
    """One real smoke run per pytest run, every stage forced, its outputs also in the stage
    cache both smoke runs share: (run folder, finished process, cache folder).

    Under pytest-xdist each test process has its own session: the first to get here makes
    the run (holding a lock), the others wait for it and read the same folders.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this pytest run
    run_dir, cache, done = shared / name / "run", shared / "smoke_cache", shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            result = run_smoke(f"configs/{name}.flags", run_dir, data_dir, "--force",
                               f"--cache_dir={cache}")
            done.write_text(json.dumps({"returncode": result.returncode,
                                        "stdout": result.stdout, "stderr": result.stderr}))
    outcome = json.loads(done.read_text())
    result = subprocess.CompletedProcess([], outcome["returncode"], outcome["stdout"],
                                         outcome["stderr"])
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result, cache


@pytest.fixture(scope="session")
def sentiment_smoke(shared_data, tmp_path_factory):
    """configs/sentiment_smoke.flags: read by the end-to-end tests; the bench's cells and
    the two-worker test reuse its training and its sparsity."""
    return smoke_once("sentiment_smoke", shared_data, tmp_path_factory)


@pytest.fixture(scope="session")
def textgen_smoke(shared_data, tmp_path_factory):
    """configs/textgen_smoke.flags: read by the text-generation tests; the bench's textgen
    cells restore it from the cache."""
    return smoke_once("textgen_smoke", shared_data, tmp_path_factory)
