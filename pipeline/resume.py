"""Training that survives a kill and ends as if it had never been interrupted.

`fit` runs `Model.fit` from the last finished epoch: `TrainingCheckpoint` holds the
weights (tfmot's pruning steps and masks among them), the optimizer's state and the
number of finished epochs, and is read *before* `fit`, so the training stream can start
at that epoch (pipeline.tasks.base.FitData) and the dropout generators are set for it
(pipeline.determinism). The other callbacks here save their state after every epoch,
keyed by epoch (the logs, the early-stopping or keep-best state), and on resume take the
state as it was before the first epoch that runs again; so they agree with the
checkpoint even when a kill falls between the two. The stage deletes the folder when the
work is done.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from pipeline import artifacts, determinism


class DamagedProgressError(ValueError):
    """Saved training progress cannot be read; the message names the file and the fix."""


def damaged(path, why) -> DamagedProgressError:
    return DamagedProgressError(f"{path} is damaged ({why}); the stage cannot resume from "
                                "it: rerun the stage with --force")


def read_progress(path: Path, fields: dict | None = None) -> dict:
    """A progress file's entries, epoch number → object ({} before the first epoch), each
    holding `fields` (name → accepted types) when given; or DamagedProgressError."""
    if not path.is_file():
        return {}
    try:
        entries = artifacts.read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise damaged(path, error) from None
    if not isinstance(entries, dict):
        raise damaged(path, "not an object")
    for epoch, entry in entries.items():
        if not (epoch.isascii() and epoch.isdigit()) or not isinstance(entry, dict):
            raise damaged(path, f"entry {epoch!r} is not an epoch number with an object")
        for field, kinds in (fields or {}).items():
            if not isinstance(entry.get(field), kinds) or isinstance(entry.get(field), bool):
                raise damaged(path, f"epoch {epoch} has no valid {field}")
    return entries


# What a callback's state holds per epoch (name → accepted types); keep-best may have no
# best yet (None).
KEEP_BEST_FIELDS = {"best": (int, float, type(None)), "best_epoch": (int, type(None))}
EARLY_STOPPING_FIELDS = {"wait": (int,), "best": (int, float), "best_epoch": (int,)}


class EpochStates:
    """A callback's state after each epoch, and the weights it keeps, in one folder."""

    def __init__(self, folder: Path, name: str, fields: dict):
        self.folder, self.name, self.fields = Path(folder), name, fields
        self.path = self.folder / f"{name}.json"

    def _weights_path(self, epoch: int) -> Path:
        return self.folder / f"{self.name}_weights_{epoch}.npz"

    def save(self, epoch: int, state: dict, weights: list | None = None) -> None:
        """Records the state after `epoch`; `weights`, if given, as the weights of that epoch."""
        if weights is not None:
            with artifacts.atomic_path(self._weights_path(epoch)) as tmp:
                np.savez(tmp, *weights)
        entries = read_progress(self.path)
        entries[str(epoch)] = state
        artifacts.atomic_write_json(self.path, entries)

    def before(self, epoch: int, weights_epoch_key: str) -> tuple[dict | None, list | None]:
        """The state saved after the last epoch before `epoch`, and the weights it names."""
        entries = read_progress(self.path, self.fields)
        earlier = [int(e) for e in entries if int(e) < epoch]
        if not earlier:
            return None, None
        state = entries[str(max(earlier))]
        path = self._weights_path(state[weights_epoch_key])
        if not path.is_file():
            return state, None
        try:
            with np.load(path) as arrays:
                return state, [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise damaged(path, error) from None


class EpochLog(tf_keras.callbacks.Callback):
    """Every finished epoch's logs, across restarts: the whole history of the stage."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = Path(folder) / "epochs.json"

    def entries(self) -> dict[str, dict]:
        return read_progress(self.path)  # keys checked there: epoch numbers

    def on_epoch_end(self, epoch, logs=None):
        entries = self.entries()
        entries[str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
        artifacts.atomic_write_json(self.path, entries)

    def history(self) -> dict[str, list[float]]:
        ordered = [e for _, e in sorted(self.entries().items(), key=lambda kv: int(kv[0]))]
        return {key: [entry[key] for entry in ordered] for key in (ordered[0] if ordered else {})}


class ResumableEarlyStopping(tf_keras.callbacks.EarlyStopping):
    """Keras early stopping whose best value, patience count and best weights outlive a kill."""

    def __init__(self, folder: Path, **kwargs):
        super().__init__(**kwargs)
        self.states = EpochStates(folder, "early_stopping", EARLY_STOPPING_FIELDS)
        self.first_epoch = 0  # where the fit starts: set by `fit` from the checkpoint

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state, weights = self.states.before(self.first_epoch, "best_epoch")
        if state is not None:
            self.wait, self.best = state["wait"], state["best"]
            self.best_epoch, self.best_weights = state["best_epoch"], weights

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        improved = self.best_weights is not None and self.best_epoch == epoch
        self.states.save(epoch, {"wait": self.wait, "best": float(self.best),
                                 "best_epoch": self.best_epoch},
                         self.best_weights if improved else None)


class TrainingCheckpoint(tf_keras.callbacks.Callback):
    """After each epoch: the model's variables, the optimizer's and how many epochs are
    done (all of them once early stopping has stopped the fit). Unlike Keras's
    BackupAndRestore, which restores inside `fit`, it is read before `fit` starts, so the
    caller knows the epoch its streams resume at."""

    def __init__(self, folder: Path, model: tf_keras.Model, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              done=self.done)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(folder), max_to_keep=1)

    def restore(self) -> int:
        """Restores the last checkpoint, if any; returns the first epoch still to run."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest)
            except (tf.errors.OpError, ValueError, IndexError, KeyError) as error:
                raise damaged(latest, f"{type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}") from None
        return int(self.done.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.done.assign(self.epochs if self.model.stop_training else epoch + 1)
        self.manager.save()


def fit(model: tf_keras.Model, data, *, epochs: int, folder: Path, seed: int, stream: str,
        callbacks: list, verbose: int) -> None:
    """`model.fit` on `data` (a FitData) for `epochs`, resumed from `folder` after a kill
    with the weights, batches and dropout masks an uninterrupted fit would have.

    `callbacks` run before the checkpoint, so the state they save after an epoch is never
    older than it; those with a `first_epoch` attribute learn where the fit resumes.
    `stream` names this fit's random draws (and the test kill switch's target).
    """
    checkpoint = TrainingCheckpoint(Path(folder) / "checkpoint", model, epochs)
    first = checkpoint.restore()
    for callback in callbacks:
        if hasattr(callback, "first_epoch"):
            callback.first_epoch = first
    model.fit(**data.arguments(first), initial_epoch=first, epochs=epochs, verbose=verbose,
              callbacks=[*callbacks, determinism.EpochRandomness(seed, stream), checkpoint,
                         *determinism.kill_switch(stream)])
