"""How easily a shipped sentiment model is fooled: random noise, and a black-box attack.

Everything here only queries class probabilities, as anyone holding the .tflite can:
- noise: character typos (swap, drop, insert, keyboard neighbour, or "typo": one of the
  four at random) and word drops at a rate, each deterministic for a seed;
- two named attacks, each a greedy word substitution in the order of word importance (how
  much leaving the word out lowers the true class) under a budget of changed words (at
  most a fifth of the sentence) and queries, after the black-box attacks of Jin et al.
  2020 (TextFooler) and Gao et al. 2018 (DeepWordBug):
  - "synonym": replacements that keep the meaning, from `pipeline.lexicon` (counter-fitted
    neighbours that are WordNet synonyms of the word's top senses, of its VADER polarity);
  - "typo": one typo of each kind per word.

Raw GloVe neighbours include antonyms ("good" and "bad" sit close), which would turn a
review around instead of fooling the model: the lexicon's constraints keep them out, and
stop words, negations and capitalised words inside a sentence (names) are never touched.
A person should still read the saved samples.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Protocol

import numpy as np

from pipeline import negation
from pipeline.config import NOISE_KINDS

TYPO_KINDS = NOISE_KINDS[:4]  # swap, drop, insert, keyboard; then word_drop
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_ATTACK_LENGTH = 3  # shorter words (a, is, of ...) are left alone, and so are these:
FUNCTION_WORDS = frozenset(
    "the and but for are was were this that with its has have had his her him they them "
    "their you your our from into than then there these those which who what when where "
    "why how can will would could should about above after again against all also any "
    "because been before being below between both does did doing down during each few "
    "further here hers herself himself itself just more most myself once only other ours "
    "ourselves over own same she some such themselves through too under until very while "
    "whom yours yourself yourselves upon onto off out".split())
ATTACKS = ("synonym", "typo")
NEVER_REPLACED = negation.NEGATIONS | FUNCTION_WORDS  # the attack leaves these words alone
WORD = re.compile(r"[A-Za-z]+")

Probabilities = Callable[[str], "np.ndarray | None"]
BatchProbabilities = Callable[[list[str]], list]  # texts → one Probabilities answer each
Progress = Callable[[int, int], None]  # (done, of how many)


def _keyboard_neighbours() -> dict[str, str]:
    """Letters beside each letter on a QWERTY keyboard (same row and the rows above/below)."""
    position = {c: (r, i) for r, row in enumerate(KEYBOARD_ROWS) for i, c in enumerate(row)}
    return {c: "".join(d for d, (s, j) in position.items()
                       if d != c and abs(s - r) <= 1 and abs(j - i) <= 1)
            for c, (r, i) in position.items()}


KEYBOARD = _keyboard_neighbours()


def typo(word: str, kind: str, rng: np.random.Generator) -> str:
    """One typo of `kind` at a random letter; words of one letter are returned unchanged."""
    if len(word) < 2:
        return word
    i = int(rng.integers(len(word) - 1 if kind == "swap" else len(word)))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + LETTERS[int(rng.integers(26))] + word[i:]
    if kind == "keyboard":
        lower = word[i].lower()
        if lower not in KEYBOARD:
            return word
        options = KEYBOARD[lower]
        new = options[int(rng.integers(len(options)))]
        return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]
    raise ValueError(f"unknown typo kind {kind!r} (one of {', '.join(TYPO_KINDS)})")


def perturb(text: str, kind: str, rate: float, rng: np.random.Generator) -> str:
    """`text` with each alphabetic word typo'd (or, for word_drop, dropped) with probability
    `rate`. word_drop keeps at least one word; the label a reader gives stays the same."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r} (one of {', '.join(NOISE_KINDS)})")
    if kind == "word_drop":
        words = text.split()
        kept = [w for w in words if rng.random() >= rate]
        return " ".join(kept or words[:1])
    def hit(word: str) -> str:
        chosen = TYPO_KINDS[int(rng.integers(len(TYPO_KINDS)))] if kind == "typo" else kind
        return typo(word, chosen, rng)

    return WORD.sub(lambda m: hit(m.group()) if rng.random() < rate else m.group(), text)


def noise_accuracy(probabilities_of: Probabilities, texts: list[str], labels: np.ndarray,
                   rates: tuple[float, ...], seed: int) -> dict:
    """Accuracy under each kind of noise at each rate (one seeded draw per text)."""
    def accuracy(batch: list[str]) -> float:
        hits = [p is not None and int(np.argmax(p)) == label
                for p, label in zip(map(probabilities_of, batch), labels)]
        return float(np.mean(hits))

    result = {"clean": accuracy(texts), "seed": seed}
    for kind in NOISE_KINDS:
        for rate in rates:
            rng = np.random.default_rng([seed, NOISE_KINDS.index(kind), int(rate * 1000)])
            result[f"{kind}@{rate:g}"] = accuracy([perturb(t, kind, rate, rng) for t in texts])
    return result


