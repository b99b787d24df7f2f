"""What differs between the pipeline's tasks, behind one small interface.

The stages own the order of work (train, prune, strip, convert, evaluate, bundle) and the
files; a task owns what is specific to its model: how data becomes ids, how the model is
built and trained, which programs become .tflite files, how they are scored and what the
bundle holds. Stages ask `for_config(config)` for the task and never branch on its name.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import tf_keras

from pipeline import artifacts, tokenizer
from pipeline.config import PipelineConfig, TokenizerConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class FitData:
    """Keyword arguments for `Model.fit` (data, validation data) and the epoch length."""
    arguments: dict
    steps_per_epoch: int


class Task:
    name: str
    stage_reads: dict[str, tuple[str, ...]]  # stage → settings its part of it reads
    monitor: str          # the validation value early stopping and pruning keep-best watch
    monitor_mode: str     # "max" or "min"
    primary_metric: str   # the metric the bench reports
    higher_is_better: bool
    shipped_program: str  # which converted program goes into the bundle as model.tflite
    # programs timed against the dense parent's own conversion (pruned and dense side by side)
    paired_programs: tuple[str, ...]
    padding_id: int | None = None  # the input id that fills sequences rather than text

    def reads(self, stage: str, config: PipelineConfig) -> tuple[str, ...]:
        """Settings the task's part of `stage` depends on (more when an option is on)."""
        return self.stage_reads.get(stage, ())

    def prepare_data(self, config: PipelineConfig, out_dir: Path) -> dict:
        raise NotImplementedError

    def build_model(self, config: PipelineConfig, run_dir: Path,
                    regularizers: dict) -> tf_keras.Model:
        raise NotImplementedError

    def loss(self) -> tf_keras.losses.Loss:
        raise NotImplementedError

    def metrics(self) -> list:
        return []

    def fit_data(self, config: PipelineConfig, run_dir: Path, seed: int) -> FitData:
        raise NotImplementedError

    def harden(self, model: tf_keras.Model, config: PipelineConfig, run_dir: Path,
               out_dir: Path) -> tuple["Task", dict]:
        """The task the prune stage's method fine-tunes with, and what hardening did: this
        task and {} unless a hardening setting is on (see pipeline.config.HardeningConfig)."""
        return self, {}

    def tflite_programs(self, model: tf_keras.Model, config: PipelineConfig) -> dict:
        """Program name → concrete function to convert; "model" holds the fused LSTM."""
        raise NotImplementedError

    def evaluate(self, config: PipelineConfig, run_dir: Path, keras_models: dict,
                 converted: dict) -> dict:
        """Scores the Keras models (label → .keras path) and the converted .tflite files."""
        raise NotImplementedError

    def timing_ids(self, run_dir: Path) -> np.ndarray | None:
        """The ids the paired latency feeds (None: zeros). A model whose padding row is 0
        runs faster on padding (LiteRT skips work on all-zero inputs), so a task whose
        inputs are padded times a real example."""
        return None

    def bundle(self, config: PipelineConfig, run_dir: Path, out_dir: Path,
               metrics: dict) -> dict:
        """Copies the task's files into the bundle; returns the manifest's task fields."""
        raise NotImplementedError


def save_split(out_dir: Path, name: str, **arrays: np.ndarray) -> None:
    """One encoded split as data/<name>.npz, written atomically."""
    with artifacts.atomic_path(Path(out_dir) / f"{name}.npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_split_arrays(run_dir: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays `save_split` wrote for one split of a run."""
    with np.load(Path(run_dir) / "data" / f"{name}.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


def vocabulary_size(run_dir: Path) -> int:
    """Ids the model embeds and (for text generation) predicts, from the run's tokenizer spec."""
    return artifacts.read_json(Path(run_dir) / "data" / "tokenizer.json")["vocabulary_size"]


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


def for_config(config: PipelineConfig) -> Task:
    from pipeline.tasks.sentiment import SentimentTask
    from pipeline.tasks.textgen import TextGenTask
    return {"sentiment": SentimentTask, "textgen": TextGenTask}[config.data.task]()
