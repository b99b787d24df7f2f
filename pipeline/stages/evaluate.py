"""evaluate: accuracy and loss on the test split of the Keras models and every .tflite.

The .tflite files run through the LiteRT interpreter one example at a time, as on a
phone. A .tflite whose accuracy drifts from its Keras source by more than
--parity_tolerance points fails the stage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import logging

from pipeline import artifacts, litert
from pipeline.config import PipelineConfig
from pipeline.stages import StageError
from pipeline.stages import data as data_stage
from pipeline.stages import strip as strip_stage
from pipeline.stages import train as train_stage

SPLITS = ("validation", "test")


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    picked = probabilities[np.arange(len(labels)), labels]
    return {"accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
            "examples": int(len(labels))}


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    splits = {name: data_stage.load_split(run_dir, name) for name in SPLITS}
    keras_models = {"dense": run_dir / "train" / train_stage.MODEL_FILE,
                    "stripped": run_dir / "strip" / strip_stage.MODEL_FILE}
    metrics: dict = {"primary": {"name": "accuracy", "higher_is_better": True},
                     "keras": {}, "tflite": {}}
    for label, path in keras_models.items():
        model = artifacts.load_keras_model(path)
        metrics["keras"][label] = {
            name: classification_metrics(model.predict(x, batch_size=512, verbose=0), y)
            for name, (x, y) in splits.items()}
    converted = artifacts.read_json(run_dir / "convert" / "convert.json")
    source_accuracy = metrics["keras"]["stripped"]["test"]["accuracy"]
    failures = []
    for export, info in converted.items():
        runner = litert.Runner(run_dir / "convert" / info["file"])
        entry = {name: classification_metrics(runner.predict(x), y)
                 for name, (x, y) in splits.items()}
        entry["latency"] = runner.latency_ms(splits["test"][0][0], config.eval.latency_runs)
        entry["parity_gap_points"] = 100.0 * (entry["test"]["accuracy"] - source_accuracy)
        entry.update(bytes=info["bytes"], gzip_bytes=info["gzip_bytes"],
                     dense_reference=info["dense_reference"],
                     gzip_compression_vs_dense_float=info["gzip_compression_vs_dense_float"],
                     sparsity=info["sparsity"],
                     pruned_sparsity=pruned_fraction(info["sparsity"], config))
        metrics["tflite"][export] = entry
        logging.info("evaluate: %s test accuracy %.4f (Keras %.4f), latency median %.3f ms",
                     export, entry["test"]["accuracy"], source_accuracy,
                     entry["latency"]["median_ms"])
        if abs(entry["parity_gap_points"]) > config.eval.parity_tolerance:
            failures.append(f"{info['file']}: test accuracy {entry['test']['accuracy']:.4f} vs "
                            f"Keras {source_accuracy:.4f} ({entry['parity_gap_points']:+.2f} "
                            f"points, --parity_tolerance={config.eval.parity_tolerance})")
    if failures:
        raise StageError("parity gate failed: " + "; ".join(failures))
    metrics["keras_sparsity"] = artifacts.read_json(run_dir / "strip" / "sparsity.json")
    artifacts.atomic_write_json(out_dir / "metrics.json", metrics)
    return {"dense_test_accuracy": round(metrics["keras"]["dense"]["test"]["accuracy"], 4),
            **{f"{e}_test_accuracy": round(m["test"]["accuracy"], 4)
               for e, m in metrics["tflite"].items()}}


def pruned_fraction(per_weight: dict, config: PipelineConfig) -> float | None:
    """Element-weighted zero fraction over the weights of the layers that were pruned."""
    if config.pruning.method == "none":
        return None
    return litert.zero_fraction(per_weight, kinds=config.pruning.layers)
