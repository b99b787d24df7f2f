"""evaluate: score the Keras models and every .tflite on the validation and test splits.

The task computes its metrics (accuracy for sentiment, nats per character for text
generation), runs the .tflite files through the LiteRT interpreter one example at a
time, as on a phone, and fails the stage when a .tflite drifts from its Keras source by
more than the parity tolerance. This stage adds what every task shares: sizes and the
sparsity read back from the .tflite.
"""
from __future__ import annotations

from pathlib import Path

from pipeline import artifacts, litert, methods, tasks
from pipeline.config import PipelineConfig
from pipeline.stages import strip as strip_stage
from pipeline.stages import train as train_stage


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    task = tasks.for_config(config)
    converted = artifacts.read_json(run_dir / "convert" / "convert.json")
    keras_models = {"dense": run_dir / "train" / train_stage.MODEL_FILE,
                    "stripped": run_dir / "strip" / strip_stage.MODEL_FILE}
    metrics = task.evaluate(config, run_dir, keras_models, converted)
    metrics["task"] = task.name
    metrics["primary"] = {"name": task.primary_metric, "higher_is_better": task.higher_is_better}
    timed = task.timing_ids(run_dir)
    for export, info in converted.items():
        metrics["tflite"][export].update(
            file=info["file"], sha256=artifacts.sha256_file(run_dir / "convert" / info["file"]),
            bytes=info["bytes"], gzip_bytes=info["gzip_bytes"],
            dense_reference=info["dense_reference"],
            gzip_compression_vs_dense_float=info["gzip_compression_vs_dense_float"],
            programs={name: {**{k: p[k] for k in ("file", "bytes", "gzip_bytes")},
                             "sha256": artifacts.sha256_file(run_dir / "convert" / p["file"])}
                      for name, p in info["programs"].items()},
            sparsity=info["sparsity"], pruned_sparsity=pruned_fraction(info["sparsity"], config))
        if "file" in info["dense_reference"]:
            metrics["tflite"][export]["latency_vs_dense"] = litert.paired_latency(
                run_dir / "convert" / info["file"],
                run_dir / "convert" / info["dense_reference"]["file"], config.eval.latency_runs,
                timed)
    metrics["keras_sparsity"] = artifacts.read_json(run_dir / "strip" / "sparsity.json")
    artifacts.atomic_write_json(out_dir / "metrics.json", metrics)
    artifacts.atomic_write_text(out_dir / "report.md", report(metrics))
    primary = task.primary_metric
    return {f"dense_test_{primary}": round(metrics["keras"]["dense"]["test"][primary], 4),
            **{f"{e}_test_{primary}": round(m["test"][primary], 4)
               for e, m in metrics["tflite"].items()}}


def report(metrics: dict) -> str:
    """metrics.json for a person: every model's scores, then the fixed-prompt samples."""
    primary = metrics["primary"]["name"]
    names = [primary] + (["loss"] if primary != "loss" else ["perplexity"])
    lines = [f"# {metrics['task']} run: evaluation", "",
             "| model | " + " | ".join(f"{split} {name}" for split in ("validation", "test")
                                      for name in names) + " |",
             "|---|" + "---|" * (2 * len(names))]
    models = {f"Keras {k}": v for k, v in metrics["keras"].items()}
    models.update({f"{k} .tflite": v for k, v in metrics["tflite"].items()})
    for label, entry in models.items():
        cells = [f"{entry[split][name]:.4f}" for split in ("validation", "test") for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if metrics.get("long_text"):
        lines += ["", "## Long texts (paragraphs of 6-10 validation sentences)", "",
                  "| model | policy | one label | mixed (3:1) | all | inputs per text |",
                  "|---|---|---|---|---|---|"]
        for model, policies in metrics["long_text"].items():
            for policy, result in policies.items():
                lines.append(f"| {model} | {policy} | {result['one_label']:.4f} | "
                             f"{result['mixed']:.4f} | {result['all']:.4f} | "
                             f"{result['inputs_per_text']:.1f} |")
    if metrics.get("behaviour"):
        categories = list(next(iter(metrics["behaviour"].values()))["categories"])
        lines += ["", "## Behavioural suite (accuracy per category)", "",
                  "| model | " + " | ".join(categories) + " | negation |",
                  "|---|" + "---|" * (len(categories) + 1)]
        for model, result in metrics["behaviour"].items():
            lines.append(f"| {model} | " + " | ".join(
                f"{result['categories'][c]:.3f}" for c in categories) +
                f" | {result['negation']:.3f} |")
    if metrics.get("robustness"):
        lines += robustness_report(metrics["robustness"])
    for label, text in metrics.get("samples", {}).items():
        lines += ["", f"## Sample: {label}", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


def robustness_report(results: dict) -> list[str]:
    """Accuracy under noise and attack per model, then a few adversarial texts to judge."""
    first = next(iter(results.values()))
    noise = [k for k in first["noise"] if k not in ("clean", "seed")]
    attack = first["attack"]
    lines = ["", f"## Robustness ({attack['sentences']} test sentences, seed {attack['seed']}; "
             f"attack budget {attack['budget']['max_words']} words, "
             f"{attack['budget']['max_queries']} queries)", "",
             "| model | clean | " + " | ".join(noise) + " | under attack | attack success | "
             "words per success |", "|---|" + "---|" * (len(noise) + 4)]
    for model, result in results.items():
        a = result["attack"]
        words = a["words_changed_per_success"]
        lines.append(f"| {model} | {result['noise']['clean']:.3f} | " + " | ".join(
            f"{result['noise'][k]:.3f}" for k in noise) +
            f" | {a['accuracy_under_attack']:.3f} | {a['success_rate']:.3f} | "
            f"{'–' if words is None else f'{words:.2f}'} |")
    for model, result in results.items():
        lines += ["", f"### Adversarial texts that fooled {model}", ""]
        lines += [f"- {s['text']}\n  → {s['adversarial']}"
                  for s in result["attack"]["samples"][:5]]
    return lines


def pruned_fraction(per_weight: dict, config: PipelineConfig) -> float | None:
    """Element-weighted zero fraction over the weights of the layers that were pruned."""
    kinds = methods.for_config(config).pruned_kinds(config)
    return litert.zero_fraction(per_weight, kinds=kinds) if kinds else None
