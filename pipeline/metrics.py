"""One typed record per measured number, and evaluate/metrics.json that holds them.

Every number evaluate measures is a `Metric`: what was measured (`name`), on which model
("keras dense", "keras stripped", an export such as "int8", or "dense int8", the dense
parent's conversion), on which split ("" when it is not a score on a split), its value and
whether higher is better. The report, the bundle's manifest, the bench and its plots select
records by name; none of them knows which evaluator wrote a number. What is not one number
(text samples, adversarial examples, per-weight sparsity, file hashes) goes in `details`,
keyed by the evaluator that wrote it.

`python -m pipeline.metrics OLD.json` prints a metrics.json of the nested format used up
to format 2 (keys "keras"/"tflite") in this format.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

FORMAT = 2


# Words that mark a measured time (or a ratio or rate of times) in a record's name or a
# detail's key: the numbers no rerun repeats, left out when two runs are compared.
TIMING_MARKS = ("latency", "_ms", "per_second", "seconds", "elapsed", "wall_s")


def is_timing(name: str) -> bool:
    return any(mark in name for mark in TIMING_MARKS)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    model: str
    split: str
    value: float | int | bool | None
    higher_is_better: bool | None = None


class MetricsError(ValueError):
    """A metrics file is not one evaluate writes; the message names it."""


@dataclasses.dataclass
class MetricsFile:
    """evaluate/metrics.json: the task, its primary metric, the records and the details."""
    task: str
    primary: str
    higher_is_better: bool
    metrics: list[Metric]
    details: dict

    def select(self, name: str | None = None, model: str | None = None,
               split: str | None = None) -> list[Metric]:
        return [m for m in self.metrics if (name is None or m.name == name)
                and (model is None or m.model == model) and (split is None or m.split == split)]

    def get(self, name: str, model: str, split: str = "", default=None):
        """The value of one record, or `default` when no evaluator measured it."""
        found = self.select(name, model, split)
        return found[0].value if found else default

    def value(self, name: str, model: str, split: str = ""):
        found = self.select(name, model, split)
        if not found:
            raise MetricsError(f"metrics.json has no {name!r} for model {model!r}"
                               + (f" on {split}" if split else "") + "; rerun evaluate")
        return found[0].value

    def scores(self, model: str, split: str) -> dict:
        """name → value of every record of one model on one split (accuracy, loss, ...)."""
        return {m.name: m.value for m in self.select(model=model, split=split)}

    def models(self) -> list[str]:
        """Every model with a record, in the order evaluate measured them."""
        return list(dict.fromkeys(m.model for m in self.metrics))

    def exports(self) -> list[str]:
        """The converted files' exports (the models the size evaluator measured)."""
        return [m.model for m in self.select("gzip_bytes")]

    def to_json(self) -> dict:
        return {"format": FORMAT, "task": self.task,
                "primary": {"name": self.primary, "higher_is_better": self.higher_is_better},
                "metrics": [{**dataclasses.asdict(m), "value": finite_or_none(m.value)}
                            for m in self.metrics],
                "details": self.details}


