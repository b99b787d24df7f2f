"""The bench checks its inputs before the first cell runs: no sweep is lost to a typo."""
import json
from pathlib import Path

import pytest

from pipeline import bench
from pipeline.bench import gate, plan, report, sweep
from tests.conftest import REPO

GOOD_ROW = {"task": "sentiment", "method": "dense", "target_sparsity": 0.0, "export": "int8",
            "metric": "accuracy", "metric_value": 0.8, "higher_is_better": True,
            "gzip_bytes": 1000, "latency_ratio_vs_dense": 1.0}


@pytest.mark.parametrize("text, message", [
    ("not json\n", ":1: not JSON"),
    (json.dumps({"task": "sentiment"}) + "\n", ":1 lacks method, target_sparsity"),
    (json.dumps(GOOD_ROW) + "\n[]\n", ":2 lacks task"),
    (json.dumps({**GOOD_ROW, "metric_value": "high"}) + "\n", ":1: metric_value='high' is "
                                                              "not of its kind"),
    # Issue 32, item 10: these passed the check and crashed the gate after the sweep.
    (json.dumps({**GOOD_ROW, "latency_ratio_vs_dense": "fast"}) + "\n",
     "latency_ratio_vs_dense='fast' is not of its kind"),
    (json.dumps({**GOOD_ROW, "target_sparsity": [0]}) + "\n", r"target_sparsity=\[0\]"),
    (json.dumps({**GOOD_ROW, "higher_is_better": 1}) + "\n", "higher_is_better=1"),
    ("\n", "holds no rows"),
])
def test_a_bad_baseline_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "baseline.jsonl"
    path.write_text(text)
    with pytest.raises(plan.BenchError, match=message):
        report.load_baseline(str(path))
    with pytest.raises(plan.BenchError, match="cannot be read"):
        report.load_baseline(str(tmp_path / "missing.jsonl"))


def test_a_good_baseline_loads(tmp_path):
    rows = [GOOD_ROW, {**GOOD_ROW, "export": "float"}]
    path = tmp_path / "baseline.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert report.load_baseline(str(path)) == rows


def test_a_bad_cell_is_refused_before_the_sweep(tmp_path):
    (tmp_path / "sst2").mkdir()  # a mirror the checks find (they do not read it)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (tmp_path / "sst2" / name).write_text("label\tsentence\n")
    flagfile = plan.resolve_flagfile("sentiment", "configs/sentiment.flags", smoke=True)
    assert flagfile == REPO / "configs" / "sentiment_smoke.flags"
    good = plan.cell_arguments(flagfile, "--pruning_method=none", 0.0, 1, tmp_path / "r",
                                tmp_path / "c", [f"--data_dir={tmp_path}"])
    plan.check_cell("sentiment/dense/0", good)
    bad = plan.cell_arguments(flagfile, "--pruning_method=l1 --l1=1e-6", 0.8, 1, tmp_path / "r",
                               tmp_path / "c", [])
    with pytest.raises(plan.BenchError, match="cell sentiment/l1/0.8: .*--pruning_schedule="
                                               "one_shot"):
        plan.check_cell("sentiment/l1/0.8", bad)
    vectors = plan.cell_arguments(flagfile, "--pretrained_embeddings=glove-6b-50d", 0.8, 1,
                                   tmp_path / "r", tmp_path / "c", [f"--data_dir={tmp_path}"])
    with pytest.raises(plan.BenchError, match="cell sentiment/magnitude/0.8: .*has 50 "
                                               "dimensions but --embedding_dim=16"):
        plan.check_cell("sentiment/magnitude/0.8", vectors)
    with pytest.raises(plan.BenchError, match="flagfile not found"):
        plan.resolve_flagfile("x", "configs/missing.flags", smoke=False)
    with pytest.raises(plan.BenchError, match="--smoke needs"):
        plan.resolve_flagfile("x", "configs/compare.flags", smoke=True)


