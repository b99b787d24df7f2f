"""A TensorFlow-free tokenizer that follows `tokenizer.json` the way a phone app would.

It reads only the bundle's spec and vocabulary and uses the standard library alone, so it
doubles as executable documentation of the spec; `pipeline.predict` and the tests use it.
A bundle is untrusted input here: every file it names must lie inside it, and the only
regular expressions it may ask for are the documented REWRITES.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from pipeline.artifacts import JsonError, parse_json
from pipeline.spelling import Corrector

# The Penn Treebank rewrites that make raw text meet SST-2's spelling (didn't -> did n't,
# ’ -> '). These are the only patterns a tokenizer.json may list: a pattern from a file
# could backtrack for hours on a crafted text.
REWRITES = (("\u2019", "'"), ("([A-Za-z])([nN]'[tT])", "\\1 \\2"))
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class SpecError(ValueError):
    """A tokenizer spec or bundle file name is unusable; the message names it."""


def bundle_file(folder, name) -> Path:
    """`folder/name` for a plain file name; anything that could leave the folder is refused."""
    if not isinstance(name, str) or name in ("", ".", "..") or \
            any(c in name for c in "/\\\0:") or Path(name).is_absolute():
        raise SpecError(f"{name!r} is not a plain file name inside the bundle; a bundle may "
                        "name only its own files")
    path = Path(folder) / name
    if path.is_symlink():
        raise SpecError(f"{path} is a link; a bundle holds only plain files (a link could "
                        "read any file on the device)")
    return path


def clean_text(text: str) -> str:
    """Step 0 of the spec: a lone surrogate (not a Unicode character) becomes U+FFFD."""
    return LONE_SURROGATE.sub("\ufffd", text)


MAX_LENGTH = 4096      # ids per model input a spec may ask for
MAX_WINDOWS = 64       # long-text windows a spec may ask for (each is one model call)
LONG_TEXT_POLICIES = ("first", "windows")
CORRECTION_FIELDS = ("min_length", "max_length", "short_length", "max_distance", "targets")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _ranges(value, kind) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, kind) for x in pair)
        for pair in value)


# Every field a tokenizer reads, per algorithm, and what it must hold.
SPEC_FIELDS = {
    "wordpiece": {"max_length": lambda v: _whole(v) and 1 <= v <= MAX_LENGTH,
                  "lowercase": lambda v: isinstance(v, bool),
                  "strip_accents": lambda v: isinstance(v, bool),
                  "max_bytes_per_word": lambda v: _whole(v) and v >= 1,
                  "suffix_indicator": lambda v: isinstance(v, str),
                  "rewrites": lambda v: isinstance(v, list) and all(
                      isinstance(r, list) and len(r) == 2 and _strings(r) for r in v),
                  "whitespace": _strings, "whitespace_categories": _strings,
                  "punctuation_categories": _strings,
                  "punctuation_ascii_ranges": lambda v: _ranges(v, str) and all(
                      len(a) == len(b) == 1 for a, b in v),
                  "default_ignorable_ranges": lambda v: _ranges(v, int)},
    "characters": {},
}


def check_spec(spec, vocabulary: list[str]) -> None:
    """Every field a tokenizer reads, its type and range, against the vocabulary; raises
    SpecError naming the first wrong one. A bundle is untrusted: a wrong field must be
    one clear error, not a crash half-way through a text or an unbounded amount of work."""
    if not isinstance(spec, dict) or spec.get("algorithm") not in SPEC_FIELDS:
        raise SpecError(f"tokenizer.json: algorithm {spec.get('algorithm') if isinstance(spec, dict) else spec!r} "
                        f"is not one of {', '.join(SPEC_FIELDS)}")
    size = len(vocabulary)
    checks = {**SPEC_FIELDS[spec["algorithm"]],
              "vocabulary_size": lambda v: _whole(v) and v == size,
              "oov_id": lambda v: _whole(v) and 0 <= v < size}
    if spec["algorithm"] == "wordpiece":
        checks["pad_id"] = lambda v: _whole(v) and 0 <= v < size
    if spec["algorithm"] == "characters":
        checks["oov_token"] = lambda v: isinstance(v, str)
    for field, accepts in checks.items():
        if field not in spec:
            raise SpecError(f"tokenizer.json has no {field}; copy the bundle again from the run")
        if not accepts(spec[field]):
            raise SpecError(f"tokenizer.json: {field}={spec[field]!r} is not a valid value "
                            f"(vocabulary of {size} ids); copy the bundle again from the run")
    correction = spec.get("typo_correction")
    if correction is not None and not (
            isinstance(correction, dict) and
            all(_whole(correction.get(k)) for k in CORRECTION_FIELDS) and
            1 <= correction["min_length"] <= correction["max_length"] <= 100 and
            1 <= correction["short_length"] and 1 <= correction["max_distance"] <= 3 and
            2 <= correction["targets"] <= size):
        raise SpecError(f"tokenizer.json: typo_correction {correction!r} needs whole numbers "
                        "min_length <= max_length <= 100, short_length >= 1, max_distance in "
                        f"[1, 3] and targets in [2, {size}]")
    if spec["algorithm"] == "characters" and not all(
            isinstance(char, str) and (len(char) == 1 or i == spec["oov_id"])
            for i, char in enumerate(vocabulary)):
        raise SpecError("vocab.txt of a characters tokenizer must hold one character per "
                        "line (the oov line excepted)")
    buckets = spec.get("length_buckets")
    if buckets is not None:
        lengths = buckets.get("lengths") if isinstance(buckets, dict) else None
        if not (isinstance(lengths, list) and lengths and all(map(_whole, lengths)) and
                lengths[0] >= 1 and lengths[-1] == spec["max_length"] and
                all(a < b for a, b in zip(lengths, lengths[1:])) and
                _whole(buckets.get("min_pads", 0)) and
                0 <= buckets.get("min_pads", 0) < spec["max_length"]):
            raise SpecError(f"tokenizer.json: length_buckets {buckets!r} needs lengths: "
                            "increasing whole numbers >= 1 ending at max_length, and "
                            "min_pads: a whole number in [0, max_length)")
    policy = spec.get("long_text") or {"policy": "first"}
    if not isinstance(policy, dict) or policy.get("policy") not in LONG_TEXT_POLICIES:
        raise SpecError(f"tokenizer.json: long_text {policy!r} is not one of the policies "
                        f"{', '.join(LONG_TEXT_POLICIES)}")
    if policy["policy"] == "windows" and not (
            _whole(policy.get("stride")) and 1 <= policy["stride"] <= spec["max_length"]
            and _whole(policy.get("max_windows")) and 1 <= policy["max_windows"] <= MAX_WINDOWS):
        raise SpecError(f"tokenizer.json: long_text {policy} needs whole numbers stride in "
                        f"[1, max_length] and max_windows in [1, {MAX_WINDOWS}]")


class ReferenceTokenizer:
    def __init__(self, spec: dict, vocabulary: list[str]):
        check_spec(spec, vocabulary)
        self.spec = spec
        unknown = [r for r in spec["rewrites"] if tuple(r) not in REWRITES]
        if unknown:
            raise SpecError(f"tokenizer.json lists rewrites {unknown} outside the documented "
                            f"set {[list(r) for r in REWRITES]}")
        self.rewrites = [(re.compile(pattern), replacement)
                         for pattern, replacement in spec["rewrites"]]
        # runs of characters between the listed whitespace ([^]+ is no pattern: with none
        # listed, the whole text is one run)
        self.chunk = (re.compile("[^" + re.escape("".join(spec["whitespace"])) + "]+")
                      if spec["whitespace"] else re.compile(".+", re.S))
        self.vocabulary = {token: i for i, token in enumerate(vocabulary)}
        self.ignorable = [tuple(r) for r in spec["default_ignorable_ranges"]]
        self.whitespace = set(spec["whitespace"])
        self.punct_ranges = [(ord(lo), ord(hi)) for lo, hi in spec["punctuation_ascii_ranges"]]
        self.punct_categories = set(spec["punctuation_categories"])
        correction = spec.get("typo_correction")
        self.corrector = None if correction is None else Corrector(
            [(i, vocabulary[i]) for i in range(2, correction["targets"])
             if vocabulary[i].isalpha()],
            correction["min_length"], correction["max_length"], correction["short_length"],
            correction["max_distance"])

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

    def split(self, text: str):
        """Yields the words of `text`: delimiters end a word, punctuation is a word."""
        current = []
        for char in text:
            punctuation = self._is_punctuation(char)
            if punctuation or self._is_delimiter(char):
                if current:
                    yield "".join(current)
                    current = []
                if punctuation:
                    yield char
            else:
                current.append(char)
        if current:
            yield "".join(current)

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

    def words(self, text: str):
        """Steps 0-3 of the spec, lazily: the caller stops reading once it has enough.

        Every step works inside a run of non-whitespace characters, so a long text is
        processed only as far as the ids that are kept.
        """
        for match in self.chunk.finditer(clean_text(text)):
            chunk = match.group()
            for pattern, replacement in self.rewrites:
                chunk = pattern.sub(replacement, chunk)
            if self.spec["strip_accents"]:
                chunk = "".join(c for c in unicodedata.normalize("NFD", chunk)
                                if unicodedata.category(c) != "Mn")
            for word in self.split(chunk):
                yield self.casefold(word) if self.spec["lowercase"] else word

    def correct(self, word: str) -> str:
        """Step 3b: an out-of-vocabulary word becomes its correction target, if any."""
        if self.corrector is None or word in self.vocabulary:
            return word
        return self.corrector.correct(word) or word

    def ids(self, text: str, limit: int) -> list[int]:
        """Steps 0-4 (and 5): the text's first `limit` ids, reading no further than needed."""
        ids: list[int] = []
        for word in self.words(text):
            if len(ids) >= limit:
                break
            ids.extend(self.wordpiece(self.correct(word)))
        return ids[:limit]

    def encode(self, text: str) -> list[int]:
        """Steps 0-6: the model's input for the text's first max_length ids."""
        length = self.spec["max_length"]
        ids = self.ids(text, length)
        return [self.spec["pad_id"]] * (length - len(ids)) + ids

    def input_length(self, count: int) -> int:
        """The input length for `count` ids: the smallest of the spec's length_buckets that
        holds them and min_pads pads (a shorter input runs proportionally faster), else
        max_length."""
        buckets = self.spec.get("length_buckets") or {}
        needed = count + buckets.get("min_pads", 0)
        return next((n for n in buckets.get("lengths", []) if n >= needed),
                    self.spec["max_length"])

    def encode_windows(self, text: str) -> list[list[int]]:
        """The inputs the spec's long_text policy scores; their mean probability is the answer.

        "first" (or no long_text entry): one input, the first max_length ids. "windows":
        a text longer than max_length becomes windows of exactly max_length ids starting
        every `stride` ids, plus one ending at its last id, from at most
        max_length + (max_windows - 1) * stride ids. A text of at most max_length ids (or
        the first window) is one input padded on the left to `input_length` ids.
        """
        policy = self.spec.get("long_text") or {"policy": "first"}
        length = self.spec["max_length"]
        reads = length if policy["policy"] == "first" else (
            length + (int(policy["max_windows"]) - 1) * int(policy["stride"]))
        ids = self.ids(text, reads)
        if len(ids) <= length or policy["policy"] == "first":
            return [[self.spec["pad_id"]] * (self.input_length(len(ids)) - len(ids)) + ids]
        stride = int(policy["stride"])
        starts = list(range(0, len(ids) - length + 1, stride))
        if starts[-1] != len(ids) - length:
            starts.append(len(ids) - length)
        return [ids[start:start + length] for start in starts]


