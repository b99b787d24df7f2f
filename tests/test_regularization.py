"""L1/L2 regularization pruning: penalties on the right weights, threshold, fixed masks."""
import numpy as np
import pytest
import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import artifacts, methods, pruning
from pipeline.config import (ConfigError, ModelConfig, PipelineConfig, PruningConfig,
                             RegularizationConfig)


def tiny_model(regularizers=None):
    tf_keras.utils.set_random_seed(0)
    return build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8), 50, 6, 2,
                                 regularizers=regularizers)


def toy_data(n=64):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 50, size=(n, 6)).astype("int32"),
            rng.integers(0, 2, size=(n,)).astype("int32"))


def fine_tune(model, config, epochs=None, steps_per_epoch=16):
    pruned = pruning.apply_pruning(model, config, steps_per_epoch=steps_per_epoch)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                   loss="sparse_categorical_crossentropy")
    x, y = toy_data()
    pruned.fit(x, y, batch_size=4, epochs=epochs or config.pruning_epochs, verbose=0, shuffle=False,
               callbacks=[pruning.sparsity.UpdatePruningStep()])
    return pruned


EVERY_KIND = ("embedding", "lstm", "dense")


def test_regularizers_attach_to_the_chosen_weights_only():
    config = RegularizationConfig(l1=1e-4, regularized_weights=("embeddings", "recurrent_kernel"))
    model = tiny_model(pruning.regularizers(config, EVERY_KIND))
    lstm = model.get_layer("lstm_0")
    assert model.get_layer("embedding").embeddings_regularizer.l1 == pytest.approx(1e-4)
    assert lstm.cell.recurrent_regularizer.l1 == pytest.approx(1e-4)
    assert lstm.cell.kernel_regularizer is None
    assert model.get_layer("classifier").kernel_regularizer is None
    assert len(model.losses) == 2
    every = tiny_model(pruning.regularizers(RegularizationConfig(l2=1e-3), EVERY_KIND))
    assert every.get_layer("classifier").kernel_regularizer.l2 == pytest.approx(1e-3)
    assert len(every.losses) == 4
    assert pruning.regularizers(RegularizationConfig(), EVERY_KIND) == {}
    assert pruning.regularizers(RegularizationConfig(l1=0.0, l2=0.0), EVERY_KIND) == {}


def regularized(pruning_layers, **penalty) -> PipelineConfig:
    return PipelineConfig(output_dir="x", regularization=RegularizationConfig(l2=1e-3, **penalty),
                          pruning=PruningConfig(pruning_method="l2", pruning_schedule="one_shot",
                                                pruning_layers=pruning_layers))


def test_the_penalty_goes_only_to_the_weights_of_the_pruned_layers():
    config = regularized(("lstm", "dense"))
    model = tiny_model(methods.for_config(config).regularizers(config))
    assert model.get_layer("embedding").embeddings_regularizer is None
    assert model.get_layer("lstm_0").cell.kernel_regularizer.l2 == pytest.approx(1e-3)
    assert model.get_layer("classifier").kernel_regularizer.l2 == pytest.approx(1e-3)
    assert len(model.losses) == 3
    lstm_only = regularized(("lstm",), regularized_weights=("kernel",))
    model = tiny_model(methods.for_config(lstm_only).regularizers(lstm_only))
    assert model.get_layer("lstm_0").cell.kernel_regularizer.l2 == pytest.approx(1e-3)
    assert model.get_layer("classifier").kernel_regularizer is None
    assert len(model.losses) == 1


def test_every_choice_of_regularized_weights_has_its_targets():
    from pipeline.config import REGULARIZABLE_WEIGHTS
    assert set(pruning.REGULARIZER_TARGETS) == set(REGULARIZABLE_WEIGHTS)
    assert {kind for weight in REGULARIZABLE_WEIGHTS
            for kind in pruning.regularized_kinds(weight)} == set(EVERY_KIND)


def test_a_penalty_on_a_layer_that_is_not_pruned_is_refused():
    with pytest.raises(ConfigError, match="--regularized_weights names embeddings, which no "
                                          "layer in --pruning_layers=lstm,dense holds"):
        regularized(("lstm", "dense"), regularized_weights=("embeddings", "kernel"))


