"""Text generation: a fixed-prompt sample from each Keras model and each export (sampled
in the graph, as the bundle does), and whether NumPy sampling gives the same text."""
from __future__ import annotations

from models.textgen import build_step_model
from pipeline import generation
from pipeline.evaluators import Context, Evaluator
from pipeline.evaluators.generation_speed import SAMPLE, prompt_and_tokenizer, runner_pairs
from pipeline.evaluators.scores import KERAS_MODELS
from pipeline.metrics import Metric, MetricsFile


class Samples(Evaluator):
    name = "samples"
    tasks = ("textgen",)
    settings = ("sample_prompt", "sample_length")

    def run(self, context: Context) -> list[Metric]:
        config = context.config
        prompt, tokenizer = prompt_and_tokenizer(context)
        length, oov_id = config.eval.sample_length, tokenizer.spec["oov_id"]
        texts, records = {}, []

        def text(ids: list[int]) -> str:
            return config.eval.sample_prompt + tokenizer.decode(ids)

        for label in KERAS_MODELS:
            texts[f"keras_{label}"] = text(generation.generate_keras(
                build_step_model(context.keras_model(label)), prompt, length, SAMPLE, oov_id))
        for export in context.conversions:
            step, generator = runner_pairs(context, export)["pruned"]
            numpy_ids = generation.generate_litert(step, prompt, length, SAMPLE, oov_id)
            in_graph_ids = generation.generate_litert(step, prompt, length, SAMPLE, oov_id,
                                                      generator=generator)
            # float32 in the graph against float64 in NumPy: a draw that lands within
            # rounding of a boundary may differ (and all after it), so this is recorded.
            records.append(Metric("in_graph_sample_identical", export, "",
                                  numpy_ids == in_graph_ids, None))
            texts[f"tflite_{export}"] = text(in_graph_ids)
        context.details[self.name] = {
            "texts": texts,
            "settings": {"prompt": config.eval.sample_prompt, "length": length,
                         "sampler": SAMPLE.sampler, "k": SAMPLE.k,
                         "temperature": SAMPLE.temperature, "seed": SAMPLE.seed,
                         "note": "Keras samples use keras-nlp's sampler, .tflite samples "
                                 "NumPy's: same settings, different random streams"}}
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        lines = []
        for label, sample in metrics.details.get(self.name, {}).get("texts", {}).items():
            lines += ["", f"## Sample: {label}", "", "```", sample, "```"]
        return lines
