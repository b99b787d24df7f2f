"""Every command-line flag, defined once, and the one function that turns them into config.

Flags only parse text; ranges and cross-field rules are checked by the config
dataclasses, so a config built in a test is validated exactly like one from the command
line.
"""
from __future__ import annotations

import os

from absl import flags

from pipeline import config as cfg

FLAGS = flags.FLAGS

# Run.
flags.DEFINE_string("output_dir", "runs/sentiment", "Run directory: one folder per stage "
                    "plus bundle/. Rerunning into it skips stages whose inputs are unchanged.")
flags.DEFINE_list("stages", list(cfg.STAGE_NAMES), "Stages to run, in pipeline order; the "
                  "others must have run before. Choices: " + ",".join(cfg.STAGE_NAMES))
flags.DEFINE_bool("force", False, "Rerun the selected stages even if their config and "
                  "inputs are unchanged.")
flags.DEFINE_string("cache_dir", "", "Optional stage cache shared between run directories: "
                    "a stage whose settings and inputs match a cached output is copied from "
                    "it instead of rerun (how a sweep trains each dense model once).")
# Data.
flags.DEFINE_string("dataset", "sst2", "Registered name (sst2, imdb_reviews) or a local file "
                    "URI: tsv:PATH, csv:PATH or jsonl:PATH (a single file, split here).")
flags.DEFINE_string("data_dir", os.environ.get("PIPELINE_DATA_DIR", ""),
                    "Local mirror searched first for registered datasets, as "
                    "<data_dir>/<dataset>/ (sst2: train.tsv, dev.tsv, test.tsv). Defaults to "
                    "$PIPELINE_DATA_DIR.")
flags.DEFINE_string("text_column", "sentence", "Text column of a file URI dataset.")
flags.DEFINE_string("label_column", "label", "Label column of a file URI dataset.")
flags.DEFINE_list("labels", [], "Allowed label values of a file URI dataset, in class order; "
                  "rows with other labels are malformed. Empty: every value found.")
flags.DEFINE_float("validation_fraction", 0.1, "Fraction held out for validation when the "
                   "dataset has no validation split (seeded).")
flags.DEFINE_float("test_fraction", 0.1, "Fraction held out for test from a file URI "
                   "dataset (seeded).")
flags.DEFINE_float("max_malformed_fraction", 0.01, "Malformed rows (missing label, unknown "
                   "label, empty text) tolerated per file; above this the run stops.")
flags.DEFINE_integer("train_limit", 0, "Use a seeded random subset of this many training "
                     "rows (0: all). For smoke runs.")
flags.DEFINE_integer("eval_limit", 0, "Use at most this many validation and test rows "
                     "(0: all). For smoke runs; never for reported numbers.")
flags.DEFINE_string("tfds_data_dir", "", "TFDS data directory for the TFDS fallback "
                    "(empty: TFDS's default).")
flags.DEFINE_bool("tfds_download", True, "Let the TFDS fallback download missing data.")
flags.DEFINE_integer("data_seed", 1, "Seed for held-out splits and subsets.")
# Tokenizer.
flags.DEFINE_enum("vocabulary", "wordpiece", cfg.VOCABULARIES, "wordpiece: subword pieces "
                  "learned by keras-nlp; words: the most frequent whole words, others [UNK].")
flags.DEFINE_integer("vocabulary_size", 8000, "WordPiece vocabulary size, learned from the "
                     "training split (includes [PAD] and [UNK]).")
flags.DEFINE_integer("max_length", 64, "Tokens per example: longer texts keep their first "
                     "max_length tokens, shorter ones are left-padded.")
flags.DEFINE_bool("lowercase", True, "Lower-case (Unicode NFKC_Casefold) before WordPiece.")
flags.DEFINE_bool("strip_accents", True, "Remove accents (NFD, drop Mn) before WordPiece.")
# Model.
flags.DEFINE_integer("embedding_dim", 128, "Embedding width.")
flags.DEFINE_integer("lstm_units", 128, "Units per LSTM layer.")
flags.DEFINE_integer("lstm_layers", 1, "Stacked LSTM layers.")
flags.DEFINE_float("embedding_dropout", 0.0, "Dropout on the embedded tokens (training "
                   "only; the exported model does not contain it).")
flags.DEFINE_float("dropout", 0.0, "Dropout after each LSTM layer (training only).")
flags.DEFINE_enum("pooling", "last", cfg.POOLINGS, "How the classifier sees the text: the "
                  "last LSTM state, or the maximum over all time steps.")
# Training.
flags.DEFINE_integer("epochs", 3, "Maximum dense training epochs (early stopping may end "
                     "sooner; the best validation epoch is kept).")
flags.DEFINE_integer("batch_size", 128, "Batch size for training and fine-tuning.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate for dense training.")
flags.DEFINE_integer("early_stopping_patience", 1, "Epochs without validation accuracy "
                     "gain before dense training stops.")
flags.DEFINE_integer("seed", 1, "Seed for weight initialisation and shuffling.")
# Pruning.
flags.DEFINE_enum("pruning_method", "magnitude", cfg.PRUNING_METHODS, "magnitude: tfmot "
                  "prune_low_magnitude on the dense model, then fine-tuning; l1, l2, l1_l2: "
                  "train with that weight penalty (--l1/--l2), then prune by magnitude to the "
                  "same targets and fine-tune with the mask held; none: ship the dense model "
                  "through the same stages.")
