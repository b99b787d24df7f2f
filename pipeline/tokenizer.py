"""keras-nlp tokenization inside tf.data, and the spec an app needs to match it.

Sentiment uses WordPiece (or whole words through the same matcher); text generation uses
keras-nlp's UnicodeCodepointTokenizer with a vocabulary of the training text's characters.
The vocabulary is learned from the training split only. Sentiment sequences are
left-padded to a fixed length: the LSTM then reads the real tokens last, and TFLite gets
a static shape for its fused LSTM kernel. The spec functions write down every step so that
a client without TensorFlow (see `pipeline.reference_tokenizer`) reproduces the exact ids.
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from pipeline.config import TokenizerConfig
from pipeline.reference_tokenizer import REWRITES

PAD_TOKEN = "[PAD]"
OOV_TOKEN = "[UNK]"
RESERVED_TOKENS = (PAD_TOKEN, OOV_TOKEN)
SUFFIX_INDICATOR = "##"
MAX_BYTES_PER_WORD = 100  # FastWordpieceTokenizer maps longer words to the OOV token.
# SST-2 follows the Penn Treebank: "didn't" is stored as "did n't". Raw text gets the same
# treatment (after a typographic apostrophe becomes ASCII), or every negation would be new.
ENCODE_BATCH = 1024

# Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt), dropped by NFKC_Casefold.
DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _keras_nlp():
    import keras_nlp  # Keras 3: imported lazily, only where text becomes ids.
    return keras_nlp


def build_vocabulary(texts: list[str], config: TokenizerConfig) -> list[str]:
    """Learns the vocabulary from training texts; [PAD] is id 0 and [UNK] id 1.

    `wordpiece` learns subword pieces with keras-nlp; `words` keeps the most frequent
    whole words, so the same WordPiece matcher maps every other word to [UNK].
    """
    if config.vocabulary == "words":
        return _word_vocabulary(texts, config)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(ENCODE_BATCH).map(
        lambda batch: normalize(batch, config))
    vocabulary = _keras_nlp().tokenizers.compute_word_piece_vocabulary(
        dataset, vocabulary_size=config.vocabulary_size, lowercase=config.lowercase,
        strip_accents=config.strip_accents, split_on_cjk=False,
        suffix_indicator=SUFFIX_INDICATOR, reserved_tokens=list(RESERVED_TOKENS))
    return list(vocabulary)


def _word_splitter(config: TokenizerConfig):
    """Steps 0-3 of the spec (rewrites, accents, split, lower-case), in plain Python."""
    from pipeline.reference_tokenizer import ReferenceTokenizer
    return ReferenceTokenizer(tokenizer_spec(list(RESERVED_TOKENS), config),
                              list(RESERVED_TOKENS))


def whole_word_check(config: TokenizerConfig):
    """A test of whether the tokenizer can produce a word whole (so a vocabulary entry for
    it can ever be used): "n't" or "U.S." are split at their punctuation, "Paris" folded."""
    splitter = _word_splitter(config)
    # A line break of any kind would also break vocab.txt for a client reading lines.
    return lambda word: len(word.splitlines()) == 1 and list(splitter.words(word)) == [word]


def _word_vocabulary(texts: list[str], config: TokenizerConfig) -> list[str]:
    from collections import Counter

    splitter = _word_splitter(config)
    counts = Counter(word for text in texts for word in splitter.words(text))
    size = config.vocabulary_size - len(RESERVED_TOKENS)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]
    return list(RESERVED_TOKENS) + [word for word, _ in ranked]


def make_tokenizer(vocabulary: list[str], config: TokenizerConfig):
    return _keras_nlp().tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=config.lowercase,
        strip_accents=config.strip_accents, split_on_cjk=False,
        suffix_indicator=SUFFIX_INDICATOR, oov_token=OOV_TOKEN, dtype="int32")


def normalize(texts: tf.Tensor, config: TokenizerConfig) -> tf.Tensor:
    """Step 0 of the spec: the PTB rewrites, as RE2 regex replacements."""
    if config.ptb_contractions:
        for pattern, rewrite in REWRITES:
            texts = tf.strings.regex_replace(texts, pattern, rewrite)
    return texts


def left_pad(tokens: tf.RaggedTensor, length: int) -> tf.Tensor:
    """Keeps the first `length` ids of each row and pads on the left with id 0."""
    dense = tokens.to_tensor(default_value=0, shape=[None, length])
    kept = tf.minimum(tokens.row_lengths(), length)
    shift = tf.cast(length - kept, tf.int32)[:, None]
    source = tf.range(length, dtype=tf.int32)[None, :] - shift
    gathered = tf.gather(dense, tf.maximum(source, 0), batch_dims=1)
    return tf.where(source >= 0, gathered, tf.zeros_like(gathered))


def encode(texts: list[str], vocabulary: list[str], config: TokenizerConfig,
           spec: dict | None = None) -> np.ndarray:
    """Token ids [len(texts), max_length], tokenized by keras-nlp inside tf.data; with typo
    correction (a step keras-nlp lacks), by the spec's own reference tokenizer."""
    if spec is not None and spec.get("typo_correction"):
        from pipeline.reference_tokenizer import ReferenceTokenizer
        reference = ReferenceTokenizer(spec, vocabulary)
        return np.asarray([reference.encode(text) for text in texts],
                          np.int32).reshape(len(texts), config.max_length)
    tokenizer = make_tokenizer(vocabulary, config)
    dataset = (tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string))
               .batch(ENCODE_BATCH)
               .map(lambda batch: left_pad(tokenizer(normalize(batch, config)),
                                           config.max_length)))
    parts = list(dataset.as_numpy_iterator())
    if not parts:
        return np.zeros((0, config.max_length), dtype=np.int32)
    return np.concatenate(parts).astype(np.int32)


