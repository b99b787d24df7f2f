"""Sentiment: accuracy on the first --attack_sentences test sentences under typing noise
and under a word-substitution attack, on each export and its dense parent."""
from __future__ import annotations

import numpy as np
from absl import logging

from pipeline import artifacts, robustness
from pipeline.evaluators import Context, Evaluator
from pipeline.evaluators.texts import CLASSIFIER_SETTINGS, text_classifiers
from pipeline.metrics import Metric, MetricsFile
from pipeline.tasks.sentiment import TEST_TEXTS_FILE, attack_tools

ATTACK_SEED, NOISE_RATES = 1, (0.1, 0.3)
ATTACK = (("accuracy_under_attack", True), ("success_rate", False),
          ("words_changed_per_success", True))


class Robustness(Evaluator):
    name = "robustness"
    tasks = ("sentiment",)
    settings = CLASSIFIER_SETTINGS + ("attack_sentences", "attack_max_words",
                                      "attack_max_queries")

    def run(self, context: Context) -> list[Metric]:
        count = context.config.eval.attack_sentences
        if not count:
            return []
        saved = artifacts.read_json(context.files.data(TEST_TEXTS_FILE))
        texts, labels = saved["texts"][:count], np.asarray(saved["labels"][:count])
        tools = attack_tools(context.config)
        records, details = [], {}
        for model, probabilities_of in text_classifiers(context).items():
            noise = robustness.noise_accuracy(probabilities_of, texts, labels, NOISE_RATES,
                                              ATTACK_SEED)
            attack = robustness.attack(probabilities_of, texts, labels, tools["neighbours"],
                                       tools["budget"], ATTACK_SEED, samples=10)
            records += [Metric(f"noise.{kind}", model, "test", value, True)
                        for kind, value in noise.items() if kind != "seed"]
            records += [Metric(f"attack.{key}", model, "test", attack[key], higher)
                        for key, higher in ATTACK]
            details[model] = {"attack": attack, "noise_seed": noise["seed"]}
            logging.info("evaluate: %s accuracy under attack %.4f (success rate %.3f)", model,
                         attack["accuracy_under_attack"], attack["success_rate"])
        context.details[self.name] = details
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        results = metrics.details.get(self.name)
        if not results:
            return []
        first = next(iter(results.values()))["attack"]
        noise = [m.name for m in metrics.select(model=next(iter(results)), split="test")
                 if m.name.startswith("noise.") and m.name != "noise.clean"]
        lines = ["", f"## Robustness ({first['sentences']} test sentences, seed "
                 f"{first['seed']}; attack budget {first['budget']['max_words']} words, "
                 f"{first['budget']['max_queries']} queries)", "",
                 "| model | clean | " + " | ".join(n.split(".", 1)[1] for n in noise) +
                 " | under attack | attack success | words per success |",
                 "|---|" + "---|" * (len(noise) + 4)]
        for model in results:
            words = metrics.get("attack.words_changed_per_success", model, "test")
            lines.append(
                f"| {model} | {metrics.get('noise.clean', model, 'test'):.3f} | " +
                " | ".join(f"{metrics.get(n, model, 'test'):.3f}" for n in noise) +
                f" | {metrics.get('attack.accuracy_under_attack', model, 'test'):.3f} | "
                f"{metrics.get('attack.success_rate', model, 'test'):.3f} | "
                f"{'–' if words is None else f'{words:.2f}'} |")
        for model, result in results.items():
            lines += ["", f"### Adversarial texts that fooled {model}", ""]
            lines += [f"- {s['text']}\n  → {s['adversarial']}"
                      for s in result["attack"]["samples"][:5]]
        return lines
