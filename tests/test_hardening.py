"""Adversarial fine-tuning (--adversarial_sentences): unit layer, a hand-built model."""
import dataclasses

import numpy as np
import pytest
import tf_keras

from pipeline import artifacts, tokenizer
from pipeline.config import HardeningConfig, PipelineConfig, TokenizerConfig
from pipeline.stages import StageError
from pipeline.tasks import sentiment
from pipeline.tasks.base import save_split, write_tokenizer_files
from pipeline.tasks.sentiment import SentimentTask
from tests.test_robustness import toy_neighbours

MAX_LENGTH = 12
SENTENCES = ["the film is fine and the cast is too", "a fine cast in a film about nothing",
             "the plot is meh and the cast is meh too", "short and fine"]
LABELS = [1, 1, 0, 1]


def word_model(vocabulary: list[str], polarity: dict[str, float]) -> tf_keras.Model:
    """Mean of per-word logits: `polarity[w]` for positive, minus it for negative."""
    inputs = tf_keras.Input(shape=(MAX_LENGTH,), dtype="int32")
    embedding = tf_keras.layers.Embedding(len(vocabulary), 2)
    dense = tf_keras.layers.Dense(2, activation="softmax")
    outputs = dense(tf_keras.layers.GlobalAveragePooling1D()(embedding(inputs)))
    model = tf_keras.Model(inputs, outputs)
    rows = np.zeros((len(vocabulary), 2), np.float32)
    for word, value in polarity.items():
        rows[vocabulary.index(word)] = [-value, value]
    embedding.set_weights([rows])
    dense.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return model


TOKENIZER = TokenizerConfig(vocabulary="words", vocabulary_size=100, max_length=MAX_LENGTH)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    config = TOKENIZER
    data = tmp_path / "data"
    data.mkdir()
    vocabulary = tokenizer.build_vocabulary(SENTENCES + ["meh okay"], config)
    write_tokenizer_files(data, vocabulary, tokenizer.tokenizer_spec(vocabulary, config), config)
    artifacts.atomic_write_json(data / sentiment.TRAIN_TEXTS_FILE,
                                {"texts": SENTENCES, "labels": LABELS})
    for split in ("train", "validation"):
        save_split(data, split, ids=tokenizer.encode(SENTENCES, vocabulary, config),
                   labels=np.asarray(LABELS))
    monkeypatch.setattr(sentiment, "attack_tools", lambda config: {
        "lexicon": toy_neighbours(),
        "budgets": {"synonym": sentiment.robustness.Budget(max_fraction=1.0)}})
    return tmp_path, vocabulary


def harden(run_dir, vocabulary, polarity, **settings):
    config = PipelineConfig(tokenizer=TOKENIZER, hardening=HardeningConfig(**settings))
    out_dir = run_dir / "prune"
    out_dir.mkdir(exist_ok=True)
    model = word_model(vocabulary, polarity)
    return (SentimentTask().harden(model, config, artifacts.RunFiles(run_dir), out_dir),
            config)


def test_flips_on_training_sentences_join_the_fine_tuning_data_with_their_labels(run_dir):
    folder, vocabulary = run_dir
    (task, summary), config = harden(folder, vocabulary, {"fine": 3.0, "meh": -3.0},
                                     adversarial_sentences=10, adversarial_copies=2)
    found = artifacts.read_json(folder / "prune" / sentiment.ADVERSARIAL_FILE)["attack"]
    # "short and fine" has fewer than 8 words: never attacked.
    assert found["sentences"] == 3 and found["correct"] == 3
    adversarial = {sample["text"]: sample["adversarial"] for sample in found["samples"]}
    assert adversarial["the film is fine and the cast is too"] == \
        "the film is meh and the cast is too"
    assert summary["examples_added"] == 2 * len(found["samples"])
    # Full-length inputs, so the rows read back as they were added (no length buckets).
    config = dataclasses.replace(config, tokenizer=dataclasses.replace(
        config.tokenizer, length_buckets=False))
    rows = one_epoch(task.fit_data(config, artifacts.RunFiles(folder), seed=1))
    assert len(rows) == len(SENTENCES) + summary["examples_added"]
    expected = tokenizer.encode(list(adversarial.values()), vocabulary, config.tokenizer)
    labels = {sample["adversarial"]: sample["label"] for sample in found["samples"]}
    for text, ids in zip(adversarial.values(), expected):
        assert rows.count((tuple(ids), labels[text])) == 2
    plain = SentimentTask().fit_data(config, artifacts.RunFiles(folder), seed=1)
    assert len(one_epoch(plain)) == len(SENTENCES)


def one_epoch(fit) -> list[tuple[tuple[int, ...], int]]:
    """(ids, label) of every row of the training stream's first epoch."""
    return [(tuple(int(i) for i in ids), int(label))
            for inputs, targets in fit.stream.take(fit.steps_per_epoch)
            for ids, label in zip(inputs.numpy(), targets.numpy())]


def test_no_adversarial_sentences_leaves_the_task_alone(run_dir):
    folder, vocabulary = run_dir
    (task, summary), _ = harden(folder, vocabulary, {"fine": 3.0})
    assert summary == {} and task.extra_training is None
    assert not (folder / "prune" / sentiment.ADVERSARIAL_FILE).exists()


def test_an_attack_that_never_wins_is_one_error(run_dir):
    folder, vocabulary = run_dir
    # Only "the" and "a" carry polarity: words the attack never changes.
    with pytest.raises(StageError, match="turned none of the 2 training sentences around"):
        harden(folder, vocabulary, {"the": 3.0, "a": 3.0}, adversarial_sentences=10)


def test_a_training_split_without_sentences_to_attack_is_one_error(run_dir):
    folder, vocabulary = run_dir
    artifacts.atomic_write_json(folder / "data" / sentiment.TRAIN_TEXTS_FILE,
                                {"texts": ["short and fine", "meh"], "labels": [1, 0]})
    with pytest.raises(StageError, match="has no sentence of 8 words or more to attack"):
        harden(folder, vocabulary, {"fine": 3.0}, adversarial_sentences=10)


def test_synonym_encoding_gives_grouped_words_their_group_row(tmp_path):
    """--synonym_encoding: after training (and pruning) every grouped id's embedding row is
    its representative's, so a swap inside a group cannot change what the model sees."""
    import tf_keras
    files = artifacts.RunFiles(tmp_path)
    files.data(sentiment.SYNONYM_GROUPS_FILE).parent.mkdir(parents=True)
    artifacts.atomic_write_json(files.data(sentiment.SYNONYM_GROUPS_FILE),
                                {"representative": [0, 1, 2, 2, 4, 2]})
    model = tf_keras.Sequential([tf_keras.layers.Embedding(6, 3),
                                 tf_keras.layers.GlobalAveragePooling1D()])
    model.build((None, 2))
    before = model.layers[0].embeddings.numpy()
    sentiment.SentimentTask().finish_model(model, files)
    after = model.layers[0].embeddings.numpy()
    assert np.array_equal(after[[3, 5]], before[[2, 2]])
    assert np.array_equal(after[[0, 1, 2, 4]], before[[0, 1, 2, 4]])
    outputs = model(np.array([[1, 2], [1, 3], [1, 5]])).numpy()
    assert np.allclose(outputs[0], outputs[1]) and np.allclose(outputs[0], outputs[2])
