"""Evaluators: each measures one thing on the exported models and returns `Metric` records.

The evaluate stage runs every registered evaluator that applies to the run's task, in
REGISTRY order, and writes what they return to metrics.json. An evaluator declares the
tasks it applies to and the settings it reads (they join the evaluate stage's key, so a
changed setting reruns evaluate and nothing else), and may add a section to report.md.
Adding an evaluator is one module with an `Evaluator` subclass plus one line in REGISTRY.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from pipeline import artifacts
from pipeline.metrics import Metric, MetricsFile

# name → "module:class", in the order evaluate runs them; modules load only when used.
REGISTRY = {
    "scores": "pipeline.evaluators.scores:Scores",
    "size": "pipeline.evaluators.size:Size",
    "latency": "pipeline.evaluators.latency:Latency",
    "generation_speed": "pipeline.evaluators.generation_speed:GenerationSpeed",
    "samples": "pipeline.evaluators.samples:Samples",
    "long_text": "pipeline.evaluators.long_text:LongText",
    "behaviour": "pipeline.evaluators.behaviour:Behaviour",
    "robustness": "pipeline.evaluators.robustness:Robustness",
    "standard_client": "pipeline.evaluators.standard_client:StandardClient",
    "length_aware": "pipeline.evaluators.length_aware:LengthAware",
}


class Context:
    """What an evaluator measures: the run's files, its task, and the converted models.

    Loaded Keras models are shared between evaluators, and `details` collects what is not
    one number (samples, hashes), keyed by evaluator name.
    """

    def __init__(self, config, task, files: artifacts.RunFiles):
        self.config, self.task, self.files = config, task, files
        self.conversions: dict = artifacts.read_json(files.conversions)
        self.details: dict = {}
        self._shared: dict = {}

    def shared(self, key: str, make):
        """`make()`, computed once per evaluation: what several evaluators read."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def keras_model(self, label: str):
        """"dense" (the trained parent) or "stripped" (the pruned model without wrappers),
        loaded once per evaluation."""
        path = {"dense": self.files.trained_model, "stripped": self.files.stripped_model}[label]
        return self.shared(f"keras {label}", lambda: artifacts.load_keras_model(path))

    def tflite(self, export: str, program: str = "model") -> Path:
        return self.files.converted(self.conversions[export]["programs"][program]["file"])

    def dense_tflite(self, export: str, program: str = "model") -> Path | None:
        """The dense parent's conversion of `program`, when convert kept one."""
        file = self.conversions[export]["programs"][program].get("dense_reference", {}).get(
            "file")
        return None if file is None else self.files.converted(file)

    def with_dense_parents(self) -> dict[str, Path]:
        """Model label → the window .tflite of every export and of its dense parent."""
        models = {}
        for export in self.conversions:
            models[export] = self.tflite(export)
            if self.dense_tflite(export) is not None:
                models[f"dense {export}"] = self.dense_tflite(export)
        return models


class Evaluator:
    name: str
    tasks: tuple[str, ...] = ()     # the tasks it applies to; empty: every task
    settings: tuple[str, ...] = ()  # the settings (fields or sections) it reads

    def applies(self, config) -> bool:
        return not self.tasks or config.data.task in self.tasks

    def reads(self, config) -> tuple[str, ...]:
        """The settings it reads for this config (more when an option is on)."""
        return self.settings

    def run(self, context: Context) -> list[Metric]:
        raise NotImplementedError

    def report(self, metrics: MetricsFile) -> list[str]:
        """Markdown lines for report.md (none by default: the scores table shows records)."""
        return []


def get(name: str) -> Evaluator:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def for_config(config) -> list[Evaluator]:
    """The registered evaluators that apply to the run's task, in run order."""
    return [evaluator for evaluator in map(get, REGISTRY) if evaluator.applies(config)]


def reads(config) -> tuple[str, ...]:
    """Every setting the run's evaluators read."""
    return tuple(dict.fromkeys(name for evaluator in for_config(config)
                               for name in evaluator.reads(config)))
