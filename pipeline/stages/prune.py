"""prune: magnitude pruning with a tfmot schedule and fine-tuning (or a pass-through)."""
from __future__ import annotations

import math
from pathlib import Path

import tf_keras

from pipeline import artifacts, pruning
from pipeline.config import PipelineConfig
from pipeline.stages import data as data_stage
from pipeline.stages import train as train_stage

MODEL_FILE = "pruned.keras"


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    source = run_dir / "train" / train_stage.MODEL_FILE
    cfg = config.pruning
    if cfg.method == "none":
        artifacts.copy_file(source, out_dir / MODEL_FILE)
        return {"method": "none"}
    tf_keras.utils.set_random_seed(config.train.seed)
    model = artifacts.load_keras_model(source)
    x_train, y_train = data_stage.load_split(run_dir, "train")
    x_val, y_val = data_stage.load_split(run_dir, "validation")
    steps_per_epoch = math.ceil(len(x_train) / config.train.batch_size)
    before = pruning.magnitude_histograms(model)
    pruned = pruning.apply_pruning(model, cfg, steps_per_epoch)
    end_step = pruning.resolve_end_step(cfg, steps_per_epoch)
    keep_best = pruning.KeepBestAtTarget(end_step, steps_per_epoch)
    train_stage.compile_classifier(pruned, cfg.learning_rate)
    history = pruned.fit(
        x_train, y_train, batch_size=config.train.batch_size, epochs=cfg.epochs,
        validation_data=(x_val, y_val), shuffle=True,
        verbose=train_stage.keras_verbosity(),
        callbacks=[*pruning.callbacks(str(out_dir / "tensorboard")), keep_best,
                   tf_keras.callbacks.BackupAndRestore(str(out_dir / "backup"))])
    artifacts.save_keras_model(pruned, out_dir / MODEL_FILE)
    artifacts.atomic_write_json(out_dir / "histograms.json", {
        "before": before, "after": pruning.magnitude_histograms(pruning.strip(pruned))})
    summary = {"method": cfg.method, "schedule": cfg.schedule, "targets": cfg.targets(),
               "end_step": end_step,
               "steps": steps_per_epoch * cfg.epochs, "kept_epoch": keep_best.best_epoch,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    artifacts.atomic_write_json(out_dir / "history.json", summary)
    return {"targets": cfg.targets(), "kept_epoch": keep_best.best_epoch,
            "kept_val_accuracy": round(keep_best.best, 4)}
