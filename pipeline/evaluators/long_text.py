"""Sentiment: accuracy on paragraphs of 6-10 validation sentences (one label, or mixed
3:1), under the "first" policy and the run's --long_text policy, for each export."""
from __future__ import annotations

from pipeline import artifacts, litert, long_text
from pipeline.evaluators import Context, Evaluator
from pipeline.evaluators.texts import CLASSIFIER_SETTINGS, policy_windows
from pipeline.metrics import Metric, MetricsFile
from pipeline.tasks.sentiment import PARAGRAPHS_FILE

KINDS = ("one_label", "mixed", "all")


class LongText(Evaluator):
    name = "long_text"
    tasks = ("sentiment",)
    settings = CLASSIFIER_SETTINGS

    def run(self, context: Context) -> list[Metric]:
        paragraphs = artifacts.read_json(context.files.data(PARAGRAPHS_FILE))
        records = []
        for export in context.conversions:
            runner = litert.Runner(context.tflite(export))
            for policy, windows in policy_windows(context).items():
                result = long_text.accuracy(runner, windows, paragraphs)
                records += [Metric(f"long_text.{policy}.{kind}", export, "validation",
                                   result[kind], True) for kind in KINDS]
                records.append(Metric(f"long_text.{policy}.inputs_per_text", export,
                                      "validation", result["inputs_per_text"], None))
        context.details[self.name] = {"policy": long_text.spec_entry(context.config)}
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        found = metrics.select(split="validation")
        policies = list(dict.fromkeys(m.name.split(".")[1] for m in found
                                      if m.name.startswith("long_text.")))
        if not policies:
            return []
        lines = ["", "## Long texts (paragraphs of 6-10 validation sentences)", "",
                 "| model | policy | one label | mixed (3:1) | all | inputs per text |",
                 "|---|---|---|---|---|---|"]
        for model in metrics.exports():
            for policy in policies:
                values = [metrics.get(f"long_text.{policy}.{kind}", model, "validation")
                          for kind in (*KINDS, "inputs_per_text")]
                if values[0] is not None:
                    lines.append(f"| {model} | {policy} | " + " | ".join(
                        f"{v:.4f}" for v in values[:3]) + f" | {values[3]:.1f} |")
        return lines
