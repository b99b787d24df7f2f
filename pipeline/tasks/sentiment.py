"""Sentiment classification: left-padded token ids → class probabilities."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from models.sentiment import build_sentiment_model
from pipeline import (artifacts, behaviour, data, lexicon, long_text, negation, robustness,
                      tokenizer, vectors)
from pipeline.config import ConfigError, PipelineConfig
from pipeline.metrics import MetricsFile
from pipeline.reference_tokenizer import ReferenceTokenizer, read_spec_and_vocabulary
from pipeline.stages import StageError
from pipeline.tasks.base import FitData, Parity, Task, save_split, write_tokenizer_files

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
EMBEDDING_FILE = "embedding_init.npy"  # data/: the pretrained rows of the vocabulary
PARAGRAPHS_FILE = "paragraphs.json"    # data/: long texts built from validation sentences
TEST_TEXTS_FILE = "test_texts.json"    # data/: the test sentences as text, for the attack
MEDIAPIPE_FILE = "text_classifier.tflite"  # bundle: model.tflite for MediaPipe's TextClassifier
VALIDATION_TEXTS_FILE = "validation_texts.json"  # data/: the MediaPipe fine-tuning's check
TRAIN_TEXTS_FILE = "train_texts.json"  # data/: the training split as read, for hardening
SYNONYM_GROUPS_FILE = "synonym_groups.json"  # data/, with --synonym_encoding: see finish_model
ADVERSARIAL_FILE = "adversarial.json"  # prune/: what adversarial fine-tuning attacked and found
MIN_ADVERSARIAL_WORDS = 8  # hardening attacks sentences, not SST-2's short sub-phrases
KERAS_BATCH = 1024         # rows per Keras call while attacking training sentences
ATTACK_VECTORS = "glove-6b-50d"        # the attack's neighbours (installed with the package)


def load_split(files: artifacts.RunFiles, name: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = files.split(name)
    return arrays["ids"], arrays["labels"]


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    picked = probabilities[np.arange(len(labels)), labels]
    return {"accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
            "examples": int(len(labels))}


class SentimentTask(Task):
    name = "sentiment"
    monitor, monitor_mode = "val_accuracy", "max"
    primary_metric, higher_is_better = "accuracy", True
    score_directions = {"accuracy": True, "loss": False, "examples": None}
    parity = Parity("accuracy", "parity_tolerance", 100.0, "parity_gap_points", "points")
    keras_batch_size = 512
    vocabularies = ("wordpiece", "words")
    shipped_program, latency_per = "model", "text (one padded input)"
    paired_programs = ("model",)
    padding_id = tokenizer.RESERVED_TOKENS.index(tokenizer.PAD_TOKEN)
    stage_reads = {"data": ("data", "tokenizer", "pretrained_embeddings", "extra_vocabulary",
                            "missing_vectors"),
                   "train": ("max_length", "length_buckets", "pretrained_embeddings",
                             "freeze_embeddings"),
                   "prune": ("length_buckets",),  # fine-tuning batches, as in train
                   "bundle": ("length_buckets",),
                   # the MediaPipe file's fine-tuning (see pipeline.mediapipe_export)
                   "convert": ("max_length", "pruning_learning_rate", "batch_size", "seed")}
    ATTACK_BUDGET = ("attack_max_words", "attack_max_queries")

    def __init__(self, extra_training: tuple[np.ndarray, np.ndarray] | None = None):
        self.extra_training = extra_training  # (ids, labels) appended to the training split

    def reads(self, stage: str, config: PipelineConfig) -> tuple[str, ...]:
        """Adversarial fine-tuning attacks with evaluate's budget, so prune reads it then."""
        hardened = stage == "prune" and config.hardening.adversarial_sentences
        return super().reads(stage, config) + (self.ATTACK_BUDGET if hardened else ())

    def validate(self, config: PipelineConfig) -> None:
        super().validate(config)
        vectors_name = config.embeddings.pretrained_embeddings
        if vectors_name and config.tokenizer.vocabulary != "words":
            raise ConfigError(f"--pretrained_embeddings={vectors_name} holds whole words: use "
                              "--vocabulary=words (WordPiece pieces have no vectors)")
        if config.eval.long_text_stride > config.tokenizer.max_length:
            raise ConfigError(f"--long_text_stride={config.eval.long_text_stride} is longer "
                              f"than a window (--max_length={config.tokenizer.max_length}): "
                              "tokens between windows would never be read")

    def check_inputs(self, config: PipelineConfig) -> None:
        data.check_labelled_dataset(config.data)
        vectors.check(config)

    def prepare_data(self, config: PipelineConfig, out_dir: Path) -> dict:
        splits = data.load_splits(config.data)
        logging.info("data: %d train / %d validation (%s) / %d test rows; malformed rows: %s",
                     len(splits.train), len(splits.validation), splits.validation_source,
                     len(splits.test), splits.malformed)
        vocabulary = tokenizer.build_vocabulary(splits.train.texts, config.tokenizer)
        training_words = len(vocabulary)  # the pretrained vectors' words come after them
        pretrained = self.pretrained_rows(config, vocabulary, out_dir)
        vocabulary = pretrained.pop("vocabulary", vocabulary)
        targets = (training_words if config.tokenizer.typo_correction_targets ==
                   "training_words" else len(vocabulary))
        spec = tokenizer.tokenizer_spec(vocabulary, config.tokenizer, targets)
        write_tokenizer_files(out_dir, vocabulary, spec, config.tokenizer)
        representative, grouping = None, {}
        if config.data.synonym_encoding:
            attack = robustness.Budget()  # the synonym attack's candidate settings
            representative = np.asarray(lexicon.synonym_groups(
                vocabulary, attack_lexicon(), attack.candidates, attack.min_similarity))
            members = representative[representative != np.arange(len(vocabulary))]
            grouped = len(members)
            grouping["synonym_encoding"] = {"groups": len(set(members.tolist())),
                                            "words_sharing_a_row": grouped}
            artifacts.atomic_write_json(out_dir / SYNONYM_GROUPS_FILE,
                                        {"representative": representative.tolist()})
            logging.info("data: synonym encoding: %d words share the row of another",
                         grouped)
        artifacts.atomic_write_text(out_dir / "labels.txt",
                                    "\n".join(splits.label_names) + "\n")
        artifacts.atomic_write_json(out_dir / PARAGRAPHS_FILE, long_text.build_paragraphs(
            splits.validation.texts, splits.validation.labels, config.data.data_seed))
        for name, file in (("test", TEST_TEXTS_FILE), ("train", TRAIN_TEXTS_FILE),
                           ("validation", VALIDATION_TEXTS_FILE)):
            examples = getattr(splits, name)
            artifacts.atomic_write_json(out_dir / file, {
                "texts": examples.texts, "labels": [int(n) for n in examples.labels]})
        if config.data.negated_phrases:
            splits.train = self.with_negated_phrases(splits.train, splits.label_names,
                                                     config.data)
        if config.data.augment:
            texts, labels = robustness.augment(
                splits.train.texts, splits.train.labels, config.data.augment,
                config.data.augment_rate, config.data.augment_copies, config.data.data_seed)
            logging.info("data: %d training rows with %s copies", len(texts),
                         ",".join(config.data.augment))
            splits.train = data.Examples(texts, labels)
        counts, unknown = {}, {}
        for name in SPLITS:
            examples = getattr(splits, name)
            ids = tokenizer.encode(examples.texts, vocabulary, config.tokenizer, spec)
            if representative is not None:  # the model learns one row per group
                ids = representative[ids].astype(np.int32)
            save_split(out_dir, name, ids=ids, labels=examples.labels)
            counts[name] = len(examples)
            unknown[name] = round(float(np.mean(ids[ids > 0] == 1)), 4)
        logging.info("data: vocabulary %d ids; share of [UNK] tokens: %s", len(vocabulary),
                     unknown)
        return {"rows": counts, "malformed_rows": splits.malformed, "sources": splits.sources,
                "validation_source": splits.validation_source,
                "vocabulary_size": len(vocabulary), "labels": list(splits.label_names),
                "unknown_token_share": unknown, **pretrained, **grouping}

    @staticmethod
    def with_negated_phrases(train: data.Examples, label_names: list[str],
                             cfg) -> data.Examples:
        """The training rows followed by --negated_phrases negated short phrases."""
        if not behaviour.applies(list(label_names)):
            raise StageError(f"--negated_phrases={cfg.negated_phrases} flips negative and "
                             f"positive labels, but this dataset's labels are "
                             f"{', '.join(label_names)}; set --negated_phrases=0")
        texts, labels = negation.negated_examples(train.texts, train.labels, list(label_names),
                                                  cfg.negated_phrases, cfg.data_seed)
        if not texts:
            raise StageError(f"--negated_phrases={cfg.negated_phrases}: the training split "
                             f"holds no phrase of 1-{negation.MAX_PHRASE_WORDS} words to "
                             "negate (SST-2's phrases do); set --negated_phrases=0")
        logging.info("data: %d negated phrases added (of %d asked)", len(texts),
                     cfg.negated_phrases)
        return data.Examples(train.texts + texts,
                             np.concatenate([train.labels, labels.astype(train.labels.dtype)]))

    @staticmethod
    def pretrained_rows(config: PipelineConfig, vocabulary: list[str], out_dir: Path) -> dict:
        """With --pretrained_embeddings: the vocabulary extended by --extra_vocabulary and
        data/embedding_init.npy, its vectors (stats, plus "vocabulary" when extended)."""
        cfg = config.embeddings
        if not cfg.pretrained_embeddings:
            return {}
        found = vectors.load(cfg.pretrained_embeddings, config.data.max_malformed_fraction)
        if found.malformed_lines:
            logging.warning("data: %s: %d malformed lines skipped (lines %s)",
                            cfg.pretrained_embeddings, len(found.malformed_lines),
                            ", ".join(map(str, found.malformed_lines[:vectors.MALFORMED_NAMED])))
        extended = vectors.extend_vocabulary(
            vocabulary, found, cfg.extra_vocabulary,
            tokenizer.whole_word_check(config.tokenizer))
        matrix, lacking = vectors.initial_embedding(extended, found, tokenizer.RESERVED_TOKENS,
                                                    cfg.missing_vectors, config.data.data_seed)
        with artifacts.atomic_path(out_dir / EMBEDDING_FILE) as tmp:
            with open(tmp, "wb") as stream:
                np.save(stream, matrix)
        logging.info("data: %d training words + %d added from %s; %d words without a vector",
                     len(vocabulary), len(extended) - len(vocabulary), cfg.pretrained_embeddings,
                     lacking)
        return {"vocabulary": extended,
                "pretrained": {"vectors": cfg.pretrained_embeddings, "dimension": found.dimension,
                               "training_words": len(vocabulary),
                               "added_words": len(extended) - len(vocabulary),
                               "words_without_vector": lacking,
                               "malformed_lines": len(found.malformed_lines)}}

    def build_model(self, config: PipelineConfig, files: artifacts.RunFiles,
                    regularizers: dict) -> tf_keras.Model:
        model = build_sentiment_model(config.model, files.vocabulary_size(),
                                      config.tokenizer.max_length, len(files.label_names()),
                                      regularizers=regularizers)
        if config.embeddings.pretrained_embeddings:
            embedding = model.get_layer("embedding")
            embedding.set_weights([np.load(files.data(EMBEDDING_FILE))])
            embedding.trainable = not config.embeddings.freeze_embeddings
        return model

    def loss(self) -> tf_keras.losses.Loss:
        return tf_keras.losses.SparseCategoricalCrossentropy()

    def metrics(self) -> list:
        return ["accuracy"]

    def fit_data(self, config: PipelineConfig, files: artifacts.RunFiles, seed: int) -> FitData:
        x_train, y_train = load_split(files, "train")
        if self.extra_training is not None:
            x_train = np.concatenate([x_train, self.extra_training[0]])
            y_train = np.concatenate([y_train, self.extra_training[1].astype(y_train.dtype)])
        batch = config.train.batch_size
        steps = math.ceil(len(x_train) / batch)
        validation = {"validation_data": load_split(files, "validation"),
                      "validation_batch_size": batch}
        if config.tokenizer.length_buckets:
            stream = bucketed_batches(x_train, y_train, batch, seed, self.padding_id)
        else:
            stream = shuffled_batches(x_train, y_train, batch, seed)
        return FitData(stream, validation, steps)

    def finish_model(self, model, files):
        """With --synonym_encoding: every grouped word's embedding row becomes a copy of
        its group's (the row the model trained), so the .tflite maps all of them alike."""
        path = files.data(SYNONYM_GROUPS_FILE)
        if not path.is_file():
            return
        representative = np.asarray(artifacts.read_json(path)["representative"])
        for layer in model.layers:
            inner = getattr(layer, "layer", layer)  # a pruning wrapper holds the layer
            if isinstance(inner, tf_keras.layers.Embedding):
                rows = inner.embeddings.numpy()
                if len(rows) != len(representative):
                    raise StageError(f"{path} groups {len(representative)} ids but the "
                                     f"embedding has {len(rows)} rows; rerun the data stage")
                inner.embeddings.assign(rows[representative])
                return

    def harden(self, model, config, files, out_dir):
        """Adversarial fine-tuning (--adversarial_sentences): attacks on training sentences
        that turn `model` around join the fine-tuning data, --adversarial_copies times."""
        cfg = config.hardening
        if not cfg.adversarial_sentences:
            return self, {}
        reference = ReferenceTokenizer(*read_spec_and_vocabulary(files.stage("data")))
        found = adversarial_examples(model, config, files, reference)
        artifacts.atomic_write_json(out_dir / ADVERSARIAL_FILE, found)
        wins = found["attack"]["samples"]
        if not wins:
            raise StageError(f"--adversarial_sentences={cfg.adversarial_sentences}: the "
                             f"attack turned none of the {found['attack']['correct']} "
                             "training sentences around; nothing to fine-tune on (raise "
                             "--adversarial_sentences or --attack_max_words, or set "
                             "--adversarial_sentences=0)")
        ids = np.asarray([reference.encode(win["adversarial"]) for win in wins], np.int32)
        labels = np.asarray([win["label"] for win in wins])
        copies = cfg.adversarial_copies
        summary = {key: found["attack"][key] for key in
                   ("sentences", "correct", "success_rate", "words_changed_per_success")}
        summary.update(examples_added=len(wins) * copies, seconds=found["seconds"])
        logging.info("prune: %d adversarial examples (x%d) join the fine-tuning data",
                     len(wins), copies)
        return SentimentTask((np.tile(ids, (copies, 1)), np.tile(labels, copies))), summary

    def timing_ids(self, files: artifacts.RunFiles) -> np.ndarray:
        """The first test sentence, padded as the app pads it."""
        return load_split(files, "test")[0][0]

    def tflite_programs(self, model: tf_keras.Model, config: PipelineConfig) -> dict:
        function = tf.function(lambda ids: model(ids, training=False))
        return {"model": function.get_concrete_function(
            tf.TensorSpec([1, config.tokenizer.max_length], tf.int32, name="token_ids"))}

    def client_files(self, model: tf_keras.Model, config: PipelineConfig,
                     files: artifacts.RunFiles, convert) -> tuple[dict, dict]:
        from pipeline import mediapipe_export
        spec = artifacts.read_json(files.tokenizer_spec)
        vocabulary = files.vocabulary.read_text(encoding="utf-8").splitlines()
        tuned, report = mediapipe_export.fine_tuned(
            model, artifacts.read_json(files.data(TRAIN_TEXTS_FILE)),
            artifacts.read_json(files.data(VALIDATION_TEXTS_FILE)), vocabulary, spec,
            config.pruning.pruning_learning_rate, config.train.batch_size, config.train.seed)
        logging.info("convert: MediaPipe file fine-tuned on its tokenization: validation "
                     "accuracy %.4f -> %.4f (%s)", report["validation_accuracy_before"],
                     report["validation_accuracy_after"],
                     "kept" if report["kept"] else "not kept")
        return ({export: {"mediapipe": mediapipe_export.classifier_file(
                    tuned, vocabulary, files.label_names(), spec, export, convert)}
                 for export in config.convert.exports}, {"mediapipe": report})

    def eval_data(self, config: PipelineConfig, files: artifacts.RunFiles) -> dict:
        return {name: load_split(files, name) for name in EVAL_SPLITS}

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        return classification_metrics(outputs, targets)

    def bundle(self, config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path,
               metrics: MetricsFile) -> dict:
        artifacts.copy_file(files.labels, out_dir / "labels.txt")
        # The long-text policy evaluate measured joins the spec, so an app does the same.
        spec = artifacts.read_json(files.tokenizer_spec)
        artifacts.atomic_write_json(out_dir / "tokenizer.json", {
            **spec, "long_text": long_text.spec_entry(config),
            **({"length_buckets": long_text.length_buckets(config.tokenizer.max_length)}
               if config.tokenizer.length_buckets else {})})
        labels = files.label_names()
        client = artifacts.read_json(files.conversions)[config.bundle.bundle_export].get(
            "clients", {}).get("mediapipe")
        shipped = ("labels.txt",)
        if client is not None:  # the same model for MediaPipe's TextClassifier, metadata in it
            artifacts.copy_file(files.converted(client["file"]), out_dir / MEDIAPIPE_FILE)
            shipped += (MEDIAPIPE_FILE,)
        return {
            "files": shipped,
            "input": {"name": "token_ids", "shape": [1, config.tokenizer.max_length],
                      "dtype": "int32", **({"resizable": "the time dimension, down to the "
                      "length tokenizer.json's length_buckets picks for a short text"}
                      if config.tokenizer.length_buckets else {})},
            "output": {"shape": [1, len(labels)],
                       "meaning": "softmax probabilities in labels.txt order"},
            "state": "the fused LSTM keeps state between invocations: reset variables "
                     "(reset_all_variables) before every new text",
            "standard_clients": {MEDIAPIPE_FILE: (
                "MediaPipe Tasks TextClassifier runs it as it is (tokenizer and labels in its "
                "metadata; stateless LSTM; punctuation dropped, '.' appended; see README)")}
            if client is not None else {},
        }