def augment(texts: list[str], labels: np.ndarray, kinds: tuple[str, ...], rate: float,
            copies: int, seed: int) -> tuple[list[str], np.ndarray]:
    """The sentences followed by `copies` noisy copies per kind (same labels), seeded, for
    training a model that reads noise as the attack and typing thumbs make it."""
    all_texts, all_labels = list(texts), [np.asarray(labels)]
    for kind in kinds:
        for copy in range(copies):
            rng = np.random.default_rng([seed, NOISE_KINDS.index(kind), copy])
            all_texts += [perturb(text, kind, rate, rng) for text in texts]
            all_labels.append(np.asarray(labels))
    return all_texts, np.concatenate(all_labels)


class Substitutes(Protocol):
    """Where the synonym attack's replacements come from (`pipeline.lexicon.Lexicon`)."""

    def substitutes(self, word: str, count: int, min_similarity: float) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class Budget:
    max_words: int = 3          # words changed at most, and
    max_fraction: float = 0.2   # at most this share of the sentence's words (at least one)
    max_queries: int = 300      # model calls at most, leave-one-out included
    candidates: int = 50        # nearest counter-fitted neighbours looked at per word
    min_similarity: float = 0.5  # their cosine similarity at least (TextFooler's settings)
    typos_per_word: int = 4     # one per TYPO_KIND

    def words_for(self, tokens: int) -> int:
        return min(self.max_words, max(1, int(self.max_fraction * tokens)))


def budgets(max_words: int, max_queries: int) -> dict[str, Budget]:
    """Each named attack's budget: the synonym attack tries no typos, the typo attack no
    synonyms (it is given no Substitutes)."""
    return {"synonym": Budget(max_words=max_words, max_queries=max_queries, typos_per_word=0),
            "typo": Budget(max_words=max_words, max_queries=max_queries)}


def named_attack(name: str, probabilities_of: Probabilities, texts: list[str],
                 labels: np.ndarray, lexicon: Substitutes, budgets: dict[str, Budget],
                 seed: int, samples: int, progress: Progress | None = None) -> dict:
    """`attack` as the named attack: the synonym attack draws on `lexicon`, the typo
    attack on typos alone."""
    return attack(probabilities_of, texts, labels, lexicon if name == "synonym" else None,
                  budgets[name], seed, samples=samples, progress=progress)


def candidates(word: str, substitutes: Substitutes | None, budget: Budget,
               rng: np.random.Generator) -> list[str]:
    """Replacements for one word: synonyms that keep its meaning and polarity, then one
    typo of each kind; same case pattern as the word for the first letter."""
    found = []
    if substitutes is not None:
        found = substitutes.substitutes(word.lower(), budget.candidates,
                                        budget.min_similarity)
        if word[:1].isupper():
            found = [w.capitalize() for w in found]
    found += [typo(word, kind, rng) for kind in TYPO_KINDS[:budget.typos_per_word]]
    seen, unique = {word}, []
    for w in found:
        if w not in seen:
            seen.add(w)
            unique.append(w)
    return unique


def attack_steps(text: str, label: int, substitutes: Substitutes | None, budget: Budget,
                 seed: int):
    """The attack on one text as a generator, so callers choose how queries run.

    Greedy substitution of the most important words until the prediction flips or the
    budget runs out; tokens are split on whitespace, punctuation stays attached. Yields
    (texts, stop) requests and is sent their probabilities (None: the model could not
    read a text) in order; a caller may answer only a prefix that ends where `stop` holds.
    Returns the outcome. Queries count as if asked one at a time, stopping at the first
    flip, so every caller gets the same outcome for the same answers.
    """
    rng = np.random.default_rng(seed)
    tokens = text.split()

    def true_probabilities(answers) -> list[float]:
        return [0.5 if p is None else float(p[label]) for p in answers]

    def flipped(p) -> bool:
        return p is not None and float(p[label]) < 0.5

    def is_target(position: int, token: str) -> bool:
        word = WORD.fullmatch(token.strip(".,!?;:\"'()"))
        return bool(word) and len(word.group()) >= MIN_ATTACK_LENGTH and \
            word.group().lower() not in NEVER_REPLACED and \
            not (position > 0 and word.group()[:1].isupper())  # a name

    (current,) = true_probabilities((yield [" ".join(tokens)], None))
    queries = 1
    targets = [i for i, t in enumerate(tokens) if is_target(i, t)]
    max_words = budget.words_for(len(tokens))
    targets = targets[:max(0, budget.max_queries - queries)]
    left_out = [" ".join(tokens[:i] + tokens[i + 1:]) for i in targets]
    answers = true_probabilities((yield left_out, None)) if left_out else []
    queries += len(answers)
    importance = {i: current - p for i, p in zip(targets, answers)}
    changed: list[dict] = []
    for i in sorted(importance, key=lambda i: -importance[i]):
        if len(changed) >= max_words or current < 0.5 or \
                queries >= budget.max_queries:
            break
        token = tokens[i]
        core = token.strip(".,!?;:\"'()")
        start = token.index(core)
        trials = [tokens[:i] + [token[:start] + replacement + token[start + len(core):]] +
                  tokens[i + 1:] for replacement in candidates(core, substitutes, budget, rng)]
        trials = trials[:budget.max_queries - queries]
        answers = true_probabilities((yield [" ".join(t) for t in trials], flipped)) \
            if trials else []
        best, best_probability = None, current
        for trial, probability in zip(trials, answers):
            queries += 1
            if probability < best_probability:
                best, best_probability = trial, probability
                if probability < 0.5:
                    break
        if best is not None:
            changed.append({"from": token, "to": best[i]})
            tokens, current = best, best_probability
    return {"success": current < 0.5, "words_changed": len(changed), "queries": queries,
            "changes": changed, "adversarial": " ".join(tokens),
            "true_probability": current}


