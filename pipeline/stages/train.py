"""train: dense training with early stopping on the validation split; a killed run resumes
at its last finished epoch and ends with the weights of an uninterrupted one."""
from __future__ import annotations

import shutil
from pathlib import Path

import tf_keras

from pipeline import artifacts, methods, resume, tasks
from pipeline.config import PipelineConfig
from pipeline.tasks.base import compile_model, keras_verbosity


def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    tf_keras.utils.set_random_seed(config.train.seed)
    fit = task.fit_data(config, files, seed=config.train.seed)
    model = task.build_model(config, files,
                             regularizers=methods.for_config(config).regularizers(config))
    compile_model(model, task, config.train.learning_rate, config.train,
                  fit.steps_per_epoch * config.train.epochs)
    progress = out_dir / "progress"
    log = resume.EpochLog(progress)
    resume.fit(model, fit, epochs=config.train.epochs, folder=progress, seed=config.train.seed,
               stream="train", verbose=keras_verbosity(), callbacks=[
                   log,
                   resume.ResumableEarlyStopping(
                       progress, monitor=task.monitor, mode=task.monitor_mode,
                       patience=config.train.early_stopping_patience,
                       restore_best_weights=True)])
    task.finish_model(model, files)
    artifacts.save_keras_model(model, out_dir / files.trained_model.name)
    history = log.history()
    shutil.rmtree(progress)
    watched = history[task.monitor]
    best = max(watched) if task.monitor_mode == "max" else min(watched)
    summary = {"epochs_run": len(history["loss"]), "history": history,
               f"best_{task.monitor}": best}
    artifacts.atomic_write_json(out_dir / "history.json", summary)
    return {"epochs_run": summary["epochs_run"], f"best_{task.monitor}": round(best, 4)}
