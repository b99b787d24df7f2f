"""One real run: all stages on a small slice of SST-2, then the bundle as a phone uses it."""
import dataclasses
import json
import shutil
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from pipeline import artifacts, data, litert, run
from pipeline import metrics as metrics_file
from pipeline.config import DataConfig
from pipeline.predict import Classifier
from pipeline.reference_tokenizer import ReferenceTokenizer
from pipeline.stages import StageError
from tests.conftest import REPO, run_sentiment_smoke

pytestmark = pytest.mark.slow  # real data and training: the integration layer

STAGES = ("data", "train", "prune", "strip", "convert", "evaluate", "bundle")


@pytest.fixture(scope="module")
def smoke_run(sentiment_smoke):
    run_dir, result, _ = sentiment_smoke
    return run_dir, result


def test_every_stage_ran_and_reported_progress(smoke_run):
    run_dir, result = smoke_run
    for position, stage in enumerate(STAGES, start=1):
        assert (run_dir / stage / artifacts.STAGE_RECORD).is_file()
        assert f"[{position}/7] {stage}: finished in" in result.stderr
    assert not list(run_dir.glob("*.partial"))


def test_the_output_is_the_pipeline_s_own_lines(smoke_run):
    """Quiet by default: no line of TensorFlow's C++ logger, no LiteRT INFO line, nothing
    that looks like a traceback; the end says where the report is and what to run next."""
    import re
    _, result = smoke_run
    cpp = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+\.(cc|h):\d+\]")
    lines = result.stderr.splitlines()
    assert [line for line in lines if cpp.match(line)] == []
    for noise in ("absl::InitializeLog", "INFO: Created TensorFlow Lite", "Traceback",
                  "Sharding callback", "Assets written to", "cuInit"):
        assert noise not in result.stderr, noise
    assert "report: " in lines[-2] and lines[-2].endswith("evaluate/report.md")
    assert "next: python -m pipeline.predict --bundle " in lines[-1]


def test_bundle_files_match_the_manifest(smoke_run):
    run_dir, _ = smoke_run
    bundle = run_dir / "bundle"
    manifest = artifacts.read_json(bundle / "manifest.json")
    assert set(manifest["files"]) == {"model.tflite", "vocab.txt", "tokenizer.json",
                                      "labels.txt", "text_classifier.tflite"}
    for name, entry in manifest["files"].items():
        assert artifacts.sha256_file(bundle / name) == entry["sha256"]
    assert manifest["export"] == "int8"
    assert manifest["config"]["pruning"]["final_sparsity"] == 0.8
    assert manifest["versions"]["tensorflow"] == metadata.version("tensorflow")
    assert manifest["config"]["pruning"]["pruning_method"] == "magnitude"
    assert "output_dir" not in manifest["config"]
    assert (bundle / "labels.txt").read_text().split() == ["negative", "positive"]
    assert litert.FUSED_LSTM in litert.op_names(bundle / "model.tflite")


def test_tflite_matches_keras_and_keeps_the_zeros(smoke_run):
    run_dir, _ = smoke_run
    test_ids, test_labels = np.load(run_dir / "data" / "test.npz").values()
    stripped = artifacts.load_keras_model(run_dir / "strip" / "model.keras")
    keras_probs = stripped.predict(test_ids, verbose=0)
    tflite_probs = litert.Runner(run_dir / "convert" / "model_float.tflite").predict(test_ids)
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    metrics = metrics_file.read(run_dir / "evaluate" / "metrics.json")
    expected = np.mean(np.argmax(tflite_probs, 1) == test_labels)
    assert metrics.value("accuracy", "float", "test") == pytest.approx(expected)
    assert metrics.details["latency"]["float"]["latency"]["runs"] >= 200
    files = metrics.details["size"]["files"]
    for export in ("float", "int8"):
        per_weight = files[export]["sparsity"]
        assert set(per_weight) == {"embedding/embeddings", "lstm_0/kernel",
                                   "lstm_0/recurrent_kernel", "classifier/kernel"}
        assert per_weight["lstm_0/kernel"]["tensors"] == 4
        for name, entry in per_weight.items():
            assert entry["sparsity"] >= 0.75, (export, name, entry)
    keras_sparsity = artifacts.read_json(run_dir / "strip" / "sparsity.json")
    assert keras_sparsity["lstm_0/kernel"]["zeros"] == \
        files["float"]["sparsity"]["lstm_0/kernel"]["zeros"]
    sizes = artifacts.read_json(run_dir / "convert" / "convert.json")
    assert sizes["int8"]["gzip_bytes"] < sizes["float"]["gzip_bytes"]
    assert sizes["float"]["gzip_compression_vs_dense_float"] == pytest.approx(
        sizes["float"]["dense_reference"]["gzip_bytes"] / sizes["float"]["gzip_bytes"])
    assert sizes["int8"]["gzip_compression_vs_dense_float"] > \
        sizes["float"]["gzip_compression_vs_dense_float"] > 1.5


