"""Typo correction, the spec's step 3b (pipeline.spelling): unit layer, no data."""
import numpy as np
import pytest

from pipeline import robustness, spelling, tokenizer
from pipeline.config import ConfigError, TokenizerConfig
from pipeline.reference_tokenizer import ReferenceTokenizer, SpecError

WORDS = ("the film movie great good bad boring dull story acting plot fine funny fun "
         "awful terrible wonderful beautiful brilliant slow charming stupid smart actor "
         "actors scene scenes director performance characters character").split()


def spec_by_the_letter(word: str, vocabulary: list[str], settings: dict) -> str:
    """Step 3b as tokenizer.json words it, by brute force over every target."""
    if word in vocabulary or not word.isalpha() or \
            not settings["min_length"] <= len(word) <= settings["max_length"]:
        return word
    limit = 1 if len(word) <= settings["short_length"] else settings["max_distance"]
    found = [(spelling.osa_distance(word, vocabulary[i]), i)
             for i in range(2, settings["targets"]) if vocabulary[i].isalpha()]
    found = [pair for pair in found if pair[0] <= limit]
    return vocabulary[min(found)[1]] if found else word


@pytest.fixture(scope="module")
def corrected():
    # ids rank training words by frequency; "glove" words come after the targets
    vocabulary = ["[PAD]", "[UNK]"] + WORDS + ["filmmaker", "moviegoer"]
    config = TokenizerConfig(typo_correction=True, max_length=8)
    spec = tokenizer.tokenizer_spec(vocabulary, config, correction_targets=2 + len(WORDS))
    return ReferenceTokenizer(spec, vocabulary), vocabulary, spec


def test_the_distance_counts_each_typo_kind_once():
    assert spelling.osa_distance("boring", "boring") == 0
    assert spelling.osa_distance("borign", "boring") == 1  # swap
    assert spelling.osa_distance("borng", "boring") == 1  # drop
    assert spelling.osa_distance("boaring", "boring") == 1  # insert
    assert spelling.osa_distance("boribg", "boring") == 1  # keyboard neighbour
    assert spelling.osa_distance("ca", "abc") == 3  # OSA: no substring edited twice
    assert spelling.osa_distance("", "abc") == 3


def test_typos_land_on_the_word_they_hide(corrected):
    reference, vocabulary, _ = corrected
    assert reference.correct("borign") == "boring" and reference.correct("moive") == "movie"
    assert reference.correct("filmmaker") == "filmmaker"  # in the vocabulary: kept
    assert reference.correct("xyzzy") == "xyzzy"  # nothing near: [UNK] as before
    assert reference.correct("fin") == "fine"  # fine and fun 1 edit away: the smaller id
    assert reference.correct("gd") == "gd"  # shorter than min_length
    assert reference.correct("bor1ng") == "bor1ng"  # not all letters
    assert reference.correct("scn") == "scn"  # 2 edits from scene: too many for 3 letters
    assert reference.encode("a borign moive") == [0] * 5 + [1, vocabulary.index("boring"),
                                                            vocabulary.index("movie")]


def test_targets_past_the_training_words_let_a_typo_land_on_an_added_word(corrected):
    _, vocabulary, _ = corrected  # "filmmaker" and "moviegoer" come after the targets
    config = TokenizerConfig(typo_correction=True, max_length=8)
    everything = ReferenceTokenizer(tokenizer.tokenizer_spec(
        vocabulary, config, correction_targets=len(vocabulary)), vocabulary)
    training_only = ReferenceTokenizer(tokenizer.tokenizer_spec(
        vocabulary, config, correction_targets=2 + len(WORDS)), vocabulary)
    assert training_only.correct("filmmakre") == "filmmakre"  # 5 edits from "film"
    assert everything.correct("filmmakre") == "filmmaker"
    assert everything.correct("moviegoers") == "moviegoer"
    assert everything.correct("borign") == "boring"  # training words keep their typos


def test_the_corrector_agrees_with_the_spec_on_2000_fuzzed_words(corrected):
    reference, vocabulary, spec = corrected
    rng = np.random.default_rng(7)
    fuzzed = []
    for n in range(2000):
        word = WORDS[int(rng.integers(len(WORDS)))]
        for _ in range(int(rng.integers(1, 4))):  # one to three typos, some far off
            kind = robustness.TYPO_KINDS[int(rng.integers(len(robustness.TYPO_KINDS)))]
            word = robustness.typo(word, kind, rng)
        fuzzed.append(word.lower())
    disagree = [w for w in fuzzed if reference.correct(w) !=
                spec_by_the_letter(w, vocabulary, spec["typo_correction"])]
    assert not disagree, disagree[:5]
    assert 0.3 < np.mean([reference.correct(w) != w for w in fuzzed]) < 1.0


def test_the_step_is_written_into_the_spec(corrected):
    _, _, spec = corrected
    assert spec["typo_correction"]["targets"] == 2 + len(WORDS)
    assert any(step.startswith("3b. typo_correction") for step in spec["steps"])
    plain = tokenizer.tokenizer_spec(["[PAD]", "[UNK]", "a"], TokenizerConfig())
    assert "typo_correction" not in plain


@pytest.mark.parametrize("bad", [{"targets": 10 ** 9}, {"max_distance": 9},
                                 {"min_length": "3"}, {"max_length": 0}])
def test_a_bad_correction_entry_is_refused(corrected, bad):
    _, vocabulary, spec = corrected
    broken = {**spec, "typo_correction": {**spec["typo_correction"], **bad}}
    with pytest.raises(SpecError, match="typo_correction .* needs whole numbers"):
        ReferenceTokenizer(broken, vocabulary)


def test_correction_needs_a_word_vocabulary():
    with pytest.raises(ConfigError, match="--typo_correction needs --vocabulary=words"):
        TokenizerConfig(typo_correction=True, vocabulary="wordpiece")
