"""bundle: what ships to a phone — model.tflite (and the task's other files, e.g. text
generation's generate.tflite), vocabulary, tokenizer spec and a manifest."""
from __future__ import annotations

import dataclasses
import platform
from importlib import metadata
from pathlib import Path

from pipeline import artifacts, litert, tasks
from pipeline import metrics as metrics_file
from pipeline.config import PipelineConfig
from pipeline.metrics import MetricsFile
from pipeline.stages import StageError

PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-nlp",
            "keras-hub", "tensorflow-text", "ai-edge-litert", "numpy", "absl-py", "mediapipe")
COMMON_FILES = ("model.tflite", "vocab.txt", "tokenizer.json")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    export = config.bundle.bundle_export
    metrics = read_metrics(files)
    shipped = metrics.details["size"]["files"][export]
    sources = {"model.tflite": files.converted(shipped["file"]),
               "vocab.txt": files.vocabulary, "tokenizer.json": files.tokenizer_spec}
    for name, source in sources.items():
        artifacts.copy_file(source, out_dir / name)
    # Ship only the file that was evaluated, and only if it loads and runs.
    if artifacts.sha256_file(out_dir / "model.tflite") != shipped["sha256"]:
        raise StageError(f"{sources['model.tflite']} is not the file evaluate measured (sha256 "
                         "differs); rerun --stages=convert,evaluate,bundle")
    litert.check_runs(out_dir / "model.tflite")
    task_fields = task.bundle(config, files, out_dir, metrics)
    bundled = COMMON_FILES + tuple(task_fields.pop("files"))
    primary = task.primary_metric
    manifest = {
        "task": task.name,
        "export": export,
        "program": task.shipped_program,
        "files": {name: {"sha256": artifacts.sha256_file(out_dir / name),
                         "bytes": (out_dir / name).stat().st_size} for name in bundled},
        **task_fields,
        # The shipped file's records and its Keras sources' (see pipeline.metrics).
        "metrics": [dataclasses.asdict(m) for m in metrics.metrics
                    if m.model in (export, "keras dense", "keras stripped")],
        "sparsity": {"per_weight": shipped["sparsity"],
                     "pruned_weights_element_weighted": metrics.get("pruned_sparsity", export)},
        "versions": package_versions(),
        "config": config.settings(),
    }
    artifacts.atomic_write_json(out_dir / "manifest.json", manifest)
    return {"export": export, f"test_{primary}": round(metrics.value(primary, export, "test"), 4)}


def read_metrics(files: artifacts.RunFiles) -> MetricsFile:
    try:
        return metrics_file.read(files.metrics)
    except metrics_file.MetricsError as error:
        raise StageError(f"{error}: --stages=evaluate,bundle") from None
