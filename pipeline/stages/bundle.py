"""bundle: what ships to a phone — one .tflite, vocabulary, tokenizer spec, labels, manifest."""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from pipeline import artifacts
from pipeline.config import PipelineConfig
from pipeline.stages import convert as convert_stage

PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-nlp",
            "keras-hub", "tensorflow-text", "ai-edge-litert", "numpy", "absl-py")
FILES = ("model.tflite", "vocab.txt", "tokenizer.json", "labels.txt")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    export = config.bundle.export
    sources = {"model.tflite": run_dir / "convert" / convert_stage.tflite_name(export),
               "vocab.txt": run_dir / "data" / "vocab.txt",
               "tokenizer.json": run_dir / "data" / "tokenizer.json",
               "labels.txt": run_dir / "data" / "labels.txt"}
    for name, source in sources.items():
        artifacts.copy_file(source, out_dir / name)
    metrics = artifacts.read_json(run_dir / "evaluate" / "metrics.json")
    labels = (out_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    shipped = metrics["tflite"][export]
    manifest = {
        "task": "sentiment",
        "export": export,
        "files": {name: {"sha256": artifacts.sha256_file(out_dir / name),
                         "bytes": (out_dir / name).stat().st_size} for name in FILES},
        "input": {"name": "token_ids", "shape": [1, config.tokenizer.max_length],
                  "dtype": "int32"},
        "output": {"shape": [1, len(labels)],
                   "meaning": "softmax probabilities in labels.txt order"},
        "state": "the fused LSTM keeps state between invocations: reset variables "
                 "(reset_all_variables) before every new text",
        "metrics": {"test": shipped["test"], "validation": shipped["validation"],
                    "latency": shipped["latency"], "gzip_bytes": shipped["gzip_bytes"],
                    "gzip_compression_vs_dense_float":
                        shipped["gzip_compression_vs_dense_float"],
                    "keras_dense_test": metrics["keras"]["dense"]["test"],
                    "keras_stripped_test": metrics["keras"]["stripped"]["test"]},
        "sparsity": {"per_weight": shipped["sparsity"],
                     "pruned_weights_element_weighted": shipped["pruned_sparsity"]},
        "versions": package_versions(),
        "config": config.to_dict(),
    }
    artifacts.atomic_write_json(out_dir / "manifest.json", manifest)
    return {"export": export, "test_accuracy": round(shipped["test"]["accuracy"], 4)}
