"""What a sweep writes: results.jsonl/.csv, report.md/.html and plots, and the regression
gate against an earlier results.jsonl."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from pathlib import Path

from pipeline import artifacts, exports
from pipeline.bench import gate
from pipeline.bench.plan import BenchError, line_name

CSV_FIELDS = gate.KEY_FIELDS + (
    "seed", "metric", "metric_value", "higher_is_better", "test_loss", "bytes", "gzip_bytes",
    "measured_sparsity", "lstm_min_sparsity", "latency_median_ms", "latency_p90_ms",
    "latency_ratio_vs_dense", "characters_per_second", "plain", "negation", "long_text",
    "attack_accuracy", "attack_success_rate", "typo_attack_success_rate",
    "typo_noise_accuracy", "mediapipe_accuracy", "length_aware_accuracy",
    "length_aware_latency_ratio", "train_wall_s", "cell_wall_s", "node", "git_commit",
    "cpu_model", "cores", "versions")
HTML_FIELDS = CSV_FIELDS[:CSV_FIELDS.index("train_wall_s")]  # what the HTML table shows


def cell_summaries(rows: list[dict]) -> list[dict]:
    """One row per cell: every number the mean over its seeds, plus `seeds` and the
    metric's `metric_min` and `metric_max` (the spread the report and plots show)."""
    summaries = []
    for cell_rows in gate.by_cell(rows).values():
        summary = dict(cell_rows[0])
        for field, value in cell_rows[0].items():
            values = [r.get(field) for r in cell_rows]
            if all(_number(v) for v in values):
                summary[field] = sum(values) / len(values)
        metrics = [r["metric_value"] for r in cell_rows]
        summary.update(seeds=len(cell_rows), metric_min=min(metrics), metric_max=max(metrics))
        summaries.append(summary)
    return summaries


def plots(rows: list[dict], out_dir: Path) -> list[Path]:
    """Per task: metric, size and latency against target sparsity, then the two trade-offs
    people choose from: metric against latency and against gzip'd size (the Pareto fronts),
    every method one line, each export in its registered line style."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = cell_summaries(rows)
    for task in sorted({r["task"] for r in rows}):
        task_rows = [r for r in rows if r["task"] == task]
        metric = task_rows[0]["metric"]
        robust = any(r.get("attack_success_rate") is not None for r in task_rows)
        figure, axes = plt.subplots(1, 7 if robust else 5, figsize=(35 if robust else 25, 4.5))
        for line in sorted({line_name(r["method"]) for r in task_rows}):
            for export, style in ((e.name, e.plot_style) for e in exports.REGISTRY.values()):
                chosen = [r for r in task_rows
                          if r["export"] == export and line_name(r["method"]) == line]
                if not chosen:
                    continue
                label = f"{line} ({export})"
                by_target = sorted(chosen, key=lambda r: r["target_sparsity"])
                xs = [r["target_sparsity"] for r in by_target]
                axes[0].errorbar(  # the mean over seeds, the bar from min to max
                    xs, [r["metric_value"] for r in by_target],
                    yerr=[[r["metric_value"] - r["metric_min"] for r in by_target],
                          [r["metric_max"] - r["metric_value"] for r in by_target]],
                    fmt=style, capsize=3, label=label)
                axes[1].plot(xs, [r["gzip_bytes"] / 1024 for r in by_target], style, label=label)
                axes[2].plot(xs, [r["latency_median_ms"] for r in by_target], style, label=label)
                by_latency = sorted(chosen, key=lambda r: r["latency_median_ms"])
                axes[3].plot([r["latency_median_ms"] for r in by_latency],
                             [r["metric_value"] for r in by_latency], style, label=label)
                by_size = sorted(chosen, key=lambda r: r["gzip_bytes"])
                axes[4].plot([r["gzip_bytes"] / 1024 for r in by_size],
                             [r["metric_value"] for r in by_size], style, label=label)
                for axis, key in zip(axes[5:], ("attack_success_rate", "typo_noise_accuracy")):
                    measured = [r for r in by_target if r.get(key) is not None]
                    axis.plot([r["target_sparsity"] for r in measured],
                              [r[key] for r in measured], style, label=label)
        axes[0].set(title=f"{task}: test {metric} (.tflite; mean, min-max over seeds)",
                    xlabel="target sparsity")
        axes[1].set(title="gzip'd .tflite size (KiB)", xlabel="target sparsity", yscale="log")
        axes[2].set(title="latency median (ms, 1 thread, LiteRT)", xlabel="target sparsity",
                    ylim=(0, None))
        axes[3].set(title=f"{metric} against latency", xlabel="latency median (ms)",
                    ylabel=metric)
        axes[4].set(title=f"{metric} against size", xlabel="gzip'd KiB", ylabel=metric,
                    xscale="log")
        if robust:
            axes[5].set(title="synonym attack success (lower is better)",
                        xlabel="target sparsity", ylim=(0, 1))
            axes[6].set(title="test accuracy, a typo in 25% of words",
                        xlabel="target sparsity")
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
              "plain / negation / long text | attack success (synonym / typo) | "
              "typo 25% accuracy | MediaPipe accuracy | length-aware accuracy / × latency | "
              "train s |")
    lines = [header, "|" + "---|" * 16]

    def share(value, digits=2):
        return "–" if value is None else f"{value:.{digits}f}"
    for r in rows:
        ratio = r["latency_ratio_vs_dense"]
        behaviour = " / ".join(share(r.get(key)) for key in ("plain", "negation", "long_text"))
        lines.append(
            f"| {r['task']} | {r['method']} | {r['target_sparsity']:g} | {r['export']} | "
            f"{metric_cell(r)} | {r['gzip_bytes'] / 1024:.1f} | "
            f"{r['measured_sparsity']:.3f} / {share(r.get('lstm_min_sparsity'), 3)} | "
            f"{r['latency_median_ms']:.3f} / "
            f"{r['latency_p90_ms']:.3f} | {'' if ratio is None else f'{ratio:.2f}'} | "
            f"{share(r.get('characters_per_second'), 0)} | {behaviour} | "
            f"{share(r.get('attack_success_rate'), 3)} / "
            f"{share(r.get('typo_attack_success_rate'), 3)} | "
            f"{share(r.get('typo_noise_accuracy'), 3)} | "
            f"{share(r.get('mediapipe_accuracy'), 4)} | "
            f"{share(r.get('length_aware_accuracy'), 4)} / "
            f"{share(r.get('length_aware_latency_ratio'))} | "
            f"{r['train_wall_s']:.0f} |")
    return "\n".join(lines)


def metric_cell(summary: dict) -> str:
    """The metric's mean, with its range when more than one seed ran."""
    text = f"{summary['metric']} {summary['metric_value']:.4f}"
    if summary.get("seeds", 1) > 1:
        text += (f" ({summary['metric_min']:.4f}–{summary['metric_max']:.4f}, "
                 f"{summary['seeds']} seeds)")
    return text


