"""A killed stage resumes with its whole history and its best epoch, not just its weights."""
import numpy as np
import pytest
import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import pruning, resume
from pipeline.config import ModelConfig

OPTIONS = {"monitor": "val_accuracy", "mode": "max", "patience": 1,
           "restore_best_weights": True}


def tiny_model():
    tf_keras.utils.set_random_seed(0)
    return build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4), 20, 5, 2)


def set_bias(model, value):
    model.get_layer("classifier").bias.assign([value, value])


def bias(model):
    return model.get_layer("classifier").bias.numpy()[0]


def epoch(callback, model, number, bias_value, accuracy):
    callback.on_epoch_begin(number)
    set_bias(model, bias_value)
    callback.on_epoch_end(number, {"val_accuracy": accuracy})


def started(tmp_path, model, first_epoch=0):
    """Early stopping over `tmp_path`, begun as resume.fit begins it at `first_epoch`."""
    callback = resume.ResumableEarlyStopping(tmp_path, **OPTIONS)
    callback.set_model(model)
    callback.first_epoch = first_epoch
    callback.on_train_begin()
    return callback


def test_early_stopping_remembers_the_best_epoch_across_a_kill(tmp_path):
    model = tiny_model()
    before_kill = started(tmp_path, model)
    epoch(before_kill, model, 0, 1.0, 0.9)  # the best epoch; the backup has it, then a kill

    after_kill = started(tmp_path, model, first_epoch=1)  # what resume.fit reads from the checkpoint
    epoch(after_kill, model, 1, 2.0, 0.5)
    assert model.stop_training  # patience 1 counts the epoch before the kill
    after_kill.on_train_end()
    assert bias(model) == 1.0 and after_kill.best_epoch == 0


def test_a_kill_between_state_and_backup_rolls_the_state_back(tmp_path):
    model = tiny_model()
    first = started(tmp_path, model)
    epoch(first, model, 0, 1.0, 0.6)
    epoch(first, model, 1, 2.0, 0.9)  # state saved, then killed before the backup of epoch 1
    again = started(tmp_path, model, first_epoch=1)  # the checkpoint restarts at epoch 1: it is run again
    epoch(again, model, 1, 3.0, 0.7)
    assert again.best == 0.7 and again.best_epoch == 1 and not model.stop_training


def test_keep_best_remembers_across_a_kill(tmp_path):
    model = tiny_model()
    first = pruning.KeepBestAtTarget(end_step=10, steps_per_epoch=10, state_folder=tmp_path)
    first.set_model(model)
    epoch(first, model, 0, 3.0, 0.8)
    second = pruning.KeepBestAtTarget(end_step=10, steps_per_epoch=10, state_folder=tmp_path)
    second.set_model(model)
    second.first_epoch = 1
    second.on_train_begin()
    epoch(second, model, 1, 4.0, 0.7)
    second.on_train_end()
    assert second.best_epoch == 0 and bias(model) == 3.0


def test_a_fit_that_had_stopped_still_ends_on_its_best_epoch(tmp_path):
    model = tiny_model()
    first = started(tmp_path, model)
    epoch(first, model, 0, 1.0, 0.9)
    epoch(first, model, 1, 2.0, 0.5)  # stops here; killed before the best weights return
    assert model.stop_training
    again = started(tmp_path, model, first_epoch=2)  # no epoch left to run
    again.on_train_end()
    assert bias(model) == 1.0


class Interrupt(Exception):
    pass


class InterruptAt(tf_keras.callbacks.Callback):
    """Stands in for a kill: leaves the fit in the middle of an epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Interrupt


def resumable_fit(folder, interrupt=None):
    """Three epochs of a dropout model on a seeded stream, through resume.fit."""
    from pipeline.tasks.base import FitData
    from pipeline.tasks.sentiment import shuffled_batches
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4, dropout=0.5,
                                              embedding_dropout=0.3), 20, 5, 2)
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy")
    rows = np.random.default_rng(0)
    x, y = rows.integers(1, 20, (40, 5)).astype("int32"), rows.integers(0, 2, 40)
    data = FitData(shuffled_batches(x, y, 8, seed=2), {"validation_data": (x, y)}, 5)
    callbacks = [InterruptAt(*interrupt)] if interrupt else []
    resume.fit(model, data, epochs=3, folder=folder, seed=1, stream="train",
               callbacks=callbacks, verbose=0)
    return model


def test_a_fit_interrupted_mid_epoch_resumes_to_the_same_weights(tmp_path):
    uninterrupted = resumable_fit(tmp_path / "once").get_weights()
    try:
        resumable_fit(tmp_path / "twice", interrupt=(1, 2))
    except Interrupt:
        pass
    else:
        raise AssertionError("the fit was not interrupted")
    resumed = resumable_fit(tmp_path / "twice").get_weights()  # a new model, as after a kill
    for one, two in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(one, two)


def test_the_epoch_log_keeps_every_epoch_in_order(tmp_path):
    log = resume.EpochLog(tmp_path)
    log.on_epoch_end(0, {"loss": np.float32(0.7), "val_loss": 0.8})
    resumed = resume.EpochLog(tmp_path)
    resumed.on_epoch_end(2, {"loss": 0.5, "val_loss": 0.6})
    resumed.on_epoch_end(1, {"loss": 0.6, "val_loss": 0.7})
    assert resumed.history() == {"loss": [0.699999988079071, 0.6, 0.5],
                                 "val_loss": [0.8, 0.7, 0.6]}


@pytest.mark.parametrize("name, text", [
    ("early_stopping.json", '{"0": {}}'), ("early_stopping.json", '{"0": 5}'),
    ("early_stopping.json", '{"0": {"wait": 0, "best": "x", "best_epoch": 0}}'),
    ("early_stopping.json", "[" * 100_000), ("epochs.json", '{"x": {}}')])
def test_damaged_progress_is_named_not_a_traceback(tmp_path, name, text):
    """Issue 45, items 13 and 16: each used to raise KeyError, TypeError, ValueError or
    RecursionError without naming the file."""
    (tmp_path / name).write_text(text)
    callback = resume.ResumableEarlyStopping(tmp_path, **OPTIONS)
    callback.set_model(tiny_model())
    callback.first_epoch = 1
    with pytest.raises(resume.DamagedProgressError, match=f"{name} is damaged"):
        callback.on_train_begin()
        resume.EpochLog(tmp_path).history()


def test_a_truncated_best_weights_file_and_checkpoint_are_named(tmp_path):
    model = tiny_model()
    first = started(tmp_path, model)
    epoch(first, model, 0, 1.0, 0.9)
    weights = tmp_path / "early_stopping_weights_0.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    again = resume.ResumableEarlyStopping(tmp_path, **OPTIONS)
    again.set_model(model)
    again.first_epoch = 1
    with pytest.raises(resume.DamagedProgressError, match="early_stopping_weights_0.npz"):
        again.on_train_begin()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    checkpoint = resume.TrainingCheckpoint(tmp_path / "checkpoint", model, epochs=3)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0)
    for data in (tmp_path / "checkpoint").glob("*.data-*"):
        data.write_bytes(data.read_bytes()[:10])
    other = tiny_model()
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    fresh = resume.TrainingCheckpoint(tmp_path / "checkpoint", other, epochs=3)
    with pytest.raises(resume.DamagedProgressError, match="checkpoint.* is damaged"):
        fresh.restore()
