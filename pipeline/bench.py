"""Nightly sweep: `python -m pipeline.bench --flagfile=configs/nightly.flags`.

Runs task × method × target sparsity through `pipeline.run` (one subprocess per cell,
sharing a stage cache so each dense model is trained once), then writes
results.jsonl/.csv, report.md, report.html and PNG plots. With --baseline it compares
against an earlier results.jsonl and exits non-zero on a regression. All numbers come from
the .tflite files; latency is compared as a ratio to the dense row of the same run.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import app, flags

from pipeline import artifacts, cli, litert

REPO = Path(__file__).resolve().parents[1]
DENSE_FLAG = "--pruning_method=none"
SMOKE_SUFFIX = "_smoke.flags"  # --smoke runs configs/X_smoke.flags instead of configs/X.flags
KEY_FIELDS = ("task", "method", "target_sparsity", "export")
CSV_FIELDS = KEY_FIELDS + (
    "metric", "metric_value", "higher_is_better", "test_loss", "bytes", "gzip_bytes",
    "measured_sparsity", "lstm_min_sparsity", "latency_median_ms", "latency_p90_ms",
    "latency_ratio_vs_dense", "characters_per_second", "plain", "negation", "long_text",
    "attack_accuracy", "attack_success_rate", "train_wall_s", "git_commit",
    "cpu_model", "cores", "versions")
HTML_FIELDS = CSV_FIELDS[:CSV_FIELDS.index("train_wall_s")]  # what the HTML table shows

flags.DEFINE_string("output_dir", "runs/nightly", "Bench directory: runs/, cache/, results "
                    "and the report.")
flags.DEFINE_multi_string("task", [], "NAME:FLAGFILE, one per task, e.g. "
                          "sentiment:configs/sentiment.flags. A relative FLAGFILE is looked "
                          "up in the working directory, then in the repository.")
flags.DEFINE_multi_string("method", [], "NAME:FLAGS, one per method; FLAGS are pipeline.run "
                          f"flags, e.g. 'l1:--pruning_method=l1 --l1=1e-6'. A method with "
                          f"{DENSE_FLAG} runs once (sparsity 0); one with its own "
                          "--final_sparsity runs once at that target; the others run at every "
                          "--sparsities target. NAME@X (structured@0.5) joins line NAME in "
                          "the plots; TASK/NAME runs for that --task only.")
flags.DEFINE_string("dense_method", "dense", "The method whose rows are the latency "
                    "reference of every row of the same task and export.")
flags.DEFINE_list("sparsities", ["0", "0.5", "0.8", "0.9", "0.95"], "Target sparsities for "
                  "every pruning method; 0 selects the dense method's row.")
flags.DEFINE_multi_string("run_flag", [], "Extra pipeline.run flag for every cell "
                          "(e.g. --data_dir=...).")
flags.DEFINE_bool("smoke", False, "Each task's smoke flagfile (configs/X_smoke.flags beside "
                  "configs/X.flags: small slices, a few epochs), one sparsity and one point "
                  "of each NAME@X line (the X nearest 0.5): exercises the whole path in "
                  "minutes; the numbers are not results.")
flags.DEFINE_list("smoke_tasks", [], "With --smoke: run only these --task names (default: "
                  "every task). The full sweep always runs every task.")
flags.DEFINE_list("smoke_methods", [], "With --smoke: run only these --method names, as "
                  "given (e.g. dense,magnitude,sentiment/l1); it must include --dense_method. "
                  "Default: every method, one point of each NAME@X line.")
flags.DEFINE_integer("jobs", 1, "Cells run side by side. Each task's dense cell runs first "
                     "(the others restore its training from the cache); then each method's "
                     "cells run in order in one job, since they share a parent. Above 1 the "
                     "cells share the cores, so keep 1 for latency you mean to quote "
                     "(ratios to the dense parent are paired inside each cell and hold).",
                     lower_bound=1)
flags.DEFINE_string("baseline", "", "An earlier results.jsonl to compare against.")
flags.DEFINE_float("metric_tolerance", 0.01, "Largest allowed drop of the primary metric "
                   "(absolute; accuracy 0.01 = 1 point) before a row counts as regressed.")
flags.DEFINE_float("size_tolerance", 0.02, "Largest allowed relative growth of gzip'd bytes.")
flags.DEFINE_float("latency_tolerance", 0.25, "Largest allowed relative growth of the "
                   "latency ratio to the dense row measured in the same run.")
FLAGS = flags.FLAGS


class BenchError(RuntimeError):
    """A bench flag or input is wrong; the message names it."""


def parse_pairs(entries: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for entry in entries:
        name, sep, value = entry.partition(":")
        if not sep or not name or name in pairs:
            raise BenchError(f"--{flag}={entry!r} must be NAME:VALUE with a unique NAME")
        pairs[name] = value
    return pairs


def fixed_sparsity(method_flags: str) -> float | None:
    """A method that sets its own --final_sparsity runs at that target only."""
    for argument in shlex.split(method_flags):
        if argument.startswith("--final_sparsity="):
            try:
                return float(argument.split("=", 1)[1])
            except ValueError:
                raise BenchError(f"--method flags {method_flags!r}: {argument} is not a "
                                 "number") from None
    return None


def method_name(method: str) -> tuple[str | None, str]:
    """(the only task it runs for or None, its name): TASK/NAME restricts NAME to TASK."""
    task, _, name = method.rpartition("/")
    return task or None, name


def smoke_methods(methods: dict) -> dict:
    """One method per NAME@X line (the X nearest 0.5), so --smoke exercises every line once."""
    def distance(method: str) -> float:
        _, _, point = method_name(method)[1].partition("@")
        try:
            return abs(float(point) - 0.5)
        except ValueError:
            return 0.0
    chosen: dict[tuple, str] = {}
    for method in methods:
        task, name = method_name(method)
        line = (task, line_name(name))
        if line not in chosen or distance(method) < distance(chosen[line]):
            chosen[line] = method
    return {method: flags for method, flags in methods.items() if method in chosen.values()}


def smoke_subset(tasks: dict, methods: dict, task_names: list[str], method_names: list[str],
                 dense_method: str) -> tuple[dict, dict]:
    """The tasks and methods --smoke_tasks and --smoke_methods keep (all when empty)."""
    def keep(chosen: dict, names: list[str], flag: str) -> dict:
        unknown = [name for name in names if name not in chosen]
        if unknown:
            raise BenchError(f"--{flag}={','.join(names)}: {', '.join(unknown)} not among "
                             f"{', '.join(chosen)}")
        return {name: value for name, value in chosen.items() if not names or name in names}

    if method_names and dense_method not in method_names:
        raise BenchError(f"--smoke_methods={','.join(method_names)} must include "
                         f"--dense_method={dense_method}: it is every row's latency reference")
    return (keep(tasks, task_names, "smoke_tasks"),
            keep(methods, method_names, "smoke_methods"))


def cells(tasks: dict, methods: dict, sparsities: list[float], smoke: bool) -> list[tuple]:
    """(task, method as given, target sparsity) for every cell of the sweep."""
    nonzero = sorted(s for s in sparsities if s > 0)
    if smoke:
        methods = smoke_methods(methods)
        nonzero = [min(nonzero, key=lambda s: abs(s - 0.8))] if nonzero else []
    for method in methods:
        only = method_name(method)[0]
        if only is not None and only not in tasks:
            raise BenchError(f"--method={method}: no --task named {only} (tasks: "
                             f"{', '.join(tasks)})")
    result = []
    for task in tasks:
        for method, method_flags in methods.items():
            if method_name(method)[0] not in (None, task):
                continue
            fixed = fixed_sparsity(method_flags)
            if DENSE_FLAG in shlex.split(method_flags):
                if 0 in sparsities:
                    result.append((task, method, 0.0))
            elif fixed is not None:
                result.append((task, method, fixed))
            else:
                result.extend((task, method, s) for s in nonzero)
    return result


def cell_arguments(flagfile: Path, method_flags: str, sparsity: float, run_dir: Path,
                   cache_dir: Path, extra: list[str]) -> list[str]:
    """pipeline.run's arguments for one cell: the method's flags override the flagfile's."""
    arguments = [f"--flagfile={flagfile}", *shlex.split(method_flags)]
    if sparsity > 0:
        arguments.append(f"--final_sparsity={sparsity}")
    return arguments + [f"--output_dir={run_dir}", f"--cache_dir={cache_dir}", *extra]


