"""LiteRT (TFLite) helpers: run a .tflite file, time it, and read its weights back.

The fused LSTM keeps its state between invocations, so every new sequence starts with
`reset_all_variables()`.
"""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import pipeline

FUSED_LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
# Inputs 1-4 of the fused LSTM are the input-to-gate weights (the Keras kernel split into
# its four gates), inputs 5-8 the recurrent-to-gate weights (the recurrent kernel).
LSTM_WEIGHT_INPUTS = {"kernel": range(1, 5), "recurrent_kernel": range(5, 9)}


def open_interpreter(path, threads: int = 1, resize: dict | None = None,
                     **options) -> Interpreter:
    """A LiteRT interpreter with its tensors allocated (after `resize`: input index →
    shape), made without LiteRT's INFO line on stderr (pipeline.quiet_stderr)."""
    with pipeline.quiet_stderr():
        interpreter = Interpreter(model_path=str(path), num_threads=threads, **options)
        for index, shape in (resize or {}).items():
            interpreter.resize_tensor_input(index, shape)
        interpreter.allocate_tensors()
    return interpreter


class Runner:
    """Runs single examples through a .tflite classifier on a fixed number of threads.

    A [1, length] input with fewer ids than the file's length runs in an interpreter whose
    input is resized to them (one per length, made once): LiteRT's fused LSTM then takes
    as many steps as there are ids."""

    def __init__(self, path: Path, threads: int = 1):
        self.path, self.threads = Path(path), threads
        self.interpreter = self._interpreter(None)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._by_length = {int(np.prod(self.input["shape"])): self.interpreter}

    def _interpreter(self, length: int | None) -> Interpreter:
        try:
            resize = {self.input["index"]: [1, length]} if length is not None else {}
            interpreter = open_interpreter(self.path, self.threads, resize)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{self.path} is not a loadable .tflite model"
                             + (f" at input length {length}" if length else "")
                             + f" ({error})") from None
        return interpreter

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        interpreter = self._ready(ids)
        interpreter.invoke()
        return interpreter.get_tensor(self.output["index"])[0].copy()

    def median_invoke_ms(self, ids: np.ndarray, calls: int) -> float:
        """Median wall time of `calls` invocations on `ids` at their own length."""
        interpreter = self._ready(ids)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        return float(np.median(times))

    def _ready(self, ids: np.ndarray) -> Interpreter:
        """The interpreter of the ids' length, state reset and input set."""
        ids = np.asarray(ids)
        if ids.size not in self._by_length:
            if len(self.input["shape"]) != 2 or ids.size > self.input["shape"][1]:
                raise ValueError(f"{self.path} takes {self.input['shape'].tolist()} ids, not "
                                 f"{ids.size}")
            self._by_length[ids.size] = self._interpreter(ids.size)
        interpreter = self._by_length[ids.size]
        interpreter.reset_all_variables()
        shape = self.input["shape"] if ids.size == np.prod(self.input["shape"]) else [1, ids.size]
        interpreter.set_tensor(self.input["index"], ids.reshape(shape).astype(self.input["dtype"]))
        return interpreter

    def predict(self, ids: np.ndarray) -> np.ndarray:
        return np.stack([self(row) for row in ids])


def check_runs(path: Path) -> None:
    """Loads a .tflite and runs it once on zero inputs; raises ValueError if it cannot."""
    try:
        interpreter = open_interpreter(path)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{path} does not run in LiteRT ({error})") from None
    if not all(np.isfinite(output).all() for output in outputs):
        raise ValueError(f"{path} gives non-finite outputs on a zero input")


PAIRED_BURST = 10  # consecutive calls of one model before switching to the other