def epoch_order(rows: int, seed: int, epoch) -> tf.data.Dataset:
    """The row indices of one epoch: a permutation of range(rows) drawn from (seed, epoch)
    alone, so it is the same whatever was iterated before, in any process."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.data.Dataset.from_tensor_slices(
        tf.random.experimental.stateless_shuffle(tf.range(rows), seed=key))


def shuffled_batches(ids: np.ndarray, labels: np.ndarray, batch_size: int,
                     seed: int) -> tf.data.Dataset:
    """Endless training batches: each epoch its epoch_order of the rows, its last batch
    short."""
    rows = len(ids)
    ids, labels = tf.constant(ids), tf.constant(labels)
    return (tf.data.Dataset.counter()
            .flat_map(lambda epoch: epoch_order(rows, seed, epoch).batch(batch_size))
            .map(lambda index: (tf.gather(ids, index), tf.gather(labels, index)))
            .prefetch(tf.data.AUTOTUNE))


def bucketed_batches(ids: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                     padding_id: int) -> tf.data.Dataset:
    """Endless training batches of left-padded `ids` that share a length bucket; a share
    (long_text.CUT_SHARE) of them lose their leading pads down to that bucket's length, the
    others stay at full length. A model trained on full-length inputs alone answers
    differently when an app feeds it a short input (it only ever saw long runs of pads);
    this way it learns both inputs an app may feed. The rows come in epoch_order; which
    batches are cut is drawn from (seed, batch number): the same seed gives the same
    batches."""
    max_length = ids.shape[1]
    buckets = tf.constant(long_text.input_lengths((ids != padding_id).sum(axis=1),
                                                  max_length).astype(np.int32))
    ids, labels = tf.constant(ids), tf.constant(labels)
    rows = (tf.data.Dataset.counter()
            .flat_map(lambda epoch: epoch_order(len(ids), seed, epoch))
            .map(lambda i: (ids[i], labels[i], buckets[i])))
    batches = rows.group_by_window(
        key_func=lambda _, __, bucket: tf.cast(bucket, tf.int64),
        reduce_func=lambda _, window: window.batch(batch_size), window_size=batch_size)
    coins = tf.data.Dataset.counter().map(
        lambda number: tf.random.stateless_uniform(
            [], seed=tf.stack([tf.constant(seed, tf.int64), number])) < long_text.CUT_SHARE)

    def cut(batch, cut_it):
        x, y, bucket = batch
        length = tf.where(cut_it, bucket[0], max_length)
        return x[:, max_length - length:], y

    return (tf.data.Dataset.zip((batches, coins)).map(cut)
            .prefetch(tf.data.AUTOTUNE))


def attack_lexicon() -> lexicon.Lexicon:
    """The synonym attack's lexicon, from the installed packages (cached after first use)."""
    found = vectors.load(ATTACK_VECTORS, max_malformed_fraction=0.0)  # the installed wheel
    return lexicon.load(found.words, found.matrix, vectors.source_files(ATTACK_VECTORS))


