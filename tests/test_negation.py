"""Negated training phrases (pipeline.negation, --negated_phrases): unit layer."""
import numpy as np
import pytest

from pipeline import behaviour, negation
from tests.test_hostile_inputs import run_main

ROWS = [("drab", 0), ("a gem", 1), ("lifeless", 0), ("witty", 1), ("sparkling script", 1),
        ("good", 1),                    # a word of the behavioural suite: never negated
        ("not funny", 0),               # holds a negation already
        ("the whole thing , frankly", 0),  # too long
        ("uneven", 0), ("uneven", 1),   # both labels: no polarity
        ("r2-d2", 1)]                   # not alphabetic


def negate(count=100, seed=1, names=("negative", "positive")):
    texts = [text for text, _ in ROWS]
    labels = np.array([label for _, label in ROWS])
    return negation.negated_examples(texts, labels, list(names), count, seed)


def test_short_polar_phrases_are_negated_with_the_other_label():
    texts, labels = negate()
    source = {"drab": 0, "a gem": 1, "lifeless": 0, "witty": 1, "sparkling script": 1}
    assert len(texts) == len(source)
    for text, label in zip(texts, labels):
        phrase = next(p for p in source if text.endswith(" " + p) or text == f"not {p}")
        assert label == 1 - source[phrase]
        assert any(form.format(phrase=phrase) == text for form in negation.FORMS)
    suite_words = set(behaviour.POSITIVE + behaviour.NEGATIVE)
    assert not any(set(text.split()) & suite_words for text in texts)


def test_negation_is_seeded_and_capped():
    assert negate(seed=1)[0] == negate(seed=1)[0]
    assert any(negate(seed=1)[0] != negate(seed=s)[0] for s in range(2, 6))
    assert len(negate(count=2)[0]) == 2


def test_the_label_order_of_the_dataset_is_followed():
    texts, labels = negate(names=("positive", "negative"))
    # Index 0 now means positive: "drab" (row label 0 = positive here) turns negative = 1.
    drab = texts.index(next(t for t in texts if t.endswith("drab")))
    assert labels[drab] == 1


@pytest.mark.parametrize("rows, labels, message", [
    ("label\tsentence\n" + "spam\tbuy now\nham\thello there friend\n" * 80, "ham,spam",
     "this dataset's labels are ham, spam; set --negated_phrases=0"),
    ("label\tsentence\n" + "negative\ta long dull film about nothing\n"
     "positive\ta lovely warm film about everything\n" * 80, "negative,positive",
     "holds no phrase of 1-2 words to negate"),
])
def test_negated_phrases_on_data_that_cannot_take_them_is_one_error(rows, labels, message,
                                                                     tmp_path, capsys):
    data_file = tmp_path / "data.tsv"
    data_file.write_text(rows)
    status, stderr = run_main([f"--dataset=tsv:{data_file}", "--negated_phrases=10",
                               f"--labels={labels}", "--stages=data",
                               f"--output_dir={tmp_path / 'run'}"], capsys)
    # The labels are known only once the data is read: a stage error (exit 1).
    assert status == 1 and message in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not (tmp_path / "run" / "data").exists()


def test_phrases_holding_a_negation_or_a_contrast_are_never_negated():
    """negation.NEGATIONS (also the words the attack never replaces) and the contrast "but"."""
    assert negation.negatable("so dull", frozenset())
    for phrase in ("nobody cares", "but fine", "not dull", "hardly fun"):
        assert not negation.negatable(phrase, frozenset()), phrase
