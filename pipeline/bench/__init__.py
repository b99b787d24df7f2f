"""Nightly sweep: `python -m pipeline.bench --flagfile=configs/nightly.flags`.

Runs task × method × target sparsity through `pipeline.run` (one subprocess per cell,
sharing a stage cache so each dense model is trained once), then writes
results.jsonl/.csv, report.md, report.html and PNG plots. With --baseline it compares
against an earlier results.jsonl and exits non-zero on a regression. All numbers come from
the .tflite files; latency is compared as a ratio to the dense row of the same run.

This module holds the flags and the order of work; `plan` decides the cells, `sweep` runs
them and reads their rows, `report` writes the results and applies the regression gate.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from absl import flags

from pipeline import artifacts
from pipeline.bench import gate, plan, report, sweep

flags.DEFINE_string("output_dir", "runs/nightly", "Bench directory: runs/, cache/, results "
                    "and the report.")
flags.DEFINE_multi_string("task", [], "NAME:FLAGFILE, one per task, e.g. "
                          "sentiment:configs/sentiment.flags. A relative FLAGFILE is looked "
                          "up in the working directory, then in the repository.")
flags.DEFINE_multi_string("method", [], "NAME:FLAGS, one per method; FLAGS are pipeline.run "
                          "flags, e.g. 'l1:--pruning_method=l1 --l1=1e-6'. A method with "
                          "--pruning_method=none runs once (sparsity 0); one with its own "
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
flags.DEFINE_string("baseline", "", "An earlier results.jsonl to compare against (e.g. "
                    "bench/baseline/results.jsonl); its cell times also make the plan's "
                    "estimate.")
flags.DEFINE_bool("plan_only", False, "Print the plan (every cell, which are done, the "
                  "estimate) and exit without running anything.")
flags.DEFINE_float("metric_tolerance", 0.01, "Largest allowed drop of the primary metric "
                   "(absolute; accuracy 0.01 = 1 point) before a row counts as regressed.")
flags.DEFINE_float("size_tolerance", 0.02, "Largest allowed relative growth of gzip'd bytes.")
flags.DEFINE_float("latency_tolerance", 0.25, "Largest allowed relative growth of the "
                   "latency ratio to the dense row measured in the same run.")
flags.DEFINE_list("seeds", [], "Run every cell once per seed (e.g. 1,2,3); the seed is part "
                  "of the cell's folder and rows, the report shows each cell's mean and "
                  "spread, and the gate tests the difference against the baseline's seeds. "
                  "Empty: each cell's own --seed (one seed).")
flags.DEFINE_float("gate_alpha", gate.DEFAULT_ALPHA, "With two or more seeds on both sides, "
                   "a shift beyond its tolerance is a regression only if Welch's one-sided "
                   "t-test gives p below this; otherwise it is reported as seed noise.")
flags.DEFINE_enum("executor", "local", ["local", "ray"], "Where cells run: local (--jobs "
                  "threads on this machine) or ray (each cell a Ray task; see "
                  "--ray_address, --cell_cpus).")
flags.DEFINE_string("ray_address", "", "With --executor=ray: a running cluster's address "
                    "(from `ray start --head`); empty starts a Ray on this machine alone.")
flags.DEFINE_integer("cell_cpus", 2, "With --executor=ray: CPUs each cell asks for (Ray "
                     "runs as many cells side by side as the cluster's CPUs allow).",
                     lower_bound=1)
FLAGS = flags.FLAGS


def bench(out_dir: Path) -> int:
    tasks = plan.parse_pairs(FLAGS.task, "task")
    methods = plan.parse_pairs(FLAGS.method, "method")
    if not tasks or not methods:
        raise plan.BenchError("give at least one --task=NAME:FLAGFILE and one --method=NAME:FLAGS")
    if FLAGS.smoke:
        tasks, methods = plan.smoke_subset(tasks, methods, FLAGS.smoke_tasks, FLAGS.smoke_methods,
                                      FLAGS.dense_method)
    flagfiles = {name: plan.resolve_flagfile(name, flagfile, FLAGS.smoke)
                 for name, flagfile in tasks.items()}
    try:
        sparsities = [float(s) for s in FLAGS.sparsities]
    except ValueError:
        raise plan.BenchError(f"--sparsities={','.join(FLAGS.sparsities)} must be numbers") from None
    if not all(0 <= s < 1 for s in sparsities):  # NaN fails too; none is dropped silently
        raise plan.BenchError(f"--sparsities={','.join(FLAGS.sparsities)} must be in [0, 1)")
    for flag in FLAGS.run_flag:  # every cell has a folder of its own
        if flag.lstrip("-").split("=", 1)[0] == "output_dir":
            raise plan.BenchError(f"--run_flag={flag}: the sweep gives each cell its own "
                                  "--output_dir under the bench's --output_dir")
    for name in ("metric_tolerance", "size_tolerance", "latency_tolerance"):
        value = getattr(FLAGS, name)
        if not (math.isfinite(value) and value >= 0):
            raise plan.BenchError(f"--{name}={value} must be a finite number >= 0 (NaN "
                                  "would turn the gate off)")
    results = out_dir / "results.jsonl"
    if FLAGS.baseline and Path(FLAGS.baseline).expanduser().resolve() == results:
        raise plan.BenchError(f"--baseline={FLAGS.baseline} is the results.jsonl this sweep "
                              "rewrites; copy it elsewhere first and pass the copy")
    baseline = report.load_baseline(FLAGS.baseline) if FLAGS.baseline else None
    if baseline is not None and any(row.get("smoke", False) != FLAGS.smoke
                                    for row in baseline):
        raise plan.BenchError(
            f"--baseline={FLAGS.baseline} holds {'full-size' if FLAGS.smoke else '--smoke'} "
            f"rows and this is {'a --smoke' if FLAGS.smoke else 'a full-size'} sweep: smoke "
            "models are small, so every row would regress. Compare like with like (a smoke "
            "sweep with bench/baseline_smoke/results.jsonl)")
    from pipeline.run import code_fingerprint
    code = code_fingerprint()
    seeds = plan.parse_seeds(FLAGS.seeds) or [None]
    planned, fingerprints = [], []
    for task, method, sparsity in plan.cells(tasks, methods, sparsities, FLAGS.smoke):
        name = plan.method_name(method)[1]
        for chosen in seeds:
            seed = plan.cell_seed(flagfiles[task], methods[method], list(FLAGS.run_flag),
                                  chosen)
            run_dir = out_dir / "runs" / task / name / f"s{sparsity:g}" / f"seed{seed}"
            arguments = plan.cell_arguments(flagfiles[task], methods[method], sparsity, seed,
                                            run_dir, out_dir / "cache", list(FLAGS.run_flag))
            cell = plan.Cell(task, name, sparsity, seed, run_dir, tuple(arguments))
            config = plan.check_cell(cell.label, arguments)
            planned.append(cell)
            fingerprints.append(sweep.cell_fingerprint(code, config))
    finished = {position: rows for position, cell in enumerate(planned)
                if (rows := sweep.finished_rows(cell.run_dir, list(cell.arguments),
                                                fingerprints[position])) is not None}
    executor = (sweep.RayExecutor(FLAGS.ray_address, FLAGS.cell_cpus)
                if FLAGS.executor == "ray" and not FLAGS.plan_only
                else sweep.LocalExecutor(FLAGS.jobs))
    for line in plan.describe(planned, finished, baseline, executor.parallel, FLAGS.smoke):
        print(line, flush=True)
    if FLAGS.plan_only:
        return 0
    artifacts.claim_folder(out_dir, "--output_dir")
    context = {**sweep.machine(), "git_commit": sweep.git_commit(), "smoke": FLAGS.smoke}
    artifacts.atomic_write_text(results, "".join(  # the kept cells' rows first
        json.dumps(row, sort_keys=True) + "\n" for position in sorted(finished)
        for row in finished[position]))
    environment = {k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")}
    try:
        rows_by_cell, failed = sweep.run_sweep(planned, context, results, executor,
                                               FLAGS.dense_method, finished, fingerprints,
                                               environment)
    finally:
        executor.close()
    rows = [row for position in sorted(rows_by_cell) for row in rows_by_cell[position]]
    sweep.add_latency_ratios(rows, FLAGS.dense_method)
    problems, notes = (gate.regressions(rows, baseline, FLAGS.metric_tolerance,
                                        FLAGS.size_tolerance, FLAGS.latency_tolerance,
                                        FLAGS.gate_alpha)
                       if baseline is not None else (None, []))
    report.write_results(out_dir, rows)
    report.write_report(out_dir, rows, problems, failed,
                        report.plots(rows, out_dir) if rows else [], context, notes)
    problems = problems or []
    for line in notes:
        print(f"noise: {line}", flush=True)
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
    except (plan.BenchError, artifacts.ForeignFolderError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)