def attack_tools(config: PipelineConfig) -> dict:
    """The synonym attack's lexicon and each named attack's budget
    (--attack_max_words/queries)."""
    return {"lexicon": attack_lexicon(),
            "budgets": robustness.budgets(config.eval.attack_max_words,
                                          config.eval.attack_max_queries)}


def adversarial_examples(model: tf_keras.Model, config: PipelineConfig,
                         files: artifacts.RunFiles, reference: ReferenceTokenizer) -> dict:
    """evaluate's attack on --adversarial_sentences training sentences of at least
    MIN_ADVERSARIAL_WORDS words (chosen with --seed), querying the Keras model through the
    run's tokenizer (`reference`); every success is kept."""
    saved = artifacts.read_json(files.data(TRAIN_TEXTS_FILE))
    pool = [i for i, text in enumerate(saved["texts"])
            if len(text.split()) >= MIN_ADVERSARIAL_WORDS]
    if not pool:
        raise StageError(f"--adversarial_sentences={config.hardening.adversarial_sentences}: "
                         f"the training split has no sentence of {MIN_ADVERSARIAL_WORDS} words "
                         "or more to attack; set --adversarial_sentences=0")
    rng = np.random.default_rng([config.train.seed, MIN_ADVERSARIAL_WORDS])
    chosen = sorted(rng.choice(pool, min(config.hardening.adversarial_sentences, len(pool)),
                               replace=False))
    texts = [saved["texts"][i] for i in chosen]
    labels = np.asarray([saved["labels"][i] for i in chosen])
    length = reference.spec["max_length"]
    call = tf.function(lambda ids: model(ids, training=False),
                       input_signature=[tf.TensorSpec([None, length], tf.int32)])
    tools, start = attack_tools(config), time.perf_counter()

    def batch_probabilities(batch: list[str]) -> list[np.ndarray]:
        ids = np.asarray([reference.encode(text) for text in batch], np.int32)
        return list(np.concatenate([call(ids[i:i + KERAS_BATCH]).numpy()
                                    for i in range(0, len(ids), KERAS_BATCH)]))

    def progress(done: int, total: int) -> None:
        logging.info("prune: %d of %d attacks on training sentences finished (%.0f s)",
                     done, total, time.perf_counter() - start)

    result = robustness.attack_in_batches(batch_probabilities, texts, labels,
                                          tools["lexicon"], tools["budgets"]["synonym"],
                                          config.train.seed, samples=len(texts),
                                          progress=progress)
    logging.info("prune: the attack turned %.3f of %d training sentences around",
                 result["success_rate"], result["correct"])
    return {"attack": result, "seconds": round(time.perf_counter() - start, 1)}