def test_rows_no_sentence_uses_keep_their_vectors_when_the_embedding_is_not_pruned():
    """The open vocabulary's added words: only the penalty would move their rows."""
    x, y = toy_data()
    x = x % 30  # ids 30..49 never occur
    norms = {}
    for layers in (EVERY_KIND, ("lstm", "dense")):
        config = regularized(layers)
        model = tiny_model(methods.for_config(config).regularizers(config))
        before = model.get_layer("embedding").get_weights()[0][30:].copy()
        model.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=5, verbose=0)
        after = model.get_layer("embedding").get_weights()[0][30:]
        norms[layers] = np.linalg.norm(after, axis=1) / np.linalg.norm(before, axis=1)
    np.testing.assert_allclose(norms[("lstm", "dense")], 1.0, rtol=1e-6)
    assert norms[EVERY_KIND].max() < 0.95  # the penalty alone shrank them


def test_method_and_strengths_must_agree():
    with pytest.raises(ConfigError, match="--pruning_method=l1 needs --l1 > 0"):
        PipelineConfig(output_dir="x", pruning=PruningConfig(pruning_method="l1"))
    with pytest.raises(ConfigError, match="--pruning_method=l2 trains without --l1"):
        PipelineConfig(output_dir="x", regularization=RegularizationConfig(l1=1e-6, l2=1e-5),
                       pruning=PruningConfig(pruning_method="l2", pruning_schedule="one_shot"))
    with pytest.raises(ConfigError, match=r"apply only to --pruning_method=l1\|l2\|l1_l2 "
                                          r"\(--group_lasso also structured\), not magnitude"):
        PipelineConfig(output_dir="x", regularization=RegularizationConfig(l2=1e-4))
    PipelineConfig(output_dir="x", pruning=PruningConfig(pruning_method="l1_l2",
                                                         pruning_schedule="one_shot"))


def test_regularized_methods_refuse_a_moving_mask():
    with pytest.raises(ConfigError, match="--pruning_method=l1 cuts once and holds the mask "
                                          "fixed: add --pruning_schedule=one_shot"):
        PipelineConfig(output_dir="x", regularization=RegularizationConfig(l1=1e-6),
                       pruning=PruningConfig(pruning_method="l1"))
    with pytest.raises(ConfigError, match="--pruning_layers is empty"):
        PipelineConfig(output_dir="x", regularization=RegularizationConfig(l2=1e-5),
                       pruning=PruningConfig(pruning_method="l2", pruning_schedule="one_shot",
                                             pruning_layers=()))


@pytest.mark.slow
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9])
def test_one_shot_threshold_reaches_the_target(target):
    config = PruningConfig(pruning_method="l1", pruning_schedule="one_shot", final_sparsity=target, pruning_epochs=1)
    stripped = pruning.strip(fine_tune(tiny_model(), config, steps_per_epoch=16))
    for name, entry in pruning.weight_sparsity(stripped).items():
        assert abs(entry["sparsity"] - target) <= 0.005 + 1 / entry["size"], name


@pytest.mark.slow
def test_zeros_stay_zero_through_fine_tuning():
    config = PruningConfig(pruning_method="l2", pruning_schedule="one_shot", final_sparsity=0.8, pruning_epochs=1)
    model = fine_tune(tiny_model(), config, epochs=1)
    first = {w.name: w.numpy() == 0 for w in pruning.strip(model).weights}
    model.fit(*toy_data(), batch_size=4, epochs=3, verbose=0,
              callbacks=[pruning.sparsity.UpdatePruningStep()])
    later = {w.name: w.numpy() == 0 for w in pruning.strip(model).weights}
    pruned_weights = [n for n in first if "kernel" in n or "embeddings" in n]
    assert len(pruned_weights) == 4
    for name in pruned_weights:
        assert first[name].mean() == pytest.approx(0.8, abs=0.005 + 1 / first[name].size)
        np.testing.assert_array_equal(later[name], first[name])


