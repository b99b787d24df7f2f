"""bundle: what ships to a phone — model.tflite (and the task's other files, e.g. text
generation's generate.tflite), vocabulary, tokenizer spec and a manifest."""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from pipeline import artifacts, litert, tasks
from pipeline.config import PipelineConfig
from pipeline.stages import StageError

PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-nlp",
            "keras-hub", "tensorflow-text", "ai-edge-litert", "numpy", "absl-py")
COMMON_FILES = ("model.tflite", "vocab.txt", "tokenizer.json")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    export = config.bundle.bundle_export
    metrics = artifacts.read_json(run_dir / "evaluate" / "metrics.json")
    shipped = metrics["tflite"][export]
    sources = {"model.tflite": run_dir / "convert" / shipped["file"],
               "vocab.txt": run_dir / "data" / "vocab.txt",
               "tokenizer.json": run_dir / "data" / "tokenizer.json"}
    for name, source in sources.items():
        artifacts.copy_file(source, out_dir / name)
    # Ship only the file that was evaluated, and only if it loads and runs.
    if artifacts.sha256_file(out_dir / "model.tflite") != shipped["sha256"]:
        raise StageError(f"{sources['model.tflite']} is not the file evaluate measured (sha256 "
                         "differs); rerun --stages=convert,evaluate,bundle")
    litert.check_runs(out_dir / "model.tflite")
    task_fields = task.bundle(config, run_dir, out_dir, metrics)
    files = COMMON_FILES + tuple(task_fields.pop("files"))
    primary = task.primary_metric
    manifest = {
        "task": task.name,
        "export": export,
        "program": task.shipped_program,
        "files": {name: {"sha256": artifacts.sha256_file(out_dir / name),
                         "bytes": (out_dir / name).stat().st_size} for name in files},
        **task_fields,
        "metrics": {"test": shipped["test"], "validation": shipped["validation"],
                    "latency": shipped["latency"], "gzip_bytes": shipped["gzip_bytes"],
                    "gzip_compression_vs_dense_float":
                        shipped["gzip_compression_vs_dense_float"],
                    "keras_dense_test": metrics["keras"]["dense"]["test"],
                    "keras_stripped_test": metrics["keras"]["stripped"]["test"],
                    **{key: shipped[key] for key in ("characters_per_second",
                                                     "characters_per_second_vs_dense",
                                                     "characters_per_second_numpy",
                                                     "characters_per_second_numpy_vs_dense",
                                                     "latency_vs_dense") if key in shipped}},
        "sparsity": {"per_weight": shipped["sparsity"],
                     "pruned_weights_element_weighted": shipped["pruned_sparsity"]},
        "versions": package_versions(),
        "config": config.settings(),
    }
    artifacts.atomic_write_json(out_dir / "manifest.json", manifest)
    return {"export": export, f"test_{primary}": round(shipped["test"][primary], 4)}
