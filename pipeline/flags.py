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
D = cfg.PipelineConfig(output_dir="runs/sentiment")  # every flag default comes from here

# Run.
flags.DEFINE_string(
    "output_dir",
    D.output_dir,
    "Run directory: one folder per stage "
    "plus bundle/. Rerunning into it skips stages whose inputs are unchanged.",
)
flags.DEFINE_list(
    "stages",
    list(D.stages),
    "Stages to run, in pipeline order; the "
    "others must have run before. Choices: " + ",".join(cfg.STAGE_NAMES),
)
flags.DEFINE_bool(
    "force", D.force, "Rerun the selected stages even if their config and inputs are unchanged."
)
flags.DEFINE_string(
    "cache_dir",
    D.cache_dir,
    "Optional stage cache shared between run directories: "
    "a stage whose settings and inputs match a cached output is copied from "
    "it instead of rerun (how a sweep trains each dense model once).",
)
# Data.
flags.DEFINE_enum(
    "task",
    D.data.task,
    cfg.TASKS,
    "sentiment: classify texts (Embedding → LSTM → softmax over labels); textgen: a "
    "character-level language model (Embedding → LSTM → logits over the characters) "
    "that ships as a stateful one-step .tflite for generation.",
)
flags.DEFINE_string(
    "dataset",
    D.data.dataset,
    "Registered name (sentiment: sst2, imdb_reviews; textgen: tiny_shakespeare) or a local "
    "file URI: tsv:PATH, csv:PATH or jsonl:PATH for sentiment, text:PATH (plain UTF-8, split "
    "90/5/5 by characters) for textgen.",
)
flags.DEFINE_string(
    "data_dir",
    os.environ.get("PIPELINE_DATA_DIR", ""),
    "Local mirror searched first for registered datasets, as "
    "<data_dir>/<dataset>/ (sst2: train.tsv, dev.tsv, test.tsv; tiny_shakespeare: "
    "input.txt). Defaults to $PIPELINE_DATA_DIR.",
)
flags.DEFINE_string("text_column", D.data.text_column, "Text column of a file URI dataset.")
flags.DEFINE_string("label_column", D.data.label_column, "Label column of a file URI dataset.")
flags.DEFINE_list(
    "labels",
    [],
    "Allowed label values of a file URI dataset, in class order; "
    "rows with other labels are malformed. Empty: every value found.",
)
flags.DEFINE_float(
    "validation_fraction",
    D.data.validation_fraction,
    "Fraction held out for validation when the dataset has no validation split (seeded).",
)
flags.DEFINE_float(
    "test_fraction",
    D.data.test_fraction,
    "Fraction held out for test from a file URI dataset (seeded).",
)
flags.DEFINE_float(
    "max_malformed_fraction",
    D.data.max_malformed_fraction,
    "Malformed rows (missing label, unknown "
    "label, empty text) tolerated per file; above this the run stops.",
)
flags.DEFINE_integer(
    "train_limit",
    D.data.train_limit,
    "Use a seeded random subset of this many training rows (0: all). For smoke runs.",
)
flags.DEFINE_integer(
    "eval_limit",
    D.data.eval_limit,
    "Use at most this many validation and test rows "
    "(0: all). For smoke runs; never for reported numbers.",
)
flags.DEFINE_string(
    "tfds_data_dir",
    D.data.tfds_data_dir,
    "TFDS data directory for the TFDS fallback (empty: TFDS's default).",
)
flags.DEFINE_bool(
    "tfds_download", D.data.tfds_download, "Let the TFDS fallback download missing data."
)
flags.DEFINE_integer("data_seed", D.data.seed, "Seed for held-out splits and subsets.")
# Tokenizer.
flags.DEFINE_enum(
    "vocabulary",
    D.tokenizer.vocabulary,
    cfg.VOCABULARIES,
    "wordpiece: subword pieces "
    "learned by keras-nlp; words: the most frequent whole words, others [UNK] (both "
    "sentiment); characters: every character of the training text, others [UNK] (textgen).",
)
flags.DEFINE_integer(
    "vocabulary_size",
    D.tokenizer.vocabulary_size,
    "Vocabulary size, learned from the training split (includes [PAD] and [UNK]); "
    "characters keep every character seen in training and ignore it.",
)
flags.DEFINE_integer(
    "max_length",
    D.tokenizer.max_length,
    "Tokens per example: longer texts keep their first "
    "max_length tokens, shorter ones are left-padded. textgen: the training window in "
    "characters (scoring uses --eval_window_length).",
)
flags.DEFINE_bool(
    "ptb_contractions",
    D.tokenizer.ptb_contractions,
    "Rewrite raw text the Penn Treebank way SST-2 is stored (didn't -> did n't, ’ -> ') "
    "before tokenizing, so user text meets the training vocabulary.",
)
flags.DEFINE_bool(
    "lowercase", D.tokenizer.lowercase, "Lower-case (Unicode NFKC_Casefold) before WordPiece."
)
flags.DEFINE_bool(
    "strip_accents", D.tokenizer.strip_accents, "Remove accents (NFD, drop Mn) before WordPiece."
)
# Model.
flags.DEFINE_integer("embedding_dim", D.model.embedding_dim, "Embedding width.")
flags.DEFINE_integer("lstm_units", D.model.lstm_units, "Units per LSTM layer.")
flags.DEFINE_integer("lstm_layers", D.model.lstm_layers, "Stacked LSTM layers.")
flags.DEFINE_float(
    "embedding_dropout",
    D.model.embedding_dropout,
    "Dropout on the embedded tokens (training only; the exported model does not contain it).",
)
flags.DEFINE_float("dropout", D.model.dropout, "Dropout after each LSTM layer (training only).")
flags.DEFINE_enum(
    "pooling",
    D.model.pooling,
    cfg.POOLINGS,
    "How the classifier sees the text: the last LSTM state, or the maximum over all time "
    "steps (sentiment only; a language model predicts at every step).",
)
# Training.
flags.DEFINE_integer(
    "epochs",
    D.train.epochs,
    "Maximum dense training epochs (early stopping may end "
    "sooner; the best validation epoch is kept).",
)
flags.DEFINE_integer("batch_size", D.train.batch_size, "Batch size for training and fine-tuning.")
flags.DEFINE_float("learning_rate", D.train.learning_rate, "Adam learning rate for dense training.")
flags.DEFINE_integer(
    "early_stopping_patience",
    D.train.early_stopping_patience,
    "Epochs without validation gain (accuracy for sentiment, loss for textgen) before dense "
    "training stops.",
)
flags.DEFINE_enum(
    "learning_rate_schedule",
    D.train.learning_rate_schedule,
    cfg.LEARNING_RATE_SCHEDULES,
    "constant: the learning rate throughout; cosine: cosine decay to 5% of it over all the "
    "epochs of the stage (dense training, and pruning with --pruning_learning_rate).",
)
flags.DEFINE_float(
    "clip_norm",
    D.train.clip_norm,
    "Clip each gradient to this global norm in training and fine-tuning (0: no clipping).",
)
flags.DEFINE_integer("seed", D.train.seed, "Seed for weight initialisation and shuffling.")
# Pruning.
flags.DEFINE_enum(
    "pruning_method",
    D.pruning.method,
    cfg.PRUNING_METHODS,
    "magnitude: tfmot "
    "prune_low_magnitude on the dense model, then fine-tuning; l1, l2, l1_l2: "
    "train with that weight penalty (--l1/--l2), then prune by magnitude to the "
    "same targets and fine-tune with the mask held; none: ship the dense model "
    "through the same stages.",
)
flags.DEFINE_float(
    "l1", D.regularization.l1, "L1 penalty per weight for --pruning_method=l1|l1_l2."
)
flags.DEFINE_float(
    "l2", D.regularization.l2, "L2 penalty per weight for --pruning_method=l2|l1_l2."
)
flags.DEFINE_float(
    "group_lasso",
    D.regularization.group_lasso,
    "Group lasso strength over LSTM hidden units (the four gate columns of a unit form one "
    "group) for --pruning_method=l1|l2|l1_l2; adds to --l1/--l2 on the LSTM kernels.",
)
flags.DEFINE_list(
    "regularized_weights",
    list(D.regularization.weights),
    "Weights that get "
    "the penalty: embeddings, kernel (LSTM input and dense kernels), "
    "recurrent_kernel.",
)
flags.DEFINE_enum(
    "pruning_schedule",
    D.pruning.schedule,
    cfg.PRUNING_SCHEDULES,
    "one_shot: the target at begin_step, then the mask is held fixed; "
    "constant: ConstantSparsity at the target from begin_step; "
    "polynomial_decay: from initial_sparsity to the target between begin and "
    "end step; m_by_n: m zeros in every n consecutive weights (e.g. 2:4).",
)
flags.DEFINE_list(
    "pruning_layers",
    list(D.pruning.layers),
    "Layer kinds to prune: embedding, lstm (kernel and recurrent kernel), dense (the classifier).",
)
flags.DEFINE_list(
    "layer_sparsity",
    [],
    "Per-kind targets overriding --final_sparsity, e.g. embedding:0.9,dense:0.5.",
)
flags.DEFINE_float(
    "initial_sparsity", D.pruning.initial_sparsity, "Sparsity at begin_step (polynomial_decay)."
)
flags.DEFINE_float(
    "final_sparsity", D.pruning.final_sparsity, "Target sparsity of every pruned layer, in [0, 1)."
)
flags.DEFINE_integer(
    "pruning_begin_step", D.pruning.begin_step, "Fine-tuning step at which pruning starts."
)
flags.DEFINE_integer(
    "pruning_end_step",
    D.pruning.end_step,
    "Step at which the target is reached; -1: at "
    "the start of the last fine-tuning epoch, leaving one epoch to recover.",
)
flags.DEFINE_integer("pruning_frequency", D.pruning.frequency, "Steps between mask updates.")
flags.DEFINE_integer("pruning_m", D.pruning.m, "m of m:n sparsity (zeros per block).")
flags.DEFINE_integer("pruning_n", D.pruning.n, "n of m:n sparsity (block length).")
flags.DEFINE_integer("pruning_epochs", D.pruning.epochs, "Fine-tuning epochs while pruning.")
flags.DEFINE_float(
    "pruning_learning_rate", D.pruning.learning_rate, "Adam learning rate while pruning."
)
# Convert, evaluate, bundle.
flags.DEFINE_list(
    "exports",
    list(D.convert.exports),
    "TFLite files to produce: float, int8 (dynamic-range quantized weights).",
)
flags.DEFINE_float(
    "parity_tolerance",
    D.eval.parity_tolerance,
    "Largest allowed test-accuracy gap, in points, "
    "between a .tflite and its Keras source before evaluate fails.",
)
flags.DEFINE_float(
    "loss_parity_tolerance",
    D.eval.loss_parity_tolerance,
    "textgen: largest allowed test-loss gap, in nats per character, between a .tflite and its "
    "Keras source before evaluate fails.",
)
flags.DEFINE_integer(
    "eval_window_length",
    D.eval.window_length,
    "textgen: characters per scoring window; the validation and test text is cut into "
    "non-overlapping windows, each scored from a zero state (also the length of the window "
    ".tflite). Independent of the training window --max_length.",
)
flags.DEFINE_string(
    "sample_prompt",
    D.eval.sample_prompt,
    "textgen: the prompt of the fixed samples written to metrics.json for each model.",
)
flags.DEFINE_integer(
    "sample_length",
    D.eval.sample_length,
    "textgen: characters generated per fixed sample (and per tokens/second run).",
)
flags.DEFINE_integer(
    "latency_runs",
    D.eval.latency_runs,
    "Timed single-example invocations per .tflite (1 thread, after warm-up); at least 200. "
    "textgen: the one-step model is timed per character.",
)
flags.DEFINE_enum("bundle_export", D.bundle.export, cfg.EXPORTS, "Which .tflite ships in bundle/.")