def test_the_gate_names_every_kind_of_regression():
    row = {**GOOD_ROW, "latency_median_ms": 1.0}
    worse = {**row, "metric_value": 0.7, "gzip_bytes": 1100, "latency_ratio_vs_dense": 1.5}
    found, notes = gate.regressions([worse], [row], 0.01, 0.02, 0.25)
    assert [line.split(": ", 1)[1].split(" ")[0] for line in found] == \
        ["accuracy", "gzip'd", "latency"]
    assert all("noise cannot be separated" in line for line in found) and notes == []
    assert gate.regressions([row], [row], 0.01, 0.02, 0.25) == ([], [])
    assert gate.regressions([], [row], 0.01, 0.02, 0.25)[0] == \
        ["sentiment/dense/0.0/int8: row missing from this run"]


def seeded(values, **changes):
    return [{**GOOD_ROW, "seed": seed, "metric_value": value, **changes}
            for seed, value in enumerate(values, start=1)]


def test_with_seeds_the_gate_flags_a_real_drop_and_not_seed_noise():
    baseline = seeded([0.850, 0.856, 0.853])
    # Seed noise: the mean is 1.2 points lower, but the seeds overlap: a note, no alarm.
    noisy, notes = gate.regressions(seeded([0.858, 0.832, 0.833]), baseline, 0.01, 0.02, 0.25)
    assert noisy == [] and len(notes) == 1 and "within seed noise" in notes[0]
    # A consistent drop of 1.5 points: flagged, with its p-value.
    found, _ = gate.regressions(seeded([0.836, 0.840, 0.838]), baseline, 0.01, 0.02, 0.25)
    assert len(found) == 1 and "accuracy 0.8380 (mean of 3) vs baseline 0.8530" in found[0]
    assert "Welch p = " in found[0]
    # Significant but within the tolerance: no alarm either.
    assert gate.regressions(seeded([0.8495, 0.8500, 0.8505]), baseline, 0.01, 0.02, 0.25) \
        == ([], [])
    # Byte counts without spread: the means decide.
    bigger = seeded([0.85, 0.86, 0.853], gzip_bytes=1100)
    assert "gzip'd size" in gate.regressions(bigger, baseline, 0.01, 0.02, 0.25)[0][0]


def test_the_gate_false_alarm_rate_is_small_at_the_measured_seed_spread():
    # Seeds spread by 0.6 points (BUILD); 1 point of tolerance, alpha 0.05, 3 seeds a side.
    assert gate.false_alarm_rate(3, 0.006, 0.01, 0.05, trials=2000) < 0.05
    assert gate.false_alarm_rate(1, 0.006, 0.01, 0.05, trials=2000) > 0.05  # one seed: more


def test_seeds_are_distinct_integers():
    assert plan.parse_seeds(["1", "2", "3"]) == [1, 2, 3]
    for bad in (["1", "x"], ["1", "1"], ["-1"]):
        with pytest.raises(plan.BenchError, match="--seeds="):
            plan.parse_seeds(bad)


def test_methods_with_their_own_target_run_once():
    methods = {"dense": "--pruning_method=none",
               "magnitude": "--pruning_method=magnitude",
               "structured@0.5": "--pruning_method=structured --structured_units=0.5 "
                                 "--final_sparsity=0",
               "small_dense": "--pruning_method=none --lstm_units=64"}
    assert plan.cells({"sentiment": "x"}, methods, [0, 0.5, 0.8], smoke=False) == [
        ("sentiment", "dense", 0.0), ("sentiment", "magnitude", 0.5),
        ("sentiment", "magnitude", 0.8), ("sentiment", "structured@0.5", 0.0),
        ("sentiment", "small_dense", 0.0)]
    with pytest.raises(plan.BenchError, match="--method flags '--final_sparsity=high': .*"
                                             "final_sparsity=high"):
        plan.cells({"sentiment": "x"}, {"m": "--final_sparsity=high"}, [0.5], smoke=False)


def test_a_task_prefix_restricts_a_method_to_that_task():
    methods = {"dense": "--pruning_method=none",
               "textgen/small_dense@0.5": "--pruning_method=none --lstm_units=256"}
    tasks = {"sentiment": "x", "textgen": "y"}
    assert plan.cells(tasks, methods, [0, 0.8], smoke=True) == [
        ("sentiment", "dense", 0.0), ("textgen", "dense", 0.0),
        ("textgen", "textgen/small_dense@0.5", 0.0)]
    assert plan.method_name("textgen/small_dense@0.5") == ("textgen", "small_dense@0.5")
    with pytest.raises(plan.BenchError, match="--method=imdb/dense: no --task named imdb"):
        plan.cells(tasks, {"imdb/dense": "--pruning_method=none"}, [0], smoke=False)


