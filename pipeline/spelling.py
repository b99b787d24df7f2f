"""Typo correction as the tokenizer spec describes it (standard library only).

A word the vocabulary lacks is replaced by the nearest correction target: the smallest
edit distance first, then the smallest id (ids rank the training split's words by
frequency), so every client that follows the spec picks the same word. The distance is
the optimal string alignment distance (insertions, deletions, substitutions and swaps of
two adjacent characters each cost 1), which counts the four typo kinds of
`pipeline.robustness` as one edit each. Targets are found with symmetric deletes
(SymSpell's idea, Garbe 2012): two words within distance d share a string obtained from
each by deleting at most d characters.
"""
from __future__ import annotations

from itertools import combinations

ANSWERS_KEPT = 100_000  # words whose answer is remembered, so one text cannot fill memory


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance between two strings."""
    previous2, previous = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def _deletes(word: str, most: int) -> set[str]:
    """`word` with 0 to `most` of its characters deleted."""
    return {"".join(c for k, c in enumerate(word) if k not in gone)
            for n in range(min(most, len(word)) + 1)
            for gone in combinations(range(len(word)), n)}


class Corrector:
    """Maps an out-of-vocabulary word to its correction target, or None.

    `targets` are (id, word) pairs; a word shorter than `min_length` or longer than
    `max_length` characters, or with a character that is not a letter, is never
    corrected; words of at most `short_length` characters allow distance 1, longer ones
    `max_distance`."""

    def __init__(self, targets: list[tuple[int, str]], min_length: int, max_length: int,
                 short_length: int, max_distance: int):
        self.min_length, self.max_length = min_length, max_length
        self.short_length = short_length
        self.max_distance = max_distance
        self.targets = dict(targets)
        self.index: dict[str, list[int]] | None = None  # built at the first lookup
        self.answers: dict[str, str | None] = {}

    def _build(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for token_id, word in sorted(self.targets.items()):
            for key in _deletes(word, self.max_distance):
                index.setdefault(key, []).append(token_id)
        return index

    def allowed(self, word: str) -> int:
        return 1 if len(word) <= self.short_length else self.max_distance

    def correct(self, word: str) -> str | None:
        """The target nearest to `word` (ties: the smaller id), or None."""
        if not self.min_length <= len(word) <= self.max_length or not word.isalpha():
            return None
        if word not in self.answers:
            if len(self.answers) >= ANSWERS_KEPT:
                self.answers.clear()
            if self.index is None:
                self.index = self._build()
            limit = self.allowed(word)
            best = None
            seen = set()
            for key in _deletes(word, limit):
                for token_id in self.index.get(key, ()):
                    if token_id in seen:
                        continue
                    seen.add(token_id)
                    distance = osa_distance(word, self.targets[token_id])
                    if distance <= limit and (best is None or (distance, token_id) < best):
                        best = (distance, token_id)
            self.answers[word] = None if best is None else self.targets[best[1]]
        return self.answers[word]
