"""Sentiment classification: left-padded token ids → class probabilities."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from models.sentiment import build_sentiment_model
from pipeline import artifacts, data, litert, tokenizer
from pipeline.config import PipelineConfig
from pipeline.stages import StageError
from pipeline.tasks import (FitData, Task, load_split_arrays, save_split, vocabulary_size,
                            write_tokenizer_files)

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")


def load_split(run_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = load_split_arrays(run_dir, name)
    return arrays["ids"], arrays["labels"]


def label_names(run_dir: Path) -> list[str]:
    return (Path(run_dir) / "data" / "labels.txt").read_text(encoding="utf-8").splitlines()


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    picked = probabilities[np.arange(len(labels)), labels]
    return {"accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
            "examples": int(len(labels))}


class SentimentTask(Task):
    name = "sentiment"
    monitor, monitor_mode = "val_accuracy", "max"
    primary_metric, higher_is_better = "accuracy", True
    shipped_program = "model"
    reads = {"data": ("data", "tokenizer"), "train": ("max_length",),
             "convert": ("max_length",), "evaluate": ("parity_tolerance", "latency_runs")}

    def prepare_data(self, config: PipelineConfig, out_dir: Path) -> dict:
        splits = data.load_splits(config.data)
        logging.info("data: %d train / %d validation (%s) / %d test rows; malformed rows: %s",
                     len(splits.train), len(splits.validation), splits.validation_source,
                     len(splits.test), splits.malformed)
        vocabulary = tokenizer.build_vocabulary(splits.train.texts, config.tokenizer)
        write_tokenizer_files(out_dir, vocabulary,
                              tokenizer.tokenizer_spec(vocabulary, config.tokenizer),
                              config.tokenizer)
        artifacts.atomic_write_text(out_dir / "labels.txt",
                                    "\n".join(splits.label_names) + "\n")
        counts = {}
        for name in SPLITS:
            examples = getattr(splits, name)
            ids = tokenizer.encode(examples.texts, vocabulary, config.tokenizer)
            save_split(out_dir, name, ids=ids, labels=examples.labels)
            counts[name] = len(examples)
        return {"rows": counts, "malformed_rows": splits.malformed, "sources": splits.sources,
                "validation_source": splits.validation_source,
                "vocabulary_size": len(vocabulary), "labels": list(splits.label_names)}

    def build_model(self, config: PipelineConfig, run_dir: Path,
                    regularizers: dict) -> tf_keras.Model:
        return build_sentiment_model(config.model, vocabulary_size(run_dir),
                                     config.tokenizer.max_length, len(label_names(run_dir)),
                                     regularizers=regularizers)

    def loss(self) -> tf_keras.losses.Loss:
        return tf_keras.losses.SparseCategoricalCrossentropy()

    def metrics(self) -> list:
        return ["accuracy"]

    def fit_data(self, config: PipelineConfig, run_dir: Path, seed: int) -> FitData:
        x_train, y_train = load_split(run_dir, "train")
        return FitData({"x": x_train, "y": y_train, "batch_size": config.train.batch_size,
                        "shuffle": True,
                        "validation_data": load_split(run_dir, "validation")},
                       math.ceil(len(x_train) / config.train.batch_size))

    def tflite_programs(self, model: tf_keras.Model, config: PipelineConfig) -> dict:
        function = tf.function(lambda ids: model(ids, training=False))
        return {"model": function.get_concrete_function(
            tf.TensorSpec([1, config.tokenizer.max_length], tf.int32, name="token_ids"))}

    def evaluate(self, config: PipelineConfig, run_dir: Path, keras_models: dict,
                 converted: dict) -> dict:
        splits = {name: load_split(run_dir, name) for name in EVAL_SPLITS}
        metrics: dict = {"keras": {}, "tflite": {}}
        for label, path in keras_models.items():
            model = artifacts.load_keras_model(path)
            metrics["keras"][label] = {
                name: classification_metrics(model.predict(x, batch_size=512, verbose=0), y)
                for name, (x, y) in splits.items()}
        source_accuracy = metrics["keras"]["stripped"]["test"]["accuracy"]
        failures = []
        for export, info in converted.items():
            window_file = info["programs"]["model"]["file"]
            runner = litert.Runner(run_dir / "convert" / window_file)
            entry = {name: classification_metrics(runner.predict(x), y)
                     for name, (x, y) in splits.items()}
            entry["latency"] = runner.latency_ms(splits["test"][0][0], config.eval.latency_runs)
            entry["parity_gap_points"] = 100.0 * (entry["test"]["accuracy"] - source_accuracy)
            metrics["tflite"][export] = entry
            logging.info("evaluate: %s test accuracy %.4f (Keras %.4f), latency median %.3f "
                         "ms", export, entry["test"]["accuracy"], source_accuracy,
                         entry["latency"]["median_ms"])
            if abs(entry["parity_gap_points"]) > config.eval.parity_tolerance:
                failures.append(f"{window_file}: test accuracy {entry['test']['accuracy']:.4f} vs "
                                f"Keras {source_accuracy:.4f} "
                                f"({entry['parity_gap_points']:+.2f} points, "
                                f"--parity_tolerance={config.eval.parity_tolerance})")
        if failures:
            raise StageError("parity gate failed: " + "; ".join(failures))
        return metrics

    def bundle(self, config: PipelineConfig, run_dir: Path, out_dir: Path,
               metrics: dict) -> dict:
        artifacts.copy_file(run_dir / "data" / "labels.txt", out_dir / "labels.txt")
        labels = label_names(run_dir)
        return {
            "files": ("labels.txt",),
            "input": {"name": "token_ids", "shape": [1, config.tokenizer.max_length],
                      "dtype": "int32"},
            "output": {"shape": [1, len(labels)],
                       "meaning": "softmax probabilities in labels.txt order"},
            "state": "the fused LSTM keeps state between invocations: reset variables "
                     "(reset_all_variables) before every new text",
        }