def test_smoke_runs_one_point_of_each_line():
    methods = {"dense": "--pruning_method=none",
               "magnitude": "--pruning_method=magnitude",
               **{f"structured@{x}": f"--pruning_method=structured --structured_units={x} "
                                     "--final_sparsity=0" for x in (0.25, 0.5, 0.75)},
               "textgen/structured@0.9": "--pruning_method=structured "
                                         "--structured_units=0.9 --final_sparsity=0"}
    tasks = {"sentiment": "x", "textgen": "y"}
    assert plan.cells(tasks, methods, [0, 0.5, 0.8, 0.9], smoke=True) == [
        ("sentiment", "dense", 0.0), ("sentiment", "magnitude", 0.8),
        ("sentiment", "structured@0.5", 0.0),
        ("textgen", "dense", 0.0), ("textgen", "magnitude", 0.8),
        ("textgen", "structured@0.5", 0.0), ("textgen", "textgen/structured@0.9", 0.0)]
    assert len(plan.cells(tasks, methods, [0, 0.5, 0.8, 0.9], smoke=False)) == 15


def cell(task, method, sparsity, seed=1):
    return plan.Cell(task, method, sparsity, seed, Path("r"), ())


def test_a_smoke_plan_takes_no_estimate_from_a_full_baseline():
    planned = [cell("sentiment", "dense", 0.0), cell("sentiment", "magnitude", 0.8)]
    baseline = [{**GOOD_ROW, "cell_wall_s": 1800}]
    assert plan.describe(planned, {}, baseline, 1, smoke=False)[:2] == [
        "plan: 2 cells, 0 done, 2 to run; ~0.5 h with 1 cell(s) side by side, from the "
        "baseline's cell times, plus 1 cells the baseline did not time",
        "  sentiment dense 0 seed 1: to run, ~30 min in the baseline"]
    assert plan.describe(planned, {}, baseline, 1, smoke=True) == [
        "plan: 2 cells, 0 done, 2 to run; no estimate under --smoke",
        "  sentiment dense 0 seed 1: to run", "  sentiment magnitude 0.8 seed 1: to run"]
    three_seeds = [cell("sentiment", "dense", 0.0, seed) for seed in (1, 2, 3)]
    assert plan.describe(three_seeds, {}, baseline, 3, smoke=False)[0] == (
        "plan: 3 cells, 0 done, 3 to run; ~0.5 h with 3 cell(s) side by side, from the "
        "baseline's cell times")


def test_smoke_flags_keep_the_named_tasks_and_methods():
    tasks = {"sentiment": "x", "sentiment_bidirectional": "y", "textgen": "z"}
    methods = {"dense": "a", "magnitude": "b", "sentiment/l1": "c", "small_dense@0.5": "d"}
    assert plan.smoke_subset(tasks, methods, [], [], "dense") == (tasks, methods)
    kept = plan.smoke_subset(tasks, methods, ["sentiment", "textgen"],
                              ["dense", "sentiment/l1"], "dense")
    assert kept == ({"sentiment": "x", "textgen": "z"}, {"dense": "a", "sentiment/l1": "c"})
    with pytest.raises(plan.BenchError, match="--smoke_tasks=imdb: imdb not among"):
        plan.smoke_subset(tasks, methods, ["imdb"], [], "dense")
    with pytest.raises(plan.BenchError, match="--smoke_methods=dense,l1: l1 not among"):
        plan.smoke_subset(tasks, methods, [], ["dense", "l1"], "dense")
    with pytest.raises(plan.BenchError, match="must include --dense_method=dense"):
        plan.smoke_subset(tasks, methods, [], ["magnitude"], "dense")


