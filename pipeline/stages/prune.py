"""prune: magnitude pruning with a tfmot schedule and fine-tuning (or a pass-through)."""
from __future__ import annotations

from pathlib import Path

import tf_keras

from pipeline import artifacts, pruning, tasks
from pipeline.config import PipelineConfig
from pipeline.stages import StageError
from pipeline.stages import train as train_stage

MODEL_FILE = "pruned.keras"


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    source = run_dir / "train" / train_stage.MODEL_FILE
    cfg = config.pruning
    if cfg.method == "none":
        artifacts.copy_file(source, out_dir / MODEL_FILE)
        return {"method": "none"}
    task = tasks.for_config(config)
    tf_keras.utils.set_random_seed(config.train.seed)
    model = artifacts.load_keras_model(source)
    # Another seed than dense training: fine-tuning sees fresh random windows.
    fit = task.fit_data(config, run_dir, seed=config.train.seed + 1)
    steps_per_epoch = fit.steps_per_epoch
    before = pruning.magnitude_histograms(model)
    end_step = pruning.resolve_end_step(cfg, steps_per_epoch)
    if end_step > steps_per_epoch * cfg.epochs:
        raise StageError(f"the pruning schedule ends at step {end_step}, after the "
                         f"{steps_per_epoch * cfg.epochs} fine-tuning steps ({cfg.epochs} epochs "
                         f"of {steps_per_epoch}): the target would never be reached. Lower "
                         "--pruning_end_step (-1: automatic) or raise --pruning_epochs")
    pruned = pruning.apply_pruning(model, cfg, steps_per_epoch)
    keep_best = pruning.KeepBestAtTarget(end_step, steps_per_epoch, task.monitor,
                                         task.monitor_mode)
    tasks.compile_model(pruned, task, cfg.learning_rate, config.train,
                        steps_per_epoch * cfg.epochs)
    history = pruned.fit(
        **fit.arguments, epochs=cfg.epochs, verbose=train_stage.keras_verbosity(),
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
            f"kept_{task.monitor}": None if keep_best.best is None else round(keep_best.best, 4)}
