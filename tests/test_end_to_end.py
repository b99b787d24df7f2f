"""One real run: all stages on a small slice of SST-2, then the bundle as a phone uses it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline import artifacts, data, litert, run
from pipeline.config import DataConfig, EvalConfig, PipelineConfig
from pipeline.predict import Classifier
from pipeline.reference_tokenizer import ReferenceTokenizer
from pipeline.stages import StageError
from tests.conftest import REPO

STAGES = ("data", "train", "prune", "strip", "convert", "evaluate", "bundle")


def run_pipeline(run_dir, data_dir, *extra):
    env = {**os.environ, "PIPELINE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--flagfile=configs/smoke.flags",
         f"--output_dir={run_dir}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(shared_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = run_pipeline(run_dir, shared_data)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


def test_every_stage_ran_and_reported_progress(smoke_run):
    run_dir, result = smoke_run
    for position, stage in enumerate(STAGES, start=1):
        assert (run_dir / stage / artifacts.STAGE_RECORD).is_file()
        assert f"[{position}/7] {stage}: finished in" in result.stderr
    assert not list(run_dir.glob("*.partial"))


def test_bundle_files_match_the_manifest(smoke_run):
    run_dir, _ = smoke_run
    bundle = run_dir / "bundle"
    manifest = artifacts.read_json(bundle / "manifest.json")
    assert set(manifest["files"]) == {"model.tflite", "vocab.txt", "tokenizer.json",
                                      "labels.txt"}
    for name, entry in manifest["files"].items():
        assert artifacts.sha256_file(bundle / name) == entry["sha256"]
    assert manifest["export"] == "int8"
    assert manifest["config"]["pruning"]["final_sparsity"] == 0.8
    assert manifest["versions"]["tensorflow"] == "2.21.0"
    assert (bundle / "labels.txt").read_text().split() == ["negative", "positive"]
    assert litert.FUSED_LSTM in litert.op_names(bundle / "model.tflite")


def test_tflite_matches_keras_and_keeps_the_zeros(smoke_run):
    run_dir, _ = smoke_run
    test_ids, test_labels = np.load(run_dir / "data" / "test.npz").values()
    stripped = artifacts.load_keras_model(run_dir / "strip" / "model.keras")
    keras_probs = stripped.predict(test_ids, verbose=0)
    tflite_probs = litert.Runner(run_dir / "convert" / "model_float.tflite").predict(test_ids)
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    metrics = artifacts.read_json(run_dir / "evaluate" / "metrics.json")
    expected = np.mean(np.argmax(tflite_probs, 1) == test_labels)
    assert metrics["tflite"]["float"]["test"]["accuracy"] == pytest.approx(expected)
    assert metrics["tflite"]["float"]["latency"]["runs"] >= 200
    for export in ("float", "int8"):
        per_weight = metrics["tflite"][export]["sparsity"]
        assert set(per_weight) == {"embedding/embeddings", "lstm_0/kernel",
                                   "lstm_0/recurrent_kernel", "classifier/kernel"}
        assert per_weight["lstm_0/kernel"]["tensors"] == 4
        for name, entry in per_weight.items():
            assert entry["sparsity"] >= 0.75, (export, name, entry)
    keras_sparsity = artifacts.read_json(run_dir / "strip" / "sparsity.json")
    assert keras_sparsity["lstm_0/kernel"]["zeros"] == \
        metrics["tflite"]["float"]["sparsity"]["lstm_0/kernel"]["zeros"]
    sizes = artifacts.read_json(run_dir / "convert" / "convert.json")
    assert sizes["int8"]["gzip_bytes"] < sizes["float"]["gzip_bytes"]
    assert sizes["float"]["gzip_compression_vs_dense_float"] == pytest.approx(
        sizes["float"]["dense_reference"]["gzip_bytes"] / sizes["float"]["gzip_bytes"])
    assert sizes["int8"]["gzip_compression_vs_dense_float"] > \
        sizes["float"]["gzip_compression_vs_dense_float"] > 1.5


def test_reference_tokenizer_reproduces_the_run_ids(smoke_run, shared_data):
    run_dir, _ = smoke_run
    flags = dict(line.split("=", 1) for line in
                 (REPO / "configs" / "smoke.flags").read_text().splitlines()
                 if line.startswith("--"))
    splits = data.load_splits(DataConfig(dataset="sst2", data_dir=str(shared_data),
                                         train_limit=int(flags["--train_limit"]),
                                         eval_limit=int(flags["--eval_limit"])))
    test_ids = np.load(run_dir / "data" / "test.npz")["ids"]
    reference = ReferenceTokenizer.from_bundle(run_dir / "bundle")
    assert [reference.encode(t) for t in splits.test.texts] == test_ids.tolist()


def test_predict_uses_the_bundle_alone(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    bundle = run_dir / "bundle"
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", f"--bundle={bundle}",
                             "A gorgeous, witty film.", "Dull."], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["A gorgeous, witty film.", "Dull."]
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    tampered = tmp_path / "bundle"
    tampered.mkdir()
    for path in bundle.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    (tampered / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(RuntimeError, match="does not match manifest.json"):
        Classifier(tampered)


def test_rerun_skips_every_stage_and_changes_nothing(smoke_run, shared_data):
    run_dir, _ = smoke_run
    before = {s: artifacts.stage_record(run_dir / s) for s in STAGES}
    result = run_pipeline(run_dir, shared_data)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("unchanged, skipped") == len(STAGES)
    assert {s: artifacts.stage_record(run_dir / s) for s in STAGES} == before


def test_parity_gate_failure_keeps_the_previous_evaluation(smoke_run, monkeypatch):
    run_dir, _ = smoke_run
    before = (run_dir / "evaluate" / "metrics.json").read_bytes()
    labels = np.load(run_dir / "data" / "test.npz")["labels"]

    def always_wrong(self, ids):  # a .tflite that disagrees with Keras on every example
        return np.eye(2, dtype=np.float32)[1 - labels[:len(ids)]]

    monkeypatch.setattr(litert.Runner, "predict", always_wrong)
    config = PipelineConfig(output_dir=str(run_dir), stages=("evaluate",), force=True,
                            eval=EvalConfig(parity_tolerance=0.5))
    with pytest.raises(StageError, match="parity gate failed: model_float.tflite"):
        run.run_pipeline(config)
    assert (run_dir / "evaluate" / "metrics.json").read_bytes() == before
