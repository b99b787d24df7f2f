"""Running the sweep: one pipeline.run subprocess per cell, `jobs` side by side, and each
finished cell's rows read from its metrics.json.

A finished cell leaves `cell.json` in its run folder: its arguments, its fingerprint (the
code and the parsed settings, so an edited flagfile counts) and its rows. A sweep started
again (after a kill, or to span several invocations) takes those rows back instead of
running the cell; an interrupted cell has none and runs again, its pipeline.run resuming
from whatever stages and epochs it had finished."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import artifacts, litert
from pipeline import metrics as metrics_file
from pipeline.bench import report
from pipeline.bench.plan import BenchError, REPO, job_groups
from pipeline.stages import TRAINING


CELL_FILE = "cell.json"


def cell_fingerprint(code: str, config) -> str:
    """The code, every parsed setting (the arguments alone name a flagfile, not what it
    says) and the sha256 of every data file the cell reads (an edited dataset runs the
    cell again)."""
    from pipeline import data
    settings = json.dumps(config.to_dict(), sort_keys=True, default=str)
    files = "\n".join(f"{path}:{artifacts.sha256_file(path)}"
                      for path in data.source_files(config.data))
    return hashlib.sha256(f"{code}\n{settings}\n{files}".encode()).hexdigest()


def finished_rows(run_dir: Path, arguments: list[str], fingerprint: str) -> list[dict] | None:
    """The rows a cell left when it finished with these arguments and settings at this
    code, or None."""
    path = run_dir / CELL_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        saved = artifacts.read_json(path)
        if saved["arguments"] == arguments and saved["fingerprint"] == fingerprint and \
                isinstance(saved["rows"], list) and saved["rows"]:
            report.check_rows(saved["rows"], str(path))  # the gate reads them later
            return saved["rows"]
    except (OSError, ValueError, KeyError, TypeError, BenchError):
        pass  # an unreadable record or rows the gate could not read: the cell runs again
    return None


def run_cell(arguments: list[str], run_dir: Path,
             environment: dict | None = None) -> subprocess.CompletedProcess:
    artifacts.claim_folder(run_dir, "--output_dir")  # the cell's log goes in its run folder
    with os.fdopen(artifacts.open_own_file(run_dir / "bench.log"), "w",
                   encoding="utf-8") as log:
        log.write(f"# pipeline.bench: this cell runs on {node_name()}\n")
        log.flush()
        return subprocess.run([sys.executable, "-m", "pipeline.run", *arguments],
                              stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, **(environment or {})},
                              preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the cell's process: SIGKILL when the process that started it dies (a Ray worker
    lost with its node), so a retried cell never shares its folder with an orphan."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class CellInterrupted(RuntimeError):
    """The cell's pipeline.run was ended by a signal (a kill, a lost node): worth a retry."""


def node_name() -> str:
    """Where this process runs: the Ray node's id inside a Ray task, else the host name."""
    try:
        import ray
        if ray.is_initialized():
            return "ray:" + ray.get_runtime_context().get_node_id()[:12]
    except ImportError:
        pass
    return platform.node()