def test_jobs_train_each_parent_once():
    """Dense cells first; a method's cells (which share a parent) in one job, in order."""
    sweep = [cell("sentiment", "dense", 0.0), cell("sentiment", "l2", 0.5),
             cell("sentiment", "l2", 0.8), cell("textgen", "dense", 0.0),
             cell("textgen", "magnitude", 0.8), cell("sentiment", "structured@0.5", 0.0)]
    assert plan.job_groups(sweep, "dense") == [[[0], [3]], [[1, 2], [4], [5]]]
    assert plan.job_groups(sweep[1:3], "dense") == [[[0, 1]]]
    seeds = [cell("sentiment", "dense", 0.0, 1), cell("sentiment", "dense", 0.0, 2),
             cell("sentiment", "l2", 0.5, 1), cell("sentiment", "l2", 0.5, 2),
             cell("sentiment", "l2", 0.8, 1)]
    assert plan.job_groups(seeds, "dense") == [[[0], [1]], [[2, 4], [3]]]


def test_every_cell_of_the_nightly_flagfile_validates(tmp_path, monkeypatch):
    """configs/nightly.flags: every cell's config is valid (datasets not looked up)."""
    from pipeline import data
    monkeypatch.setattr(data, "check_dataset", lambda config, names, schemes: None)
    bench.FLAGS.unparse_flags()
    bench.FLAGS(["pipeline.bench", f"--flagfile={REPO / 'configs' / 'nightly.flags'}"])
    tasks = plan.parse_pairs(bench.FLAGS.task, "task")
    methods = plan.parse_pairs(bench.FLAGS.method, "method")
    labels = set()
    for task, method, sparsity in plan.cells(
            tasks, methods, [float(s) for s in bench.FLAGS.sparsities], smoke=False):
        flagfile = plan.resolve_flagfile(task, tasks[task], smoke=False)
        plan.check_cell(task, plan.cell_arguments(flagfile, methods[method], sparsity, 1,
                                                    tmp_path / "run", tmp_path / "cache", []))
        labels.add(f"{task}/{plan.method_name(method)[1]}")
    assert {"textgen_stacked/l2", "sentiment_bidirectional/magnitude",
            "textgen/structured@0.5", "sentiment/structured@0.9",
            "sentiment/structured+levels@0.5"} <= labels
    smoke = plan.cells(*plan.smoke_subset(tasks, methods, bench.FLAGS.smoke_tasks,
                                            bench.FLAGS.smoke_methods, bench.FLAGS.dense_method),
                        [float(s) for s in bench.FLAGS.sparsities], smoke=True)
    assert [f"{task}/{plan.method_name(method)[1]}" for task, method, _ in smoke] == [
        "sentiment/dense", "sentiment/magnitude", "sentiment/l2", "sentiment/l1",
        "sentiment/structured+magnitude@0.5", "textgen/dense", "textgen/magnitude",
        "textgen/l2", "textgen/structured@0.5"]
    for task in {task for task, _, _ in smoke}:
        plan.resolve_flagfile(task, tasks[task], smoke=True)
    bench.FLAGS.unparse_flags()


def test_latency_ratios_are_against_the_dense_method():
    rows = [{**GOOD_ROW, "method": method, "latency_median_ms": ms, "target_sparsity": 0.0,
             "latency_ratio_vs_dense": None}
            for method, ms in (("dense", 2.0), ("small_dense", 0.5), ("structured@0.5", 1.0))]
    sweep.add_latency_ratios(rows, "dense")
    assert [r["latency_ratio_vs_dense"] for r in rows] == [1.0, 0.25, 0.5]


def test_a_ratio_paired_in_evaluate_is_kept_over_the_cross_cell_one():
    rows = [{**GOOD_ROW, "method": method, "latency_median_ms": ms, "target_sparsity": 0.0,
             "latency_ratio_vs_dense": paired}
            for method, ms, paired in (("dense", 2.0, None), ("structured@0.5", 1.0, 0.3))]
    sweep.add_latency_ratios(rows, "dense")
    assert [r["latency_ratio_vs_dense"] for r in rows] == [1.0, 0.3]


def test_a_bad_smoke_selection_exits_2_with_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys
    out_dir = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--smoke", f"--output_dir={out_dir}",
         "--task=sentiment:configs/sentiment.flags", "--method=dense:--pruning_method=none",
         "--smoke_tasks=imdb"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: --smoke_tasks=imdb: imdb not among sentiment" in result.stderr
    assert "Traceback" not in result.stderr and not out_dir.exists()