def run_cell(arguments: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    artifacts.claim_folder(run_dir, "--output_dir")  # the cell's log goes in its run folder
    with open(run_dir / "bench.log", "w", encoding="utf-8") as log:
        return subprocess.run([sys.executable, "-m", "pipeline.run", *arguments],
                              stdout=log, stderr=subprocess.STDOUT)


def check_cell(label: str, arguments: list[str]) -> None:
    """Parses and validates a cell's config in-process (its dataset and word vectors
    included), so a bad one stops the sweep first."""
    from absl.flags import Error as FlagError

    from pipeline.cli import FlagfileError
    from pipeline.config import ConfigError
    from pipeline.data import DataError, check_dataset
    from pipeline.flags import parse_config
    from pipeline.vectors import check as check_vectors
    try:
        config = parse_config(arguments)
        check_dataset(config.data)
        check_vectors(config)
    except (ConfigError, DataError, FlagError, FlagfileError) as error:
        raise BenchError(f"cell {label}: {error}") from None


def resolve_flagfile(name: str, flagfile: str, smoke: bool) -> Path:
    """The task's flagfile (or its smoke variant) as an absolute path."""
    candidates = [Path(flagfile).expanduser(), REPO / flagfile]
    path = next((p.resolve() for p in candidates if p.is_file()), None)
    if path is None:
        raise BenchError(f"--task={name}:{flagfile}: flagfile not found in the working "
                         f"directory or in {REPO}")
    if smoke:
        smoke_path = path.with_name(path.stem + SMOKE_SUFFIX)
        if not smoke_path.is_file():
            raise BenchError(f"--smoke needs {smoke_path} beside {path} (the task's small "
                             "variant) for --task={name}")
        return smoke_path
    return path


def machine() -> dict:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": model, "cores": os.cpu_count()}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rows_for(run_dir: Path, task: str, method: str, sparsity: float, context: dict) -> list:
    metrics = artifacts.read_json(run_dir / "evaluate" / "metrics.json")
    versions = artifacts.read_json(run_dir / "bundle" / "manifest.json")["versions"]
    wall = sum(artifacts.stage_record(run_dir / s).get("elapsed_s", 0.0)
               for s in ("train", "prune"))
    rows = []
    for export, entry in metrics["tflite"].items():
        # Sentiment only: the behavioural suite and long texts under the shipped policy.
        suite = metrics.get("behaviour", {}).get(export, {})
        attack = metrics.get("robustness", {}).get(export, {}).get("attack", {})
        policy = metrics.get("long_text_policy", {}).get("policy")
        long_texts = metrics.get("long_text", {}).get(export, {}).get(policy, {})
        measured = entry["pruned_sparsity"]
        if measured is None:
            measured = litert.zero_fraction(entry["sparsity"])
        lstm = [w["sparsity"] for w in entry["sparsity"].values() if w["kind"] == "lstm"]
        rows.append({
            "task": task, "method": method, "target_sparsity": sparsity, "export": export,
            "metric": metrics["primary"]["name"],
            "metric_value": entry["test"][metrics["primary"]["name"]],
            "higher_is_better": metrics["primary"]["higher_is_better"],
            "test_loss": entry["test"]["loss"], "bytes": entry["bytes"],
            "gzip_bytes": entry["gzip_bytes"], "measured_sparsity": round(measured, 5),
            # the least pruned LSTM weight (each direction, each layer), from the .tflite
            "lstm_min_sparsity": round(min(lstm), 5) if lstm else None,
            "latency_median_ms": entry["latency"]["median_ms"],
            "latency_p90_ms": entry["latency"]["p90_ms"],
            # paired with the cell's own dense parent in evaluate; else add_latency_ratios'
            "latency_ratio_vs_dense": entry.get("latency_vs_dense", {}).get("ratio"),
            # text generation only: sampling in the graph, the way the bundle generates
            "characters_per_second": entry.get("characters_per_second", {}).get("median"),
            "plain": suite.get("plain"), "negation": suite.get("negation"),
            "long_text": long_texts.get("all"),
            "attack_accuracy": attack.get("accuracy_under_attack"),
            "attack_success_rate": attack.get("success_rate"),
            "train_wall_s": round(wall, 1), "versions": versions, **context})
    return rows


def add_latency_ratios(rows: list[dict], dense_method: str) -> None:
    """For rows evaluate could not pair with a dense parent (the dense and small-dense
    cells): latency over the dense method's row of the same task and export. Those cells
    ran minutes apart, maybe beside another job, so these ratios are the noisier kind."""
    dense = {(r["task"], r["export"]): r["latency_median_ms"]
             for r in rows if r["method"] == dense_method}
    for row in rows:
        reference = dense.get((row["task"], row["export"]))
        if reference and row["latency_ratio_vs_dense"] is None:
            row["latency_ratio_vs_dense"] = round(row["latency_median_ms"] / reference, 4)


def row_key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY_FIELDS)


