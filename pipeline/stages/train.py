"""train: dense training with early stopping on the validation split, resumable per epoch."""
from __future__ import annotations

import sys
from pathlib import Path

import tf_keras

from pipeline import artifacts, pruning, tasks
from pipeline.config import PipelineConfig

MODEL_FILE = "model.keras"


def keras_verbosity() -> int:
    """Progress bars on a terminal, one line per epoch in logs."""
    return 1 if sys.stdout.isatty() else 2


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    tf_keras.utils.set_random_seed(config.train.seed)
    fit = task.fit_data(config, run_dir, seed=config.train.seed)
    model = task.build_model(
        config, run_dir,
        regularizers=pruning.regularizers(config.pruning.method, config.regularization))
    tasks.compile_model(model, task, config.train.learning_rate, config.train,
                        fit.steps_per_epoch * config.train.epochs)
    history = model.fit(
        **fit.arguments, epochs=config.train.epochs, verbose=keras_verbosity(),
        callbacks=[
            # Checkpoints every epoch; a killed run resumes from the last one.
            tf_keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
            tf_keras.callbacks.EarlyStopping(
                monitor=task.monitor, mode=task.monitor_mode,
                patience=config.train.early_stopping_patience, restore_best_weights=True),
        ])
    artifacts.save_keras_model(model, out_dir / MODEL_FILE)
    watched = history.history[task.monitor]
    best = max(watched) if task.monitor_mode == "max" else min(watched)
    summary = {"epochs_run": len(history.history["loss"]),
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
               f"best_{task.monitor}": best}
    artifacts.atomic_write_json(out_dir / "history.json", summary)
    return {"epochs_run": summary["epochs_run"], f"best_{task.monitor}": round(best, 4)}