def bench_cli(tmp_path, *args):
    import subprocess
    import sys
    return subprocess.run(
        [sys.executable, "-m", "pipeline.bench", f"--output_dir={tmp_path / 'bench'}",
         "--task=sentiment:configs/sentiment.flags", "--method=dense:--pruning_method=none",
         *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--metric_tolerance=nan"], "--metric_tolerance=nan must be a finite number >= 0"),
    (["--method=mw:--distribution=multi_worker"],
     "cell sentiment/mw/0.5/seed1: --distribution=multi_worker needs TF_CONFIG"),
])
def test_bench_inputs_that_used_to_fail_late_exit_2_first(tmp_path, args, message):
    result = bench_cli(tmp_path, "--sparsities=0,0.5", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "bench").exists()


def test_a_sweep_never_uses_its_own_results_as_baseline(tmp_path):
    own = tmp_path / "bench" / "results.jsonl"
    own.parent.mkdir()
    own.write_text(json.dumps(GOOD_ROW) + "\n")
    result = bench_cli(tmp_path, f"--baseline={own}")
    assert result.returncode == 2 and "is the results.jsonl this sweep rewrites" in \
        result.stderr, result.stderr[-2000:]
    assert own.read_text() == json.dumps(GOOD_ROW) + "\n"


def test_fifos_are_refused_as_flagfile_and_baseline(tmp_path):
    """Issue 32, item 12: reading a FIFO waited forever for a writer."""
    import os

    from pipeline import cli
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(cli.FlagfileError, match="is not a regular file"):
        cli.expand_flagfiles([f"--flagfile={fifo}"])
    with pytest.raises(plan.BenchError, match=f"--baseline={fifo} cannot be read .*not a "
                                               "regular file"):
        report.load_baseline(str(fifo))


def cell_rows(run_dir, task, method, sparsity, context):
    """What `sweep.rows_for` reads from a finished cell, for sweeps whose cells do not run."""
    return [{**GOOD_ROW, "method": method, "target_sparsity": sparsity,
             "test_loss": 0.4, "bytes": 2000, "measured_sparsity": sparsity,
             "lstm_min_sparsity": sparsity, "latency_median_ms": 0.3,
             "latency_p90_ms": 0.4, "latency_ratio_vs_dense": None,
             "characters_per_second": None, "train_wall_s": 1.0, "versions": {},
             **context}]


def test_a_sweep_killed_between_cells_resumes_without_redoing_finished_cells(
        tmp_path, monkeypatch, capsys):
    """Issue 31: finished cells keep their rows; the interrupted one runs again; the plan
    says which is which, with an estimate from the baseline's cell times."""
    import subprocess

    from pipeline import data
    monkeypatch.setattr(data, "check_dataset", lambda config, names, schemes: None)
    ran, kill = [], [True]

    def run_cell(arguments, run_dir, environment=None):
        if kill[0] and ran:  # killed while the second cell runs
            raise KeyboardInterrupt
        run_dir.mkdir(parents=True, exist_ok=True)
        ran.append(run_dir.relative_to(tmp_path / "bench" / "runs").as_posix())
        return subprocess.CompletedProcess(arguments, 0)

    monkeypatch.setattr(sweep, "run_cell", run_cell)
    monkeypatch.setattr(sweep, "rows_for", cell_rows)
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_text(json.dumps({**GOOD_ROW, "cell_wall_s": 1800}) + "\n")
    arguments = ["pipeline.bench", f"--output_dir={tmp_path / 'bench'}",
                 "--task=sentiment:configs/sentiment.flags",
                 "--method=dense:--pruning_method=none",
                 "--method=magnitude:--pruning_method=magnitude", "--sparsities=0,0.8",
                 f"--baseline={baseline}"]
    bench.FLAGS.unparse_flags()
    bench.FLAGS(arguments)
    with pytest.raises(KeyboardInterrupt):
        bench.bench(tmp_path / "bench")
    assert ran == ["sentiment/dense/s0/seed1"]
    first = capsys.readouterr().out
    assert "plan: 2 cells, 0 done, 2 to run; ~0.5 h with 1 cell(s) side by side" in first
    assert "sentiment dense 0 seed 1: to run, ~30 min in the baseline" in first

    kill[0] = False
    bench.FLAGS.unparse_flags()
    bench.FLAGS([*arguments, "--plan_only"])
    assert bench.bench(tmp_path / "bench") == 0 and ran == ["sentiment/dense/s0/seed1"]
    assert "sentiment dense 0 seed 1: done (rows kept)" in capsys.readouterr().out
    bench.FLAGS.unparse_flags()
    bench.FLAGS(arguments)
    bench.bench(tmp_path / "bench")
    assert ran == ["sentiment/dense/s0/seed1", "sentiment/magnitude/s0.8/seed1"]  # dense kept
    rows = [json.loads(line) for line in
            (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r["target_sparsity"]) for r in rows] == [("dense", 0.0),
                                                                   ("magnitude", 0.8)]
    bench.FLAGS.unparse_flags()


