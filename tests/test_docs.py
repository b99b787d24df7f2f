"""The way in: README's quick start works as written, and the documents stay readable."""
import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO

LIMITS = {"README.md": 300, "BUILD.md": 600}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_the_documents_stay_short(name):
    lines = (REPO / name).read_text().count("\n")
    assert lines <= LIMITS[name], f"{name} has {lines} lines; move history to docs/"


def quick_start_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines()
            if line.startswith(".venv/bin/python")]


@pytest.mark.slow
def test_the_quick_start_commands_work(sentiment_smoke, tmp_path):
    """The quick start runs the smoke flagfile (the session's smoke run is that run) and
    predicts with its bundle: the predict command, pasted, prints what README shows."""
    run_dir, _, _ = sentiment_smoke
    run, predict = quick_start_commands()
    assert run[1:4] == ["-m", "pipeline.run", "--flagfile=configs/sentiment_smoke.flags"]
    output_dir = run[4].split("=", 1)[1]
    bundle = f"{output_dir}/bundle"
    assert predict[1:4] == ["-m", "pipeline.predict", "--bundle"] and predict[4] == bundle
    result = subprocess.run([sys.executable, *predict[1:4], str(run_dir / "bundle"),
                             *predict[5:]], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == predict[5:]
    assert [row["label"] for row in rows] == ["positive", "negative"]  # as README shows
    shown = (REPO / "README.md").read_text()
    assert all(f'"text": "{text}", "label": "{row["label"]}"' in shown
               for text, row in zip(predict[5:], rows))


# Those that load TensorFlow before parsing take ~3 s each: the integration layer's.
HEAVY = pytest.mark.slow
ENTRY_POINTS = (pytest.param("pipeline.run", marks=HEAVY), "pipeline.bench",
                "pipeline.predict", "pipeline.generate",
                pytest.param("pipeline.attack", marks=HEAVY),
                pytest.param("pipeline.reproduce", marks=HEAVY), "pipeline.metrics")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_exits_0_with_the_main_flags_and_an_example(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Example" in result.stdout and "python -m " + module in result.stdout
    if module != "pipeline.metrics":  # one positional argument, no flags
        assert "Main flags:" in result.stdout and "--helpfull" in result.stdout
