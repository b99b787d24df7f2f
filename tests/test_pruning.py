import numpy as np
import pytest
import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import pruning
from pipeline.config import ModelConfig, PruningConfig

STEPS = 8


def tiny_model():
    tf_keras.utils.set_random_seed(0)
    return build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8), 50, 6, 2)


def fine_tune(model, config: PruningConfig, tmp_path):
    pruned = pruning.apply_pruning(model, config, steps_per_epoch=STEPS // config.pruning_epochs)
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(STEPS * 4, 6)).astype("int32")
    y = rng.integers(0, 2, size=(STEPS * 4,)).astype("int32")
    pruned.fit(x, y, batch_size=4, epochs=config.pruning_epochs, verbose=0,
               callbacks=pruning.callbacks(str(tmp_path / "tb")))
    return pruning.strip(pruned)


def zero_fraction(model, layer_name, weight_suffix):
    layer = model.get_layer(layer_name)
    weight = next(w for w in layer.weights if w.name.split("/")[-1].startswith(weight_suffix))
    values = weight.numpy()
    return np.count_nonzero(values == 0) / values.size


@pytest.mark.slow
def test_per_layer_targets_reach_the_weights_and_skip_unselected_layers(tmp_path):
    config = PruningConfig(pruning_schedule="constant", pruning_layers=("embedding", "lstm"),
                           final_sparsity=0.5, layer_sparsity=(("embedding", 0.75),),
                           pruning_frequency=1, pruning_epochs=2)
    stripped = fine_tune(tiny_model(), config, tmp_path)
    assert zero_fraction(stripped, "embedding", "embeddings") == pytest.approx(0.75, abs=0.01)
    assert zero_fraction(stripped, "lstm_0", "kernel") == pytest.approx(0.5, abs=0.01)
    assert zero_fraction(stripped, "lstm_0", "recurrent_kernel") == pytest.approx(0.5, abs=0.01)
    assert zero_fraction(stripped, "classifier", "kernel") == 0.0
    measured = pruning.weight_sparsity(stripped)
    assert measured["embedding/embeddings"]["sparsity"] == \
        zero_fraction(stripped, "embedding", "embeddings")
    assert set(measured) == {"embedding/embeddings", "lstm_0/kernel",
                             "lstm_0/recurrent_kernel", "classifier/kernel"}


@pytest.mark.slow
def test_polynomial_decay_reaches_the_final_target(tmp_path):
    config = PruningConfig(pruning_schedule="polynomial_decay", final_sparsity=0.8, pruning_frequency=1,
                           pruning_epochs=2)
    stripped = fine_tune(tiny_model(), config, tmp_path)
    for name, entry in pruning.weight_sparsity(stripped).items():
        assert entry["sparsity"] == pytest.approx(0.8, abs=0.02), name


@pytest.mark.slow
def test_m_by_n_leaves_m_zeros_in_every_block(tmp_path):
    config = PruningConfig(pruning_schedule="m_by_n", pruning_layers=("lstm",), pruning_m=2, pruning_n=4, pruning_frequency=1,
                           pruning_epochs=1)
    stripped = fine_tune(tiny_model(), config, tmp_path)
    kernel = stripped.get_layer("lstm_0").weights[0].numpy()  # [input, 4 * units]
    # tfmot groups n consecutive weights along the input axis of each output column.
    blocks = kernel.T.reshape(-1, 4)
    assert np.all(np.count_nonzero(blocks == 0, axis=1) >= 2)


def test_end_step_defaults_to_the_start_of_the_last_epoch():
    assert pruning.resolve_end_step(PruningConfig(pruning_epochs=3, pruning_frequency=50),
                                    steps_per_epoch=100) == 200
    # Rounded down to a mask-update step so that the last update applies the full target.
    assert pruning.resolve_end_step(PruningConfig(pruning_epochs=3, pruning_frequency=30),
                                    steps_per_epoch=100) == 180
    assert pruning.resolve_end_step(PruningConfig(pruning_epochs=1, pruning_frequency=10),
                                    steps_per_epoch=100) == 70
    assert pruning.resolve_end_step(PruningConfig(pruning_end_step=40), steps_per_epoch=100) == 40


def test_keep_best_ignores_epochs_before_the_target_is_reached():
    model = tiny_model()
    keep = pruning.KeepBestAtTarget(end_step=20, steps_per_epoch=10)
    keep.set_model(model)
    layer = model.get_layer("classifier")
    for epoch, (bias, accuracy) in enumerate([(1.0, 0.99), (2.0, 0.70), (3.0, 0.80),
                                              (4.0, 0.75)]):
        layer.bias.assign([bias, bias])
        keep.on_epoch_end(epoch, {"val_accuracy": accuracy})
    keep.on_train_end()
    assert keep.best_epoch == 2  # epoch 0 scored higher but was not yet at full sparsity
    assert layer.bias.numpy().tolist() == [3.0, 3.0]
