"""The MediaPipe file: MediaPipe's own TextClassifier (no project code) must give the Keras
model's answer for the documented tokenization, text after text."""
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from models.sentiment import build_sentiment_model
from pipeline import litert, long_text, mediapipe_export
from pipeline.config import ModelConfig
from pipeline.evaluators.standard_client import mediapipe_classifier
from pipeline.stages.convert import to_tflite
from pipeline.tasks.sentiment import bucketed_batches

VOCABULARY = ["[PAD]", "[UNK]", "the", "film", "is", "great", "awful", "n", "t", ".", ",",
              "not", "boring", "fun"]
LABELS = ["negative", "positive"]
LENGTH = 12
SPEC = {"max_length": LENGTH, "pad_id": 0, "oov_id": 1}


def test_the_vocabulary_file_lists_three_casings_and_negation_stems_once():
    lines = mediapipe_export.vocabulary_text(VOCABULARY, 0, 1).splitlines()
    table = dict(line.split(" ") for line in lines)
    assert lines[:2] == ["<PAD> 0", "<UNKNOWN> 1"]
    assert table["great"] == table["Great"] == table["GREAT"] == "5"
    assert table["didn"] == table["Doesn"] == table["WON"] == "7"  # the id of "n"
    assert "[PAD]" not in table and "[UNK]" not in table
    assert len(table) == len(lines)  # each spelling once: MediaPipe keeps the last one


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8),
                                  len(VOCABULARY), LENGTH, 2)
    for weight in model.weights:  # large enough weights that every word moves the answer
        weight.assign(np.random.default_rng(1).normal(0, 0.8, weight.shape))
    path = tmp_path_factory.mktemp("mediapipe") / "text_classifier.tflite"
    path.write_bytes(mediapipe_export.classifier_file(model, VOCABULARY, LABELS, SPEC,
                                                      "float", to_tflite))
    return model, path


def keras_positive(model, words: list[str]) -> float:
    ids = [VOCABULARY.index(w) if w in VOCABULARY else 1 for w in words][:LENGTH - 1]
    ids = [0] * (LENGTH - len(ids) - 1) + ids + [VOCABULARY.index(".")]
    return float(model(np.array([ids], np.int32))[0, 1])


def test_the_file_carries_its_vocabulary_and_labels(exported):
    _, path = exported
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["labels.txt", "mediapipe_vocab.txt"]
        assert archive.read("labels.txt").decode() == "negative\npositive\n"


def test_mediapipe_gives_the_keras_answer_text_after_text(exported):
    model, path = exported
    scores_of = mediapipe_classifier(path)
    texts = {"The film is GREAT!": ["the", "film", "is", "great"],
             "the film is n't fun , it's boring.": ["the", "film", "is", "n", "t", "fun",
                                                    "it", "s", "boring"],
             "Awful. Not fun": ["awful", "not", "fun"]}
    first = {text: scores_of(text) for text in texts}
    for text, words in texts.items():
        assert first[text]["positive"] == pytest.approx(keras_positive(model, words), abs=1e-4)
        assert sum(first[text].values()) == pytest.approx(1.0, abs=1e-5)
    # The fused LSTM would start each text from the last one's final state: unrolled, it
    # gives the same answer whatever ran before.
    for text in reversed(list(texts)):
        assert scores_of(text) == pytest.approx(first[text], abs=1e-6)


def test_bad_text_through_mediapipe_is_handled_as_documented(exported):
    model, path = exported
    scores_of = mediapipe_classifier(path)
    assert scores_of("") == pytest.approx({"negative": 0.5, "positive": 0.5})
    assert scores_of(" ,;! ") == pytest.approx({"negative": 0.5, "positive": 0.5})
    long_text = "the film is great " * 300_000  # 5.4 MB: the first max_length - 1 words
    started = time.perf_counter()
    answer = scores_of(long_text)
    assert time.perf_counter() - started < 30
    assert answer["positive"] == pytest.approx(
        keras_positive(model, long_text.split()), abs=1e-4)
    with pytest.raises(UnicodeEncodeError):  # not valid UTF-8: refused before the model
        scores_of("great \ud800 film")


def test_the_runner_resizes_the_fused_lstm_to_a_shorter_input(tmp_path):
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8),
                                  len(VOCABULARY), LENGTH, 2)
    path = tmp_path / "model.tflite"
    function = tf.function(lambda ids: model(ids, training=False))
    path.write_bytes(to_tflite(function.get_concrete_function(
        tf.TensorSpec([1, LENGTH], tf.int32)), model, "float"))
    runner = litert.Runner(path)
    for ids in ([0, 0, 5, 3, 9], [4, 2, 9], list(range(2, 14)), [7]):
        short = np.array(ids, np.int32)
        # A Keras model of the same weights at this length: the exact reference.
        same = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8),
                                     len(VOCABULARY), len(ids), 2)
        same.set_weights(model.get_weights())
        np.testing.assert_allclose(runner(short), same(short[None])[0], atol=1e-5)
        assert runner(short) == pytest.approx(runner(short))  # no state left over
    with pytest.raises(ValueError, match="takes \\[1, 12\\] ids, not 13"):
        runner(np.zeros(13, np.int32))


