"""The evaluation seam: registered evaluators, the typed metric records, the parity gate
and the converter for metrics.json files of the nested format. Tiny hand-made inputs; no
real data, no training."""
import json

import numpy as np
import pytest

from pipeline import evaluators, metrics
from pipeline.config import DataConfig, PipelineConfig, TokenizerConfig
from pipeline.evaluators import Evaluator
from pipeline.evaluators.scores import Scores
from pipeline.metrics import Metric, MetricsFile
from pipeline.stages import StageError
from pipeline.stages import evaluate as evaluate_stage
from pipeline.tasks.sentiment import SentimentTask

SENTIMENT = PipelineConfig(output_dir="x")
TEXTGEN = PipelineConfig(output_dir="x", data=DataConfig(task="textgen",
                                                         dataset="tiny_shakespeare"),
                         tokenizer=TokenizerConfig(vocabulary="characters"))


class WordCount(Evaluator):
    """The example of the closing note: one file, one REGISTRY line, nothing else."""
    name = "word_count"
    tasks = ("sentiment",)
    settings = ("max_length",)

    def run(self, context):
        return [Metric("vocabulary_words", "keras dense", "", 3, None)]

    def report(self, measured):
        return ["", f"vocabulary: {measured.value('vocabulary_words', 'keras dense')} words"]


def test_a_registered_evaluator_runs_reports_and_enters_the_stage_key(monkeypatch):
    monkeypatch.setitem(evaluators.REGISTRY, "word_count", f"{__name__}:WordCount")
    assert "word_count" in [e.name for e in evaluators.for_config(SENTIMENT)]
    assert "word_count" not in [e.name for e in evaluators.for_config(TEXTGEN)]
    assert "max_length" in evaluate_stage.reads(SENTIMENT)
    records = WordCount().run(None)
    measured = MetricsFile("sentiment", "accuracy", True, records, {})
    assert evaluate_stage.report(measured, [WordCount()]).endswith("vocabulary: 3 words\n")


def test_each_task_gets_its_evaluators_and_their_settings():
    assert [e.name for e in evaluators.for_config(SENTIMENT)] == [
        "scores", "size", "latency", "long_text", "behaviour", "robustness", "standard_client",
        "length_aware"]
    assert [e.name for e in evaluators.for_config(TEXTGEN)] == [
        "scores", "size", "latency", "generation_speed", "samples"]
    assert evaluators.reads(TEXTGEN) == ("loss_parity_tolerance", "latency_runs",
                                         "sample_prompt", "sample_length")
    assert "attack_max_queries" in evaluators.reads(SENTIMENT)


class FakeModel:
    def __init__(self, probabilities):
        self.probabilities = probabilities

    def predict(self, x, **_):
        return self.probabilities


class FakeRunner:
    outputs = None

    def __init__(self, path):
        pass

    def predict(self, x):
        return FakeRunner.outputs


class FakeContext:
    def __init__(self, keras, exports):
        self.config, self.task = SENTIMENT, SentimentTask()
        self.files, self.conversions, self.details = None, {e: {} for e in exports}, {}
        self.keras = keras

    def keras_model(self, label):
        return self.keras

    def tflite(self, export, program="model"):
        from pathlib import Path
        return Path(f"model_{export}.tflite")


@pytest.fixture
def two_examples(monkeypatch):
    labels = np.array([0, 1])
    monkeypatch.setattr(SentimentTask, "eval_data", lambda self, config, files: {
        "validation": (np.zeros((2, 4)), labels), "test": (np.zeros((2, 4)), labels)})
    monkeypatch.setattr("pipeline.litert.Runner", FakeRunner)
    return np.array([[0.9, 0.1], [0.2, 0.8]])


def test_scores_are_records_and_the_gap_is_in_points(two_examples):
    FakeRunner.outputs = np.array([[0.9, 0.1], [0.6, 0.4]])  # one of two wrong: -50 points
    context = FakeContext(FakeModel(two_examples), ["float"])
    with pytest.raises(StageError, match=r"parity gate failed: model_float.tflite: test "
                                         r"accuracy 0.5000 vs Keras 1.0000 \(-50 points, "
                                         r"--parity_tolerance=0.5\)"):
        Scores().run(context)
    FakeRunner.outputs = two_examples
    records = MetricsFile("sentiment", "accuracy", True, Scores().run(context), {})
    assert records.value("accuracy", "keras stripped", "test") == 1.0
    assert records.value("parity_gap_points", "float", "test") == 0.0
    assert records.scores("float", "validation")["examples"] == 2
    assert records.select("accuracy", split="test")[0].higher_is_better is True