def execute_cell(cell, context: dict, environment: dict) -> dict:
    """Runs one cell's pipeline.run where this process is and reads its rows there; only
    the returned {"returncode", "rows", "seconds", "node"} travels back to the sweep.
    Both executors call it (under Ray, on a node); raises CellInterrupted on a signal."""
    start = time.monotonic()
    result = run_cell(list(cell.arguments), cell.run_dir, environment)
    seconds = round(time.monotonic() - start, 1)
    if result.returncode < 0:
        raise CellInterrupted(f"{cell.label}: pipeline.run ended by signal "
                              f"{-result.returncode}; see {cell.run_dir / 'bench.log'}")
    node = node_name()
    rows = [] if result.returncode else [
        {**row, "seed": cell.seed, "node": node, "cell_wall_s": seconds}
        for row in rows_for(cell.run_dir, cell.task, cell.method, cell.sparsity, context)]
    return {"returncode": result.returncode, "rows": rows, "seconds": seconds, "node": node}


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
    files = artifacts.RunFiles(run_dir)
    measured = metrics_file.read(files.metrics)
    versions = artifacts.read_json(files.stage("bundle") / "manifest.json")["versions"]
    wall = sum(artifacts.stage_record(files.stage(s)).get("elapsed_s", 0.0)
               for s in TRAINING)
    policy = measured.details.get("long_text", {}).get("policy", {}).get("policy")
    rows = []
    for export in measured.exports():
        def value(name, split=""):
            return measured.get(name, export, split)
        per_weight = measured.details["size"]["files"][export]["sparsity"]
        pruned = value("pruned_sparsity")
        if pruned is None:
            pruned = litert.zero_fraction(per_weight)
        lstm = [w["sparsity"] for w in per_weight.values() if w["kind"] == "lstm"]
        rows.append({
            "task": task, "method": method, "target_sparsity": sparsity, "export": export,
            "metric": measured.primary,
            "metric_value": value(measured.primary, "test"),
            "higher_is_better": measured.higher_is_better,
            "test_loss": value("loss", "test"), "bytes": value("bytes"),
            "gzip_bytes": value("gzip_bytes"), "measured_sparsity": round(pruned, 5),
            # the least pruned LSTM weight (each direction, each layer), from the .tflite
            "lstm_min_sparsity": round(min(lstm), 5) if lstm else None,
            "latency_median_ms": value("latency_median_ms"),
            "latency_p90_ms": value("latency_p90_ms"),
            # paired with the cell's own dense parent in evaluate; else add_latency_ratios'
            "latency_ratio_vs_dense": value("latency_vs_dense"),
            # text generation only: sampling in the graph, the way the bundle generates
            "characters_per_second": value("characters_per_second"),
            # sentiment only: the behavioural suite, long texts under the shipped policy
            "plain": value("behaviour.plain"), "negation": value("behaviour.negation"),
            "long_text": value(f"long_text.{policy}.all", "validation"),
            # the synonym attack (meaning-preserving substitutions), then the typo attack
            "attack_accuracy": value("attack.synonym.accuracy_under_attack", "test"),
            "attack_success_rate": value("attack.synonym.success_rate", "test"),
            "typo_attack_success_rate": value("attack.typo.success_rate", "test"),
            "typo_noise_accuracy": value("noise.typo@0.25", "test"),
            # MediaPipe's own TextClassifier on the client file; inputs at the text's length
            "mediapipe_accuracy": value("mediapipe.accuracy", "test"),
            "length_aware_accuracy": value("length_aware.accuracy", "test"),
            "length_aware_latency_ratio": value("length_aware.median_latency_ratio", "test"),
            "train_wall_s": round(wall, 1), "versions": versions, **context})
    return rows


def add_latency_ratios(rows: list[dict], dense_method: str) -> None:
    """For rows evaluate could not pair with a dense parent (the dense and small-dense
    cells): latency over the dense method's row of the same task, export and seed. Those
    cells ran minutes apart, maybe beside another job, so these ratios are the noisier
    kind."""
    dense = {(r["task"], r["export"], r.get("seed")): r["latency_median_ms"]
             for r in rows if r["method"] == dense_method}
    for row in rows:
        reference = dense.get((row["task"], row["export"], row.get("seed")))
        if reference and row["latency_ratio_vs_dense"] is None:
            row["latency_ratio_vs_dense"] = round(row["latency_median_ms"] / reference, 4)


