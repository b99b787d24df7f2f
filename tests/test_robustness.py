"""Noise and the black-box attack (pipeline.robustness, pipeline.attack): unit layer."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline import lexicon, robustness
from tests.conftest import REPO

TEXT = "The acting is wonderful and the story moves quickly , a delight ."


@pytest.mark.parametrize("kind", robustness.NOISE_KINDS)
def test_noise_is_deterministic_per_seed_and_keeps_what_it_must(kind):
    def noisy(seed, rate=0.5):
        return robustness.perturb(TEXT, kind, rate, np.random.default_rng(seed))
    assert noisy(1) == noisy(1) and noisy(1) != TEXT
    assert {noisy(s) for s in range(6)} != {noisy(1)}  # the seed matters
    assert robustness.perturb(TEXT, kind, 0.0, np.random.default_rng(1)) == TEXT
    words, new = TEXT.split(), noisy(1).split()
    if kind == "word_drop":
        assert 1 <= len(new) < len(words) and all(w in words for w in new)
        assert robustness.perturb("one", kind, 1.0, np.random.default_rng(1)) == "one"
        return
    assert len(new) == len(words)
    changes = {"swap": {0}, "keyboard": {0}, "drop": {0, -1}, "insert": {0, 1},
               "typo": {0, -1, 1}}[kind]
    for old, word in zip(words, new):
        assert len(word) - len(old) in (changes if old.isalpha() else {0})
        if not old.isalpha() or len(old) < 2:
            assert word == old  # punctuation and one-letter words are never edited
    if kind == "swap":
        assert all(sorted(w) == sorted(o) for o, w in zip(words, new))
    if kind == "keyboard":
        for old, word in zip(words, new):
            for a, b in zip(old.lower(), word.lower()):
                assert a == b or b in robustness.KEYBOARD[a]


def test_augmentation_appends_seeded_noisy_copies_with_their_labels():
    texts, labels = [TEXT, "a dull , lifeless film"], np.array([1, 0])
    new_texts, new_labels = robustness.augment(texts, labels, ("swap", "word_drop"), 0.5, 2,
                                               seed=3)
    assert new_texts[:2] == texts and len(new_texts) == 2 + 2 * 2 * 2
    assert list(new_labels) == [1, 0] * 5
    assert new_texts == robustness.augment(texts, labels, ("swap", "word_drop"), 0.5, 2,
                                           seed=3)[0]
    assert new_texts[2:4] != new_texts[4:6]  # each copy draws its own noise
    assert new_texts != robustness.augment(texts, labels, ("swap", "word_drop"), 0.5, 2,
                                           seed=4)[0]


def test_a_bad_noise_kind_is_named():
    with pytest.raises(ValueError, match="unknown noise kind 'smudge'"):
        robustness.perturb(TEXT, "smudge", 0.1, np.random.default_rng(1))


def toy_model(text):
    """Negative exactly when 'meh' is a word of the text; no token: None."""
    if not text.strip():
        return None
    return np.array([0.9, 0.1]) if "meh" in text.split() else np.array([0.2, 0.8])


def toy_neighbours():
    """A lexicon where fine, meh, okay and bad are synonyms, good/bad are polar (VADER)."""
    words = ["fine", "meh", "okay", "good", "bad", "film"]
    vectors = np.array([[1, 0.1, 0], [1, 0.2, 0], [1, 0, 0.1], [0, 1, 0], [0.95, 0.3, 0],
                        [0, 0, 1]], np.float32)
    synonyms = {"fine": ["bad", "meh", "okay"], "meh": ["fine", "okay"],
                "okay": ["fine", "meh"], "good": ["bad", "fine"], "bad": ["fine", "good"]}
    return lexicon.Lexicon(words, lexicon._unit(vectors), synonyms, {"good": 1.9, "bad": -2.5})


def test_the_attack_finds_a_known_flip():
    neighbours = toy_neighbours()
    assert neighbours.substitutes("fine", 3, 0.9)[:2] == ["meh", "okay"]
    result = robustness.attack_one(toy_model, "the film is fine", 1, neighbours,
                                   robustness.Budget(), seed=1)
    assert result["success"] and result["adversarial"] == "the film is meh"
    assert result["changes"] == [{"from": "fine", "to": "meh"}]
    summary = robustness.attack(toy_model, ["the film is fine", "a meh film"], np.array([1, 1]),
                                neighbours, robustness.Budget(), seed=1)
    # the second text is already wrong: counted as lost, never attacked
    assert (summary["correct"], summary["success_rate"], summary["accuracy_under_attack"]) == \
        (1, 1.0, 0.0)
    assert summary["samples"][0]["adversarial"] == "the film is meh"


def test_antonyms_polarity_flips_negations_and_function_words_are_never_used():
    neighbours = toy_neighbours()
    budget = robustness.Budget(typos_per_word=0, min_similarity=0.1)
    # bad is listed as a synonym of good, but VADER says it has the other polarity;
    # fine is neutral: a polar word never becomes a neutral one either
    assert robustness.candidates("good", neighbours, budget, np.random.default_rng(1)) == []
    assert robustness.candidates("fine", neighbours, budget, np.random.default_rng(1)) == \
        ["meh", "okay"]
    assert robustness.candidates("Fine", neighbours, budget, np.random.default_rng(1)) == \
        ["Meh", "Okay"]
    # film is near nothing it is a synonym of
    assert robustness.candidates("film", neighbours, budget, np.random.default_rng(1)) == []
    model = lambda text: np.array([0.9, 0.1]) if "nt" in text.split() else np.array([0.1, 0.9])
    result = robustness.attack_one(model, "not the with", 1, neighbours, robustness.Budget(),
                                   seed=1)
    assert not result["success"] and result["queries"] == 1  # nothing it may change
    # a capitalised word inside a sentence is a name: left alone
    result = robustness.attack_one(model, "not Fine", 1, neighbours, robustness.Budget(),
                                   seed=1)
    assert result["queries"] == 1


def test_the_budget_is_respected():
    never_fooled = lambda text: np.array([0.4, 0.6])
    text = "wonderful splendid marvellous delightful charming lovely superb"
    for max_queries in (1, 5, 17):
        result = robustness.attack_one(never_fooled, text, 1, toy_neighbours(),
                                       robustness.Budget(max_queries=max_queries), seed=1)
        assert result["queries"] <= max_queries and not result["success"]
    def slowly_fooled(text):  # each changed word lowers the positive class a little
        positive = 0.6 - 0.04 * sum(w not in text.split() for w in text_words)
        return np.array([1 - positive, positive])
    text_words = text.split()
    result = robustness.attack_one(slowly_fooled, text, 1, None,
                                   robustness.Budget(max_words=2, max_fraction=1.0), seed=1)
    assert result["words_changed"] == 2 and not result["success"]
    # at most a fifth of the sentence's words: one of these seven
    result = robustness.attack_one(slowly_fooled, text, 1, None,
                                   robustness.Budget(max_words=2), seed=1)
    assert result["words_changed"] == 1 and not result["success"]


def test_attacking_in_batches_gives_the_outcomes_of_one_query_at_a_time():
    weights = {"fine": 0.3, "lovely": 0.25, "okay": 0.1, "meh": -0.3, "film": 0.05}

    def weighted(text):  # a deterministic model whose answers depend on every word
        score = sum(weights.get(w.lower(), 0.02 * len(w)) for w in text.split())
        positive = 1 / (1 + np.exp(-score))
        return np.array([1 - positive, positive])

    texts = ["the film is fine", "a lovely fine film , okay", "meh", "a meh film",
             "fine lovely okay film and more words here", "the story film is okay"]
    labels = np.array([1, 1, 0, 1, 1, 1])
    calls = []

    def batched(batch):
        calls.append(len(batch))
        return [weighted(text) for text in batch]

    for budget in (robustness.Budget(), robustness.Budget(max_words=1, max_queries=6)):
        one_by_one = robustness.attack(weighted, texts, labels, toy_neighbours(), budget, 7)
        together = robustness.attack_in_batches(batched, texts, labels, toy_neighbours(),
                                                budget, 7)
        assert together == one_by_one and one_by_one["correct"] >= 4
    # one call for the clean check, then one per round of all attacks, not one per query
    assert len(calls) <= 2 * (2 + 1 + robustness.Budget().max_words)


@pytest.mark.parametrize("args, message", [
    (["--output={existing}"], "exists; choose a new file"),
    (["--output=/proc/x.json"], "/proc is not a folder this process can write"),  # item 18
    (["--min_similarity=0"], "--min_similarity=0.0 must be in (0, 1]"),
    (["--noise_rates=0.1,lots"], "--noise_rates=0.1,lots must be numbers"),
    (["--noise_rates=2"], "--noise_rates=2 must be in (0, 1]"),
    (["--max_queries=0"], "--max_queries=0: 0 is not a positive integer"),
    (["--attacks=synonym,smudge"], "--attacks=synonym,smudge: choose among synonym, typo"),
    ([], "has no manifest.json"),
])
def test_bad_attack_flags_exit_2_with_the_fix(tmp_path, args, message):
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    args = [a.format(existing=existing) for a in args]
    if not any(a.startswith("--output") for a in args):
        args.append(f"--output={tmp_path / 'new.json'}")
    result = subprocess.run([sys.executable, "-m", "pipeline.attack",
                             f"--bundle={tmp_path / 'nothing'}", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and existing.read_text() == "{}"


def test_the_attack_reads_the_dataset_settings_a_bundle_manifest_saved(tmp_path):
    """JSON turns the config's tuples into lists; the attack must read them back as the
    run had them (it used to refuse every bundle: "--augment=[] ... is not one of")."""
    from pipeline import attack
    from pipeline.config import DataConfig
    saved = DataConfig(augment=("swap", "word_drop"), labels=("negative", "positive"),
                       train_limit=10)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"config": {"data": dataclasses.asdict(saved)}}))
    read = attack.data_config(tmp_path, "/mirror", "")
    assert read == dataclasses.replace(saved, train_limit=0, data_dir="/mirror",
                                       tfds_download=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(attack.AttackError, match="has no usable config.data"):
        attack.data_config(tmp_path, "/mirror", "")


def test_the_attack_opens_no_path_a_manifest_names(tmp_path):
    """Issue 32, item 7: `dataset: "csv:/etc/passwd"` in a manifest used to be read, and
    its tfds_data_dir made the attack create folders and try downloads."""
    from pipeline import attack
    from pipeline.config import DataConfig
    saved = DataConfig(dataset="csv:/etc/passwd", labels=("a", "b"),
                       tfds_data_dir=str(tmp_path / "made"))
    (tmp_path / "manifest.json").write_text(
        json.dumps({"config": {"data": dataclasses.asdict(saved)}}))
    with pytest.raises(attack.AttackError, match="names the dataset 'csv:/etc/passwd', not a "
                                                 "registered one.*pass --dataset"):
        attack.data_config(tmp_path, "", "")
    chosen = attack.data_config(tmp_path, "", "sst2")
    assert (chosen.dataset, chosen.tfds_data_dir, chosen.tfds_download) == ("sst2", "", False)
    assert not (tmp_path / "made").exists()