def character_vocabulary(text: str) -> list[str]:
    """[UNK] (id 0) and then every character of the training text, in code point order."""
    return [OOV_TOKEN] + sorted(set(text))


def encode_characters(text: str, vocabulary: list[str]) -> np.ndarray:
    """One id per character: keras-nlp's code points, mapped to ids; unknown ones to [UNK]."""
    tokenizer = _keras_nlp().tokenizers.UnicodeCodepointTokenizer(lowercase=False,
                                                                  dtype="int32")
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant([ord(c) for c in vocabulary[1:]], tf.int32),
            tf.range(1, len(vocabulary), dtype=tf.int32)),
        default_value=vocabulary.index(OOV_TOKEN))
    dataset = tf.data.Dataset.from_tensors(text).map(lambda t: table.lookup(tokenizer(t)))
    return next(dataset.as_numpy_iterator()).astype(np.int32)


def vocabulary_file_text(vocabulary: list[str], config: TokenizerConfig) -> str:
    """vocab.txt: one token per line; characters as JSON strings, since one may be a newline."""
    if config.vocabulary == "characters":
        return "".join(json.dumps(token, ensure_ascii=False) + "\n" for token in vocabulary)
    return "\n".join(vocabulary) + "\n"


def character_spec(vocabulary: list[str], config: TokenizerConfig) -> dict:
    """What a client needs to map text to ids and back for the character language model."""
    return {
        "algorithm": "characters",
        "vocabulary_kind": config.vocabulary,
        "vocabulary_file": "vocab.txt",
        "vocabulary_line_format": "json",
        "vocabulary_size": len(vocabulary),
        "steps": [
            "1. decode the text as UTF-8 into Unicode code points; no normalization, no "
            "lower-casing: the model is case-sensitive",
            "2. each code point becomes the id of its line in vocab.txt (line i holds id i as "
            "a JSON string of one character)",
            "3. a character that is not in vocab.txt becomes oov_id (the model has seen it "
            "only as an input, never as a target, so it never generates it)",
            "4. no truncation and no padding: generation feeds one id per step",
        ],
        "lowercase": False,
        "normalization": None,
        "oov_token": OOV_TOKEN,
        "oov_id": vocabulary.index(OOV_TOKEN),
        "unknown_characters": "replaced by oov_id",
        "special_tokens": [OOV_TOKEN],
        "input_dtype": "int32",
    }


