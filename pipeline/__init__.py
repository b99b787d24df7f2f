"""prune-pipeline: train, prune, strip, convert to TFLite and evaluate LSTM models.

tfmot only works with tf_keras models, and importing it flips TF_USE_LEGACY_KERAS on its
own; setting it here, before anything imports TensorFlow, makes `tf.keras` mean the same
thing for the whole process.

Quiet by default: TensorFlow's C++ libraries print INFO lines while they load (oneDNN,
the CUDA stubs), before any log level applies, and on a machine without an NVIDIA device
an error line for the CUDA probe. Unless `--verbosity` asks for 1 or more or
TF_CPP_MIN_LOG_LEVEL is set below 2, the first `import tensorflow` runs with the
process's stderr on /dev/null (Python exceptions still propagate and print), and C++ logging keeps
warnings and errors (errors too are hidden where no NVIDIA device exists: the probe's is
the only one seen there); TensorFlow's Python logger keeps warnings.
"""
import contextlib
import importlib.abc
import logging
import importlib.util
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _verbose(argv: list[str]) -> bool:
    for argument in argv:
        for prefix in ("--verbosity=", "-v="):
            if argument.startswith(prefix):
                try:
                    return int(argument[len(prefix):]) >= 1
                except ValueError:
                    return False
    return False


QUIET = not _verbose(sys.argv)


@contextlib.contextmanager
def quiet_stderr():
    """The process's stderr (file descriptor 2, where C++ libraries write) on /dev/null for
    the block, unless --verbosity asked for more: e.g. LiteRT's "Created TensorFlow Lite
    XNNPACK delegate" INFO line, which no log level silences."""
    if not QUIET:
        yield
        return
    with _stderr_to_devnull():
        yield


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the import of `tensorflow` in _stderr_to_devnull, then steps aside. It stays
    until the module is really executed: a library may only look the package up first
    (importlib.util.find_spec), and that lookup must not use it up."""

    def __init__(self):
        self.looking = False

    def find_spec(self, name, path, target=None):
        if name != "tensorflow" or self.looking:
            return None
        self.looking = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.looking = False
        if spec is None or spec.loader is None:
            return spec
        load, finder = spec.loader.exec_module, self

        def exec_module(module):
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            with _stderr_to_devnull():
                load(module)
        spec.loader.exec_module = exec_module
        return spec


if QUIET:  # TensorFlow's Python INFO lines
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
if QUIET:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL",
                          "2" if os.path.exists("/dev/nvidiactl") else "3")
    # A level below 2 (the user's, or a parent's) asks for TensorFlow's INFO lines.
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("2", "3") and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())
