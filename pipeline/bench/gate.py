"""The regression gate: today's rows against a baseline's, cell by cell, over their seeds.

A cell (task, method, target sparsity, export) regresses on a number — the primary
metric, the gzip'd size, the latency ratio to the dense parent — when two things hold:
- the mean over today's seeds is worse than the baseline's mean by more than the
  number's tolerance (absolute for the metric, relative for size and latency), and
- with at least two seeds on each side, Welch's t-test (one-sided: "today is worse")
  gives p < alpha. Both are needed, so neither a tiny real shift nor a large noisy one
  raises an alarm alone.
With one seed on either side the spread is unknown: the tolerance alone decides, as a
one-seed gate always did, and the line says that noise could not be separated.

A shift beyond the tolerance that the test does not call significant is reported as a
note, not a regression.
"""
from __future__ import annotations

import math
import statistics

KEY_FIELDS = ("task", "method", "target_sparsity", "export")
DEFAULT_ALPHA = 0.05


def cell_key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY_FIELDS)


def by_cell(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by cell (every seed of a cell together), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(cell_key(row), []).append(row)
    return groups


def p_worse(new: list[float], old: list[float], higher_is_better: bool) -> float:
    """One-sided p-value of Welch's t-test that `new` is worse than `old`."""
    from scipy import stats
    if statistics.pvariance(new) == 0 and statistics.pvariance(old) == 0:
        # No spread at all (e.g. a byte count every seed shares): the means say it all.
        return 0.0 if statistics.fmean(new) != statistics.fmean(old) else 1.0
    result = stats.ttest_ind(new, old, equal_var=False,
                             alternative="less" if higher_is_better else "greater")
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0


# What the gate compares: (row field, name in the message, higher is better (None: the
# row's own higher_is_better), tolerance is relative)
CHECKS = (("metric_value", None, None, False),
          ("gzip_bytes", "gzip'd size", False, True),
          ("latency_ratio_vs_dense", "latency × dense", False, True))


def compare(new_rows: list[dict], old_rows: list[dict], tolerances: dict,
            alpha: float) -> tuple[list[str], list[str]]:
    """(regressions, notes) of one cell, each a readable line without the cell's label."""
    regressions, notes = [], []
    for field, name, higher, relative in CHECKS:
        new = [r[field] for r in new_rows if r.get(field) is not None]
        old = [r[field] for r in old_rows if r.get(field) is not None]
        if not new or not old:
            continue
        higher = old_rows[0]["higher_is_better"] if higher is None else higher
        name = name or old_rows[0]["metric"]
        new_mean, old_mean = statistics.fmean(new), statistics.fmean(old)
        worse = (old_mean - new_mean) if higher else (new_mean - old_mean)
        if relative:
            worse = worse / old_mean if old_mean else 0.0
        tolerance = tolerances[field]
        if worse <= tolerance:
            continue
        means = (f"{name} {_show(new_mean)} (mean of {len(new)}) vs baseline "
                 f"{_show(old_mean)} (mean of {len(old)}): worse by {_show(worse)} > "
                 f"{tolerance}{' relative' if relative else ''}")
        if len(new) < 2 or len(old) < 2:
            regressions.append(f"{means}; one seed on a side, so noise cannot be separated")
            continue
        p = p_worse(new, old, higher)
        if p < alpha:
            regressions.append(f"{means}; Welch p = {p:.3g} < {alpha}")
        else:
            notes.append(f"{means}, but Welch p = {p:.3g} >= {alpha}: within seed noise")
    return regressions, notes


def regressions(rows: list[dict], baseline: list[dict], metric_tolerance: float,
                size_tolerance: float, latency_tolerance: float,
                alpha: float = DEFAULT_ALPHA) -> tuple[list[str], list[str]]:
    """(regressions, notes) against the baseline, each line naming its cell."""
    tolerances = {"metric_value": metric_tolerance, "gzip_bytes": size_tolerance,
                  "latency_ratio_vs_dense": latency_tolerance}
    current = by_cell(rows)
    found, notes = [], []
    for key, old_rows in by_cell(baseline).items():
        label = "/".join(str(k) for k in key)
        new_rows = current.get(key)
        if new_rows is None:
            found.append(f"{label}: row missing from this run")
            continue
        worse, noise = compare(new_rows, old_rows, tolerances, alpha)
        found += [f"{label}: {line}" for line in worse]
        notes += [f"{label}: {line}" for line in noise]
    return found, notes


def false_alarm_rate(seeds: int, spread: float, tolerance: float, alpha: float,
                     trials: int = 20000, seed: int = 0) -> float:
    """The share of gates that flag a cell whose recipe did not change, for `seeds` seeds
    a side drawn from one normal distribution of standard deviation `spread` (a
    simulation; what README quotes)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(trials):
        new, old = rng.normal(0, spread, seeds), rng.normal(0, spread, seeds)
        if old.mean() - new.mean() > tolerance and (
                seeds < 2 or p_worse(list(new), list(old), True) < alpha):
            flagged += 1
    return flagged / trials


def _show(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"