def regressions(rows: list[dict], baseline: list[dict], metric_tolerance: float,
                size_tolerance: float, latency_tolerance: float) -> list[str]:
    """Rows that got worse than the baseline, each as one readable line."""
    current = {row_key(r): r for r in rows}
    found = []
    for old in baseline:
        key = row_key(old)
        label = "/".join(str(k) for k in key)
        new = current.get(key)
        if new is None:
            found.append(f"{label}: row missing from this run")
            continue
        delta = new["metric_value"] - old["metric_value"]
        worse = -delta if old["higher_is_better"] else delta
        if worse > metric_tolerance:
            found.append(f"{label}: {old['metric']} {new['metric_value']:.4f} vs baseline "
                         f"{old['metric_value']:.4f} (worse by {worse:.4f} > "
                         f"{metric_tolerance})")
        if new["gzip_bytes"] > old["gzip_bytes"] * (1 + size_tolerance):
            found.append(f"{label}: gzip'd size {new['gzip_bytes']} B vs baseline "
                         f"{old['gzip_bytes']} B")
        new_ratio, old_ratio = new["latency_ratio_vs_dense"], old["latency_ratio_vs_dense"]
        if new_ratio and old_ratio and new_ratio > old_ratio * (1 + latency_tolerance):
            found.append(f"{label}: latency {new_ratio:.2f}× dense vs baseline "
                         f"{old_ratio:.2f}×")
    return found