def test_training_batches_share_a_length_bucket_and_half_are_cut_to_it():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, LENGTH + 1, 400)
    ids = np.zeros((400, LENGTH), np.int32)
    for row, count in zip(ids, counts):
        row[LENGTH - count:] = rng.integers(2, len(VOCABULARY), count)
    labels = np.arange(400) % 2
    batches = list(bucketed_batches(ids, labels, 16, seed=3, padding_id=0).take(200))
    widths = {int(x.shape[1]) for x, _ in batches}
    assert widths == {4, 8, LENGTH}  # the buckets 4, 8 and 12 (= max_length)
    cut = short = 0
    for x, y in batches:
        x = x.numpy()
        lengths = long_text.input_lengths((x != 0).sum(axis=1), LENGTH)
        assert len(set(lengths)) == 1  # one bucket per batch, never a text id cut off
        cut += x.shape[1] < LENGTH
        short += lengths[0] < LENGTH
        texts = {tuple(row[row != 0]) for row in x}
        assert texts <= {tuple(row[row != 0]) for row in ids}
    assert 0.35 < cut / short < 0.65  # about half the batches of short texts are cut
    again = list(bucketed_batches(ids, labels, 16, seed=3, padding_id=0).take(200))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))


def test_regex_tokens_follow_the_delimiter_pattern():
    assert mediapipe_export.regex_tokens("The film isn't GREAT,it's -- awful!\u200b") == [
        "The", "film", "isn", "t", "GREAT", "it", "s", "awful"]


def test_fine_tuning_keeps_pruned_weights_at_zero_and_is_judged_on_validation():
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8),
                                  len(VOCABULARY), LENGTH, 2)
    kernel = model.get_layer("lstm_0").weights[0]
    kernel.assign(kernel * (np.arange(kernel.shape[1]) % 2 == 0))  # half the columns pruned
    train = {"texts": ["the film is great", "the film is fun", "awful , boring",
                       "not fun , awful"] * 50, "labels": [1, 1, 0, 0] * 50}
    validation = {"texts": ["The film is GREAT!", "Awful, boring.", "The film is fun.",
                            "Not fun. Awful!"], "labels": [1, 0, 1, 0]}
    tuned, report = mediapipe_export.fine_tuned(model, train, validation, VOCABULARY, SPEC,
                                                0.05, 16, seed=1)
    assert report["validation_texts"] == 4 and report["kept"] == (tuned is not model)
    assert report["validation_accuracy_after"] == 1.0 and report["kept"]
    # No gain on validation: the untuned model is kept.
    same, report = mediapipe_export.fine_tuned(tuned, train, validation, VOCABULARY, SPEC,
                                               0.05, 16, seed=1)
    assert same is tuned and not report["kept"]
    pruned = tuned.get_layer("lstm_0").weights[0].numpy()
    assert not pruned[:, 1::2].any() and pruned[:, ::2].all()


@pytest.mark.parametrize("length_buckets", [True, False])
def test_the_bundle_spec_lists_length_buckets_only_for_models_trained_on_them(tmp_path,
                                                                              length_buckets):
    from pipeline import artifacts
    from pipeline.config import PipelineConfig, TokenizerConfig
    from pipeline.tasks.sentiment import SentimentTask
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "convert").mkdir()
    (run / "data" / "labels.txt").write_text("negative\npositive\n")
    artifacts.atomic_write_json(run / "data" / "tokenizer.json", SPEC)
    artifacts.atomic_write_json(run / "convert" / "convert.json", {"int8": {}})
    out = tmp_path / "bundle"
    out.mkdir()
    config = PipelineConfig(tokenizer=TokenizerConfig(max_length=LENGTH,
                                                      length_buckets=length_buckets))
    fields = SentimentTask().bundle(config, artifacts.RunFiles(run), out, None)
    spec = artifacts.read_json(out / "tokenizer.json")
    assert ("length_buckets" in spec) == length_buckets
    assert ("resizable" in fields["input"]) == length_buckets
    if length_buckets:
        assert spec["length_buckets"]["lengths"] == [4, 8, LENGTH]
        assert spec["length_buckets"]["min_pads"] == 0
