"""The nightly sweep end to end in --smoke mode, and its regression gate."""
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata

import pytest

from pipeline import artifacts
from pipeline import bench as bench_module
from pipeline import metrics
from pipeline.bench import gate, report, sweep

pytestmark = pytest.mark.slow  # real data and training: the integration layer

# Two cells: the l1 method's own rules are unit-tested (test_regularization.py).
METHODS = ["--method=dense:--pruning_method=none",
           "--method=magnitude:--pruning_method=magnitude"]
TASKS = ["--task=sentiment:configs/sentiment.flags", "--task=textgen:configs/textgen.flags"]


def bench(out_dir, data_dir, *extra, cwd):
    env = {**os.environ, "PIPELINE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--smoke", f"--output_dir={out_dir}",
         *TASKS, *METHODS, "--sparsities=0,0.5,0.8", *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_bench(shared_data, sentiment_smoke, textgen_smoke, tmp_path_factory):
    # Run from an unrelated folder with a relative --output_dir: paths must not depend on it.
    # The smoke runs' cache saves training each task's models a second time.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = bench("bench", shared_data, f"--run_flag=--cache_dir={sentiment_smoke[2]}",
                   "--jobs=2", cwd=elsewhere)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return elsewhere / "bench"


def read_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]


def test_every_expected_row_exists_with_sane_values(smoke_bench):
    rows = read_rows(smoke_bench)
    keys = sorted((r["task"], r["method"], r["target_sparsity"], r["export"]) for r in rows)
    assert keys == sorted((t, m, s, e) for t in ("sentiment", "textgen")
                          for m, s in [("dense", 0.0), ("magnitude", 0.8)]
                          for e in ("float", "int8"))
    for row in rows:
        if row["task"] == "sentiment":  # it learned: the majority class scores 0.545
            assert row["metric"] == "accuracy" and row["metric_value"] >= 0.62, row
            assert row["characters_per_second"] is None
        else:  # below ln(65) = 4.17 nats of guessing among the characters
            ceiling = 3.0 if row["method"] == "dense" else 3.6  # 80% zeros after 2 epochs
            assert row["metric"] == "loss" and row["metric_value"] <= ceiling, row
            assert row["characters_per_second"] > 0
        assert 0 < row["gzip_bytes"] < row["bytes"]
        assert 0 < row["latency_median_ms"] <= row["latency_p90_ms"]
        assert row["latency_ratio_vs_dense"] > 0
        assert row["versions"]["tensorflow"] == metadata.version("tensorflow")
        expected = row["target_sparsity"]
        assert abs(row["measured_sparsity"] - expected) < 0.02, row
        if row["method"] == "magnitude":
            assert row["lstm_min_sparsity"] >= 0.79, row  # every LSTM weight, from the file
    dense = {(r["task"], r["export"]): r for r in rows if r["method"] == "dense"}
    assert all(r["gzip_bytes"] < dense[r["task"], r["export"]]["gzip_bytes"]
               for r in rows if r["method"] != "dense")
    csv_lines = (smoke_bench / "results.csv").read_text().splitlines()
    assert len(csv_lines) == len(rows) + 1
    assert f"tensorflow={metadata.version('tensorflow')}" in csv_lines[1]
    report = (smoke_bench / "report.md").read_text()
    for task in ("sentiment", "textgen"):
        assert f"| {task} | magnitude | 0.8 | int8 |" in report and f"{task}.png" in report
        assert (smoke_bench / f"{task}.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (smoke_bench / "report.html").read_text()
    assert "No baseline given (--baseline): nothing compared." in report  # not "no regressions"


def test_dense_training_is_shared_through_the_cache(smoke_bench):
    # Every cell restores the training of its task's smoke run (one cache for both).
    for cell in ("sentiment/dense/s0/seed1", "sentiment/magnitude/s0.8/seed1",
                 "textgen/dense/s0/seed1", "textgen/magnitude/s0.8/seed1"):
        log = (smoke_bench / "runs" / cell / "bench.log").read_text()
        assert "train: restored from the cache" in log


def test_a_cell_rerun_at_the_same_code_gives_the_same_rows(smoke_bench, shared_data, tmp_path):
    """A cell whose record and outputs after training are gone runs again (without the
    cache, which would hand back its old outputs) and gives its rows again, timings aside;
    against the first sweep, the gate finds nothing."""
    before = read_rows(smoke_bench)
    baseline = tmp_path / "baseline.jsonl"
    shutil.copy(smoke_bench / "results.jsonl", baseline)
    cell = smoke_bench / "runs" / "sentiment" / "magnitude" / "s0.8" / "seed1"
    (cell / sweep.CELL_FILE).unlink()
    for stage in ("prune", "strip", "convert", "evaluate", "bundle"):
        shutil.rmtree(cell / stage)
    result = bench(smoke_bench, shared_data, f"--baseline={baseline}", "--jobs=2",
                   "--latency_tolerance=1000", cwd=tmp_path)  # latency noise: not this test
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REGRESSION" not in result.stdout
    assert "prune: started" in (cell / "bench.log").read_text()  # it did run again

    def untimed(rows):
        return sorted((json.dumps({k: v for k, v in row.items() if not metrics.is_timing(k)},
                                  sort_keys=True) for row in rows))
    assert untimed(read_rows(smoke_bench)) == untimed(before)


def test_doctored_baseline_makes_the_gate_fail(smoke_bench, shared_data, tmp_path, monkeypatch,
                                              capsys):
    rows = read_rows(smoke_bench)
    assert gate.regressions(rows, rows, 0.01, 0.02, 0.25) == ([], [])
    doctored = tmp_path / "baseline.jsonl"
    target = next(r for r in rows if r["method"] == "magnitude" and r["export"] == "int8")
    target["metric_value"] += 0.05  # the baseline claims a better model than we have now
    doctored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The same sweep again, in this process; its cells ran in the fixture, so running one
    # is reading its results back (a real rerun would skip every stage, at 10 s a cell).
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(shared_data))
    monkeypatch.setattr(sweep, "run_cell",
                        lambda arguments, run_dir, environment=None:
                        subprocess.CompletedProcess(arguments, 0))
    bench_module.FLAGS.unparse_flags()
    bench_module.FLAGS(["pipeline.bench", "--smoke", *TASKS, *METHODS, "--sparsities=0,0.5,0.8",
                        f"--baseline={doctored}"])
    assert bench_module.bench(smoke_bench) == 1
    assert "REGRESSION: sentiment/magnitude/0.8/int8: accuracy" in capsys.readouterr().out
    assert "sentiment/magnitude/0.8/int8" in (smoke_bench / "report.md").read_text()
    assert len(read_rows(smoke_bench)) == len(rows)  # every cell's rows were written again


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes of one CPU each on this machine, on loopback, no dashboard; the head
    holds no CPU, so every cell runs on one of the two and either can be lost."""
    os.environ[RAY_LOOPBACK] = "0"
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()
    del os.environ[RAY_LOOPBACK]


RAY_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every node and driver on 127.0.0.1


def training_only_cache(source, target):
    """A copy of a stage cache holding only its data and train outputs: cells restore
    their training and make everything after it themselves."""
    for stage in ("data", "train"):
        shutil.copytree(source / stage, target / stage)
    shutil.copy(source / artifacts.RUN_MARKER, target / artifacts.RUN_MARKER)
    return target


def test_the_ray_executor_runs_cells_on_both_nodes_with_the_local_results(
        smoke_bench, ray_cluster, sentiment_smoke, shared_data, tmp_path):
    cluster, nodes = ray_cluster
    cache = training_only_cache(sentiment_smoke[2], tmp_path / "cache")
    result = bench(tmp_path / "ray", shared_data, f"--run_flag=--cache_dir={cache}",
                   "--executor=ray", f"--ray_address={cluster.address}", "--cell_cpus=1",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_rows(tmp_path / "ray")
    assert {row["node"] for row in rows} == {f"ray:{n.node_id[:12]}" for n in nodes}
    for row in rows:
        log = (tmp_path / "ray" / "runs" / row["task"] / row["method"] /
               f"s{row['target_sparsity']:g}" / "seed1" / "bench.log").read_text()
        assert "prune: restored from the cache" not in log  # computed on the node

    def untimed(rows):  # where and from which checkout the sweep ran is not a result
        return sorted(json.dumps({k: v for k, v in row.items() if not metrics.is_timing(k)
                                  and k not in ("node", "git_commit")},
                                 sort_keys=True) for row in rows)
    assert untimed(rows) == untimed(read_rows(smoke_bench))


def test_a_cell_whose_node_is_lost_runs_again_elsewhere(ray_cluster, sentiment_smoke,
                                                        shared_data, tmp_path):
    cluster, nodes = ray_cluster
    cache = training_only_cache(sentiment_smoke[2], tmp_path / "cache")
    out_dir = tmp_path / "lost"
    cell = out_dir / "runs" / "sentiment" / "dense" / "s0" / "seed1"
    env = {**os.environ, "PIPELINE_DATA_DIR": str(shared_data)}
    sweep_process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.bench", "--smoke", f"--output_dir={out_dir}",
         *TASKS, *METHODS, "--smoke_tasks=sentiment", "--smoke_methods=dense",
         f"--run_flag=--cache_dir={cache}", "--executor=ray",
         f"--ray_address={cluster.address}", "--cell_cpus=1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (cell / "convert.partial").exists():  # mid-cell: converting
        assert sweep_process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    first = (cell / "bench.log").read_text().splitlines()[0].rsplit(" ", 1)[1]
    lost = next(node for node in nodes if f"ray:{node.node_id[:12]}" == first)
    cluster.remove_node(lost)
    output = sweep_process.communicate(timeout=600)[0]
    assert sweep_process.returncode == 0, output[-3000:]
    rows = read_rows(out_dir)
    assert len(rows) == 2 and {r["export"] for r in rows} == {"float", "int8"}  # once each
    assert {r["node"] for r in rows} != {first}  # finished on the other node
    assert "resuming from" in (cell / "bench.log").read_text()
