"""Sentiment: length-aware inputs (tokenizer.json's length_buckets) against the fixed
max_length input, for each export: test accuracy, how far the probabilities move, and the
median per-sentence latency, each sentence timed at its own input length beside the fixed
one (one thread, same process, alternating)."""
from __future__ import annotations

import numpy as np

from pipeline import artifacts, litert, long_text
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric, MetricsFile
from pipeline.reference_tokenizer import ReferenceTokenizer, read_spec_and_vocabulary
from pipeline.tasks.sentiment import TEST_TEXTS_FILE

TIMED_CALLS = 5  # per sentence and input length, alternating; the median is kept


class LengthAware(Evaluator):
    name = "length_aware"
    tasks = ("sentiment",)
    settings = ("max_length",)

    def run(self, context: Context) -> list[Metric]:
        saved = artifacts.read_json(context.files.data(TEST_TEXTS_FILE))
        labels = np.asarray(saved["labels"])
        spec, vocabulary = read_spec_and_vocabulary(context.files.stage("data"))
        spec = {**spec, "long_text": {"policy": "first"}}
        fixed = ReferenceTokenizer(spec, vocabulary)
        aware = ReferenceTokenizer({**spec, "length_buckets": long_text.length_buckets(
            spec["max_length"])}, vocabulary)
        fixed_inputs = [np.asarray(fixed.encode_windows(t)[0], np.int32) for t in saved["texts"]]
        # The length-aware input is the fixed one without its extra leading pads.
        aware_inputs = [ids[-aware.input_length(int(np.count_nonzero(ids != spec["pad_id"]))):]
                        for ids in fixed_inputs]
        records, details = [], {}
        for export in context.conversions:
            runner = litert.Runner(context.tflite(export))
            fixed_p = np.stack([runner(ids) for ids in fixed_inputs])
            aware_p = np.stack([runner(ids) for ids in aware_inputs])
            change = np.abs(aware_p - fixed_p).max(axis=1)
            fixed_ms, aware_ms = [], []
            for short, full in zip(aware_inputs, fixed_inputs):  # alternating, sentence by sentence
                fixed_ms.append(runner.median_invoke_ms(full, TIMED_CALLS))
                aware_ms.append(runner.median_invoke_ms(short, TIMED_CALLS))
            ratio = float(np.median(aware_ms) / np.median(fixed_ms))
            records += [
                Metric("length_aware.accuracy", export, "test",
                       float(np.mean(aware_p.argmax(1) == labels)), True),
                Metric("length_aware.accuracy_fixed", export, "test",
                       float(np.mean(fixed_p.argmax(1) == labels)), True),
                Metric("length_aware.probability_change_max", export, "test",
                       float(change.max()), False),
                Metric("length_aware.probability_change_mean", export, "test",
                       float(change.mean()), False),
                Metric("length_aware.median_latency_ratio", export, "test", ratio, False)]
            details[export] = {"median_ms": float(np.median(aware_ms)),
                               "fixed_median_ms": float(np.median(fixed_ms)),
                               "median_input_length": float(np.median(
                                   [ids.size for ids in aware_inputs])),
                               "timed": f"invoke, median of {TIMED_CALLS} per sentence, "
                                        "alternating with the fixed input, 1 thread"}
        context.details[self.name] = details
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        lines = []
        for model in metrics.exports():
            values = [metrics.get(f"length_aware.{name}", model, "test") for name in (
                "accuracy_fixed", "accuracy", "probability_change_mean",
                "probability_change_max", "median_latency_ratio")]
            if values[0] is not None:
                lines.append(f"| {model} | " + " | ".join(f"{v:.4f}" for v in values[:4])
                             + f" | {values[4]:.2f}× |")
        if not lines:
            return []
        return ["", "## Length-aware inputs (test split; tokenizer.json length_buckets)", "",
                "| model | accuracy at max_length | accuracy length-aware | mean prob. change "
                "| max prob. change | median latency vs max_length |",
                "|---|---|---|---|---|---|", *lines]
