"""The task's scores (accuracy, loss, ...) of the Keras models and every .tflite, on the
validation and test splits, and the parity gate: a .tflite whose test score drifts from its
Keras source by more than the task's tolerance fails the stage."""
from __future__ import annotations

from absl import logging

from pipeline import litert
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric, MetricsFile
from pipeline.stages import StageError

KERAS_MODELS = ("dense", "stripped")


class Scores(Evaluator):
    name = "scores"

    def reads(self, config) -> tuple[str, ...]:
        from pipeline import tasks
        return (tasks.for_config(config).parity.setting,)

    def run(self, context: Context) -> list[Metric]:
        task, config = context.task, context.config
        splits = task.eval_data(config, context.files)
        records: list[Metric] = []

        def add(model: str, split: str, scores: dict) -> None:
            records.extend(Metric(name, model, split, value, task.score_directions.get(name))
                           for name, value in scores.items())

        for label in KERAS_MODELS:
            model = context.keras_model(label)
            for split, (x, y) in splits.items():
                add(f"keras {label}", split, task.score(
                    model.predict(x, batch_size=task.keras_batch_size, verbose=0), y))
        parity = task.parity
        source = next(m.value for m in records if m.model == "keras stripped"
                      and m.split == "test" and m.name == parity.metric)
        tolerance = getattr(config.eval, parity.setting)
        failures = []
        for export in context.conversions:
            path = context.tflite(export)
            runner = litert.Runner(path)
            for split, (x, y) in splits.items():
                add(export, split, task.score(runner.predict(x), y))
            converted = next(m.value for m in records if m.model == export
                             and m.split == "test" and m.name == parity.metric)
            gap = parity.scale * (converted - source)
            records.append(Metric(parity.gap_name, export, "test", gap, None))
            logging.info("evaluate: %s test %s %.4f (Keras %.4f)", export, parity.metric,
                         converted, source)
            if abs(gap) > tolerance:
                failures.append(f"{path.name}: test {parity.metric} {converted:.4f} vs Keras "
                                f"{source:.4f} ({gap:+.4g} {parity.unit}, "
                                f"--{parity.setting}={tolerance})")
        if failures:
            raise StageError("parity gate failed: " + "; ".join(failures))
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        names = [metrics.primary] + [n for n in ("loss", "perplexity") if n != metrics.primary]
        names = [n for n in names if metrics.select(n)][:2]
        lines = ["| model | " + " | ".join(f"{split} {name}" for split in ("validation", "test")
                                          for name in names) + " |",
                 "|---|" + "---|" * (2 * len(names))]
        for model in metrics.models():
            if not metrics.select(names[0], model, "test"):
                continue
            cells = [f"{metrics.value(name, model, split):.4f}"
                     for split in ("validation", "test") for name in names]
            label = model[len("keras "):] if model.startswith("keras ") else model
            kind = "Keras" if model.startswith("keras ") else ".tflite"
            lines.append(f"| {label} ({kind}) | " + " | ".join(cells) + " |")
        return lines
