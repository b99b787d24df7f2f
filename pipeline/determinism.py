"""Same seed, same model: the random streams of training as functions of (seed, stream, epoch).

Two things make a rerun differ from the first run when they are left to TensorFlow:
kernels free to pick a non-deterministic algorithm, and random state that lives in the
process (the dropout masks of the legacy stateful ops start again in a new process, so a
run resumed at epoch k would draw epoch 0's masks). `enable` switches TensorFlow's op
determinism on once per process (the runner calls it); `EpochRandomness` sets every
dropout generator of a model, at the start of each epoch, to a state derived from
(seed, stream, epoch, layer), so an epoch draws the same masks whether the process ran
the epochs before it or resumed after a kill. The training batches are the other stream:
each task's `fit_data` builds a seeded stream that `FitData.arguments(first_epoch)`
starts at any epoch (see pipeline.tasks.base).
"""
from __future__ import annotations

import hashlib
import os
import signal

import tensorflow as tf
import tf_keras

from models import layers

# The generator kind every random layer of models/ uses (its state is a variable that
# EpochRandomness can set; the legacy kind keeps its state inside the kernel).
RNG_TYPE = layers.RNG_TYPE


def enable() -> None:
    """Deterministic kernels for the rest of the process (tf.config's op determinism)."""
    tf.config.experimental.enable_op_determinism()


def stream_seed(seed: int, stream: str, *position: int) -> int:
    """A 63-bit seed that depends on the run's seed, the stream's name and a position
    (epoch, layer, ...) only: the same in every process and on every machine."""
    text = "/".join([str(int(seed)), stream, *(str(int(p)) for p in position)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def random_layers(model: tf_keras.Model) -> list:
    """The layers of `model` (nested ones included) that draw random numbers in training,
    in a fixed order; raises ValueError for one whose state cannot be set."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        generator = getattr(layer, "_random_generator", None)
        if generator is None or not _draws(layer):
            continue
        if generator._rng_type != RNG_TYPE:
            raise ValueError(f"layer {layer.name} draws random numbers from a "
                             f"{generator._rng_type} generator, whose state a rerun cannot "
                             f"set: build it with rng_type={RNG_TYPE!r} (see models/layers.py)")
        generator._maybe_init()
        found.append(layer)
    return found


def _draws(layer) -> bool:
    """Whether the layer draws in training: a dropout with a rate above 0 (an LSTM cell's
    own dropout included)."""
    return any(float(getattr(layer, name, 0) or 0) > 0
               for name in ("rate", "dropout", "recurrent_dropout"))


class EpochRandomness(tf_keras.callbacks.Callback):
    """Sets each random layer's generator from (seed, stream, epoch, layer index) when an
    epoch begins; `stream` names the fit (train, prune, ...), so two fits of one run draw
    differently."""

    def __init__(self, seed: int, stream: str):
        super().__init__()
        self.seed, self.stream = seed, stream

    def on_epoch_begin(self, epoch, logs=None):
        for index, layer in enumerate(random_layers(self.model)):
            layer._random_generator._generator.reset_from_seed(
                stream_seed(self.seed, self.stream, epoch, index))


KILL_VARIABLE = "PIPELINE_TEST_KILL_AT"


def kill_switch(stream: str) -> list:
    """Test hook: with PIPELINE_TEST_KILL_AT=STREAM:EPOCH:BATCH the process kills itself
    (SIGKILL, as `kill -9` would) after that batch of that fit, so a test can interrupt a
    run at a chosen step. Empty (no callback) when the variable is unset or names another
    stream."""
    target = os.environ.get(KILL_VARIABLE, "")
    name, _, position = target.partition(":")
    if name != stream:
        return []
    epoch, _, batch = position.partition(":")
    return [_KillAt(int(epoch), int(batch))]


class _KillAt(tf_keras.callbacks.Callback):
    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch >= self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
