"""Texts longer than the model's window: the policy's spec entry and an honest test set.

SST-2's sentences are short, so the long-text policy is validated on paragraphs built from
validation sentences (never test): some of one label, some mixed with a clear majority
(the majority is the label). Both are longer than a window, like a full review.
"""
from __future__ import annotations

import numpy as np

SENTENCES = (6, 10)   # sentences per paragraph, inclusive
PARAGRAPHS = 200      # per kind
MAJORITY = 0.75       # share of a mixed paragraph's sentences that carry its label


def spec_entry(config) -> dict:
    """tokenizer.json's long_text entry for the evaluate settings (and --max_length)."""
    if config.eval.long_text == "first":
        return {"policy": "first",
                "meaning": "score the first max_length ids only; the rest is not read"}
    stride = config.eval.long_text_stride or max(1, config.tokenizer.max_length // 2)
    return {"policy": "windows", "stride": stride,
            "max_windows": config.eval.long_text_max_windows, "combine": "mean",
            "meaning": "a text longer than max_length ids: score windows of max_length ids "
                       "starting every stride ids, plus one ending at the last id (at most "
                       "max_length + (max_windows - 1) * stride ids are read), and average "
                       "the probabilities; a shorter text is one left-padded input"}


LENGTH_STEP = 4  # length-aware inputs: multiples of 4 ids (few interpreters, little padding)
# Pads a length-aware input keeps before the text. The model trains on these inputs
# (pipeline.tasks.sentiment's `bucketed_batches`), so none are needed; a model trained only
# on max_length inputs max-pooled over pad steps it never saw shortened and needed 4.
MIN_PADS = 0
CUT_SHARE = 0.5  # training batches cut to their length bucket; the rest stay max_length


def length_buckets(max_length: int) -> dict:
    """tokenizer.json's length_buckets entry: the input lengths a short text may use."""
    return {"lengths": [*range(LENGTH_STEP, max_length, LENGTH_STEP), max_length],
            "min_pads": MIN_PADS,
            "meaning": "a text of at most max_length ids (or the first window) is padded on "
                       "the left only up to the smallest of these lengths that holds its "
                       "ids plus min_pads pads (max_length if none does), and the model "
                       "runs with its input resized to [1, length] "
                       "(LiteRT: resize the input tensor, then allocate tensors; keep one "
                       "interpreter per length): the LSTM takes that many steps, not "
                       "max_length. Padding to max_length also works (the model trained on "
                       "both); the answers differ slightly (BUILD.md measures it)"}


def input_lengths(counts: np.ndarray, max_length: int) -> np.ndarray:
    """The length-aware input length for texts of `counts` ids (as tokenizer.json's
    length_buckets entry says, vectorised for training)."""
    lengths = np.asarray(length_buckets(max_length)["lengths"])
    needed = np.asarray(counts) + MIN_PADS
    return lengths[np.minimum(np.searchsorted(lengths, needed), len(lengths) - 1)]


def build_paragraphs(texts: list[str], labels: np.ndarray, seed: int) -> list[dict]:
    """PARAGRAPHS paragraphs of one label and PARAGRAPHS mixed ones, from labelled sentences."""
    rng = np.random.default_rng(seed)
    by_label = {int(label): [t for t, y in zip(texts, labels) if y == label]
                for label in np.unique(labels)}
    paragraphs = []
    for kind in ("one_label", "mixed"):
        for number in range(PARAGRAPHS):
            label = sorted(by_label)[number % len(by_label)]
            count = int(rng.integers(SENTENCES[0], SENTENCES[1] + 1))
            major = count if kind == "one_label" else int(np.ceil(count * MAJORITY))
            others = [y for y in by_label if y != label]
            chosen = [(label, by_label[label][int(rng.integers(len(by_label[label])))])
                      for _ in range(major)]
            for _ in range(count - major):
                other = others[int(rng.integers(len(others)))]
                chosen.append((other, by_label[other][int(rng.integers(len(by_label[other])))]))
            order = rng.permutation(len(chosen))
            paragraphs.append({"kind": kind, "label": label,
                               "text": " ".join(chosen[i][1] for i in order)})
    return paragraphs


def mean_probabilities(runner, windows: list[list[int]]) -> np.ndarray:
    """The model's probabilities averaged over a text's inputs (its long-text windows)."""
    return np.mean([runner(np.asarray(ids, dtype=np.int32)) for ids in windows], axis=0)


def classify(runner, windows_of, text: str) -> tuple[np.ndarray, int]:
    """Mean probabilities over the inputs `windows_of(text)` makes (a tokenizer's
    `encode_windows`: its long_text policy), and how many inputs that took."""
    windows = windows_of(text)
    return mean_probabilities(runner, windows), len(windows)


def accuracy(runner, windows_of, paragraphs: list[dict]) -> dict:
    """Accuracy per paragraph kind and overall, and the mean count of inputs per paragraph."""
    hits: dict[str, list[bool]] = {}
    inputs = []
    for paragraph in paragraphs:
        probabilities, count = classify(runner, windows_of, paragraph["text"])
        inputs.append(count)
        hits.setdefault(paragraph["kind"], []).append(
            int(np.argmax(probabilities)) == paragraph["label"])
    result = {kind: float(np.mean(values)) for kind, values in hits.items()}
    result["all"] = float(np.mean([v for values in hits.values() for v in values]))
    result["inputs_per_text"] = float(np.mean(inputs))
    return result
