"""tf.distribute for the stages that train (train, prune): one strategy per process.

--distribution=none uses TensorFlow's default strategy (one device); `mirrored` copies the
model to every local device (GPUs; a CPU-only machine is one replica); `multi_worker` runs
one process per worker, configured from the standard TF_CONFIG environment variable
(MultiWorkerMirroredStrategy), so the same command runs under any launcher that sets it.

--batch_size stays the global batch: with N replicas each computes batch_size / N examples
per step, so steps per epoch, the learning rate and the pruning schedule (in steps) are
those of one process. Gradients are summed across replicas before every update, so every
worker holds the same weights and tfmot computes the same masks everywhere.

The chief (TF_CONFIG task "chief", or worker 0 when there is none) runs the whole pipeline
in --output_dir. Every other worker takes part in the training stages only, in
OUTPUT_DIR/workers/INDEX, without the stage cache, then waits for the chief at a final
barrier: a worker that exits first makes the others log coordination errors.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os

from pipeline.config import ConfigError, PipelineConfig
from pipeline.stages import STAGES, TRAINING

_strategy = None


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place in the TF_CONFIG cluster."""
    task_type: str
    index: int
    workers: int  # processes taking part, the chief included
    has_chief: bool  # a "chief" task exists; otherwise worker 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self.has_chief)


def worker_from_environment(environ=os.environ) -> Worker:
    """Reads and checks TF_CONFIG; raises ConfigError naming what is wrong."""
    raw = environ.get("TF_CONFIG", "")
    fix = ('set TF_CONFIG to e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
           '"task": {"type": "worker", "index": 0}} in every worker process')
    if not raw:
        raise ConfigError(f"--distribution=multi_worker needs TF_CONFIG: {fix}")
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, index = task["type"], int(task["index"])
        members = {name: list(addresses) for name, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG is not a cluster description ({type(error).__name__}: "
                          f"{error}): {fix}") from None
    if task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type {task_type!r}: this pipeline runs chief and "
                          "worker tasks only (no parameter servers or evaluators)")
    if not 0 <= index < len(members.get(task_type, [])):
        raise ConfigError(f"TF_CONFIG task {task_type} {index} is not in its cluster "
                          f"({len(members.get(task_type, []))} {task_type} addresses)")
    workers = len(members.get("worker", [])) + len(members.get("chief", []))
    return Worker(task_type, index, workers, bool(members.get("chief")))


def check(config: PipelineConfig) -> None:
    """Bad distribution settings fail at start-up, before any work (exit 2)."""
    if config.train.distribution == "multi_worker":
        worker = worker_from_environment()
        if config.train.batch_size % worker.workers:
            raise ConfigError(f"--batch_size={config.train.batch_size} does not split evenly "
                              f"over {worker.workers} workers: use a multiple of "
                              f"{worker.workers}")


def start(config: PipelineConfig) -> None:
    """Makes this process's strategy. MultiWorkerMirroredStrategy must exist before any
    other TensorFlow op runs, and waits here until every worker has started."""
    global _strategy
    import tensorflow as tf
    if config.train.distribution == "mirrored":
        _strategy = tf.distribute.MirroredStrategy()
    elif config.train.distribution == "multi_worker":
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()


def scope(stage: str):
    """The strategy's scope for a training stage (models, optimizers and fit inside it)."""
    if _strategy is None or stage not in TRAINING:
        return contextlib.nullcontext()
    return _strategy.scope()


def runs_on_every_worker(stage: str) -> bool:
    """Whether the stage must run now, never skipped or restored from the cache: in a
    multi-worker run all workers must train together."""
    return _worker() is not None and stage in TRAINING


def _worker() -> Worker | None:
    import tensorflow as tf
    if isinstance(_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return worker_from_environment()
    return None


def for_this_worker(config: PipelineConfig) -> PipelineConfig:
    """The chief's config unchanged; another worker's: its own folder, the training stages
    only, no shared cache."""
    worker = _worker()
    if worker is None or worker.is_chief:
        return config
    needed = set(TRAINING).union(*(stage.inputs for stage in STAGES if stage.trains))
    stages = tuple(s for s in config.stages if s in needed)
    return dataclasses.replace(
        config, output_dir=os.path.join(config.output_dir, "workers", str(worker.index)),
        stages=stages, cache_dir="")


def barrier() -> None:
    """Waits until every worker gets here (an all-reduce of one number)."""
    if _worker() is None:
        return
    import tensorflow as tf
    _strategy.reduce(tf.distribute.ReduceOp.SUM, _strategy.run(lambda: tf.constant(1.0)),
                     axis=None)
