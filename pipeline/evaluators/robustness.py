"""Sentiment: accuracy on the first --attack_sentences test sentences under typing noise
and under each named word-substitution attack (synonym, typo), on each export and its dense
parent. Records are `attack.NAME.KEY`."""
from __future__ import annotations

import numpy as np
from absl import logging

from pipeline import artifacts, robustness
from pipeline.evaluators import Context, Evaluator
from pipeline.evaluators.texts import CLASSIFIER_SETTINGS, text_classifiers
from pipeline.metrics import Metric, MetricsFile
from pipeline.tasks.sentiment import TEST_TEXTS_FILE, attack_tools

ATTACK_SEED, NOISE_RATES, SAMPLES = 1, (0.1, 0.25), 30
ATTACK = (("accuracy_under_attack", True), ("success_rate", False),
          ("words_changed_per_success", True), ("queries_per_success", True))


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
            records += [Metric(f"noise.{kind}", model, "test", value, True)
                        for kind, value in noise.items() if kind != "seed"]
            details[model] = {"noise_seed": noise["seed"]}
            for name in robustness.ATTACKS:
                attack = robustness.named_attack(name, probabilities_of, texts, labels,
                                                 tools["lexicon"], tools["budgets"],
                                                 ATTACK_SEED, SAMPLES)
                records += [Metric(f"attack.{name}.{key}", model, "test", attack[key], higher)
                            for key, higher in ATTACK]
                details[model][name] = attack
                logging.info("evaluate: %s accuracy under the %s attack %.4f (success rate "
                             "%.3f)", model, name, attack["accuracy_under_attack"],
                             attack["success_rate"])
        context.details[self.name] = details
        return records

    def report(self, metrics: MetricsFile) -> list[str]:
        results = metrics.details.get(self.name)
        if not results:
            return []
        first = next(iter(results.values()))["synonym"]
        noise = [m.name for m in metrics.select(model=next(iter(results)), split="test")
                 if m.name.startswith("noise.") and m.name != "noise.clean"]
        lines = ["", f"## Robustness ({first['sentences']} test sentences, seed "
                 f"{first['seed']}; attack budget {first['budget']['max_words']} words and "
                 f"at most {first['budget']['max_fraction']:.0%} of a sentence, "
                 f"{first['budget']['max_queries']} queries)", "",
                 "| model | clean | " + " | ".join(n.split(".", 1)[1] for n in noise) + " | " +
                 " | ".join(f"{name} attack success | words / queries per success"
                            for name in robustness.ATTACKS) + " |",
                 "|---|" + "---|" * (len(noise) + 1 + 2 * len(robustness.ATTACKS))]
        for model in results:
            cells = [f"{metrics.get('noise.clean', model, 'test'):.3f}"]
            cells += [f"{metrics.get(n, model, 'test'):.3f}" for n in noise]
            for name in robustness.ATTACKS:
                words = metrics.get(f"attack.{name}.words_changed_per_success", model, "test")
                queries = metrics.get(f"attack.{name}.queries_per_success", model, "test")
                cells += [f"{metrics.get(f'attack.{name}.success_rate', model, 'test'):.3f}",
                          "–" if words is None else f"{words:.2f} / {queries:.0f}"]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        for model, result in results.items():
            for name in robustness.ATTACKS:
                lines += ["", f"### {name.capitalize()} attacks that fooled {model}", ""]
                lines += [f"- {s['text']}\n  → {s['adversarial']}"
                          for s in result[name]["samples"][:5]]
        return lines