def test_a_metrics_file_round_trips_and_names_what_is_missing(tmp_path):
    measured = MetricsFile("sentiment", "accuracy", True,
                           [Metric("accuracy", "int8", "test", 0.84, True),
                            Metric("gzip_bytes", "int8", "", 1000, False)], {"size": {}})
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(measured.to_json()))
    again = metrics.read(path)
    assert again == measured and again.exports() == ["int8"]
    with pytest.raises(metrics.MetricsError, match="no 'loss' for model 'int8' on test"):
        again.value("loss", "int8", "test")
    nan = MetricsFile("sentiment", "accuracy", True,
                      [Metric("latency_vs_dense", "int8", "", float("nan"), False)], {})
    assert nan.to_json()["metrics"][0]["value"] is None  # JSON has no NaN
    path.write_text('{"format": 7}')
    with pytest.raises(metrics.MetricsError, match="format 7, not 2; rerun evaluate"):
        metrics.read(path)


def test_the_nested_format_converts(tmp_path, capsys):
    old = {"task": "sentiment", "primary": {"name": "accuracy", "higher_is_better": True},
           "keras": {"dense": {"test": {"accuracy": 0.85, "loss": 0.4, "examples": 1821}}},
           "tflite": {"int8": {"test": {"accuracy": 0.84}, "validation": {"accuracy": 0.83},
                               "latency": {"median_ms": 0.3, "p90_ms": 0.4},
                               "latency_vs_dense": {"ratio": 0.5}, "bytes": 4000,
                               "gzip_bytes": 1000, "pruned_sparsity": 0.8,
                               "file": "model_int8.tflite", "sha256": "ab"}},
           "behaviour": {"int8": {"plain": 0.9, "negation": 0.4}},
           "long_text": {"int8": {"windows": {"all": 0.8, "inputs_per_text": 2.0}}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert metrics.main(["pipeline.metrics", str(path)]) == 0
    converted = metrics.from_json(json.loads(capsys.readouterr().out), "converted")
    assert converted.value("accuracy", "keras dense", "test") == 0.85
    assert converted.value("latency_vs_dense", "int8") == 0.5
    assert converted.value("behaviour.negation", "int8") == 0.4
    assert converted.value("long_text.windows.all", "int8", "validation") == 0.8
    assert converted.exports() == ["int8"]
    assert converted.details["size"]["files"]["int8"]["sha256"] == "ab"


def test_the_bench_reads_a_run_whose_metrics_are_in_the_nested_format(tmp_path):
    from pipeline import artifacts
    from pipeline.bench import sweep
    old = {"task": "sentiment", "primary": {"name": "accuracy", "higher_is_better": True},
           "keras": {"dense": {"test": {"accuracy": 0.85}}},
           "tflite": {"int8": {"test": {"accuracy": 0.84, "loss": 0.4},
                               "latency": {"median_ms": 0.3, "p90_ms": 0.4},
                               "bytes": 4000, "gzip_bytes": 1000, "pruned_sparsity": 0.8,
                               "sparsity": {"lstm_0/kernel": {"kind": "lstm",
                                                              "sparsity": 0.8}}}},
           "long_text_policy": {"policy": "windows"},
           "long_text": {"int8": {"windows": {"all": 0.9}}}}
    files = artifacts.RunFiles(tmp_path)
    artifacts.atomic_write_json(files.metrics, old)
    artifacts.atomic_write_json(files.stage("bundle") / "manifest.json", {"versions": {}})
    for stage in ("train", "prune"):
        artifacts.atomic_write_json(files.stage(stage) / "stage.json", {"elapsed_s": 10.0})
    [row] = sweep.rows_for(tmp_path, "sentiment", "magnitude", 0.8, {})
    assert (row["metric_value"], row["gzip_bytes"], row["lstm_min_sparsity"],
            row["long_text"], row["train_wall_s"]) == (0.84, 1000, 0.8, 0.9, 20.0)