def _layer_sparsity(entries: list[str]) -> tuple[tuple[str, float], ...]:
    parsed = []
    for entry in entries:
        layer, sep, value = entry.partition(":")
        try:
            parsed.append((layer.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise cfg.ConfigError(
                f"--layer_sparsity entry {entry!r} is not KIND:SPARSITY, e.g. lstm:0.8"
            )
    return tuple(parsed)


def config_from_flags(values=FLAGS) -> cfg.PipelineConfig:
    """Builds the frozen config; raises ConfigError naming the offending flag."""
    return cfg.PipelineConfig(
        output_dir=values.output_dir,
        stages=tuple(values.stages),
        force=values.force,
        cache_dir=values.cache_dir,
        data=cfg.DataConfig(
            task=values.task,
            dataset=values.dataset,
            data_dir=values.data_dir,
            text_column=values.text_column,
            label_column=values.label_column,
            labels=tuple(values.labels),
            validation_fraction=values.validation_fraction,
            test_fraction=values.test_fraction,
            max_malformed_fraction=values.max_malformed_fraction,
            train_limit=values.train_limit,
            eval_limit=values.eval_limit,
            tfds_data_dir=values.tfds_data_dir,
            tfds_download=values.tfds_download,
            seed=values.data_seed,
        ),
        tokenizer=cfg.TokenizerConfig(
            vocabulary=values.vocabulary,
            vocabulary_size=values.vocabulary_size,
            max_length=values.max_length,
            ptb_contractions=values.ptb_contractions,
            lowercase=values.lowercase,
            strip_accents=values.strip_accents,
        ),
        model=cfg.ModelConfig(
            embedding_dim=values.embedding_dim,
            lstm_units=values.lstm_units,
            lstm_layers=values.lstm_layers,
            embedding_dropout=values.embedding_dropout,
            dropout=values.dropout,
            pooling=values.pooling,
        ),
        train=cfg.TrainConfig(
            epochs=values.epochs,
            batch_size=values.batch_size,
            learning_rate=values.learning_rate,
            early_stopping_patience=values.early_stopping_patience,
            learning_rate_schedule=values.learning_rate_schedule,
            clip_norm=values.clip_norm,
            seed=values.seed,
        ),
        regularization=cfg.RegularizationConfig(
            l1=values.l1,
            l2=values.l2,
            group_lasso=values.group_lasso,
            weights=tuple(values.regularized_weights),
        ),
        pruning=cfg.PruningConfig(
            method=values.pruning_method,
            schedule=values.pruning_schedule,
            layers=tuple(values.pruning_layers),
            layer_sparsity=_layer_sparsity(values.layer_sparsity),
            initial_sparsity=values.initial_sparsity,
            final_sparsity=values.final_sparsity,
            begin_step=values.pruning_begin_step,
            end_step=values.pruning_end_step,
            frequency=values.pruning_frequency,
            m=values.pruning_m,
            n=values.pruning_n,
            epochs=values.pruning_epochs,
            learning_rate=values.pruning_learning_rate,
        ),
        convert=cfg.ConvertConfig(exports=tuple(values.exports)),
        eval=cfg.EvalConfig(
            parity_tolerance=values.parity_tolerance,
            loss_parity_tolerance=values.loss_parity_tolerance,
            window_length=values.eval_window_length,
            latency_runs=values.latency_runs,
            sample_prompt=values.sample_prompt,
            sample_length=values.sample_length,
        ),
        bundle=cfg.BundleConfig(export=values.bundle_export),
    )
