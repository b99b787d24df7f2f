"""The behavioural suite and the long-text validation set: what they contain and score."""
import numpy as np

from pipeline import behaviour, long_text


def test_every_category_has_cases_with_the_reader_label():
    suite = behaviour.cases()
    assert set(suite) == {"plain", "negated_positive", "negated_negative", "contrast",
                          "intensifier", "typo"}
    assert all(len(examples) == behaviour.CASES_PER_CATEGORY for examples in suite.values())
    assert suite == behaviour.cases()  # fixed: the same cases every run
    labelled = {text: label for examples in suite.values() for text, label in examples}
    assert all(label == 0 for text, label in suite["negated_positive"])
    assert all(label == 1 for text, label in suite["negated_negative"])
    for text, label in suite["contrast"]:
        after_but = text.split(", but ")[1]
        assert label == int(any(word in after_but for word in behaviour.POSITIVE)), text
    assert not any(word in text.split() for text, _ in suite["typo"]
                   for word in behaviour.POSITIVE + behaviour.NEGATIVE)
    assert len(labelled) == sum(len(examples) for examples in suite.values())


def test_a_keyword_classifier_gets_plain_right_and_negation_wrong():
    def keywords(text):
        words = text.lower().rstrip(".").replace(",", "").split()
        positive = any(word in behaviour.POSITIVE for word in words)
        return np.array([0.1, 0.9]) if positive else np.array([0.9, 0.1])
    result = behaviour.run_suite(keywords, ["negative", "positive"])
    assert result["plain"] == 1.0 and result["categories"]["intensifier"] == 1.0
    assert result["negation"] == 0.0
    assert result["categories"]["contrast"] == 0.5  # both clauses hold a keyword
    # The label order comes from labels.txt, not from the suite.
    flipped = behaviour.run_suite(lambda text: keywords(text)[::-1], ["positive", "negative"])
    assert flipped["categories"] == result["categories"]
    assert not behaviour.applies(["0", "1"]) and behaviour.applies(["positive", "negative"])


def test_paragraphs_are_long_and_carry_their_majority_label():
    texts = [f"pos{i} ." for i in range(50)] + [f"neg{i} ." for i in range(50)]
    labels = np.array([1] * 50 + [0] * 50)
    paragraphs = long_text.build_paragraphs(texts, labels, seed=3)
    assert len(paragraphs) == 2 * long_text.PARAGRAPHS
    assert paragraphs == long_text.build_paragraphs(texts, labels, seed=3)
    for paragraph in paragraphs:
        sentences = paragraph["text"].split(" . ")
        own = sum(s.strip(" .").startswith("pos" if paragraph["label"] else "neg")
                  for s in sentences)
        assert 6 <= len(sentences) <= 10
        if paragraph["kind"] == "one_label":
            assert own == len(sentences)
        else:
            assert len(sentences) > own >= 0.7 * len(sentences)
    assert {p["label"] for p in paragraphs} == {0, 1}
