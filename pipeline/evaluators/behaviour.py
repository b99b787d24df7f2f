"""Sentiment: the behavioural suite (plain, negated, intensified... short texts; see
pipeline.behaviour) on each export and its dense parent, for negative/positive labels."""
from __future__ import annotations

from pipeline import behaviour
from pipeline.evaluators import Context, Evaluator
from pipeline.evaluators.texts import CLASSIFIER_SETTINGS, text_classifiers
from pipeline.metrics import Metric, MetricsFile


class Behaviour(Evaluator):
    name = "behaviour"
    tasks = ("sentiment",)
    settings = CLASSIFIER_SETTINGS

    def run(self, context: Context) -> list[Metric]:
        labels = context.files.label_names()
        if not behaviour.applies(labels):
            return []
        records, details = [], {}
        for model, probabilities_of in text_classifiers(context).items():
            result = behaviour.run_suite(probabilities_of, labels)
            records += [Metric(f"behaviour.{category}", model, "", value, True)
                        for category, value in result["categories"].items()]
            records.append(Metric("behaviour.negation", model, "", result["negation"], True))
            details[model] = {"failures": result["failures"], "cases": result["cases"]}
        context.details[self.name] = details
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        found = [m for m in metrics.metrics if m.name.startswith("behaviour.")]
        if not found:
            return []
        names = list(dict.fromkeys(m.name for m in found))
        lines = ["", "## Behavioural suite (accuracy per category)", "",
                 "| model | " + " | ".join(n.split(".", 1)[1] for n in names) + " |",
                 "|---|" + "---|" * len(names)]
        for model in dict.fromkeys(m.model for m in found):
            lines.append(f"| {model} | " + " | ".join(
                f"{metrics.get(name, model):.3f}" for name in names) + " |")
        return lines