def write_report(out_dir: Path, rows: list[dict], problems: list[str] | None,
                 failed: list[str], images: list[Path], context: dict,
                 notes: list[str] = ()) -> None:
    """report.md and report.html; `problems` is None when no baseline was given; `notes`
    are the gate's shifts within seed noise."""
    title = "# Nightly benchmark\n"
    facts = (f"commit `{context['git_commit']}` · {context['cpu_model']} · "
             f"{context['cores']} cores · {time.strftime('%Y-%m-%d %H:%M')}\n")
    verdict = ("No baseline given (--baseline): nothing compared." if problems is None
               else "No regressions against the baseline.")
    problems = problems or []
    status = ("**Regressions / failures:**\n" + "\n".join(f"- {p}" for p in failed + problems)
              if problems or failed else verdict)
    if notes:
        status += "\n\n**Within seed noise (not regressions):**\n" + "\n".join(
            f"- {n}" for n in notes)
    body = "\n\n".join([facts, status, markdown_table(cell_summaries(rows))])
    artifacts.atomic_write_text(out_dir / "report.md", "\n".join(
        [title, body, ""] + [f"![{p.stem}]({p.name})" for p in images]) + "\n")
    html_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(f, '')))}</td>" for f in HTML_FIELDS)
        + "</tr>"
        for r in rows)
    html_images = "".join(
        f'<h2>{html.escape(p.stem)}</h2><img alt="{html.escape(p.stem)}" '
        'src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">' for p in images)
    html_status = ("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in failed + problems)
                   + "</ul>" if problems or failed else f"<p>{verdict}</p>")
    artifacts.atomic_write_text(out_dir / "report.html", (
        "<!doctype html><html><head><meta charset='utf-8'><title>Nightly benchmark</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}</style></head><body><h1>Nightly benchmark</h1>"
        f"<p>{html.escape(facts)}</p>{html_status}<table><tr>"
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


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


# Every field the gate reads, and what it must hold.
BASELINE_TYPES = {"task": lambda v: isinstance(v, str), "method": lambda v: isinstance(v, str),
                  "target_sparsity": _number, "export": lambda v: isinstance(v, str),
                  "metric": lambda v: isinstance(v, str), "metric_value": _number,
                  "higher_is_better": lambda v: isinstance(v, bool), "gzip_bytes": _number,
                  "latency_ratio_vs_dense": lambda v: v is None or _number(v)}


def load_baseline(path: str) -> list[dict]:
    """An earlier results.jsonl, checked row by row (each field's type) before any cell
    runs, so a bad baseline never fails the gate after hours of sweep."""
    try:
        lines = artifacts.read_regular_text(Path(path)).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BenchError(f"--baseline={path} cannot be read ({error})") from None
    try:
        values = artifacts.json_lines(lines)
    except artifacts.JsonLinesError as error:
        raise BenchError(f"--baseline={path}:{error}; give a results.jsonl written by "
                         "pipeline.bench") from None
    rows = [row for _, row in values]
    if not rows:
        raise BenchError(f"--baseline={path} holds no rows")
    check_rows(rows, f"--baseline={path}", [number for number, _ in values])
    return rows


def check_rows(rows: list, source: str, numbers: list[int] | None = None) -> None:
    """Raises BenchError naming the first row (its line number, if given) that lacks a field
    the gate reads or holds one of the wrong kind."""
    for position, row in enumerate(rows):
        where = f"{source}:{numbers[position] if numbers else position + 1}"
        missing = [f for f in BASELINE_TYPES if not isinstance(row, dict) or f not in row]
        if missing:
            raise BenchError(f"{where} lacks {', '.join(missing)}; give a results.jsonl "
                             "written by pipeline.bench")
        wrong = [field for field, accepts in BASELINE_TYPES.items() if not accepts(row[field])]
        if wrong:
            raise BenchError(f"{where}: " + ", ".join(
                f"{field}={row[field]!r}" for field in wrong) + " is not of its kind (task, "
                "method, export and metric are text; target_sparsity, metric_value and "
                "gzip_bytes finite numbers; higher_is_better true or false; "
                "latency_ratio_vs_dense a number or null)")