flags.DEFINE_float("l1", 0.0, "L1 penalty per weight for --pruning_method=l1|l1_l2.")
flags.DEFINE_float("l2", 0.0, "L2 penalty per weight for --pruning_method=l2|l1_l2.")
flags.DEFINE_list("regularized_weights", list(cfg.REGULARIZABLE_WEIGHTS), "Weights that get "
                  "the penalty: embeddings, kernel (LSTM input and dense kernels), "
                  "recurrent_kernel.")
flags.DEFINE_enum("pruning_schedule", "polynomial_decay", cfg.PRUNING_SCHEDULES,
                  "one_shot: the target at begin_step, then the mask is held fixed; "
                  "constant: ConstantSparsity at the target from begin_step; "
                  "polynomial_decay: from initial_sparsity to the target between begin and "
                  "end step; m_by_n: m zeros in every n consecutive weights (e.g. 2:4).")
flags.DEFINE_list("pruning_layers", list(cfg.PRUNABLE_LAYERS), "Layer kinds to prune: "
                  "embedding, lstm (kernel and recurrent kernel), dense (the classifier).")
flags.DEFINE_list("layer_sparsity", [], "Per-kind targets overriding --final_sparsity, "
                  "e.g. embedding:0.9,dense:0.5.")
flags.DEFINE_float("initial_sparsity", 0.0, "Sparsity at begin_step (polynomial_decay).")
flags.DEFINE_float("final_sparsity", 0.8, "Target sparsity of every pruned layer, in [0, 1).")
flags.DEFINE_integer("pruning_begin_step", 0, "Fine-tuning step at which pruning starts.")
flags.DEFINE_integer("pruning_end_step", -1, "Step at which the target is reached; -1: at "
                     "the start of the last fine-tuning epoch, leaving one epoch to recover.")
flags.DEFINE_integer("pruning_frequency", 100, "Steps between mask updates.")
flags.DEFINE_integer("pruning_m", 2, "m of m:n sparsity (zeros per block).")
flags.DEFINE_integer("pruning_n", 4, "n of m:n sparsity (block length).")
flags.DEFINE_integer("pruning_epochs", 2, "Fine-tuning epochs while pruning.")
flags.DEFINE_float("pruning_learning_rate", 5e-4, "Adam learning rate while pruning.")
# Convert, evaluate, bundle.
flags.DEFINE_list("exports", list(cfg.EXPORTS), "TFLite files to produce: float, int8 "
                  "(dynamic-range quantized weights).")
flags.DEFINE_float("parity_tolerance", 0.5, "Largest allowed test-accuracy gap, in points, "
                   "between a .tflite and its Keras source before evaluate fails.")
flags.DEFINE_integer("latency_runs", 200, "Timed single-example invocations per .tflite "
                     "(1 thread, after warm-up); at least 200.")
flags.DEFINE_enum("bundle_export", "int8", cfg.EXPORTS, "Which .tflite ships in bundle/.")


def _layer_sparsity(entries: list[str]) -> tuple[tuple[str, float], ...]:
    parsed = []
    for entry in entries:
        layer, sep, value = entry.partition(":")
        try:
            parsed.append((layer.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise cfg.ConfigError(f"--layer_sparsity entry {entry!r} is not KIND:SPARSITY, "
                                  "e.g. lstm:0.8")
    return tuple(parsed)


def config_from_flags(values=FLAGS) -> cfg.PipelineConfig:
    """Builds the frozen config; raises ConfigError naming the offending flag."""
    return cfg.PipelineConfig(
        output_dir=values.output_dir,
        stages=tuple(values.stages),
        force=values.force,
        cache_dir=values.cache_dir,
        data=cfg.DataConfig(
            dataset=values.dataset, data_dir=values.data_dir,
            text_column=values.text_column, label_column=values.label_column,
            labels=tuple(values.labels), validation_fraction=values.validation_fraction,
            test_fraction=values.test_fraction,
            max_malformed_fraction=values.max_malformed_fraction,
            train_limit=values.train_limit, eval_limit=values.eval_limit,
            tfds_data_dir=values.tfds_data_dir, tfds_download=values.tfds_download,
            seed=values.data_seed),
        tokenizer=cfg.TokenizerConfig(
            vocabulary=values.vocabulary, vocabulary_size=values.vocabulary_size, max_length=values.max_length,
            lowercase=values.lowercase, strip_accents=values.strip_accents),
        model=cfg.ModelConfig(
            embedding_dim=values.embedding_dim, lstm_units=values.lstm_units,
            lstm_layers=values.lstm_layers, embedding_dropout=values.embedding_dropout,
            dropout=values.dropout, pooling=values.pooling),
        train=cfg.TrainConfig(
            epochs=values.epochs, batch_size=values.batch_size,
            learning_rate=values.learning_rate,
            early_stopping_patience=values.early_stopping_patience, seed=values.seed),
        regularization=cfg.RegularizationConfig(
            l1=values.l1, l2=values.l2, weights=tuple(values.regularized_weights)),
        pruning=cfg.PruningConfig(
            method=values.pruning_method, schedule=values.pruning_schedule,
            layers=tuple(values.pruning_layers),
            layer_sparsity=_layer_sparsity(values.layer_sparsity),
            initial_sparsity=values.initial_sparsity, final_sparsity=values.final_sparsity,
            begin_step=values.pruning_begin_step, end_step=values.pruning_end_step,
            frequency=values.pruning_frequency, m=values.pruning_m, n=values.pruning_n,
            epochs=values.pruning_epochs, learning_rate=values.pruning_learning_rate),
        convert=cfg.ConvertConfig(exports=tuple(values.exports)),
        eval=cfg.EvalConfig(parity_tolerance=values.parity_tolerance,
                            latency_runs=values.latency_runs),
        bundle=cfg.BundleConfig(export=values.bundle_export),
    )