def attack_one(probabilities_of: Probabilities, text: str, label: int,
               substitutes: Substitutes | None, budget: Budget, seed: int) -> dict:
    """The attack on one text, one query at a time (how a batch-1 .tflite is asked)."""
    steps = attack_steps(text, label, substitutes, budget, seed)
    request = next(steps)
    while True:
        texts, stop = request
        answers = []
        for candidate in texts:
            answers.append(probabilities_of(candidate))
            if stop is not None and stop(answers[-1]):
                break
        try:
            request = steps.send(answers)
        except StopIteration as outcome:
            return outcome.value


def _attack_all_at_once(batch_probabilities: BatchProbabilities,
                        jobs: list[tuple[str, int, int]], substitutes: Substitutes | None,
                        budget: Budget, progress: Progress | None = None) -> list[dict]:
    """The attacks on (text, label, seed) jobs side by side: each round sends the queries
    of every unfinished attack to one `batch_probabilities` call."""
    running = [attack_steps(text, label, substitutes, budget, seed)
               for text, label, seed in jobs]
    requests = {n: next(steps)[0] for n, steps in enumerate(running)}
    outcomes: dict[int, dict] = {}
    while requests:
        asked = list(requests.items())
        answers = batch_probabilities([text for _, batch in asked for text in batch])
        requests, position = {}, 0
        for n, batch in asked:
            mine, position = answers[position:position + len(batch)], position + len(batch)
            try:
                requests[n] = running[n].send(mine)[0]
            except StopIteration as outcome:
                outcomes[n] = outcome.value
        if progress is not None:
            progress(len(outcomes), len(jobs))
    return [outcomes[n] for n in range(len(jobs))]


def attack(probabilities_of: Probabilities, texts: list[str], labels: np.ndarray,
           substitutes: Substitutes | None, budget: Budget, seed: int, samples: int = 20,
           progress: Progress | None = None) -> dict:
    """The attack on every text the model gets right, one query at a time; accuracy under
    attack counts the others as already lost. `samples` successful examples, chosen at
    random (seeded), are kept for a person to judge."""
    results = []
    for number, (text, label) in enumerate(zip(texts, labels)):
        p = probabilities_of(text)
        if p is None or int(np.argmax(p)) != int(label):
            continue
        outcome = attack_one(probabilities_of, text, int(label), substitutes, budget,
                             seed + number)
        results.append({"text": text, "label": int(label), **outcome})
        if progress is not None:
            progress(len(results), len(texts))
    return _summary(results, len(texts), budget, seed, samples)


def attack_in_batches(batch_probabilities: BatchProbabilities, texts: list[str],
                      labels: np.ndarray, substitutes: Substitutes | None, budget: Budget,
                      seed: int, samples: int = 20, progress: Progress | None = None) -> dict:
    """`attack` with the queries of all texts sent together (for a model that takes
    batches): the same result for a model that gives the same answers. `progress` hears
    (attacks finished, attacks) after each round."""
    clean = batch_probabilities(list(texts))
    chosen = [n for n, p in enumerate(clean)
              if p is not None and int(np.argmax(p)) == int(labels[n])]
    outcomes = _attack_all_at_once(
        batch_probabilities, [(texts[n], int(labels[n]), seed + n) for n in chosen],
        substitutes, budget, progress)
    results = [{"text": texts[n], "label": int(labels[n]), **outcome}
               for n, outcome in zip(chosen, outcomes)]
    return _summary(results, len(texts), budget, seed, samples)


def _summary(results: list[dict], sentences: int, budget: Budget, seed: int,
             samples: int) -> dict:
    attacked = len(results)
    wins = [r for r in results if r["success"]]
    return {
        "sentences": sentences, "correct": attacked,
        "clean_accuracy": attacked / sentences,
        "accuracy_under_attack": (attacked - len(wins)) / sentences,
        "success_rate": len(wins) / attacked if attacked else 0.0,
        "words_changed_per_success": float(np.mean([r["words_changed"] for r in wins]))
        if wins else None,
        "queries_per_success": float(np.mean([r["queries"] for r in wins])) if wins else None,
        "queries_per_sentence": float(np.mean([r["queries"] for r in results]))
        if results else None,
        "budget": dataclasses.asdict(budget), "seed": seed,
        # a seeded random choice, so a reader judges typical successes, not the first ones
        "samples": [{k: wins[i][k] for k in ("text", "adversarial", "label", "changes")}
                    for i in sorted(np.random.default_rng(seed).permutation(len(wins))
                                    [:samples])],
    }
