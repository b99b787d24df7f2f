"""Training state that survives a kill: every epoch's logs and the best epoch so far.

`BackupAndRestore` brings back the weights, the optimizer and the epoch counter, but a
fresh `fit` forgets the history and the early-stopping (or keep-best) state. These
callbacks save theirs after every epoch, keyed by epoch, and on resume take the state as
it was before the first epoch that `fit` runs again; so they agree with the backup even
when a kill falls between the two. The stage deletes the folder when the work is done.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tf_keras

from pipeline import artifacts


class DamagedProgressError(ValueError):
    """Saved training progress cannot be read; the message names the file and the fix."""


def read_progress(path: Path) -> dict:
    """A progress file's entries ({} before the first epoch), or DamagedProgressError."""
    if not path.is_file():
        return {}
    try:
        entries = artifacts.read_json(path)
        if not isinstance(entries, dict):
            raise ValueError("not an object")
        return entries
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DamagedProgressError(f"{path} is damaged ({error}); the stage cannot resume "
                                   "from it: rerun the stage with --force") from None


class EpochStates:
    """A callback's state after each epoch, and the weights it keeps, in one folder."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = Path(folder), name
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
        entries = read_progress(self.path)
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
        except (OSError, ValueError, EOFError) as error:
            raise DamagedProgressError(f"{path} is damaged ({error}); the stage cannot "
                                       "resume from it: rerun the stage with --force") from None


class EpochLog(tf_keras.callbacks.Callback):
    """Every finished epoch's logs, across restarts: the whole history of the stage."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = Path(folder) / "epochs.json"

    def entries(self) -> dict[str, dict]:
        return read_progress(self.path)

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
        self.states = EpochStates(folder, "early_stopping")
        self.first_epoch = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch:  # a resumed fit starts after the backup's last epoch
            self.first_epoch = False
            state, weights = self.states.before(epoch, "best_epoch")
            if state is not None:
                self.wait, self.best = state["wait"], state["best"]
                self.best_epoch, self.best_weights = state["best_epoch"], weights

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        improved = self.best_weights is not None and self.best_epoch == epoch
        self.states.save(epoch, {"wait": self.wait, "best": float(self.best),
                                 "best_epoch": self.best_epoch},
                         self.best_weights if improved else None)