def read_vocabulary(path, spec: dict) -> list[str]:
    """vocab.txt as the spec describes it: plain lines, or one JSON string per line."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")[:spec["vocabulary_size"]]
    if spec.get("vocabulary_line_format") == "json":
        try:
            words = [parse_json(line, f"{path} line {number}")
                     for number, line in enumerate(lines, start=1)]
        except JsonError as error:
            raise SpecError(str(error)) from None
        strange = next((n for n, word in enumerate(words, start=1)
                        if not isinstance(word, str)), None)
        if strange is not None:
            raise SpecError(f"{path} line {strange} is not a JSON string; a vocabulary "
                            "line holds one word")
        return words
    return lines


def read_spec_and_vocabulary(folder) -> tuple[dict, list[str]]:
    """tokenizer.json and the vocabulary it names, from a bundle or a run's data/ folder."""
    folder = Path(folder)
    path = bundle_file(folder, "tokenizer.json")
    try:
        spec = parse_json(path.read_text(encoding="utf-8"), str(path))
    except JsonError as error:
        raise SpecError(str(error)) from None
    if not isinstance(spec, dict) or "vocabulary_file" not in spec:
        raise SpecError(f"{folder / 'tokenizer.json'} is not a tokenizer spec")
    return spec, read_vocabulary(bundle_file(folder, spec["vocabulary_file"]), spec)


class CharacterTokenizer:
    """The `characters` spec: one id per code point, unknown characters to oov_id."""

    def __init__(self, spec: dict, vocabulary: list[str]):
        check_spec(spec, vocabulary)
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
