"""evaluate: run every registered evaluator that applies to the task (pipeline.evaluators)
on the Keras models and every .tflite, and write their records to metrics.json.

The scores evaluator runs the .tflite files through the LiteRT interpreter one example at a
time, as on a phone, and fails the stage when a .tflite drifts from its Keras source by
more than the task's parity tolerance; the previous evaluation then stays in place.
"""
from __future__ import annotations

from pathlib import Path

from pipeline import artifacts, evaluators, tasks
from pipeline.config import PipelineConfig
from pipeline.metrics import MetricsFile


def reads(config: PipelineConfig) -> tuple[str, ...]:
    """The settings the run's evaluators read: they join this stage's key."""
    return evaluators.reads(config)


def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    context = evaluators.Context(config, task, files)
    records = []
    chosen = evaluators.for_config(config)
    for evaluator in chosen:
        records += evaluator.run(context)
    metrics = MetricsFile(task.name, task.primary_metric, task.higher_is_better, records,
                          context.details)
    artifacts.atomic_write_json(out_dir / files.metrics.name, metrics.to_json())
    artifacts.atomic_write_text(out_dir / "report.md", report(metrics, chosen))
    primary = task.primary_metric
    summary = {f"dense_test_{primary}": round(metrics.value(primary, "keras dense", "test"), 4)}
    summary.update({f"{export}_test_{primary}": round(metrics.value(primary, export, "test"), 4)
                    for export in metrics.exports()})
    return summary


def report(metrics: MetricsFile, chosen: list[evaluators.Evaluator]) -> str:
    """metrics.json for a person: each evaluator's section, in the order they ran."""
    lines = [f"# {metrics.task} run: evaluation", ""]
    for evaluator in chosen:
        lines += evaluator.report(metrics)
    return "\n".join(lines) + "\n"