# Typo correction settings (see pipeline.spelling): written into tokenizer.json.
CORRECTION = {"min_length": 3, "max_length": 30, "short_length": 4, "max_distance": 2}
CORRECTION_STEP = (
    "3b. typo_correction (if present): a word of min_length to max_length characters, all "
    "of them letters (Unicode category L*), that is not a vocabulary entry becomes the "
    "correction target nearest to it; targets are the entries with ids 2 to targets - 1 "
    "that are all letters (ids rank the training split's words by frequency, then the "
    "words added from pretrained vectors in the vectors' order). Nearest: "
    "the smallest optimal string alignment distance (insert, delete, substitute one "
    "character, or swap two adjacent ones: each costs 1; no substring is edited twice), "
    "then the smallest id; the distance may be at most 1 for a word of up to short_length "
    "characters and at most max_distance for a longer one. No target that near: the word "
    "is left as it is")


def tokenizer_spec(vocabulary: list[str], config: TokenizerConfig,
                   correction_targets: int | None = None) -> dict:
    """Everything a client needs to turn raw text into the model's input ids.
    `correction_targets`: with --typo_correction, how many leading ids a typo may be
    corrected to (None: no vocabulary of training words yet, so no correction step)."""
    spec = {
        "algorithm": "wordpiece",
        "vocabulary_kind": config.vocabulary,
        "vocabulary_file": "vocab.txt",
        "vocabulary_size": len(vocabulary),
        "steps": [
            "0. rewrites (if ptb_contractions): apply each [pattern, replacement] of "
            "rewrites in order to the whole text, as a global regular-expression replace "
            "(\\1 is the first group); only the two documented rewrites exist. Every step "
            "up to 4 works within runs of non-whitespace characters, so a client may process "
            "the text run by run and stop once it has max_length ids. Text that is not valid "
            "Unicode (a lone surrogate) has U+FFFD in its place",
            "1. strip_accents (if true): Unicode NFD, then delete every character of "
            "general category Mn",
            "2. split: walk the characters; whitespace ([\\t\\n\\f\\r ] only) and categories "
            "Cc/Cf end a word and are dropped; punctuation (ASCII !-/ :-@ [-` {-~ and every "
            "category P*) ends a word and is kept as a one-character word",
            "3. lowercase (if true): each word is mapped with Unicode NFKC_Casefold "
            "(NFKC, full case folding, NFKC again, then delete Default_Ignorable_Code_Point "
            "characters, ranges below)",
            "4. wordpiece: a word longer than max_bytes_per_word UTF-8 bytes is oov; "
            "otherwise take the longest vocabulary entry that prefixes it, then repeatedly "
            "the longest entry equal to suffix_indicator + a prefix of the rest; if some "
            "rest matches nothing the whole word is one oov id",
            "5. truncate: keep the first max_length ids (a longer text: see long_text, "
            "which the bundle's copy of this file holds)",
            "6. pad: add pad_id on the left up to max_length",
        ],
        "ptb_contractions": config.ptb_contractions,
        "rewrites": [list(r) for r in REWRITES] if config.ptb_contractions else [],
        "strip_accents": config.strip_accents,
        "lowercase": config.lowercase,
        "lowercase_mapping": "NFKC_Casefold",
        "default_ignorable_ranges": [list(r) for r in DEFAULT_IGNORABLE_RANGES],
        "whitespace": ["\t", "\n", "\f", "\r", " "],
        "whitespace_categories": ["Cc", "Cf"],
        "punctuation_ascii_ranges": [["!", "/"], [":", "@"], ["[", "`"], ["{", "~"]],
        "punctuation_categories": ["Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps"],
        "split_on_cjk": False,
        "suffix_indicator": SUFFIX_INDICATOR,
        "max_bytes_per_word": MAX_BYTES_PER_WORD,
        "pad_token": PAD_TOKEN,
        "pad_id": vocabulary.index(PAD_TOKEN),
        "oov_token": OOV_TOKEN,
        "oov_id": vocabulary.index(OOV_TOKEN),
        "special_tokens": list(RESERVED_TOKENS),
        "max_length": config.max_length,
        "truncation": "keep_first",
        "padding": "left",
        "input_dtype": "int32",
    }
    if config.typo_correction and correction_targets is not None:
        spec["typo_correction"] = {**CORRECTION, "targets": correction_targets}
        spec["steps"].insert(4, CORRECTION_STEP)
    return spec
