"""What differs between the pipeline's tasks, behind one small interface.

The stages own the order of work (train, prune, strip, convert, evaluate, bundle) and the
files; a task owns what is specific to its model: its datasets, its config rules, how data
becomes ids, how the model is built and trained, which programs become .tflite files, how
its outputs are scored and what the bundle holds.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from pipeline import artifacts, tokenizer
from pipeline.config import PipelineConfig, TokenizerConfig, TrainConfig
from pipeline.metrics import MetricsFile


@dataclasses.dataclass(frozen=True)
class FitData:
    """A fit's training stream, its validation data and the epoch length.

    `stream` is an endless, seeded tf.data stream of (inputs, targets) batches whose epoch
    e is its batches e * steps_per_epoch onwards, the same in every process: a fit resumed
    at epoch e skips the finished epochs' batches and sees what an uninterrupted fit saw.
    """
    stream: tf.data.Dataset
    validation: dict  # Model.fit's validation_data and validation_batch_size
    steps_per_epoch: int

    def arguments(self, first_epoch: int = 0) -> dict:
        """Keyword arguments for `Model.fit` from `first_epoch` on."""
        return {"x": self.stream.skip(first_epoch * self.steps_per_epoch),
                "steps_per_epoch": self.steps_per_epoch, **self.validation}


@dataclasses.dataclass(frozen=True)
class Parity:
    """How evaluate compares a .tflite with its Keras source (the parity gate)."""
    metric: str    # the test score compared
    setting: str   # the tolerance's setting
    scale: float   # the gap in the tolerance's unit: (converted - Keras) * scale
    gap_name: str  # the gap's metric record
    unit: str


class Task:
    name: str
    stage_reads: dict[str, tuple[str, ...]]  # stage → settings its part of it reads
    vocabularies: tuple[str, ...]  # the --vocabulary values the task's models read
    monitor: str          # the validation value early stopping and pruning keep-best watch
    monitor_mode: str     # "max" or "min"
    primary_metric: str   # the metric the bench reports
    higher_is_better: bool
    score_directions: dict[str, bool | None]  # score name → higher is better (None: a count)
    parity: Parity
    keras_batch_size: int  # rows per Keras predict call while scoring
    shipped_program: str  # which converted program goes into the bundle as model.tflite
    latency_per: str      # what one timed invoke of the shipped program does
    # programs timed against the dense parent's own conversion (pruned and dense side by side)
    paired_programs: tuple[str, ...]
    padding_id: int | None = None  # the input id that fills sequences rather than text

    def reads(self, stage: str, config: PipelineConfig) -> tuple[str, ...]:
        """Settings the task's part of `stage` depends on (more when an option is on)."""
        return self.stage_reads.get(stage, ())

    def validate(self, config: PipelineConfig) -> None:
        """Raises ConfigError naming the flag when the config does not fit the task."""
        from pipeline.config import ConfigError
        vocabulary = config.tokenizer.vocabulary
        if vocabulary not in self.vocabularies:
            raise ConfigError(f"--vocabulary={vocabulary} does not fit --task={self.name}: "
                              f"use {' or '.join(self.vocabularies)}")

    def check_inputs(self, config: PipelineConfig) -> None:
        """Before any work: the dataset (and any file the task reads) exists and parses;
        raises DataError or ConfigError naming it."""
        raise NotImplementedError

    def prepare_data(self, config: PipelineConfig, out_dir: Path) -> dict:
        raise NotImplementedError

    def build_model(self, config: PipelineConfig, files: artifacts.RunFiles,
                    regularizers: dict) -> tf_keras.Model:
        raise NotImplementedError

    def loss(self) -> tf_keras.losses.Loss:
        raise NotImplementedError

    def metrics(self) -> list:
        return []

    def fit_data(self, config: PipelineConfig, files: artifacts.RunFiles, seed: int) -> FitData:
        raise NotImplementedError

    def finish_model(self, model: tf_keras.Model, files: artifacts.RunFiles) -> None:
        """Last changes to a trained or pruned model before it is saved (none here)."""

    def harden(self, model: tf_keras.Model, config: PipelineConfig, files: artifacts.RunFiles,
               out_dir: Path) -> tuple["Task", dict]:
        """The task the prune stage's method fine-tunes with, and what hardening did: this
        task and {} unless a hardening setting is on (see pipeline.config.HardeningConfig)."""
        return self, {}

    def tflite_programs(self, model: tf_keras.Model, config: PipelineConfig) -> dict:
        """Program name → concrete function to convert; "model" holds the fused LSTM."""
        raise NotImplementedError

    def client_files(self, model: tf_keras.Model, config: PipelineConfig,
                     files: artifacts.RunFiles, convert) -> tuple[dict, dict]:
        """({export: {client name: .tflite bytes a standard client runs as they are (e.g.
        MediaPipe's, with metadata)}}, {client name: how it was made}); `convert(concrete,
        model, export)` converts as the convert stage does. None by default."""
        return {}, {}

    def eval_data(self, config: PipelineConfig,
                  files: artifacts.RunFiles) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Split → (inputs, targets) the scores evaluator feeds the models."""
        raise NotImplementedError

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        """Score name → value of a model's outputs on one split."""
        raise NotImplementedError

    def timing_ids(self, files: artifacts.RunFiles) -> np.ndarray | None:
        """The ids the latency evaluator feeds (None: zeros). A model whose padding row is
        0 runs faster on padding (LiteRT skips work on all-zero inputs), so a task whose
        inputs are padded times a real example."""
        return None

    def bundle(self, config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path,
               metrics: MetricsFile) -> dict:
        """Copies the task's files into the bundle; returns the manifest's task fields."""
        raise NotImplementedError


def save_split(out_dir: Path, name: str, **arrays: np.ndarray) -> None:
    """One encoded split as data/<name>.npz, written atomically."""
    with artifacts.atomic_path(Path(out_dir) / f"{name}.npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def write_tokenizer_files(out_dir: Path, vocabulary: list[str], spec: dict,
                          config: TokenizerConfig) -> None:
    """vocab.txt and tokenizer.json: what a client needs to turn text into ids."""
    artifacts.atomic_write_text(out_dir / "vocab.txt",
                                tokenizer.vocabulary_file_text(vocabulary, config))
    artifacts.atomic_write_json(out_dir / "tokenizer.json", spec)


def keras_verbosity() -> int:
    """Progress bars on a terminal, one line per epoch in logs."""
    return 1 if sys.stdout.isatty() else 2


def compile_model(model: tf_keras.Model, task: Task, learning_rate: float,
                  train: TrainConfig, total_steps: int) -> None:
    """Adam with the configured schedule and clipping, and the task's loss and metrics."""
    rate = learning_rate
    if train.learning_rate_schedule == "cosine":
        rate = tf_keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps),
                                                         alpha=0.05)
    optimizer = tf_keras.optimizers.Adam(rate, clipnorm=train.clip_norm or None)
    model.compile(optimizer=optimizer, loss=task.loss(), metrics=task.metrics())
