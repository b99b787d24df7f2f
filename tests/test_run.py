"""Runner semantics with stand-in stages: skip, rerun on change, --force, failure safety."""
import shutil
import types

import pytest

from pipeline import artifacts, run
from pipeline.config import PipelineConfig, PruningConfig, TrainConfig
from pipeline.stages import StageError
from tests.conftest import REPO


def fake_stage(name, calls, fail=False):
    def run_stage(config, run_dir, out_dir):
        calls.append(name)
        artifacts.atomic_write_text(out_dir / "out.txt", f"{name} run {len(calls)}")
        if fail:
            raise StageError(f"{name} broke")
        return {"ok": name}
    return types.SimpleNamespace(run=run_stage)


@pytest.fixture
def stages(monkeypatch):
    calls = []
    fakes = (run.Stage("data", ("data",), (), stand_in=fake_stage("data", calls)),
             run.Stage("train", ("train",), ("data",), stand_in=fake_stage("train", calls)),
             run.Stage("prune", ("pruning",), ("train",), stand_in=fake_stage("prune", calls)))
    monkeypatch.setattr(run, "STAGES", fakes)
    return calls


def config(tmp_path, **kwargs):
    return PipelineConfig(output_dir=str(tmp_path / "run"),
                          stages=kwargs.pop("stages", ("data", "train", "prune")), **kwargs)


def test_rerun_skips_unchanged_stages_and_redoes_changed_ones(stages, tmp_path):
    run.run_pipeline(config(tmp_path))
    assert stages == ["data", "train", "prune"]
    run.run_pipeline(config(tmp_path))
    assert stages == ["data", "train", "prune"]
    run.run_pipeline(config(tmp_path, pruning=PruningConfig(final_sparsity=0.5)))
    assert stages[3:] == ["prune"]
    run.run_pipeline(config(tmp_path, pruning=PruningConfig(final_sparsity=0.5), force=True))
    assert stages[4:] == ["data", "train", "prune"]


def test_other_code_reruns_every_stage(stages, tmp_path, monkeypatch):
    run.run_pipeline(config(tmp_path))
    record = artifacts.stage_record(tmp_path / "run" / "train")
    assert record["code"] == run.code_fingerprint()
    assert record["settings"]["epochs"] == 4 and "final_sparsity" not in record["settings"]
    monkeypatch.setattr(run, "code_fingerprint", lambda: "edited sources")
    run.run_pipeline(config(tmp_path))
    assert stages == ["data", "train", "prune"] * 2
    run.run_pipeline(config(tmp_path))  # unchanged code again: everything is skipped
    assert stages == ["data", "train", "prune"] * 2
    assert artifacts.stage_record(tmp_path / "run" / "prune")["code"] == "edited sources"


def test_the_fingerprint_follows_every_source_file(tmp_path):
    packages = {}
    for name in ("pipeline", "models"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
        packages[name] = tmp_path / name
    before = run.source_fingerprint(packages, "0.1.0")
    assert run.source_fingerprint(packages, "0.1.0") == before
    assert run.source_fingerprint(packages, "0.1.1") != before
    stage = tmp_path / "pipeline" / "stages" / "strip.py"
    stage.write_text(stage.read_text() + "\n# a comment is a change too\n")
    assert run.source_fingerprint(packages, "0.1.0") != before
    assert run.code_fingerprint() == run.source_fingerprint(
        {"pipeline": REPO / "pipeline", "models": REPO / "models"},
        run.metadata.version("prune-pipeline"))


def test_upstream_change_reruns_downstream(stages, tmp_path):
    run.run_pipeline(config(tmp_path))
    run.run_pipeline(config(tmp_path, stages=("train",), force=True))
    run.run_pipeline(config(tmp_path))
    assert stages == ["data", "train", "prune", "train", "prune"]


def test_subset_needs_its_inputs(stages, tmp_path):
    with pytest.raises(StageError, match="stage prune needs the output of stage train"):
        run.run_pipeline(config(tmp_path, stages=("prune",)))
    assert stages == []


def test_failed_stage_keeps_the_previous_good_output(stages, tmp_path, monkeypatch):
    run.run_pipeline(config(tmp_path))
    good = (tmp_path / "run" / "prune" / "out.txt").read_text()
    record = artifacts.stage_record(tmp_path / "run" / "prune")
    broken = list(run.STAGES)
    broken[2] = run.Stage("prune", ("pruning",), ("train",),
                          stand_in=fake_stage("prune", stages, fail=True))
    monkeypatch.setattr(run, "STAGES", tuple(broken))
    with pytest.raises(StageError, match="prune broke"):
        run.run_pipeline(config(tmp_path, pruning=PruningConfig(final_sparsity=0.5)))
    assert (tmp_path / "run" / "prune" / "out.txt").read_text() == good
    assert artifacts.stage_record(tmp_path / "run" / "prune") == record


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    artifacts.atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_cache_shares_unchanged_stages_between_run_directories(stages, tmp_path):
    cache = str(tmp_path / "cache")
    first = PipelineConfig(output_dir=str(tmp_path / "a"), stages=("data", "train", "prune"),
                           cache_dir=cache)
    run.run_pipeline(first)
    second = PipelineConfig(output_dir=str(tmp_path / "b"), stages=("data", "train", "prune"),
                            cache_dir=cache, pruning=PruningConfig(final_sparsity=0.5))
    run.run_pipeline(second)
    assert stages == ["data", "train", "prune", "prune"]
    assert (tmp_path / "b" / "train" / "out.txt").read_text() == \
        (tmp_path / "a" / "train" / "out.txt").read_text()


def test_subset_refuses_an_input_made_with_other_settings(stages, tmp_path):
    """Issue 45, item 3: `--stages=train --seed=2` then `--stages=bundle --seed=2` shipped
    the seed-1 model labelled seed 2 (a warning, exit 0)."""
    run.run_pipeline(config(tmp_path))
    changed = config(tmp_path, stages=("prune",), train=TrainConfig(epochs=9))
    with pytest.raises(StageError, match="stage prune reads the output of train, which was "
                                         "made with other settings \\(--epochs\\); add train"):
        run.run_pipeline(changed)
    assert stages == ["data", "train", "prune"]