def test_reference_tokenizer_reproduces_the_run_ids(smoke_run, shared_data):
    run_dir, _ = smoke_run
    flags = dict(line.split("=", 1) for line in
                 (REPO / "configs" / "sentiment_smoke.flags").read_text().splitlines()
                 if line.startswith("--"))
    splits = data.load_splits(DataConfig(dataset="sst2", data_dir=str(shared_data),
                                         train_limit=int(flags["--train_limit"]),
                                         eval_limit=int(flags["--eval_limit"])))
    test_ids = np.load(run_dir / "data" / "test.npz")["ids"]
    reference = ReferenceTokenizer.from_bundle(run_dir / "bundle")
    assert [reference.encode(t) for t in splits.test.texts] == test_ids.tolist()


def test_the_smoke_model_learned_something(smoke_run):
    run_dir, _ = smoke_run
    metrics = metrics_file.read(run_dir / "evaluate" / "metrics.json")
    labels = np.load(run_dir / "data" / "test.npz")["labels"]
    majority = max(np.mean(labels), 1 - np.mean(labels))
    for model in ("keras dense", "float", "int8"):
        assert metrics.value("accuracy", model, "test") >= majority + 0.08, (model, majority)


def test_predict_uses_the_bundle_alone(smoke_run, shared_data, tmp_path):
    run_dir, _ = smoke_run
    bundle = run_dir / "bundle"
    texts = [line.split("\t", 1)[1] for line in
             (shared_data / "sst2" / "test.tsv").read_text().splitlines()[1:4]]
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", f"--bundle={bundle}",
                             "-"], input="\n".join(texts) + "\n", cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)  # one text a line
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == texts
    runner = litert.Runner(bundle / "model.tflite")
    tokenizer = ReferenceTokenizer.from_bundle(bundle)
    labels = (bundle / "labels.txt").read_text().split()
    for row, text in zip(rows, texts):
        (ids,) = tokenizer.encode_windows(text)  # padded only to its length bucket
        words = sum(1 for i in ids if i != tokenizer.spec["pad_id"])
        assert len(ids) == tokenizer.input_length(words)
        expected = runner(np.asarray(ids, dtype=np.int32))
        assert [row["probabilities"][label] for label in labels] == \
            pytest.approx(expected.tolist(), abs=1e-4)
        assert row["label"] == labels[int(np.argmax(expected))]
    assert len(tokenizer.encode_windows(texts[0])[0]) < len(tokenizer.encode(texts[0]))
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle, tampered)
    (tampered / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(RuntimeError, match="does not match manifest.json"):
        Classifier(tampered)


def test_rerun_skips_every_stage_and_changes_nothing(smoke_run, shared_data):
    run_dir, _ = smoke_run
    before = {s: artifacts.stage_record(run_dir / s) for s in STAGES}
    result = run_sentiment_smoke(run_dir, shared_data)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("unchanged, skipped") == len(STAGES)
    assert {s: artifacts.stage_record(run_dir / s) for s in STAGES} == before


def test_parity_gate_failure_keeps_the_previous_evaluation(smoke_run, monkeypatch, tmp_path):
    run_dir = tmp_path / "run"  # a copy: this test makes a stage fail on purpose
    shutil.copytree(smoke_run[0], run_dir)
    before = (run_dir / "evaluate" / "metrics.json").read_bytes()
    labels = np.load(run_dir / "data" / "test.npz")["labels"]

    def always_wrong(self, ids):  # a .tflite that disagrees with Keras on every example
        return np.eye(2, dtype=np.float32)[1 - labels[:len(ids)]]

    monkeypatch.setattr(litert.Runner, "predict", always_wrong)
    recorded = recorded_config(run_dir)
    config = dataclasses.replace(recorded, output_dir=str(run_dir), cache_dir="",
                                 stages=("evaluate",), force=True,
                                 eval=dataclasses.replace(recorded.eval, parity_tolerance=0.5))
    with pytest.raises(StageError, match="parity gate failed: model_float.tflite"):
        run.run_pipeline(config)
    assert (run_dir / "evaluate" / "metrics.json").read_bytes() == before


def recorded_config(run_dir):
    """The config the smoke run recorded: a subset rerun must use the settings that made
    its inputs (other settings are refused)."""
    from pipeline.config import config_from_dict
    return config_from_dict(artifacts.read_json(run_dir / "config.json"))


def test_a_truncated_model_is_never_shipped(smoke_run, tmp_path):
    run_dir = tmp_path / "run"  # a copy: this test damages a file on purpose
    shutil.copytree(smoke_run[0], run_dir)
    bundle_before = (run_dir / "bundle" / "manifest.json").read_bytes()
    model = run_dir / "convert" / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:1000])
    config = dataclasses.replace(recorded_config(run_dir), output_dir=str(run_dir),
                                 cache_dir="", stages=("bundle",), force=True)
    with pytest.raises(StageError, match="convert was changed after stage convert made it"):
        run.run_pipeline(config)
    assert (run_dir / "bundle" / "manifest.json").read_bytes() == bundle_before
