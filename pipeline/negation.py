"""Negated copies of short training phrases, with the opposite label.

SST-2's training rows are phrases of the treebank, and two thirds of those holding "not"
are negative, so a model learns "not" as a negative word: "not bad" comes out negative
(BUILD.md, issue 13). Negating short polar phrases of the training split ("drab" →
"it 's not drab", positive) shows the model what negation does to polarity.

The behavioural suite's adjectives are never used, and none of its sentence forms with a
distant negation ("I don't think the movie is bad.") is written here, so the suite measures
whether the model generalises negation to words and forms it was not shown negated.
"""
from __future__ import annotations

import numpy as np

from pipeline import behaviour

# Local negations, in SST-2's own spelling (lower case, PTB contractions split: "is n't").
FORMS = ("not {phrase}", "is not {phrase}", "is n't {phrase}", "was n't {phrase}",
         "it 's not {phrase}", "it was not {phrase}", "never {phrase}",
         "does n't seem {phrase}")
# Words that negate what follows; the attack never replaces them either (pipeline.robustness).
NEGATIONS = frozenset(("not", "n't", "no", "never", "nothing", "none", "nobody", "nor",
                       "neither", "without", "hardly", "barely"))
CONTRAST = frozenset(("but",))
MAX_PHRASE_WORDS = 2


def negatable(text: str, held_out: frozenset[str]) -> bool:
    """A phrase of 1–2 alphabetic words (hyphens allowed) that holds no negation or
    contrast of its own and no word the behavioural suite tests."""
    words = text.split()
    return (1 <= len(words) <= MAX_PHRASE_WORDS
            and all(w.replace("-", "").isalpha() for w in words)
            and not any(w in NEGATIONS or w in CONTRAST or w in held_out for w in words))


def negated_examples(texts: list[str], labels: np.ndarray, label_names: list[str],
                     count: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Up to `count` negated phrases (distinct phrases, a seeded form each) whose label is
    the other of the two; empty when the split holds no short phrase."""
    position = {name: label_names.index(name) for name in behaviour.LABELS}
    flip = {position["negative"]: position["positive"],
            position["positive"]: position["negative"]}
    held_out = frozenset(behaviour.POSITIVE + behaviour.NEGATIVE + behaviour.INTENSIFIERS)
    phrases = {}
    for text, label in zip(texts, labels):
        phrase = " ".join(text.lower().split())
        if negatable(phrase, held_out):
            phrases.setdefault(phrase, set()).add(int(label))
    # A phrase labelled both ways says nothing about its polarity.
    polar = sorted((phrase, min(found)) for phrase, found in phrases.items() if len(found) == 1)
    rng = np.random.default_rng([seed, 7])
    picks = rng.permutation(len(polar))[:count]
    forms = rng.integers(len(FORMS), size=len(picks))
    negated = [FORMS[form].format(phrase=polar[i][0]) for i, form in zip(picks, forms)]
    return negated, np.asarray([flip[polar[i][1]] for i in picks], dtype=np.int64)
