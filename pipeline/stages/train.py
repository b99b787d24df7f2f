"""train: dense training with early stopping on the validation split, resumable per epoch."""
from __future__ import annotations

import sys
from pathlib import Path

import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import artifacts, pruning
from pipeline.config import PipelineConfig
from pipeline.stages import data as data_stage

MODEL_FILE = "model.keras"


def keras_verbosity() -> int:
    """Progress bars on a terminal, one line per epoch in logs."""
    return 1 if sys.stdout.isatty() else 2


def compile_classifier(model: tf_keras.Model, learning_rate: float) -> None:
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    tf_keras.utils.set_random_seed(config.train.seed)
    x_train, y_train = data_stage.load_split(run_dir, "train")
    x_val, y_val = data_stage.load_split(run_dir, "validation")
    model = build_sentiment_model(
        config.model, data_stage.vocabulary_size(run_dir), config.tokenizer.max_length,
        len(data_stage.label_names(run_dir)),
        regularizers=pruning.regularizers(config.pruning.method, config.regularization))
    compile_classifier(model, config.train.learning_rate)
    history = model.fit(
        x_train, y_train, batch_size=config.train.batch_size, epochs=config.train.epochs,
        validation_data=(x_val, y_val), shuffle=True, verbose=keras_verbosity(),
        callbacks=[
            # Checkpoints every epoch; a killed run resumes from the last one.
            tf_keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
            tf_keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max",
                patience=config.train.early_stopping_patience, restore_best_weights=True),
        ])
    artifacts.save_keras_model(model, out_dir / MODEL_FILE)
    summary = {"epochs_run": len(history.history["loss"]),
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
               "best_val_accuracy": max(history.history["val_accuracy"])}
    artifacts.atomic_write_json(out_dir / "history.json", summary)
    return {"epochs_run": summary["epochs_run"],
            "best_val_accuracy": round(summary["best_val_accuracy"], 4)}
