"""Same seed, same draws: every random stream of training is a function of (seed, stream,
epoch), the same in a fresh process, and a fit can start any epoch's stream."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tf_keras

from conftest import REPO
from models.sentiment import build_sentiment_model
from pipeline import artifacts, determinism
from pipeline.config import ModelConfig
from pipeline.tasks.base import FitData

# Prints every stream's draws for (seed 3, epoch 2) as JSON; run here and in a new process.
DRAWS = """
import json
import numpy as np
import pipeline
import tf_keras
from models.sentiment import build_sentiment_model
from pipeline import determinism
from pipeline.config import ModelConfig
from pipeline.tasks.base import FitData
from pipeline.tasks.sentiment import bucketed_batches, shuffled_batches
from pipeline.tasks.textgen import random_windows

def first_batch(stream, steps, epoch=2):
    x, y = next(iter(FitData(stream, {}, steps).arguments(epoch)["x"]))
    return np.asarray(x).tolist(), np.asarray(y).tolist()

def draws():
    tf_keras.utils.set_random_seed(3)
    model = build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4, dropout=0.5,
                                              embedding_dropout=0.5), 20, 5, 2)
    randomness = determinism.EpochRandomness(seed=3, stream="train")
    randomness.set_model(model)
    randomness.on_epoch_begin(2)
    masks = [layer(np.ones((2, 5, 4), np.float32), training=True).numpy().tolist()
             for layer in determinism.random_layers(model)]
    ids = np.arange(60, dtype=np.int32).reshape(12, 5) % 7
    ids[:, :2] = 0  # left padding for the length buckets
    labels = np.arange(12) % 2
    return {"seeds": [determinism.stream_seed(3, "train", 2, layer) for layer in (0, 1)],
            "dropout": masks,
            "shuffled": first_batch(shuffled_batches(ids, labels, 4, 3), 3),
            "bucketed": first_batch(bucketed_batches(ids, labels, 4, 3, 0), 3),
            "windows": first_batch(random_windows(np.arange(500, dtype=np.int32) % 9,
                                                  10, 4, 3), 12)}
"""


def draws_here() -> dict:
    scope: dict = {}
    exec(DRAWS, scope)
    return json.loads(json.dumps(scope["draws"]()))


def test_every_stream_draws_the_same_in_a_new_process():
    child = subprocess.run([sys.executable, "-c", DRAWS + "\nprint(json.dumps(draws()))"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    there = json.loads(child.stdout.strip().splitlines()[-1])
    here = draws_here()
    assert set(here) == {"seeds", "dropout", "shuffled", "bucketed", "windows"}
    for stream in here:
        assert here[stream] == there[stream], stream


def test_each_epoch_and_stream_draws_its_own_masks():
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4, dropout=0.5),
                                  20, 5, 2)
    layer = determinism.random_layers(model)[0]
    inputs = np.ones((4, 5, 4), np.float32)

    def mask(stream, epoch):
        randomness = determinism.EpochRandomness(seed=1, stream=stream)
        randomness.set_model(model)
        randomness.on_epoch_begin(epoch)
        return layer(inputs, training=True).numpy()

    first = mask("train", 1)
    np.testing.assert_array_equal(first, mask("train", 1))  # set again: drawn again
    assert not np.array_equal(first, mask("train", 2))
    assert not np.array_equal(first, mask("prune", 1))


def test_a_stream_started_at_an_epoch_is_the_tail_of_the_whole_stream():
    from pipeline.tasks.sentiment import shuffled_batches
    ids, labels = np.arange(10, dtype=np.int32).reshape(10, 1), np.zeros(10)
    stream = shuffled_batches(ids, labels, 4, seed=5)  # 3 batches an epoch, the last short
    whole = [x.numpy().ravel().tolist() for x, _ in stream.take(9)]  # iterated once before
    later = [x.numpy().ravel().tolist()
             for x, _ in FitData(stream, {}, 3).arguments(2)["x"].take(3)]
    assert later == whole[6:9]
    assert sorted(sum(whole[3:6], [])) == list(range(10))  # an epoch sees every row once
    assert whole[0:3] != whole[3:6]  # and each epoch in another order


def test_a_layer_whose_generator_cannot_be_set_is_refused():
    ids = tf_keras.Input(shape=(3,))
    model = tf_keras.Model(ids, tf_keras.layers.Dropout(0.5, name="legacy")(ids))
    with pytest.raises(ValueError, match="legacy.*rng_type='stateful'"):
        determinism.random_layers(model)


def test_the_same_model_saved_twice_gives_the_same_bytes(tmp_path, monkeypatch):
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4, dropout=0.2),
                                  20, 5, 2)
    artifacts.save_keras_model(model, tmp_path / "a.keras")
    twin = tf_keras.models.clone_model(model)  # other Python objects, other ids
    twin.set_weights(model.get_weights())
    monkeypatch.setattr("time.time", lambda: 1.9e9)  # saved years later
    artifacts.save_keras_model(twin, tmp_path / "b.keras")
    monkeypatch.undo()
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        assert "date_saved" not in json.loads(archive.read("metadata.json"))
    loaded = artifacts.load_keras_model(tmp_path / "a.keras")
    for saved, read in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(saved, read)
