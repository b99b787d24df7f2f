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
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys

from pipeline.artifacts import parse_json
from pipeline.config import ConfigError, PipelineConfig
from pipeline.stages import STAGES, TRAINING

_strategy = None
DEFAULT_STARTUP_TIMEOUT_S = 30
MAX_STARTUP_TIMEOUT_S = 86_400  # a day


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place in the TF_CONFIG cluster."""
    task_type: str
    index: int
    workers: int  # processes taking part, the chief included
    has_chief: bool  # a "chief" task exists; otherwise worker 0 is the chief
    peers: tuple[str, ...] = ()  # the other members' host:port addresses

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self.has_chief)


def _check_address(member: str, position: int, address) -> None:
    """One cluster member must be host:port, with the port a number in 1..65535."""
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    ascii_digits = port.isascii() and port.isdigit()  # "²" and "٣٣" are digits to Python
    if not (sep and host and ascii_digits and 1 <= int(port) <= 65535):
        raise ConfigError(f"TF_CONFIG cluster {member}[{position}] = {address!r} is not "
                          "host:port with a port in 1..65535")


def worker_from_environment(environ=os.environ) -> Worker:
    """Reads and checks TF_CONFIG; raises ConfigError naming what is wrong."""
    raw = environ.get("TF_CONFIG", "")
    fix = ('set TF_CONFIG to e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
           '"task": {"type": "worker", "index": 0}} in every worker process')
    if not raw:
        raise ConfigError(f"--distribution=multi_worker needs TF_CONFIG: {fix}")
    try:
        tf_config = parse_json(raw, "TF_CONFIG")
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, index = task["type"], task["index"]
        members = dict(cluster.items())
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG is not a cluster description ({type(error).__name__}: "
                          f"{error}): {fix}") from None
    for member, addresses in members.items():
        if not isinstance(addresses, list):  # a string would be counted by characters
            raise ConfigError(f"TF_CONFIG cluster {member} is {addresses!r}, not a list of "
                              f"host:port addresses: {fix}")
        for position, address in enumerate(addresses):
            _check_address(member, position, address)
    if not isinstance(index, int) or isinstance(index, bool):
        raise ConfigError(f"TF_CONFIG task index {index!r} is not a whole number: {fix}")
    if task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type {task_type!r}: this pipeline runs chief and "
                          "worker tasks only (no parameter servers or evaluators)")
    if not 0 <= index < len(members.get(task_type, [])):
        raise ConfigError(f"TF_CONFIG task {task_type} {index} is not in its cluster "
                          f"({len(members.get(task_type, []))} {task_type} addresses)")
    workers = len(members.get("worker", [])) + len(members.get("chief", []))
    peers = tuple(address for member in ("chief", "worker")
                  for position, address in enumerate(members.get(member, []))
                  if (member, position) != (task_type, index))
    return Worker(task_type, index, workers, bool(members.get("chief")), peers)


def check(config: PipelineConfig) -> None:
    """Bad distribution settings fail at start-up, before any work (exit 2)."""
    if config.train.distribution == "multi_worker":
        worker = worker_from_environment()
        try:
            timeout = startup_timeout()
        except ValueError:
            timeout = float("nan")
        if not 0 < timeout <= MAX_STARTUP_TIMEOUT_S:  # inf would overflow the watchdog
            raise ConfigError(f"PIPELINE_WORKER_TIMEOUT_S="
                              f"{os.environ.get('PIPELINE_WORKER_TIMEOUT_S')} must be a "
                              f"number of seconds in (0, {MAX_STARTUP_TIMEOUT_S:g}]")
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
        # The strategy waits for every peer, in C++ and holding the GIL, without a word and
        # deaf to SIGTERM: a separate process says which peer does not answer and stops it.
        watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()),
                                     str(startup_timeout()),
                                     *worker_from_environment().peers])
        with _interrupt_exits_with_status_2():
            _strategy = tf.distribute.MultiWorkerMirroredStrategy()
        watchdog.kill()
        watchdog.wait()


@contextlib.contextmanager
def _interrupt_exits_with_status_2():
    """Python's signal handlers cannot run while TensorFlow holds the GIL, so for this
    block SIGINT's handler is the C library's _exit itself: it is called with the signal's
    number, and SIGINT is 2, the pipeline's status for a bad input (here TF_CONFIG). The
    watchdog's SIGINT, or Ctrl-C, ends the wait at once."""
    previous = signal.getsignal(signal.SIGINT)
    libc = ctypes.CDLL(None)
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal.restype = ctypes.c_void_p
    if int(signal.SIGINT) == 2:
        libc.signal(signal.SIGINT, ctypes.cast(libc._exit, ctypes.c_void_p))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# Run as `python -c WATCHDOG PARENT_PID SECONDS PEER...` beside a starting worker.
WATCHDOG = """
import os, signal, socket, sys, time
parent, waited, peers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the worker; this then exits 0
time.sleep(waited)
if os.getppid() != parent:
    sys.exit(0)
silent = []
for peer in peers:
    host, _, port = peer.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        silent.append(peer)
who = (", ".join(silent) + " did not answer") if silent else (
    "every peer accepts connections, but not all joined the cluster")
sys.stderr.write(f"error: the workers did not all start within {waited:g} s: {who} "
                 "(TF_CONFIG). Start every worker with the same cluster, or raise "
                 "PIPELINE_WORKER_TIMEOUT_S\\n")
sys.stderr.flush()
os.kill(parent, signal.SIGINT)  # exits 2 (see _interrupt_exits_with_status_2)
time.sleep(5)
if os.getppid() == parent:
    os.kill(parent, signal.SIGKILL)
"""


def startup_timeout() -> float:
    """Seconds the workers have to find each other ($PIPELINE_WORKER_TIMEOUT_S, 30)."""
    return float(os.environ.get("PIPELINE_WORKER_TIMEOUT_S", DEFAULT_STARTUP_TIMEOUT_S))


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
