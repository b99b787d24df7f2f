"""Behavioural tests of a sentiment model, written from templates (after CheckList,
Ribeiro et al. 2020): does it get plain polarity, negation, contrast, intensifiers and
typos right? Accuracy on a test split hides these; each category here isolates one.

Every case has the label a reader would give: "The plot was not bad." is positive, "The
acting is good, but the story is dull." negative (the clause after "but" decides).
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

SUBJECTS = ("the movie", "this film", "the acting", "the story", "the plot", "the script",
            "the ending", "the cast")
POSITIVE = ("good", "great", "wonderful", "excellent", "brilliant", "enjoyable", "funny",
            "beautiful", "charming", "clever", "fantastic", "moving")
NEGATIVE = ("bad", "terrible", "awful", "boring", "dull", "horrible", "stupid", "poor",
            "tedious", "weak", "lame", "disappointing")
INTENSIFIERS = ("very", "really", "incredibly", "truly")
CASES_PER_CATEGORY = 120
LABELS = ("negative", "positive")


def _typo(word: str) -> str:
    """Swaps two different neighbouring letters nearest the middle (never the first one):
    a common slip of the thumb."""
    middle = len(word) // 2
    for i in sorted(range(1, len(word) - 1), key=lambda i: abs(i - middle)):
        if word[i] != word[i + 1]:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    raise ValueError(f"{word!r} has no two different letters to swap")


def _templates():
    """category → generator of (text, label) with label 1 positive, 0 negative."""
    def each(adjectives):
        return itertools.product(SUBJECTS, ("is", "was"), adjectives)

    def plain():
        for words, label in ((POSITIVE, 1), (NEGATIVE, 0)):
            for subject, verb, adjective in each(words):
                yield f"{subject.capitalize()} {verb} {adjective}.", label

    def negated(words, label):
        forms = ("{S} {v} not {a}.", "{S} {v}n't {a}.", "I don't think {s} {v} {a}.",
                 "{S} {v} not {a} at all.", "I did not find {s} {a}.")
        for (subject, verb, adjective), form in itertools.product(each(words), forms):
            yield form.format(S=subject.capitalize(), s=subject, v=verb, a=adjective), label

    def contrast():
        for (first, verb, good), second, bad in itertools.product(
                each(POSITIVE), SUBJECTS, NEGATIVE):
            if first != second:
                yield f"{first.capitalize()} {verb} {good}, but {second} {verb} {bad}.", 0
                yield f"{first.capitalize()} {verb} {bad}, but {second} {verb} {good}.", 1

    def intensified():
        for (words, label), intensifier in itertools.product(((POSITIVE, 1), (NEGATIVE, 0)),
                                                              INTENSIFIERS):
            for subject, verb, adjective in each(words):
                yield f"{subject.capitalize()} {verb} {intensifier} {adjective}.", label

    def typos():
        for words, label in ((POSITIVE, 1), (NEGATIVE, 0)):
            for subject, verb, adjective in each(words):
                yield f"{subject.capitalize()} {verb} {_typo(adjective)}.", label

    return {"plain": plain, "negated_positive": lambda: negated(POSITIVE, 0),
            "negated_negative": lambda: negated(NEGATIVE, 1), "contrast": contrast,
            "intensifier": intensified, "typo": typos}


@functools.lru_cache(maxsize=None)  # every model of a run meets the same cases: build once
def cases(seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """CASES_PER_CATEGORY cases per category, as many of each label as the category has
    labels, drawn without replacement (fixed seed)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for category, make in _templates().items():
        by_label: dict[int, list] = {}
        for text, label in dict.fromkeys(make()):  # a form without the verb repeats
            by_label.setdefault(label, []).append((text, label))
        share = CASES_PER_CATEGORY // len(by_label)
        chosen[category] = []
        for label in sorted(by_label):
            every = by_label[label]
            picks = rng.choice(len(every), size=min(share, len(every)), replace=False)
            chosen[category] += [every[i] for i in sorted(picks)]
    return chosen


def applies(label_names: list[str]) -> bool:
    """The suite speaks of negative and positive; other label sets are not tested."""
    return sorted(label_names) == sorted(LABELS)


def run_suite(probabilities_of, label_names: list[str]) -> dict:
    """Accuracy per category for a classifier `probabilities_of(text) -> probabilities`.

    "negation" pools both negated categories; "failures" lists a few missed cases each.
    """
    position = {name: label_names.index(name) for name in LABELS}
    result: dict = {"categories": {}, "failures": {}}
    suite = cases()
    for category, examples in suite.items():
        missed = []
        for text, label in examples:
            if int(np.argmax(probabilities_of(text))) != position[LABELS[label]]:
                missed.append(text)
        result["categories"][category] = 1.0 - len(missed) / len(examples)
        result["failures"][category] = missed[:5]
    categories = result["categories"]
    result["negation"] = (categories["negated_positive"] + categories["negated_negative"]) / 2
    result["plain"] = categories["plain"]
    result["cases"] = {category: len(examples) for category, examples in suite.items()}
    return result
