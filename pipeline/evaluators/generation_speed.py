"""Text generation: characters per second of each export, sampling in the graph (the
generate model, as the bundle generates) and in NumPy after each step, each against the
dense parent's conversion in alternating rounds."""
from __future__ import annotations

import time

import numpy as np

from pipeline import generation
from pipeline.evaluators import Context, Evaluator
from pipeline.metrics import Metric
from pipeline.reference_tokenizer import CharacterTokenizer

SPEED_RUNS = 15
SAMPLE = generation.Sampling(sampler="top_k", k=5, temperature=0.8, seed=1)
PROGRAMS = ("step", "generate")


def characters_per_second(runners: list[tuple], prompt: list[int], length: int,
                          oov_id: int) -> tuple[list[dict], list[float]]:
    """Median generation speed of each (step runner, generate runner or None) pair over
    SPEED_RUNS runs of `length` characters, and with two pairs (a pruned model and its
    dense parent) the first's speed over the second's in each round.

    Sampling and the Python around each invoke are included, as an app pays them. The
    pairs alternate, so the machine's noise falls on both alike; the median of the
    per-round ratios is steadier than the ratio of the two medians when the machine's
    speed drifts during the measurement.
    """
    rates: list[list[float]] = [[] for _ in runners]
    for _ in range(SPEED_RUNS):
        for (step, generator), runner_rates in zip(runners, rates):
            start = time.perf_counter()
            generation.generate_litert(step, prompt, length, SAMPLE, oov_id,
                                       generator=generator)
            runner_rates.append(length / (time.perf_counter() - start))
    speeds = [{"median": float(np.median(r)), "runs": SPEED_RUNS, "characters": length,
               "sampler": SAMPLE.sampler, "threads": 1,
               "sampling": "in the graph (generate model)" if generator else
                           "NumPy after each step"}
              for r, (_, generator) in zip(rates, runners)]
    ratios = [float(a / b) for a, b in zip(*rates[:2])] if len(rates) > 1 else []
    return speeds, ratios


def runner_pairs(context: Context, export: str) -> dict[str, tuple]:
    """"pruned" (and "dense", when convert kept the parent's) → (step, generate) runners."""
    pairs = {"pruned": tuple(context.tflite(export, p) for p in PROGRAMS)}
    references = tuple(context.dense_tflite(export, p) for p in PROGRAMS)
    if all(references):
        pairs["dense"] = references
    return {label: (generation.StepRunner(step), generation.GenerateRunner(generate))
            for label, (step, generate) in pairs.items()}


def prompt_and_tokenizer(context: Context) -> tuple[list[int], CharacterTokenizer]:
    tokenizer = CharacterTokenizer.from_bundle(context.files.stage("data"))
    return tokenizer.encode(context.config.eval.sample_prompt), tokenizer


class GenerationSpeed(Evaluator):
    name = "generation_speed"
    tasks = ("textgen",)
    settings = ("sample_prompt", "sample_length")

    def run(self, context: Context) -> list[Metric]:
        prompt, tokenizer = prompt_and_tokenizer(context)
        length, oov_id = context.config.eval.sample_length, tokenizer.spec["oov_id"]
        records, details = [], {}
        for export in context.conversions:
            runners = runner_pairs(context, export)
            details[export] = {}
            for key, in_graph in (("characters_per_second", True),
                                  ("characters_per_second_numpy", False)):
                pairs = [(step, generator if in_graph else None)
                         for step, generator in runners.values()]
                speeds, ratios = characters_per_second(pairs, prompt, length, oov_id)
                records.append(Metric(key, export, "", speeds[0]["median"], True))
                details[export][key] = speeds[0]
                if ratios:
                    ratio = float(np.median(ratios))
                    records.append(Metric(f"{key}_vs_dense", export, "", ratio, True))
                    details[export][f"{key}_vs_dense"] = {
                        "dense_median": speeds[1]["median"], "ratio": ratio,
                        "per_round": ratios}
        context.details[self.name] = details
        return records
