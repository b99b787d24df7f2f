"""The sweep's plan: which cells (task × method × target sparsity) run, with which
pipeline.run arguments, in which order; every cell's config is checked before any runs."""
from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from pipeline.config import PipelineConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE_SUFFIX = "_smoke.flags"  # --smoke runs configs/X_smoke.flags instead of configs/X.flags


class BenchError(RuntimeError):
    """A bench flag or input is wrong; the message names it."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One pipeline.run of the sweep: a task × method × target sparsity at one seed."""
    task: str
    method: str  # the method's name (NAME or NAME@X), without a TASK/ prefix
    sparsity: float
    seed: int
    run_dir: Path
    arguments: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.task}/{self.method}/{self.sparsity:g}/seed{self.seed}"


def parse_seeds(entries: list[str]) -> list[int]:
    """--seeds as distinct integers >= 0, in the order given."""
    try:
        seeds = [int(entry) for entry in entries]
    except ValueError:
        raise BenchError(f"--seeds={','.join(entries)} must be integers, e.g. 1,2,3") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds={','.join(entries)} must be distinct integers >= 0")
    return seeds


def cell_seed(flagfile: Path, method_flags: str, extra: list[str], seed: int | None) -> int:
    """The seed a cell runs with: the given one, or what its flags set (--seed)."""
    if seed is not None:
        return seed
    from absl.flags import Error as FlagError

    from pipeline.cli import FlagfileError
    from pipeline.flags import parse_values
    try:
        return parse_values([f"--flagfile={flagfile}", *shlex.split(method_flags),
                             *extra]).seed
    except (FlagError, FlagfileError, ValueError) as error:
        raise BenchError(f"--flagfile={flagfile} {method_flags}: {error}") from None


def parse_pairs(entries: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for entry in entries:
        name, sep, value = entry.partition(":")
        if not sep or not name or name in pairs:
            raise BenchError(f"--{flag}={entry!r} must be NAME:VALUE with a unique NAME")
        pairs[name] = value
    return pairs


def method_targets(method_flags: str) -> tuple[bool, float | None]:
    """(whether the method leaves the dense model as it is, the target sparsity it sets
    itself or None), read from its flags as pipeline.run parses them."""
    from absl.flags import Error as FlagError

    from pipeline import methods
    from pipeline.cli import FlagfileError
    from pipeline.flags import parse_values
    try:
        values = parse_values(shlex.split(method_flags))
    except (FlagError, FlagfileError, ValueError) as error:
        raise BenchError(f"--method flags {method_flags!r}: {error}") from None
    dense = not methods.get(values.pruning_method).changes_weights
    return dense, values.final_sparsity if values["final_sparsity"].present else None


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
            dense, fixed = method_targets(method_flags)
            if dense:
                if 0 in sparsities:
                    result.append((task, method, 0.0))
            elif fixed is not None:
                result.append((task, method, fixed))
            else:
                result.extend((task, method, s) for s in nonzero)
    return result


def cell_arguments(flagfile: Path, method_flags: str, sparsity: float, seed: int,
                   run_dir: Path, cache_dir: Path, extra: list[str]) -> list[str]:
    """pipeline.run's arguments for one cell: the method's flags override the flagfile's."""
    arguments = [f"--flagfile={flagfile}", *shlex.split(method_flags)]
    if sparsity > 0:
        arguments.append(f"--final_sparsity={sparsity}")
    return arguments + [f"--seed={seed}", f"--output_dir={run_dir}",
                        f"--cache_dir={cache_dir}", *extra]


def check_cell(label: str, arguments: list[str]) -> PipelineConfig:
    """Parses and validates a cell's config in-process (its dataset and word vectors
    included), so a bad one stops the sweep first; returns the config."""
    from absl.flags import Error as FlagError

    from pipeline.cli import FlagfileError
    from pipeline import distribute, tasks
    from pipeline.config import ConfigError
    from pipeline.data import DataError
    from pipeline.flags import parse_config
    try:
        config = parse_config(arguments)
        tasks.for_config(config).check_inputs(config)
        distribute.check(config)  # e.g. a multi_worker cell without TF_CONFIG
        return config
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


def line_name(method: str) -> str:
    """Methods NAME@X are points of one line NAME (e.g. structured fractions)."""
    return method.split("@", 1)[0]


def job_groups(sweep: list[Cell], dense_method: str) -> list[list[list[int]]]:
    """Waves of jobs, each job a list of sweep positions run in order.

    The first wave holds each task's dense cells (one per seed), whose training the other
    cells restore from the cache; in the second, a method's cells of one seed share one
    job, since they share their parent (the l1 and l2 penalties train their own).
    """
    waves: list[dict] = [{}, {}]
    for position, cell in enumerate(sweep):
        wave = waves[0] if cell.method == dense_method else waves[1]
        wave.setdefault((cell.task, cell.method, cell.seed), []).append(position)
    return [list(wave.values()) for wave in waves if wave]


def describe(planned: list[Cell], finished: dict[int, list], baseline: list[dict] | None,
             parallel: int, smoke: bool) -> list[str]:
    """The plan as lines: every cell, whether it is done, its time in the baseline; then an
    estimate of the time left (the baseline's cell times, over `parallel` cells side by
    side: --jobs, or what the Ray cluster holds). None under --smoke: a baseline's rows do
    not say whether their cells were smoke-sized, and the committed one's are full
    nights'."""
    times = {} if smoke else {
        (r["task"], r["method"], r["target_sparsity"]): r.get("cell_wall_s")
        for r in baseline or [] if isinstance(r.get("cell_wall_s"), (int, float))
        and not isinstance(r.get("cell_wall_s"), bool) and 0 < r["cell_wall_s"] < 1e7}
    lines, left, unknown = [], 0.0, 0
    for position, cell in enumerate(planned):
        seconds = times.get((cell.task, cell.method, cell.sparsity))
        if position in finished:
            state = "done (rows kept)"
        elif seconds:
            state, left = f"to run, ~{seconds / 60:.0f} min in the baseline", left + seconds
        else:
            state, unknown = "to run" if smoke else "to run, no baseline time", unknown + 1
        lines.append(f"  {cell.task} {cell.method} {cell.sparsity:g} seed {cell.seed}: "
                     f"{state}")
    to_run = len(planned) - len(finished)
    estimate = (f"~{left / 3600 / max(1, min(parallel, to_run)):.1f} h with {parallel} "
                f"cell(s) side by side, from the baseline's cell times" if left else
                "no estimate under --smoke" if smoke else "no estimate")
    if unknown and left:
        estimate += f", plus {unknown} cells the baseline did not time"
    return [f"plan: {len(planned)} cells, {len(finished)} done, {to_run} to run; "
            f"{estimate}", *lines]
