import re
import subprocess
import sys

import pytest

from pipeline import config as cfg
from pipeline import flags as pipeline_flags
from tests.conftest import REPO


@pytest.mark.parametrize("kwargs, message", [
    ({"final_sparsity": 1.0}, "--final_sparsity=1.0 is outside [0, 1)"),
    ({"final_sparsity": -0.1}, "--final_sparsity=-0.1 is outside [0, 1)"),
    ({"initial_sparsity": 0.9, "final_sparsity": 0.5}, "--initial_sparsity=0.9 is above"),
    ({"m": 4, "n": 4}, "needs 1 <= m < n"),
    ({"m": 5, "n": 4}, "needs 1 <= m < n"),
    ({"layers": ("lstm", "conv")}, "--pruning_layers names conv"),
    ({"layers": ("lstm",), "layer_sparsity": (("dense", 0.5),)},
     "target for 'dense', which is not in --pruning_layers=lstm"),
    ({"begin_step": 10, "end_step": 5}, "--pruning_end_step=5 must be -1"),
    ({"method": "random"}, "--pruning_method=random is not one of"),
])
def test_pruning_config_rejects_bad_values(kwargs, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.PruningConfig(**kwargs)


def test_per_layer_targets_override_the_default():
    pruning = cfg.PruningConfig(layers=("embedding", "lstm"), final_sparsity=0.8,
                                layer_sparsity=(("embedding", 0.9),))
    assert pruning.targets() == {"embedding": 0.9, "lstm": 0.8}
    assert cfg.PruningConfig(schedule="m_by_n", m=1, n=4, layers=("dense",)).targets() == \
        {"dense": 0.25}


def test_bundle_export_must_be_converted():
    with pytest.raises(cfg.ConfigError, match="--bundle_export=int8 is not produced"):
        cfg.PipelineConfig(output_dir="x", convert=cfg.ConvertConfig(exports=("float",)),
                           bundle=cfg.BundleConfig(export="int8"))


def test_section_hash_tracks_only_named_sections():
    base = cfg.PipelineConfig(output_dir="a")
    changed = cfg.PipelineConfig(output_dir="b", pruning=cfg.PruningConfig(final_sparsity=0.5))
    assert base.section_hash(("model", "train")) == changed.section_hash(("model", "train"))
    assert base.section_hash(("pruning",)) != changed.section_hash(("pruning",))


def test_layer_sparsity_flag_parsing():
    assert pipeline_flags._layer_sparsity(["lstm:0.8", "dense:0.5"]) == \
        (("lstm", 0.8), ("dense", 0.5))
    with pytest.raises(cfg.ConfigError, match="'lstm=0.8' is not KIND:SPARSITY"):
        pipeline_flags._layer_sparsity(["lstm=0.8"])


def run_cli(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args,
                           f"--output_dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--flagfile=/nonexistent/x.flags"], "/nonexistent/x.flags"),
    (["--dataset=mnist"], "--dataset=mnist is not a registered sentiment dataset"),
    (["--final_sparsity=1.5"], "--final_sparsity=1.5 is outside [0, 1)"),
    (["--pruning_schedule=m_by_n", "--pruning_m=4", "--pruning_n=2"], "needs 1 <= m < n"),
    (["--pruning_schedule=cubic"], "pruning_schedule"),
    (["--dataset=tsv:/nonexistent/file.tsv"], "file /nonexistent/file.tsv does not exist"),
])
def test_cli_rejects_bad_input_before_any_work(args, message, tmp_path):
    result = run_cli(*args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "run").exists()
