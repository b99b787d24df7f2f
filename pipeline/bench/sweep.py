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
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import artifacts, litert
from pipeline import metrics as metrics_file
from pipeline.bench.plan import REPO, job_groups
from pipeline.stages import TRAINING


CELL_FILE = "cell.json"


def cell_fingerprint(code: str, config) -> str:
    """The code and every parsed setting: the arguments alone name a flagfile, not what it
    says."""
    settings = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(f"{code}\n{settings}".encode()).hexdigest()


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
            return saved["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # an unreadable record: the cell runs again
    return None


def run_cell(arguments: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    artifacts.claim_folder(run_dir, "--output_dir")  # the cell's log goes in its run folder
    with open(run_dir / "bench.log", "w", encoding="utf-8") as log:
        return subprocess.run([sys.executable, "-m", "pipeline.run", *arguments],
                              stdout=log, stderr=subprocess.STDOUT)


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
    cells): latency over the dense method's row of the same task and export. Those cells
    ran minutes apart, maybe beside another job, so these ratios are the noisier kind."""
    dense = {(r["task"], r["export"]): r["latency_median_ms"]
             for r in rows if r["method"] == dense_method}
    for row in rows:
        reference = dense.get((row["task"], row["export"]))
        if reference and row["latency_ratio_vs_dense"] is None:
            row["latency_ratio_vs_dense"] = round(row["latency_median_ms"] / reference, 4)


def run_sweep(sweep: list[tuple], context: dict, results: Path, jobs: int,
              dense_method: str, finished: dict[int, list],
              fingerprints: list[str]) -> tuple[dict[int, list], list[str]]:
    """Runs every cell not `finished` (`jobs` side by side); rows by sweep position, and
    the failures."""
    rows_by_cell: dict[int, list] = dict(finished)
    failed: list[str] = []
    lock = threading.Lock()
    started = [0]

    def run_job(positions: list[int]) -> None:
        for position in positions:
            if position in finished:
                continue
            task, method, sparsity, run_dir, arguments = sweep[position]
            label = f"{task} {method} {sparsity:g}"
            with lock:
                started[0] += 1
                prefix = f"[{started[0]}/{len(sweep) - len(finished)}] {label}"
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
            new_rows = [{**row, "cell_wall_s": round(elapsed, 1)}
                        for row in rows_for(run_dir, task, method, sparsity, context)]
            artifacts.atomic_write_json(run_dir / CELL_FILE, {
                "arguments": arguments, "fingerprint": fingerprints[position], "rows": new_rows})
            with lock:
                rows_by_cell[position] = new_rows
                with open(results, "a", encoding="utf-8") as handle:  # kept if the sweep dies
                    handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in new_rows)
            print(f"{prefix}: done in {elapsed:.0f} s " + ", ".join(
                f"{r['export']} {r['metric']} {r['metric_value']:.4f}" for r in new_rows),
                flush=True)

    for wave in job_groups(sweep, dense_method):
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(run_job, job) for job in wave]:
                future.result()
    return rows_by_cell, failed