def test_a_cell_whose_flagfile_changed_runs_again(tmp_path, monkeypatch):
    """The resume compares parsed settings, not the flagfile's path: an edited flagfile
    must not keep the rows of the settings it had before."""
    import subprocess

    from pipeline import data
    monkeypatch.setattr(data, "check_dataset", lambda config, names, schemes: None)
    ran = []

    def run_cell(arguments, run_dir, environment=None):
        run_dir.mkdir(parents=True, exist_ok=True)
        ran.append(run_dir.parent.name)
        return subprocess.CompletedProcess(arguments, 0)

    monkeypatch.setattr(sweep, "run_cell", run_cell)
    monkeypatch.setattr(sweep, "rows_for", cell_rows)
    flagfile = tmp_path / "task.flags"
    flagfile.write_text(f"--flagfile={REPO / 'configs' / 'sentiment.flags'}\n")
    arguments = ["pipeline.bench", f"--output_dir={tmp_path / 'bench'}",
                 f"--task=sentiment:{flagfile}", "--method=dense:--pruning_method=none",
                 "--sparsities=0"]

    def sweep_once():
        bench.FLAGS.unparse_flags()
        bench.FLAGS(arguments)
        assert bench.bench(tmp_path / "bench") == 0

    sweep_once()
    sweep_once()
    assert ran == ["s0"]  # same settings: kept
    flagfile.write_text(flagfile.read_text() + "--lstm_units=64\n")
    sweep_once()
    assert ran == ["s0", "s0"]  # same path and arguments, other settings: run again
    bench.FLAGS.unparse_flags()


def test_a_smoke_sweep_refuses_a_full_size_baseline(tmp_path, monkeypatch):
    """Smoke models are small: against a full baseline every row would regress."""
    from pipeline import data
    monkeypatch.setattr(data, "check_dataset", lambda config, names, schemes: None)
    full = tmp_path / "full.jsonl"
    full.write_text(json.dumps(GOOD_ROW) + "\n")  # rows before the smoke field: full-size
    bench.FLAGS.unparse_flags()
    bench.FLAGS(["pipeline.bench", "--smoke", "--task=sentiment:configs/sentiment.flags",
                 "--method=dense:--pruning_method=none", f"--baseline={full}"])
    with pytest.raises(plan.BenchError, match="holds full-size rows and this is a --smoke"):
        bench.bench(tmp_path / "bench")
    assert not (tmp_path / "bench").exists()
    bench.FLAGS.unparse_flags()


def test_a_cell_reads_its_data_again_when_the_files_changed(tmp_path):
    """Issue 45, item 4: rows were kept after the cell's data changed."""
    from pipeline.config import DataConfig, PipelineConfig
    (tmp_path / "sst2").mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (tmp_path / "sst2" / name).write_text("label\tsentence\n1\tfine\n")
    config = PipelineConfig(data=DataConfig(data_dir=str(tmp_path)))
    before = sweep.cell_fingerprint("code", config)
    assert sweep.cell_fingerprint("code", config) == before
    (tmp_path / "sst2" / "train.tsv").write_text("label\tsentence\n0\tfine\n")
    assert sweep.cell_fingerprint("code", config) != before