def line_name(method: str) -> str:
    """Methods NAME@X are points of one line NAME (e.g. structured fractions)."""
    return method.split("@", 1)[0]


def plots(rows: list[dict], out_dir: Path) -> list[Path]:
    """Per task: metric, size and latency against target sparsity, then the two trade-offs
    people choose from: metric against latency and against gzip'd size (the Pareto fronts),
    every method one line, float solid and int8 dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task in sorted({r["task"] for r in rows}):
        task_rows = [r for r in rows if r["task"] == task]
        metric = task_rows[0]["metric"]
        figure, axes = plt.subplots(1, 5, figsize=(25, 4.5))
        for line in sorted({line_name(r["method"]) for r in task_rows}):
            for export, style in (("float", "-o"), ("int8", "--s")):
                chosen = [r for r in task_rows
                          if r["export"] == export and line_name(r["method"]) == line]
                if not chosen:
                    continue
                label = f"{line} ({export})"
                by_target = sorted(chosen, key=lambda r: r["target_sparsity"])
                xs = [r["target_sparsity"] for r in by_target]
                axes[0].plot(xs, [r["metric_value"] for r in by_target], style, label=label)
                axes[1].plot(xs, [r["gzip_bytes"] / 1024 for r in by_target], style, label=label)
                axes[2].plot(xs, [r["latency_median_ms"] for r in by_target], style, label=label)
                by_latency = sorted(chosen, key=lambda r: r["latency_median_ms"])
                axes[3].plot([r["latency_median_ms"] for r in by_latency],
                             [r["metric_value"] for r in by_latency], style, label=label)
                by_size = sorted(chosen, key=lambda r: r["gzip_bytes"])
                axes[4].plot([r["gzip_bytes"] / 1024 for r in by_size],
                             [r["metric_value"] for r in by_size], style, label=label)
        axes[0].set(title=f"{task}: test {metric} (.tflite)", xlabel="target sparsity")
        axes[1].set(title="gzip'd .tflite size (KiB)", xlabel="target sparsity", yscale="log")
        axes[2].set(title="latency median (ms, 1 thread, LiteRT)", xlabel="target sparsity",
                    ylim=(0, None))
        axes[3].set(title=f"{metric} against latency", xlabel="latency median (ms)",
                    ylabel=metric)
        axes[4].set(title=f"{metric} against size", xlabel="gzip'd KiB", ylabel=metric,
                    xscale="log")
        axes[0].legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{task}.png"
        with artifacts.atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=80, format="png")
        plt.close(figure)
        written.append(path)
    return written


def markdown_table(rows: list[dict]) -> str:
    header = ("| task | method | target | export | metric | gzip KiB | measured sparsity "
              "(all / least LSTM weight) | latency ms (median / p90) | × dense | chars/s | "
              "plain / negation / long text | under attack / attack success | train s |")
    lines = [header, "|" + "---|" * 13]

    def share(value, digits=2):
        return "–" if value is None else f"{value:.{digits}f}"
    for r in rows:
        ratio = r["latency_ratio_vs_dense"]
        behaviour = " / ".join(share(r.get(key)) for key in ("plain", "negation", "long_text"))
        lines.append(
            f"| {r['task']} | {r['method']} | {r['target_sparsity']:g} | {r['export']} | "
            f"{r['metric']} {r['metric_value']:.4f} | {r['gzip_bytes'] / 1024:.1f} | "
            f"{r['measured_sparsity']:.3f} / {share(r.get('lstm_min_sparsity'), 3)} | "
            f"{r['latency_median_ms']:.3f} / "
            f"{r['latency_p90_ms']:.3f} | {'' if ratio is None else f'{ratio:.2f}'} | "
            f"{share(r.get('characters_per_second'), 0)} | {behaviour} | "
            f"{share(r.get('attack_accuracy'), 3)} / {share(r.get('attack_success_rate'), 3)} | "
            f"{r['train_wall_s']:.0f} |")
    return "\n".join(lines)


def write_report(out_dir: Path, rows: list[dict], problems: list[str], failed: list[str],
                 images: list[Path], context: dict) -> None:
    title = "# Nightly benchmark\n"
    facts = (f"commit `{context['git_commit']}` · {context['cpu_model']} · "
             f"{context['cores']} cores · {time.strftime('%Y-%m-%d %H:%M')}\n")
    status = ("**Regressions / failures:**\n" + "\n".join(f"- {p}" for p in failed + problems)
              if problems or failed else "No regressions against the baseline.")
    body = "\n\n".join([facts, status, markdown_table(rows)])
    artifacts.atomic_write_text(out_dir / "report.md", "\n".join(
        [title, body, ""] + [f"![{p.stem}]({p.name})" for p in images]) + "\n")
    html_rows = "".join(
        "<tr>" + "".join(f"<td>{r.get(f, '')}</td>" for f in HTML_FIELDS) + "</tr>"
        for r in rows)
    html_images = "".join(
        f'<h2>{p.stem}</h2><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">' for p in images)
    html_status = ("<ul>" + "".join(f"<li>{p}</li>" for p in failed + problems) + "</ul>"
                   if problems or failed else "<p>No regressions against the baseline.</p>")
    artifacts.atomic_write_text(out_dir / "report.html", (
        "<!doctype html><html><head><meta charset='utf-8'><title>Nightly benchmark</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}</style></head><body><h1>Nightly benchmark</h1>"
        f"<p>{facts}</p>{html_status}<table><tr>"
        + "".join(f"<th>{f}</th>" for f in HTML_FIELDS) + f"</tr>{html_rows}</table>"
        f"{html_images}</body></html>\n"))


def write_results(out_dir: Path, rows: list[dict]) -> None:
    artifacts.atomic_write_text(out_dir / "results.jsonl",
                                "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, "versions": " ".join(f"{k}={v}" for k, v in r["versions"].items())}
                     for r in rows)
    artifacts.atomic_write_text(out_dir / "results.csv", buffer.getvalue())


BASELINE_FIELDS = KEY_FIELDS + ("metric", "metric_value", "higher_is_better", "gzip_bytes",
                                "latency_ratio_vs_dense")


def load_baseline(path: str) -> list[dict]:
    """An earlier results.jsonl, checked row by row before any cell runs."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BenchError(f"--baseline={path} cannot be read ({error})") from None
    try:
        values = artifacts.json_lines(lines)
    except artifacts.JsonLinesError as error:
        raise BenchError(f"--baseline={path}:{error}; give a results.jsonl written by "
                         "pipeline.bench") from None
    rows = []
    for number, row in values:
        missing = [f for f in BASELINE_FIELDS if not isinstance(row, dict) or f not in row]
        if missing:
            raise BenchError(f"--baseline={path}:{number} lacks {', '.join(missing)}; give a "
                             "results.jsonl written by pipeline.bench")
        if not isinstance(row["metric_value"], (int, float)) or \
                not isinstance(row["gzip_bytes"], (int, float)):
            raise BenchError(f"--baseline={path}:{number}: metric_value and gzip_bytes must be "
                             "numbers")
        rows.append(row)
    if not rows:
        raise BenchError(f"--baseline={path} holds no rows")
    return rows


