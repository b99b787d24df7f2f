"""prune: the pruning method's procedure on the trained model (see pipeline.methods),
fine-tuning on the task's data plus any hardening examples the task adds first."""
from __future__ import annotations

from pathlib import Path

import tf_keras

from pipeline import artifacts, methods, pruning, tasks
from pipeline.config import PipelineConfig



def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    task, method = tasks.for_config(config), methods.for_config(config)
    tf_keras.utils.set_random_seed(config.train.seed)
    model = artifacts.load_keras_model(files.trained_model)
    before = pruning.magnitude_histograms(model)
    task, hardening = task.harden(model, config, files, out_dir)
    pruned, summary = method.prune(model, config, task, files, out_dir)
    if hardening:
        summary["hardening"] = hardening
    task.finish_model(pruned, files)
    artifacts.save_keras_model(pruned, out_dir / files.pruned_model.name)
    artifacts.atomic_write_json(out_dir / "histograms.json", {
        "before": before, "after": pruning.magnitude_histograms(pruning.strip(pruned))})
    artifacts.atomic_write_json(out_dir / "history.json", summary)
    return {key: round(value, 4) if isinstance(value, float) else value
            for key, value in summary.items() if key != "history"}
