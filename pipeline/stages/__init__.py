"""Pipeline stages, in order. Each module has one entry point, `run(config, files, out_dir)`.

A stage reads earlier stages' outputs through `files` (an `artifacts.RunFiles`), writes
its own into `out_dir` (a scratch folder the runner swaps into place on success) and
returns a small summary dict for the log and the stage record. STAGES is the one list of
them: the runner, the config's --stages choices and the multi-worker setup read it.
"""
from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType


class StageError(RuntimeError):
    """A stage cannot finish; the message says what failed and what to change."""


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str                      # also its module, pipeline.stages.<name>
    reads: tuple[str, ...]         # settings (fields or sections) the stage itself reads
    inputs: tuple[str, ...]        # earlier stages whose outputs it reads
    trains: bool = False           # every worker of a multi-worker run runs it together
    reads_everything: bool = False
    stand_in: ModuleType | None = None  # tests: a module to run instead of the real one

    @property
    def module(self) -> ModuleType:
        return self.stand_in or importlib.import_module(f"pipeline.stages.{self.name}")


# The task, the pruning method and (for evaluate) the evaluators add what their part of
# each stage reads.
STAGES = (
    Stage("data", (), ()),
    Stage("train", ("model", "train"), ("data",), trains=True),
    Stage("prune", ("train", "pruning_method", "hardening"), ("data", "train"), trains=True),
    Stage("strip", (), ("prune",)),
    Stage("convert", ("exports",), ("data", "train", "strip")),  # data: clients' vocabulary
    Stage("evaluate", ("latency_runs",), ("data", "train", "strip", "convert")),
    # The manifest records every setting, so the bundle reads them all.
    Stage("bundle", (), ("data", "convert", "evaluate"), reads_everything=True),
)
NAMES = tuple(stage.name for stage in STAGES)
TRAINING = tuple(stage.name for stage in STAGES if stage.trains)