def job_groups(sweep: list[tuple], dense_method: str) -> list[list[list[int]]]:
    """Waves of jobs, each job a list of sweep positions run in order.

    The first wave holds each task's dense cell, whose training the other cells restore
    from the cache; in the second, a method's cells share one job, since they share their
    parent (the l1 and l2 penalties train their own).
    """
    waves: list[dict] = [{}, {}]
    for position, (task, method, *_) in enumerate(sweep):
        wave = waves[0] if method == dense_method else waves[1]
        wave.setdefault((task, method), []).append(position)
    return [list(wave.values()) for wave in waves if wave]


def run_sweep(sweep: list[tuple], context: dict, results: Path,
              jobs: int) -> tuple[dict[int, list], list[str]]:
    """Runs every cell (`jobs` side by side); rows by sweep position, and the failures."""
    rows_by_cell: dict[int, list] = {}
    failed: list[str] = []
    lock = threading.Lock()
    started = [0]

    def run_job(positions: list[int]) -> None:
        for position in positions:
            task, method, sparsity, run_dir, arguments = sweep[position]
            label = f"{task} {method} {sparsity:g}"
            with lock:
                started[0] += 1
                prefix = f"[{started[0]}/{len(sweep)}] {label}"
            print(f"{prefix}: started", flush=True)
            start = time.monotonic()
            result = run_cell(arguments, run_dir)
            elapsed = time.monotonic() - start
            if result.returncode != 0:
                with lock:
                    failed.append(f"{task}/{method}/{sparsity:g}: pipeline.run exited "
                                  f"{result.returncode}; see {run_dir / 'bench.log'}")
                print(f"{prefix}: FAILED in {elapsed:.0f} s (log: {run_dir / 'bench.log'})",
                      flush=True)
                continue
            new_rows = rows_for(run_dir, task, method, sparsity, context)
            with lock:
                rows_by_cell[position] = new_rows
                with open(results, "a", encoding="utf-8") as handle:  # kept if the sweep dies
                    handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in new_rows)
            print(f"{prefix}: done in {elapsed:.0f} s " + ", ".join(
                f"{r['export']} {r['metric']} {r['metric_value']:.4f}" for r in new_rows),
                flush=True)

    for wave in job_groups(sweep, FLAGS.dense_method):
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(run_job, job) for job in wave]:
                future.result()
    return rows_by_cell, failed


