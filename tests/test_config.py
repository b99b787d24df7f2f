import dataclasses
import re
import subprocess
import sys

import pytest
from absl import flags as absl_flags

from pipeline import cli
from pipeline import config as cfg
from pipeline import flags as pipeline_flags
from pipeline import settings
from tests.conftest import REPO


@pytest.mark.parametrize("kwargs, message", [
    ({"final_sparsity": 1.0}, "--final_sparsity=1.0 is outside [0, 1)"),
    ({"final_sparsity": -0.1}, "--final_sparsity=-0.1 is outside [0, 1)"),
    ({"initial_sparsity": 0.9, "final_sparsity": 0.5}, "--initial_sparsity=0.9 is above"),
    ({"pruning_m": 4, "pruning_n": 4}, "needs 1 <= m < n"),
    ({"pruning_m": 5, "pruning_n": 4}, "needs 1 <= m < n"),
    ({"pruning_layers": ("lstm", "conv")},
     "--pruning_layers=lstm,conv: conv is not one of embedding, lstm, dense"),
    ({"pruning_layers": ("lstm",), "layer_sparsity": (("dense", 0.5),)},
     "target for 'dense', which is not in --pruning_layers=lstm"),
    ({"pruning_begin_step": 10, "pruning_end_step": 5}, "--pruning_end_step=5 must be -1"),
    ({"pruning_method": "random"}, "--pruning_method=random: random is not one of"),
    ({"final_sparsity": float("nan")}, "--final_sparsity=nan is not a finite number"),
    ({"pruning_learning_rate": float("inf")}, "--pruning_learning_rate=inf is not a finite"),
])
def test_pruning_config_rejects_bad_values(kwargs, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.PruningConfig(**kwargs)


def test_per_layer_targets_override_the_default():
    pruning = cfg.PruningConfig(pruning_layers=("embedding", "lstm"), final_sparsity=0.8,
                                layer_sparsity=(("embedding", 0.9),))
    assert pruning.targets() == {"embedding": 0.9, "lstm": 0.8}
    assert cfg.PruningConfig(pruning_schedule="m_by_n", pruning_m=1, pruning_n=4, pruning_layers=("dense",)).targets() == \
        {"dense": 0.25}


def test_bundle_export_must_be_converted():
    with pytest.raises(cfg.ConfigError, match="--bundle_export=int8 is not produced"):
        cfg.PipelineConfig(output_dir="x", convert=cfg.ConvertConfig(exports=("float",)),
                           bundle=cfg.BundleConfig(bundle_export="int8"))


def test_settings_hold_only_the_named_settings():
    base = cfg.PipelineConfig(output_dir="a")
    changed = cfg.PipelineConfig(output_dir="b", pruning=cfg.PruningConfig(final_sparsity=0.5))
    assert base.settings(("model", "train")) == changed.settings(("model", "train"))
    assert base.settings(("pruning",)) != changed.settings(("pruning",))
    assert base.settings(("final_sparsity",)) != changed.settings(("final_sparsity",))
    assert base.settings(("seed", "model"))["embedding_dim"] == 128
    with pytest.raises(KeyError, match="'output_dir' is neither"):
        base.settings(("output_dir",))


def test_a_view_reads_only_declared_settings():
    view = cfg.PipelineConfig(output_dir="a").view(("train", "max_length"), "stage test")
    assert view.train.epochs == 4 and view.tokenizer.max_length == 64
    assert view.data.task == "sentiment"  # the task picks the code: always readable
    with pytest.raises(settings.UndeclaredSettingError, match="stage test read --vocabulary_size"):
        view.tokenizer.vocabulary_size
    with pytest.raises(settings.UndeclaredSettingError, match="PruningConfig.targets"):
        view.pruning.targets()
    with pytest.raises(settings.UndeclaredSettingError, match="--output_dir"):
        view.output_dir
    assert view.settings() == {"train": dataclasses.asdict(cfg.TrainConfig()),
                               "tokenizer": {"max_length": 64}}


def test_every_setting_is_one_flag_with_its_default_and_help(monkeypatch):
    monkeypatch.delenv("PIPELINE_DATA_DIR", raising=False)
    values = absl_flags.FlagValues()
    pipeline_flags.define_flags(values)
    assert set(values) == set(settings.FIELDS)
    for name, (_, field, _) in settings.FIELDS.items():
        assert len(values[name].help) > 10, name
        assert values[name].default == (list(field.default) if isinstance(field.default, tuple)
                                        else field.default), name
    assert pipeline_flags.parse_config([]) == cfg.PipelineConfig()
    monkeypatch.setenv("PIPELINE_DATA_DIR", "/some/mirror")
    assert pipeline_flags.parse_config([]).data.data_dir == "/some/mirror"


def test_a_flagfile_and_flags_build_the_same_config_as_the_dataclasses(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_DATA_DIR", raising=False)
    flagfile = tmp_path / "x.flags"
    flagfile.write_text("# comment\n--final_sparsity=0.5\n--layer_sparsity=embedding:0.9\n"
                        "--pruning_layers=embedding,lstm\n--data_seed=7\n")
    parsed = pipeline_flags.parse_config([f"--flagfile={flagfile}", "--bundle_export=float"])
    assert parsed == cfg.PipelineConfig(
        data=cfg.DataConfig(data_seed=7),
        pruning=cfg.PruningConfig(final_sparsity=0.5, pruning_layers=("embedding", "lstm"),
                                  layer_sparsity=(("embedding", 0.9),)),
        bundle=cfg.BundleConfig(bundle_export="float"))


def test_nested_flagfiles_are_relative_to_the_including_file(tmp_path):
    (tmp_path / "base.flags").write_text("--epochs=9\n--seed=3\n")
    (tmp_path / "small.flags").write_text("--flagfile=base.flags\n--seed=5\n")
    assert cli.expand_flagfiles([f"--flagfile={tmp_path / 'small.flags'}", "--seed=6"]) == \
        ["--epochs=9", "--seed=3", "--seed=5", "--seed=6"]
    (tmp_path / "loop.flags").write_text("--flagfile=loop.flags\n")
    with pytest.raises(cli.FlagfileError, match="includes itself"):
        cli.expand_flagfiles([f"--flagfile={tmp_path / 'loop.flags'}"])


def test_layer_sparsity_flag_parsing():
    assert pipeline_flags.parse_pairs("layer_sparsity", ["lstm:0.8", "dense:0.5"]) == \
        (("lstm", 0.8), ("dense", 0.5))
    with pytest.raises(cfg.ConfigError, match="'lstm=0.8' is not KIND:VALUE"):
        pipeline_flags.parse_pairs("layer_sparsity", ["lstm=0.8"])


def run_main(args, tmp_path, capsys):
    """pipeline.run's entry point in this process: (exit status, stderr)."""
    from pipeline import run
    values = absl_flags.FlagValues()
    pipeline_flags.define_flags(values)
    with pytest.raises(SystemExit) as stopped:
        argv = cli.parse_or_exit(["pipeline.run", *args, f"--output_dir={tmp_path / 'run'}"],
                                 values)
        run.main(argv, values)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--flagfile=/nonexistent/x.flags"], "--flagfile=/nonexistent/x.flags cannot be read"),
    (["--learning_rate=inf"], "--learning_rate=inf is not a finite number"),
    (["--pruning_method=l1", "--l1=1e-6"], "add --pruning_schedule=one_shot"),
    (["--dataset=mnist"], "--dataset=mnist is not a registered sentiment dataset"),
    (["--final_sparsity=1.5"], "--final_sparsity=1.5 is outside [0, 1)"),
    (["--pruning_schedule=m_by_n", "--pruning_m=4", "--pruning_n=2"], "needs 1 <= m < n"),
    (["--pruning_schedule=cubic"], "pruning_schedule"),
    (["--dataset=tsv:/nonexistent/file.tsv"], "file /nonexistent/file.tsv does not exist"),
    (["--vocabulary=characters"], "--vocabulary=characters does not fit --task=sentiment"),
    (["--pruning_method=structured", "--structured_units=1"],
     "--structured_units=1.0 is outside [0, 1)"),
    (["--pruning_method=structured", "--structured_units=-0.1"],
     "--structured_units=-0.1 is outside [0, 1)"),
    (["--pruning_method=structured", "--lstm_units=2", "--structured_units=0.9"],
     "removing 0.9 of --lstm_units=2 leaves no group"),
    (["--pruning_method=structured"], "needs --structured_units or --structured_embedding"),
    (["--structured_units=0.5"], "apply only to --pruning_method=structured, not magnitude"),
    (["--pruning_method=structured", "--structured_units=0.5", "--structured_steps=4"],
     "--structured_epochs=3 must be at least --structured_steps=4"),
    (["--pruning_method=structured", "--structured_units=0.5",
      "--structured_embedding_basis=principal"],
     "--structured_embedding=0 removes none: set --structured_embedding above 0"),
    (["--pruning_method=structured", "--structured_units=0.5", "--structured_embedding=0.5",
      "--structured_embedding_basis=pca"], "structured_embedding_basis"),
    (["--pruning_method=structured", "--structured_embedding=0.5",
      "--structured_embedding_levels=127"],
     "--structured_embedding_levels=127 must be 0 (off) or 1 to 126"),
    (["--pruning_method=structured", "--structured_embedding=0.5",
      "--structured_embedding_levels=-1"],
     "--structured_embedding_levels=-1 must be 0 (off) or 1 to 126"),
    (["--pruning_method=structured", "--structured_embedding=0.5",
      "--structured_embedding_levels=5", "--pruning_layers=embedding,lstm"],
     "holds the embedding fixed on its grid, so the magnitude phase cannot fine-tune it"),
    (["--structured_embedding_levels=5"],
     "apply only to --pruning_method=structured, not magnitude"),
    (["--pruning_method=structured", "--structured_embedding=0.5",
      "--structured_embedding_exact_words=3000"],
     "--structured_embedding_levels=0 rounds nothing: set --structured_embedding_levels too"),
    (["--pruning_method=structured", "--structured_embedding=0.5",
      "--structured_embedding_levels=4", "--structured_embedding_exact_words=-1"],
     "--structured_embedding_exact_words=-1 must be >= 0"),
    (["--pretrained_embeddings=glove-6b-50d"],
     "has 50 dimensions but --embedding_dim=128: set --embedding_dim=50"),
    (["--pretrained_embeddings=/nonexistent/vectors.txt", "--embedding_dim=50"],
     "no such file, and not a registered name"),
    (["--extra_vocabulary=1000"], "set --pretrained_embeddings too"),
    (["--typo_correction_targets=vocabulary"],
     "--typo_correction_targets=vocabulary has no effect without --typo_correction"),
    (["--pretrained_embeddings=glove-6b-50d", "--embedding_dim=50", "--vocabulary=wordpiece"],
     "use --vocabulary=words"),
    (["--long_text_stride=65"], "--long_text_stride=65 is longer than a window"),
    (["--task=textgen", "--dataset=tiny_shakespeare", "--vocabulary=characters",
      "--bidirectional"], "--bidirectional reads the text backwards too"),
    (["--bidirectional", "--pruning_method=structured", "--structured_units=0.5"],
     "does not yet remove units from --bidirectional layers"),
    (["--task=textgen", "--dataset=tiny_shakespeare", "--vocabulary=characters",
      "--augment=swap"], "--augment=swap adds noisy copies of training sentences"),
    (["--augment=smudge"], "smudge"),
    (["--negated_phrases=-1"], "--negated_phrases=-1 must be >= 0"),
    (["--task=textgen", "--dataset=tiny_shakespeare", "--vocabulary=characters",
      "--negated_phrases=100"], "--negated_phrases=100 adds negated sentiment phrases"),
    (["--augment=swap", "--augment_rate=0"], "--augment_rate=0.0 must be in (0, 1]"),
    (["--attack_sentences=-1"], "--attack_sentences=-1 must be >= 0"),
    (["--adversarial_sentences=-1"], "--adversarial_sentences=-1 must be >= 0"),
    (["--adversarial_sentences=100", "--adversarial_copies=0"],
     "--adversarial_copies=0 must be in [1, 10]"),
    (["--adversarial_sentences=100", "--pruning_method=none"],
     "which --pruning_method=none does not do"),
    (["--task=textgen", "--dataset=tiny_shakespeare", "--vocabulary=characters",
      "--adversarial_sentences=100"], "attacks sentiment sentences: use it with --task=sentiment"),
    (["--distribution=multi_worker"], "--distribution=multi_worker needs TF_CONFIG"),
    (["--pruning_method=l2", "--l2=1e-5", "--pruning_schedule=one_shot",
      "--pruning_layers=lstm,dense", "--regularized_weights=embeddings,kernel"],
     "--regularized_weights names embeddings, which no layer in --pruning_layers=lstm,dense"),
    (["--distribution=mirrored", "--pruning_method=structured", "--structured_units=0.5"],
     "use --distribution=none with it"),
    # Issue 32, item 9: values that used to pass the checks and fail after work began.
    (["--seed=-1"], "--seed=-1 must be in [0, 2,147,483,647]"),
    (["--seed=100000000000000000000"], "--seed=100000000000000000000 must be in [0,"),
    (["--data_seed=-1"], "--data_seed=-1 must be in [0, 2,147,483,647]"),
    (["--lstm_units=4000000000"], "--lstm_units=4000000000 must be in [1, 8,192]"),
    (["--embedding_dim=4000000000"], "--embedding_dim=4000000000 must be in [1, 4,096]"),
    (["--lstm_layers=1000000000000"], "--lstm_layers=1000000000000 must be in [1, 16]"),
    (["--pruning_schedule=m_by_n", "--pruning_n=9223372036854775808"], "1 <= m < n <= 64"),
    (["--learning_rate=1e300"], "--learning_rate=1e+300 must be in (0, 1]"),
])
def test_cli_rejects_bad_input_before_any_work(args, message, tmp_path, capsys):
    status, stderr = run_main(args, tmp_path, capsys)
    assert status == 2, stderr[-2000:]
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "run").exists()