@pytest.mark.slow
def test_l1_l2_at_zero_is_magnitude_one_shot():
    magnitude = PipelineConfig(output_dir="x", pruning=PruningConfig(
        pruning_method="magnitude", pruning_schedule="one_shot"))
    regularized = PipelineConfig(output_dir="x", pruning=PruningConfig(
        pruning_method="l1_l2", pruning_schedule="one_shot"),
        regularization=RegularizationConfig(0.0, 0.0))
    results = []
    for config in (magnitude, regularized):
        model = tiny_model(methods.for_config(config).regularizers(config))
        tf_keras.utils.set_random_seed(1)
        results.append(pruning.strip(fine_tune(model, config.pruning)).get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_group_lasso_groups_the_four_gate_columns_of_each_unit(tmp_path):
    penalty = pruning.GateGroupLasso(l1=0.0, l2=0.0, group=0.5)
    kernel = np.random.default_rng(0).normal(size=(3, 4 * 5)).astype("float32")
    expected = 0.5 * sum(np.linalg.norm(kernel[:, [j, 5 + j, 10 + j, 15 + j]])
                         for j in range(5))
    assert float(penalty(tf_keras.backend.constant(kernel))) == pytest.approx(expected, rel=1e-5)
    config = RegularizationConfig(l1=1e-4, group_lasso=1e-3)
    model = tiny_model(pruning.regularizers(config, EVERY_KIND))
    lstm = model.get_layer("lstm_0").cell
    assert isinstance(lstm.kernel_regularizer, pruning.GateGroupLasso)
    assert isinstance(lstm.recurrent_regularizer, pruning.GateGroupLasso)
    assert not isinstance(model.get_layer("classifier").kernel_regularizer,
                          pruning.GateGroupLasso)
    path = tmp_path / "group.keras"
    model.save(path)
    loaded = artifacts.load_keras_model(path)  # safe mode accepts the registered class
    assert loaded.get_layer("lstm_0").cell.kernel_regularizer.group == pytest.approx(1e-3)


def structured(**penalties) -> PipelineConfig:
    from pipeline.config import StructuredConfig
    return PipelineConfig(output_dir="x", pruning=PruningConfig(pruning_method="structured"),
                          structured=StructuredConfig(structured_units=0.5),
                          regularization=RegularizationConfig(**penalties))


def test_structured_trains_with_the_group_lasso_on_the_lstm_kernels_only():
    config = structured(group_lasso=1e-3)
    model = tiny_model(methods.for_config(config).regularizers(config))
    cell = model.get_layer("lstm_0").cell
    assert cell.kernel_regularizer.group == pytest.approx(1e-3)
    assert cell.recurrent_regularizer.group == pytest.approx(1e-3)
    assert model.get_layer("embedding").embeddings_regularizer is None
    assert model.get_layer("classifier").kernel_regularizer is None
    assert methods.for_config(structured()).regularizers(structured()) == {}


@pytest.mark.parametrize("penalties, message", [
    ({"l1": 1e-5, "group_lasso": 1e-3}, "trains with --group_lasso only"),
    ({"l2": 1e-5}, "trains with --group_lasso only"),
    ({"regularized_weights": ("kernel",)}, "only with --group_lasso > 0"),
])
def test_structured_refuses_the_per_weight_penalties(penalties, message):
    with pytest.raises(ConfigError, match=message):
        structured(**penalties)


@pytest.mark.parametrize("penalties, penalised", [({}, False), ({"group_lasso": 1e-3}, True)])
def test_structured_train_stage_reads_the_group_lasso_only_when_on(penalties, penalised):
    from pipeline import run
    config = structured(**penalties)
    train = next(stage for stage in run.STAGES if stage.name == "train")
    view = config.view(run.stage_settings(train, config), "stage train")
    assert bool(methods.for_config(view).regularizers(view)) == penalised
    magnitude = PipelineConfig(output_dir="x")  # the dense parent a plain structured run shares
    assert (config.settings(run.stage_settings(train, config)) ==
            magnitude.settings(run.stage_settings(train, magnitude))) != penalised