def bench(out_dir: Path) -> int:
    tasks = parse_pairs(FLAGS.task, "task")
    methods = parse_pairs(FLAGS.method, "method")
    if not tasks or not methods:
        raise BenchError("give at least one --task=NAME:FLAGFILE and one --method=NAME:FLAGS")
    if FLAGS.smoke:
        tasks, methods = smoke_subset(tasks, methods, FLAGS.smoke_tasks, FLAGS.smoke_methods,
                                      FLAGS.dense_method)
    flagfiles = {name: resolve_flagfile(name, flagfile, FLAGS.smoke)
                 for name, flagfile in tasks.items()}
    try:
        sparsities = [float(s) for s in FLAGS.sparsities]
    except ValueError:
        raise BenchError(f"--sparsities={','.join(FLAGS.sparsities)} must be numbers") from None
    baseline = load_baseline(FLAGS.baseline) if FLAGS.baseline else None
    sweep = []
    for task, method, sparsity in cells(tasks, methods, sparsities, FLAGS.smoke):
        name = method_name(method)[1]
        run_dir = out_dir / "runs" / task / name / f"s{sparsity:g}"
        arguments = cell_arguments(flagfiles[task], methods[method], sparsity, run_dir,
                                   out_dir / "cache", list(FLAGS.run_flag))
        check_cell(f"{task}/{name}/{sparsity:g}", arguments)
        sweep.append((task, name, sparsity, run_dir, arguments))
    artifacts.claim_folder(out_dir, "--output_dir")
    context = {**machine(), "git_commit": git_commit()}
    results = out_dir / "results.jsonl"
    artifacts.atomic_write_text(results, "")
    rows_by_cell, failed = run_sweep(sweep, context, results, FLAGS.jobs)
    rows = [row for position in sorted(rows_by_cell) for row in rows_by_cell[position]]
    add_latency_ratios(rows, FLAGS.dense_method)
    problems = (regressions(rows, baseline, FLAGS.metric_tolerance, FLAGS.size_tolerance,
                            FLAGS.latency_tolerance) if baseline is not None else [])
    write_results(out_dir, rows)
    write_report(out_dir, rows, problems, failed, plots(rows, out_dir) if rows else [],
                 context)
    for line in failed + problems:
        print(f"REGRESSION: {line}" if line in problems else f"FAILED: {line}", flush=True)
    print(f"report: {out_dir / 'report.md'}", flush=True)
    return 1 if problems or failed else 0


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.stderr.write(f"error: unexpected arguments {argv[1:]} (see --helpfull)\n")
        sys.exit(2)
    try:
        sys.exit(bench(Path(FLAGS.output_dir).expanduser().resolve()))
    except (BenchError, artifacts.ForeignFolderError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