def finite_or_none(value):
    """JSON has no NaN: a non-finite float is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def from_json(payload, source: str) -> MetricsFile:
    if not isinstance(payload, dict):
        raise MetricsError(f"{source} is not a metrics file (a JSON object)")
    try:
        if payload.get("format") != FORMAT:
            if "tflite" in payload and "keras" in payload:
                payload = from_legacy(payload).to_json()
            else:
                raise MetricsError(f"{source} has metrics format {payload.get('format')!r}, "
                                   f"not {FORMAT}; rerun evaluate")
        records = [Metric(**entry) for entry in payload["metrics"]]
        bad = next((m for m in records if not _record_value(m.value)
                    or not all(isinstance(t, str) for t in (m.name, m.model, m.split))), None)
        if bad is not None:
            raise MetricsError(f"{source}: the record {bad.name!r} of {bad.model!r} is not a "
                               "name, model and split with a number, true/false or null; "
                               "rerun evaluate")
        return MetricsFile(payload["task"], payload["primary"]["name"],
                           payload["primary"]["higher_is_better"], records,
                           payload.get("details", {}))
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
        if isinstance(error, MetricsError):
            raise
        raise MetricsError(f"{source} is not a metrics file written by evaluate "
                           f"({type(error).__name__}: {error}); rerun evaluate") from None


def _record_value(value) -> bool:
    return value is None or isinstance(value, (bool, int, float))


def read(path: Path) -> MetricsFile:
    """A metrics.json of this format, or of the nested one before it (converted)."""
    from pipeline import artifacts
    try:
        payload = artifacts.read_json(path)
    except (OSError, UnicodeDecodeError, artifacts.JsonError) as error:
        raise MetricsError(f"{path} is not readable JSON ({error}); rerun evaluate") from None
    return from_json(payload, str(path))


SPLITS = ("validation", "test")
# The nested format's per-export numbers: key → (record name, higher is better).
LEGACY_EXPORT_KEYS = {"bytes": ("bytes", False), "gzip_bytes": ("gzip_bytes", False),
                      "gzip_compression_vs_dense_float": ("gzip_compression_vs_dense_float",
                                                          True),
                      "pruned_sparsity": ("pruned_sparsity", True),
                      "parity_gap_points": ("parity_gap_points", None),
                      "parity_gap_nats": ("parity_gap_nats", None),
                      "in_graph_sample_identical": ("in_graph_sample_identical", None)}


def from_legacy(old: dict) -> MetricsFile:
    """The nested metrics.json (keys "keras", "tflite", "long_text", ...) as records.

    Scores, sizes, latency, speed and the sentiment evaluators' headline numbers become
    records under the names evaluate uses now; everything else is kept in details.
    """
    primary = old.get("primary", {"name": "accuracy", "higher_is_better": True})
    better = {primary["name"]: primary["higher_is_better"], "loss": False,
              "perplexity": False, "accuracy": True}
    records: list[Metric] = []

    def add(name, model, split, value, higher=None):
        records.append(Metric(name, model, split, value, higher))

    for label, entry in old.get("keras", {}).items():
        for split in SPLITS:
            for name, value in entry.get(split, {}).items():
                add(name, f"keras {label}", split, value, better.get(name))
    for export, entry in old.get("tflite", {}).items():
        for split in SPLITS:
            for name, value in entry.get(split, {}).items():
                add(name, export, split, value, better.get(name))
        latency = entry.get("latency", {})
        if latency:
            add("latency_median_ms", export, "", latency.get("median_ms"), False)
            add("latency_p90_ms", export, "", latency.get("p90_ms"), False)
        if "latency_vs_dense" in entry:
            add("latency_vs_dense", export, "", entry["latency_vs_dense"].get("ratio"), False)
        for key in ("characters_per_second", "characters_per_second_numpy"):
            if key in entry:
                add(key, export, "", entry[key].get("median"), True)
            if f"{key}_vs_dense" in entry:
                add(f"{key}_vs_dense", export, "", entry[f"{key}_vs_dense"].get("ratio"), True)
        for key, (name, higher) in LEGACY_EXPORT_KEYS.items():
            if key in entry:
                add(name, export, "test" if key.startswith("parity_gap") else "", entry[key],
                    higher)
    for model, policies in old.get("long_text", {}).items():
        for policy, result in policies.items():
            for key, value in result.items():
                add(f"long_text.{policy}.{key}", model, "validation", value,
                    None if key == "inputs_per_text" else True)
    for model, result in old.get("behaviour", {}).items():
        scores = {**result.get("categories", {"plain": result.get("plain")}),
                  "negation": result.get("negation")}
        for key, value in scores.items():
            add(f"behaviour.{key}", model, "", value, True)
    for model, result in old.get("robustness", {}).items():
        for key, value in result.get("noise", {}).items():
            if key != "seed":
                add(f"noise.{key}", model, "test", value, True)
        attack = result.get("attack", {})
        for key, higher in (("accuracy_under_attack", True), ("success_rate", False),
                            ("words_changed_per_success", True)):
            if key in attack:
                add(f"attack.{key}", model, "test", attack[key], higher)
    files = {export: {key: entry[key] for key in ("file", "sha256", "programs", "sparsity",
                                                  "dense_reference") if key in entry}
             for export, entry in old.get("tflite", {}).items()}
    # Where the evaluators keep the same things now, so the bundle and the bench read them.
    details = {"size": {"files": files, "keras_sparsity": old.get("keras_sparsity", {})},
               "samples": {"texts": old.get("samples", {}),
                           "settings": old.get("sample_settings", {})},
               "long_text": {"policy": old.get("long_text_policy", {})},
               "legacy": {key: old[key] for key in ("behaviour", "robustness") if key in old}}
    return MetricsFile(old.get("task", "sentiment"), primary["name"],
                       primary["higher_is_better"], records, details)


def main(argv: list[str]) -> int:
    if argv[1:] and argv[1] in ("--help", "-help", "-h", "--helpfull"):
        sys.stdout.write(__doc__.strip().split("\n\n")[-1] + "\n\nExample:\n  python -m "
                         "pipeline.metrics runs/old/evaluate/metrics.json > metrics.json\n")
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: python -m pipeline.metrics OLD_METRICS.json > NEW.json\n")
        return 2
    try:
        converted = read(Path(argv[1]))
    except MetricsError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    sys.stdout.write(json.dumps(converted.to_json(), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
