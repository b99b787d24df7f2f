"""A TensorFlow-free tokenizer that follows `tokenizer.json` the way a phone app would.

It reads only the bundle's spec and vocabulary and uses the standard library alone, so it
doubles as executable documentation of the spec; `pipeline.predict` and the tests use it.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path


class ReferenceTokenizer:
    def __init__(self, spec: dict, vocabulary: list[str]):
        self.spec = spec
        self.vocabulary = {token: i for i, token in enumerate(vocabulary)}
        self.ignorable = [tuple(r) for r in spec["default_ignorable_ranges"]]
        self.whitespace = set(spec["whitespace"])
        self.punct_ranges = [(ord(lo), ord(hi)) for lo, hi in spec["punctuation_ascii_ranges"]]
        self.punct_categories = set(spec["punctuation_categories"])

    @classmethod
    def from_bundle(cls, bundle_dir) -> "ReferenceTokenizer":
        return cls(*read_spec_and_vocabulary(bundle_dir))

    def _is_punctuation(self, char: str) -> bool:
        code = ord(char)
        return (any(lo <= code <= hi for lo, hi in self.punct_ranges)
                or unicodedata.category(char) in self.punct_categories)

    def _is_delimiter(self, char: str) -> bool:
        return (char in self.whitespace
                or unicodedata.category(char) in self.spec["whitespace_categories"])

    def split(self, text: str) -> list[str]:
        words, current = [], []
        for char in text:
            punctuation = self._is_punctuation(char)
            if punctuation or self._is_delimiter(char):
                if current:
                    words.append("".join(current))
                    current = []
                if punctuation:
                    words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
        return words

    def casefold(self, word: str) -> str:
        word = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())
        return "".join(c for c in word
                       if not any(lo <= ord(c) <= hi for lo, hi in self.ignorable))

    def wordpiece(self, word: str) -> list[int]:
        if not word:
            return []
        oov = [self.spec["oov_id"]]
        if len(word.encode("utf-8")) > self.spec["max_bytes_per_word"]:
            return oov
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else \
                    self.spec["suffix_indicator"] + word[start:end]
                if piece in self.vocabulary:
                    ids.append(self.vocabulary[piece])
                    start = end
                    break
            else:
                return oov
        return ids

    def words(self, text: str) -> list[str]:
        """Steps 0-3 of the spec: rewrites, accents, splitting, case folding."""
        for pattern, replacement in self.spec["rewrites"]:
            text = re.sub(pattern, replacement, text)
        if self.spec["strip_accents"]:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        words = self.split(text)
        return [self.casefold(w) for w in words] if self.spec["lowercase"] else words

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in self.words(text):
            ids.extend(self.wordpiece(word))
        length = self.spec["max_length"]
        ids = ids[:length]
        return [self.spec["pad_id"]] * (length - len(ids)) + ids


def read_vocabulary(path, spec: dict) -> list[str]:
    """vocab.txt as the spec describes it: plain lines, or one JSON string per line."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")[:spec["vocabulary_size"]]
    if spec.get("vocabulary_line_format") == "json":
        return [json.loads(line) for line in lines]
    return lines


def read_spec_and_vocabulary(folder) -> tuple[dict, list[str]]:
    """tokenizer.json and the vocabulary it names, from a bundle or a run's data/ folder."""
    folder = Path(folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    return spec, read_vocabulary(folder / spec["vocabulary_file"], spec)


class CharacterTokenizer:
    """The `characters` spec: one id per code point, unknown characters to oov_id."""

    def __init__(self, spec: dict, vocabulary: list[str]):
        self.spec, self.vocabulary = spec, vocabulary
        self.ids = {char: i for i, char in enumerate(vocabulary) if i != spec["oov_id"]}

    @classmethod
    def from_bundle(cls, bundle_dir) -> "CharacterTokenizer":
        return cls(*read_spec_and_vocabulary(bundle_dir))

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(char, self.spec["oov_id"]) for char in text]

    def unknown(self, text: str) -> list[str]:
        """The characters of `text` the vocabulary lacks, each once, in order of appearance."""
        return list(dict.fromkeys(char for char in text if char not in self.ids))

    def decode(self, ids) -> str:
        return "".join(self.vocabulary[i] for i in ids)
