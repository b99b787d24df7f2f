"""Frozen, validated configuration: the only thing stages receive.

Every value is checked here, so a config that exists is a config that can run; the flags
module only parses text into these dataclasses. Each stage hashes the sections it depends
on, which is how the runner knows what a change invalidates.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

STAGE_NAMES = ("data", "train", "prune", "strip", "convert", "evaluate", "bundle")
PRUNABLE_LAYERS = ("embedding", "lstm", "dense")
REGULARIZED_METHODS = ("l1", "l2", "l1_l2")
PRUNING_METHODS = ("none", "magnitude") + REGULARIZED_METHODS
PRUNING_SCHEDULES = ("one_shot", "constant", "polynomial_decay", "m_by_n")
REGULARIZABLE_WEIGHTS = ("embeddings", "kernel", "recurrent_kernel")
EXPORTS = ("float", "int8")
TASKS = ("sentiment", "textgen")
VOCABULARIES = ("wordpiece", "words", "characters")
TASK_VOCABULARIES = {"sentiment": ("wordpiece", "words"), "textgen": ("characters",)}
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
POOLINGS = ("last", "max")


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the flag."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_sparsity(name: str, value: float) -> None:
    _require(0.0 <= value < 1.0, f"--{name}={value} is outside [0, 1): a sparsity is the "
             "fraction of weights set to zero, e.g. 0.8")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    task: str = "sentiment"
    dataset: str = "sst2"
    data_dir: str = ""
    text_column: str = "sentence"
    label_column: str = "label"
    labels: tuple[str, ...] = ()
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_malformed_fraction: float = 0.01
    train_limit: int = 0
    eval_limit: int = 0
    tfds_data_dir: str = ""
    tfds_download: bool = True
    seed: int = 1

    def __post_init__(self):
        _require(self.task in TASKS, f"--task={self.task} is not one of {', '.join(TASKS)}")
        _require(bool(self.dataset), "--dataset is empty: give a registered name (sst2, "
                 "imdb_reviews) or a file URI such as tsv:/path/to/file.tsv")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(0.0 < value < 0.5, f"--{name}={value} must be in (0, 0.5)")
        _require(0.0 <= self.max_malformed_fraction <= 1.0,
                 f"--max_malformed_fraction={self.max_malformed_fraction} must be in [0, 1]")
        _require(self.train_limit >= 0, f"--train_limit={self.train_limit} must be >= 0 "
                 "(0 means use every training row)")
        _require(self.eval_limit >= 0, f"--eval_limit={self.eval_limit} must be >= 0 "
                 "(0 means use every validation and test row)")
        _require(len(set(self.labels)) == len(self.labels),
                 f"--labels={','.join(self.labels)} repeats a label")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    vocabulary: str = "words"
    vocabulary_size: int = 20000
    max_length: int = 64
    ptb_contractions: bool = True
    lowercase: bool = True
    strip_accents: bool = True

    def __post_init__(self):
        _require(self.vocabulary in VOCABULARIES, f"--vocabulary={self.vocabulary} is not one "
                 f"of {', '.join(VOCABULARIES)}")
        _require(self.vocabulary_size >= 16,
                 f"--vocabulary_size={self.vocabulary_size} must be at least 16")
        _require(1 <= self.max_length <= 4096,
                 f"--max_length={self.max_length} must be in [1, 4096]")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    embedding_dim: int = 128
    lstm_units: int = 128
    lstm_layers: int = 1
    embedding_dropout: float = 0.3
    dropout: float = 0.3
    pooling: str = "max"

    def __post_init__(self):
        for name in ("embedding_dim", "lstm_units", "lstm_layers"):
            _require(getattr(self, name) >= 1, f"--{name}={getattr(self, name)} must be >= 1")
        _require(self.pooling in POOLINGS,
                 f"--pooling={self.pooling} is not one of {', '.join(POOLINGS)}")
        for name in ("embedding_dropout", "dropout"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"--{name}={value} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3
    early_stopping_patience: int = 1
    learning_rate_schedule: str = "constant"
    clip_norm: float = 0.0
    seed: int = 1

    def __post_init__(self):
        _require(self.learning_rate_schedule in LEARNING_RATE_SCHEDULES,
                 f"--learning_rate_schedule={self.learning_rate_schedule} is not one of "
                 f"{', '.join(LEARNING_RATE_SCHEDULES)}")
        _require(self.clip_norm >= 0, f"--clip_norm={self.clip_norm} must be >= 0 "
                 "(0: no gradient clipping)")
        _require(self.epochs >= 1, f"--epochs={self.epochs} must be >= 1")
        _require(self.batch_size >= 1, f"--batch_size={self.batch_size} must be >= 1")
        _require(self.learning_rate > 0, f"--learning_rate={self.learning_rate} must be > 0")
        _require(self.early_stopping_patience >= 0,
                 f"--early_stopping_patience={self.early_stopping_patience} must be >= 0")


@dataclasses.dataclass(frozen=True)
class RegularizationConfig:
    """Penalties the train stage adds for the l1/l2/l1_l2 pruning methods."""
    l1: float = 0.0
    l2: float = 0.0
    group_lasso: float = 0.0
    weights: tuple[str, ...] = REGULARIZABLE_WEIGHTS

    def __post_init__(self):
        _require(self.l1 >= 0 and self.l2 >= 0 and self.group_lasso >= 0,
                 f"--l1={self.l1}, --l2={self.l2} and --group_lasso={self.group_lasso} must "
                 "all be >= 0")
        _require(not self.group_lasso or {"kernel", "recurrent_kernel"} & set(self.weights),
                 "--group_lasso acts on LSTM kernels: add kernel or recurrent_kernel to "
                 "--regularized_weights")
        unknown = sorted(set(self.weights) - set(REGULARIZABLE_WEIGHTS))
        _require(self.weights and not unknown, f"--regularized_weights="
                 f"{','.join(self.weights)}: choose from {', '.join(REGULARIZABLE_WEIGHTS)}")


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    method: str = "magnitude"
    schedule: str = "polynomial_decay"
    layers: tuple[str, ...] = PRUNABLE_LAYERS
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.8
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100
    m: int = 2
    n: int = 4
    epochs: int = 2
    learning_rate: float = 1e-4

    def __post_init__(self):
        _require(self.method in PRUNING_METHODS, f"--pruning_method={self.method} is not one "
                 f"of {', '.join(PRUNING_METHODS)}")
        _require(self.schedule in PRUNING_SCHEDULES, f"--pruning_schedule={self.schedule} is "
                 f"not one of {', '.join(PRUNING_SCHEDULES)}")
        unknown = sorted(set(self.layers) - set(PRUNABLE_LAYERS))
        _require(not unknown, f"--pruning_layers names {', '.join(unknown)}: choose from "
                 f"{', '.join(PRUNABLE_LAYERS)}")
        _require(not self.method == "magnitude" or bool(self.layers),
                 "--pruning_layers is empty: name at least one of embedding, lstm, dense, "
                 "or use --pruning_method=none")
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_sparsity("final_sparsity", self.final_sparsity)
        for layer, target in self.layer_sparsity:
            _require(layer in self.layers, f"--layer_sparsity gives a target for '{layer}', "
                     f"which is not in --pruning_layers={','.join(self.layers)}")
            _check_sparsity(f"layer_sparsity {layer}", target)
        _require(self.initial_sparsity <= min(self.targets().values(), default=1.0),
                 f"--initial_sparsity={self.initial_sparsity} is above a final target "
                 f"({self.targets()})")
        _require(self.begin_step >= 0, f"--pruning_begin_step={self.begin_step} must be >= 0")
        _require(self.end_step == -1 or self.end_step > self.begin_step,
                 f"--pruning_end_step={self.end_step} must be -1 (automatic) or greater than "
                 f"--pruning_begin_step={self.begin_step}")
        _require(self.frequency >= 1, f"--pruning_frequency={self.frequency} must be >= 1")
        _require(1 <= self.m < self.n, f"--pruning_m={self.m} and --pruning_n={self.n}: m "
                 "zeros out of every n weights needs 1 <= m < n (e.g. 2:4)")
        _require(self.epochs >= 1, f"--pruning_epochs={self.epochs} must be >= 1")
        _require(self.learning_rate > 0,
                 f"--pruning_learning_rate={self.learning_rate} must be > 0")

    def targets(self) -> dict[str, float]:
        """Final sparsity per pruned layer kind: --final_sparsity unless overridden."""
        if self.schedule == "m_by_n":
            return {layer: self.m / self.n for layer in self.layers}
        overrides = dict(self.layer_sparsity)
        return {layer: overrides.get(layer, self.final_sparsity) for layer in self.layers}


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    exports: tuple[str, ...] = EXPORTS

    def __post_init__(self):
        unknown = sorted(set(self.exports) - set(EXPORTS))
        _require(self.exports and not unknown,
                 f"--exports={','.join(self.exports)}: choose one or more of "
                 f"{', '.join(EXPORTS)}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    parity_tolerance: float = 0.5
    loss_parity_tolerance: float = 0.02
    latency_runs: int = 200
    window_length: int = 100
    sample_prompt: str = "ROMEO:"
    sample_length: int = 300

    def __post_init__(self):
        _require(self.parity_tolerance >= 0,
                 f"--parity_tolerance={self.parity_tolerance} must be >= 0 (accuracy points)")
        _require(self.loss_parity_tolerance >= 0, f"--loss_parity_tolerance="
                 f"{self.loss_parity_tolerance} must be >= 0 (nats per token)")
        _require(1 <= self.window_length <= 4096,
                 f"--eval_window_length={self.window_length} must be in [1, 4096]")
        _require(bool(self.sample_prompt), "--sample_prompt is empty: give the text the "
                 "report's samples start from, e.g. ROMEO:")
        _require(self.sample_length >= 1,
                 f"--sample_length={self.sample_length} must be >= 1")
        _require(self.latency_runs >= 200, f"--latency_runs={self.latency_runs} must be >= "
                 "200 so that the median and p90 mean something")


@dataclasses.dataclass(frozen=True)
class BundleConfig:
    export: str = "int8"

    def __post_init__(self):
        _require(self.export in EXPORTS,
                 f"--bundle_export={self.export} is not one of {', '.join(EXPORTS)}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    output_dir: str
    stages: tuple[str, ...] = STAGE_NAMES
    force: bool = False
    cache_dir: str = ""
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    pruning: PruningConfig = PruningConfig()
    convert: ConvertConfig = ConvertConfig()
    eval: EvalConfig = EvalConfig()
    bundle: BundleConfig = BundleConfig()

    def __post_init__(self):
        _require(bool(self.output_dir), "--output_dir is empty: give a directory for the run")
        unknown = sorted(set(self.stages) - set(STAGE_NAMES))
        _require(self.stages and not unknown, f"--stages={','.join(self.stages)}: choose "
                 f"from {', '.join(STAGE_NAMES)}")
        method, penalty = self.pruning.method, self.regularization
        if method == "l1":
            _require(penalty.l1 > 0 and penalty.l2 == 0, "--pruning_method=l1 needs --l1 > 0 "
                     f"and --l2=0 (got --l1={penalty.l1}, --l2={penalty.l2}); use l1_l2 for both")
        elif method == "l2":
            _require(penalty.l2 > 0 and penalty.l1 == 0, "--pruning_method=l2 needs --l2 > 0 "
                     f"and --l1=0 (got --l1={penalty.l1}, --l2={penalty.l2}); use l1_l2 for both")
        elif method not in REGULARIZED_METHODS:
            _require(penalty == RegularizationConfig(),
                     "--l1/--l2/--group_lasso/--regularized_weights apply only to "
                     f"--pruning_method=l1|l2|l1_l2, not {method}")
        task, vocabulary = self.data.task, self.tokenizer.vocabulary
        _require(vocabulary in TASK_VOCABULARIES[task], f"--vocabulary={vocabulary} does not "
                 f"fit --task={task}: use {' or '.join(TASK_VOCABULARIES[task])}")
        _require(self.bundle.export in self.convert.exports,
                 f"--bundle_export={self.bundle.export} is not produced by "
                 f"--exports={','.join(self.convert.exports)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def section_hash(self, sections: tuple[str, ...]) -> str:
        """sha256 of the named sections, the identity of a stage's settings."""
        chosen = {name: dataclasses.asdict(getattr(self, name)) for name in sections}
        text = json.dumps(chosen, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
