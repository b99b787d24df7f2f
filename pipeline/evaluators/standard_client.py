"""Sentiment: the MediaPipe file of each export, run by MediaPipe Tasks' own TextClassifier
(its tokenizer, its padding, its labels: no project code), scored on the test sentences."""
from __future__ import annotations

import numpy as np

import pipeline
from pipeline import artifacts
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric, MetricsFile
from pipeline.tasks.sentiment import TEST_TEXTS_FILE


def mediapipe_classifier(path):
    """text → {label: score}, through MediaPipe's TextClassifier alone."""
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.text import text_classifier
    with pipeline.quiet_stderr():  # its LiteRT's INFO line
        classifier = text_classifier.TextClassifier.create_from_options(
            text_classifier.TextClassifierOptions(
                base_options=base_options.BaseOptions(model_asset_path=str(path))))

    def scores(text: str) -> dict[str, float]:
        result = classifier.classify(text).classifications[0].categories
        return {category.category_name: category.score for category in result}
    return scores


class StandardClient(Evaluator):
    name = "standard_client"
    tasks = ("sentiment",)

    def run(self, context: Context) -> list[Metric]:
        saved = artifacts.read_json(context.files.data(TEST_TEXTS_FILE))
        labels = context.files.label_names()
        records = []
        for export, entry in context.conversions.items():
            client = entry.get("clients", {}).get("mediapipe")
            if client is None:
                continue
            scores_of = mediapipe_classifier(context.files.converted(client["file"]))
            predicted = [max(scores.items(), key=lambda item: item[1])[0]
                         for scores in map(scores_of, saved["texts"])]
            accuracy = float(np.mean([p == labels[t] for p, t in zip(predicted,
                                                                      saved["labels"])]))
            records.append(Metric("mediapipe.accuracy", export, "test", accuracy, True))
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        lines = []
        for model in metrics.exports():
            value = metrics.get("mediapipe.accuracy", model, "test")
            own = metrics.get("accuracy", model, "test")
            if value is not None and own is not None:
                lines.append(f"| {model} | {own:.4f} | {value:.4f} | {100 * (value - own):+.2f} |")
        if not lines:
            return []
        return ["", "## Standard client (MediaPipe TextClassifier, test split)", "",
                "| model | pipeline accuracy | MediaPipe accuracy | difference (points) |",
                "|---|---|---|---|", *lines]