def paired_latency(path: Path, reference: Path, runs: int, ids: np.ndarray | None = None) -> dict:
    """Median invoke latency of two .tflite files, in alternating bursts (1 thread).

    Alternating shares the machine's noise between the two, so their ratio is steadier than
    two separate timings; this is how a pruned model is compared with its dense parent.
    Each burst's first call is not counted: switching models evicts the other's weights
    from the caches, which an app that keeps calling one model does not pay (single calls
    alternating made a 5 MB dense step model look 2-5x slower than it runs). Only invoke()
    is timed: the inputs are set once, since copying them through Python's set_tensor
    (about 5 us a call for the three tensors of a step model) is the harness's cost, not
    the model's, and an app writes its inputs in place (see set_timing_inputs). A fused
    LSTM's state is not reset between timed invokes. `ids` is the example the id input
    gets (zeros if None): LiteRT skips work on all-zero input vectors, so a model whose
    padding row is 0 looks faster on all-padding input than on text.
    """
    invokes, rng = [], np.random.default_rng(0)
    for model_path in (path, reference):
        interpreter = open_interpreter(model_path)
        set_timing_inputs(interpreter, rng, ids)
        invokes.append(interpreter.invoke)
    times: list[list[float]] = [[], []]
    warmup = 2
    for round_ in range(warmup + -(-runs // (PAIRED_BURST - 1))):
        for which, invoke in enumerate(invokes):
            for position in range(PAIRED_BURST):
                start = time.perf_counter()
                invoke()
                if round_ >= warmup and position > 0:
                    times[which].append((time.perf_counter() - start) * 1000.0)
    median, dense = float(np.median(times[0])), float(np.median(times[1]))
    return {"median_ms": median, "dense_median_ms": dense, "ratio": median / dense,
            "runs": len(times[0]), "burst": PAIRED_BURST, "threads": 1,
            "inputs": ("zero ids" if ids is None else "a test example's ids")
            + ", uniform(-1, 1) floats", "timed": "invoke"}


def set_timing_inputs(interpreter: Interpreter, rng: np.random.Generator,
                      ids: np.ndarray | None = None) -> None:
    """Sets every input once for timing: ids to `ids` (zeros if None), float inputs (a step
    model's state) uniform in (-1, 1), since LiteRT's int8 kernels skip a product with an
    all-zero vector, which a running state never is."""
    for detail in interpreter.get_input_details():
        shape, dtype = detail["shape"], detail["dtype"]
        if np.issubdtype(dtype, np.floating):
            value = rng.uniform(-1, 1, shape).astype(dtype)
        else:
            value = (np.zeros(shape, dtype) if ids is None
                     else np.asarray(ids).reshape(shape).astype(dtype))
        interpreter.set_tensor(detail["index"], value)


def time_calls(call, runs: int, warmup: int = 20) -> dict:
    """Median and p90 wall time of `call()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "runs": runs, "threads": 1}


def _inspector(path: Path) -> Interpreter:
    """An interpreter without delegates, so the op list is the model's own."""
    interpreter = open_interpreter(
        path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return interpreter


def op_names(path: Path) -> list[str]:
    return [op["op_name"] for op in _inspector(path)._get_ops_details()]


def embedding_rows(path: Path) -> int | None:
    """Rows of the table the model's first GATHER reads (its embedding), or None: the ids
    a tokenizer may produce for it."""
    interpreter = _inspector(path)
    shapes = {d["index"]: d["shape"] for d in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if op["op_name"] == "GATHER":
            return int(shapes[op["inputs"][0]][0])
    return None


def float_lstms(path: Path) -> int:
    """How many fused LSTMs in the file keep float recurrent weights.

    Dynamic-range int8 quantizes only tensors of 1,024 elements or more, and an LSTM whose
    gate blocks are smaller (e.g. 64 units reading 8 inputs) stays float: bigger and
    slower than the user asked for."""
    interpreter = _inspector(path)
    tensors = interpreter.get_tensor_details()
    return sum(tensors[op["inputs"][LSTM_WEIGHT_INPUTS["recurrent_kernel"][0]]]["dtype"]
               == np.float32 for op in interpreter._get_ops_details()
               if op["op_name"] == FUSED_LSTM)


def sizes(flatbuffer: bytes) -> dict:
    """Raw and gzip'd size: pruning zeros only shrink the file once it is compressed."""
    return {"bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, compresslevel=9))}


def zero_fraction(per_weight: dict[str, dict], kinds=None) -> float | None:
    """Element-weighted zero fraction over the weights of the given layer kinds (all if None)."""
    chosen = [w for w in per_weight.values() if kinds is None or w["kind"] in kinds]
    if not chosen:
        return None
    return sum(w["zeros"] for w in chosen) / sum(w["size"] for w in chosen)


def weight_sparsity(path: Path, keras_layers: dict[str, list[str]]) -> dict[str, dict]:
    """Zero fraction of each pruned Keras weight as stored in the .tflite file.

    `keras_layers` maps a layer kind to the Keras layer names in model order; the i-th
    GATHER / fused LSTM / FULLY_CONNECTED op belongs to the i-th embedding / LSTM / dense
    layer. A Bidirectional layer converts to two fused LSTMs, the backward one reading a
    REVERSE_V2 of its input: those are matched, in order, to the names ending in
    "/backward", the others to the rest. The LSTM's gate tensors are summed, so the
    fraction is element-weighted.
    """
    interpreter = _inspector(path)
    operations = interpreter._get_ops_details()
    reversed_tensors = {op["outputs"][0] for op in operations if op["op_name"] == "REVERSE_V2"}
    lstm_names = keras_layers.get("lstm", [])
    lstm_queues = {True: [n for n in lstm_names if n.endswith("/backward")],
                   False: [n for n in lstm_names if not n.endswith("/backward")]}
    seen = {"GATHER": 0, "FULLY_CONNECTED": 0}
    result = {}
    # Quantized weights may reach an op through DEQUANTIZE, whose output holds no data
    # until the model runs: read the constant it dequantizes instead.
    dequantized = {op["outputs"][0]: op["inputs"][0] for op in operations
                   if op["op_name"] == "DEQUANTIZE"}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}

    def zeros_of(index: int) -> tuple[int, int]:
        index = dequantized.get(index, index)
        values = interpreter.get_tensor(index)
        quantization = details[index]["quantization_parameters"]
        zero = quantization["zero_points"]  # a stored zero: the zero point, if quantized
        if zero.size > 1:  # per channel, along the quantized dimension
            shape = [1] * values.ndim
            shape[quantization["quantized_dimension"]] = -1
            zero = zero.reshape(shape)
        return values.size, int(np.count_nonzero(values == (zero if zero.size else 0)))

    def add(name: str, kind: str, tensor_indices) -> None:
        counted = [zeros_of(i) for i in tensor_indices if i >= 0]
        size = sum(c[0] for c in counted)
        zeros = sum(c[1] for c in counted)
        result[name] = {"kind": kind, "size": size, "zeros": zeros, "sparsity": zeros / size,
                        "tensors": len(counted)}

    for op in operations:
        name = op["op_name"]
        if name == FUSED_LSTM:
            queue = lstm_queues[op["inputs"][0] in reversed_tensors]
            if queue:
                layer = queue.pop(0)
                for weight, positions in LSTM_WEIGHT_INPUTS.items():
                    add(f"{layer}/{weight}", "lstm", [op["inputs"][i] for i in positions])
            continue
        if name not in seen:
            continue
        position = seen[name]
        seen[name] += 1
        if name == "GATHER" and position < len(keras_layers.get("embedding", [])):
            add(f"{keras_layers['embedding'][position]}/embeddings", "embedding",
                [op["inputs"][0]])
        elif name == "FULLY_CONNECTED" and position < len(keras_layers.get("dense", [])):
            add(f"{keras_layers['dense'][position]}/kernel", "dense", [op["inputs"][1]])
    return result