def test_only_check_args_runs_the_config_checks(tmp_path):
    """absl stops before main with --only_check_args; the config is checked anyway."""
    def check(*args):
        return subprocess.run([sys.executable, "-m", "pipeline.run", "--only_check_args",
                               *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    refused = check("--epochs=-5")
    assert refused.returncode == 2 and "--epochs=-5 must be >= 1" in refused.stderr
    assert check("--epochs=2").returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_a_diverged_model_is_never_saved(tmp_path):
    import numpy as np
    import tf_keras

    from pipeline import artifacts
    model = tf_keras.Sequential([tf_keras.Input(shape=(2,)), tf_keras.layers.Dense(1)])
    kernel, bias = model.get_weights()
    model.set_weights([np.full_like(kernel, np.nan), bias])
    with pytest.raises(artifacts.NonFiniteWeightsError, match="non-finite values in "
                                                              "dense/kernel:0: training"):
        artifacts.save_keras_model(model, tmp_path / "model.keras")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.run",
                             f"--flagfile={REPO / 'configs' / 'sentiment_smoke.flags'}",
                             "--final_sparsity=1.5",
                             f"--output_dir={tmp_path / 'run'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--final_sparsity=1.5 is outside [0, 1)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


RUN_FLAGFILES = sorted(p for p in (REPO / "configs").glob("*.flags")
                       if "--method=" not in p.read_text(encoding="utf-8"))  # not bench's


@pytest.mark.parametrize("flagfile", RUN_FLAGFILES, ids=[p.stem for p in RUN_FLAGFILES])
def test_every_shipped_run_flagfile_builds_a_valid_config(flagfile):
    config = pipeline_flags.parse_config([f"--flagfile={flagfile}"])
    assert config.output_dir.startswith("runs/"), config.output_dir


def test_the_structured_flagfile_cuts_rotated_dimensions_from_the_glove_recipe():
    structured = pipeline_flags.parse_config([f"--flagfile={REPO / 'configs/structured.flags'}"])
    recipe = pipeline_flags.parse_config([f"--flagfile={REPO / 'configs/sentiment.flags'}"])
    assert structured.embeddings == recipe.embeddings and structured.model == recipe.model
    assert structured.structured.structured_embedding_basis == "principal"
    assert structured.output_dir != recipe.output_dir