def run_sweep(sweep: list, context: dict, results: Path, executor, dense_method: str,
              finished: dict[int, list], fingerprints: list[str],
              environment: dict) -> tuple[dict[int, list], list[str]]:
    """Runs every cell not `finished` on `executor`, wave by wave; rows by sweep position,
    and the failures. Each finished cell's rows are written once, here: to its cell.json
    and appended to `results` (kept if the sweep dies)."""
    rows_by_cell: dict[int, list] = dict(finished)
    failed: list[str] = []
    lock = threading.Lock()
    started = [0]
    prefixes: dict[int, str] = {}
    begun, ended = time.monotonic(), [0]

    def start(position: int) -> None:
        cell = sweep[position]
        with lock:
            started[0] += 1
            prefixes[position] = (f"[{started[0]}/{len(sweep) - len(finished)}] "
                                  f"{cell.task} {cell.method} {cell.sparsity:g} "
                                  f"seed {cell.seed}")
        print(f"{prefixes[position]}: started", flush=True)

    def finish(position: int, outcome) -> None:
        cell, prefix = sweep[position], prefixes[position]
        log = cell.run_dir / "bench.log"
        if not isinstance(outcome, dict) or outcome["returncode"] != 0:
            why = (f"pipeline.run exited {outcome['returncode']}" if isinstance(outcome, dict)
                   else str(outcome))
            with lock:
                failed.append(f"{cell.label}: {why}; see {log}")
            print(f"{prefix}: FAILED ({why}; log: {log})", flush=True)
            return
        new_rows = outcome["rows"]
        cell.run_dir.mkdir(parents=True, exist_ok=True)  # a node without a shared disk
        artifacts.atomic_write_json(cell.run_dir / CELL_FILE, {
            "arguments": list(cell.arguments), "fingerprint": fingerprints[position],
            "rows": new_rows})
        with lock:
            rows_by_cell[position] = new_rows
            with open(results, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in new_rows)
            ended[0] += 1
            left = len(sweep) - len(finished) - ended[0] - len(failed)
            # the pace so far, cells side by side included
            eta = (time.monotonic() - begun) / ended[0] * left
        print(f"{prefix}: done in {outcome['seconds']:.0f} s on {outcome['node']}: " + ", ".join(
            f"{r['export']} {r['metric']} {r['metric_value']:.4f}" for r in new_rows)
            + (f"; {left} to go, ~{eta / 60:.0f} min left" if left else ""), flush=True)

    for wave in job_groups(sweep, dense_method):
        jobs = [[p for p in job if p not in finished] for job in wave]
        executor.run_wave([job for job in jobs if job], sweep, context, environment, start,
                          finish)
    return rows_by_cell, failed


class LocalExecutor:
    """Cells on this machine, `jobs` side by side (threads, each running its job's cells
    in order)."""

    def __init__(self, jobs: int):
        self.parallel = jobs

    def run_wave(self, jobs, sweep, context, environment, start, finish) -> None:
        def run_job(positions: list[int]) -> None:
            for position in positions:
                start(position)
                try:
                    outcome = execute_cell(sweep[position], context, environment)
                except CellInterrupted as error:
                    outcome = error
                finish(position, outcome)

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            for future in [pool.submit(run_job, job) for job in jobs]:
                future.result()

    def close(self) -> None:
        pass


class RayExecutor:
    """Each cell a Ray task asking for `cell_cpus` CPUs, on a running cluster (`address`)
    or on a Ray started here for this sweep. A task whose node is lost, or whose
    pipeline.run is killed, runs once more elsewhere (it resumes from what the cell's
    folder holds, on a shared disk); a cell that fails twice is reported as failed."""

    def __init__(self, address: str, cell_cpus: int):
        import ray
        options = {"address": address} if address else {"_node_ip_address": "127.0.0.1"}
        ray.init(include_dashboard=False, log_to_driver=False, **options)
        self.remote = ray.remote(execute_cell).options(
            num_cpus=cell_cpus, max_retries=1, retry_exceptions=[CellInterrupted])
        cpus = ray.cluster_resources().get("CPU", cell_cpus)
        self.parallel = max(1, int(cpus // cell_cpus))

    def run_wave(self, jobs, sweep, context, environment, start, finish) -> None:
        import ray
        pending: dict = {}

        def submit(job: int, index: int) -> None:
            position = jobs[job][index]
            start(position)
            pending[self.remote.remote(sweep[position], context, environment)] = (job, index)

        for job in range(len(jobs)):
            submit(job, 0)
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            job, index = pending.pop(ready)
            try:
                outcome = ray.get(ready)
            except ray.exceptions.RayError as error:  # failed on both tries
                outcome = CellInterrupted(str(error).splitlines()[0])
            finish(jobs[job][index], outcome)
            if index + 1 < len(jobs[job]):
                submit(job, index + 1)

    def close(self) -> None:
        import ray
        ray.shutdown()
