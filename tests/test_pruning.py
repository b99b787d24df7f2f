import numpy as np
import pytest
import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import artifacts, litert, pruning
from pipeline.config import ModelConfig, PipelineConfig, PruningConfig, TokenizerConfig
from pipeline.stages import convert
from pipeline.tasks.sentiment import SentimentTask

STEPS = 8


def tiny_model(**model):
    tf_keras.utils.set_random_seed(0)
    return build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8, **model), 50, 6, 2)


def random_ids(rows=5, seed=3):
    return np.random.default_rng(seed).integers(0, 50, size=(rows, 6)).astype("int32")


BIDIRECTIONAL_WEIGHTS = {f"lstm_{layer}/{direction}/{weight}" for layer in (0, 1)
                         for direction in ("forward", "backward")
                         for weight in ("kernel", "recurrent_kernel")}


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


def test_a_bidirectional_layer_is_wrapped_with_its_trained_weights(tmp_path):
    model = tiny_model(bidirectional=True)  # one layer: stacked ones are in the slow test
    config = PruningConfig(pruning_schedule="one_shot", pruning_layers=("lstm",))
    wrapped = pruning.apply_pruning(model, config, steps_per_epoch=4)
    masked = [w.name for w in wrapped.get_layer("prune_low_magnitude_lstm_0").weights
              if w.name.endswith("mask:0")]
    assert len(masked) == 4  # forward and backward kernel and recurrent kernel
    x = random_ids()
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(wrapped(x, training=False), expected, atol=1e-6)
    artifacts.save_keras_model(wrapped, tmp_path / "wrapped.keras")  # as the prune stage does
    loaded = artifacts.load_keras_model(tmp_path / "wrapped.keras", scope=pruning.load_scope())
    stripped = pruning.strip(loaded)
    assert type(stripped.get_layer("lstm_0")) is tf_keras.layers.Bidirectional  # plain
    np.testing.assert_allclose(stripped(x, training=False), expected, atol=1e-6)
    names = {name for name, kind, _ in pruning.prunable_weights(stripped) if kind == "lstm"}
    assert names == {name for name in BIDIRECTIONAL_WEIGHTS if name.startswith("lstm_0")}


@pytest.mark.slow
def test_bidirectional_lstms_prune_both_directions_and_convert(tmp_path):
    config = PruningConfig(pruning_schedule="constant", pruning_layers=("lstm",),
                           final_sparsity=0.8, pruning_frequency=1, pruning_epochs=2)
    stripped = fine_tune(tiny_model(bidirectional=True, lstm_layers=2), config, tmp_path)
    measured = pruning.weight_sparsity(stripped)
    for name in BIDIRECTIONAL_WEIGHTS:
        assert measured[name]["sparsity"] == pytest.approx(0.8, abs=0.01), name
    programs = SentimentTask().tflite_programs(
        stripped, PipelineConfig(tokenizer=TokenizerConfig(max_length=6)))
    layer_names = convert.keras_layer_names(stripped)
    for export in ("float", "int8"):
        path = tmp_path / f"{export}.tflite"
        path.write_bytes(convert.to_tflite(programs["model"], stripped, export))
        ops = litert.op_names(path)
        assert ops.count(litert.FUSED_LSTM) == 4 and "REVERSE_V2" in ops
        from_file = litert.weight_sparsity(path, layer_names)
        for name in BIDIRECTIONAL_WEIGHTS:  # each direction's zeros, read back by name
            zeros, kept = from_file[name]["zeros"], measured[name]["zeros"]
            # int8 may round more small weights to zero, never fewer
            assert zeros == kept if export == "float" else zeros >= kept, (export, name)
        if export == "float":
            x = random_ids()
            np.testing.assert_allclose(litert.Runner(path).predict(x),
                                       stripped.predict(x, verbose=0), atol=1e-4)
