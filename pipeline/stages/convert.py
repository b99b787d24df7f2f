"""convert: the stripped model's programs to TFLite (float and/or dynamic-range int8).

Every program is converted through a concrete function with batch 1: `from_keras_model`
fails on the open batch dimension, while a static [1, length] input gives the fused
UNIDIRECTIONAL_SEQUENCE_LSTM kernel with builtin ops only. The task names the programs:
"model" (the window model, whose fused LSTM is checked and whose weights are read back
for sparsity) and, for text generation, "step" (the one-character model that ships) and
"generate" (a block of characters sampled in the graph, shipped beside it).
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from absl import logging

from pipeline import artifacts, exports, litert, methods, pruning, tasks
from pipeline.config import PipelineConfig
from pipeline.stages import StageError


def tflite_name(program: str, export: str) -> str:
    return f"{program}_{export}.tflite"


def to_tflite(concrete, model, export: str) -> bytes:
    # The converter saves a SavedModel of the object it is given; given the Keras model it
    # traces every layer's call for Keras's own format (about 6 s per file). A bare module
    # holding the weights gives the same bytes in a tenth of the time.
    weights = tf.Module()
    weights.variables_of_the_model = list(model.weights)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], weights)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    exports.REGISTRY[export].configure(converter)
    return converter.convert()


def convert_all(model, config: PipelineConfig,
                only: tuple[str, ...] | None = None) -> dict[str, dict[str, bytes]]:
    """export → program → flatbuffer, for every program the task defines (or those in only)."""
    programs = tasks.for_config(config).tflite_programs(model, config)
    return {export: {name: to_tflite(concrete, model, export)
                     for name, concrete in programs.items() if only is None or name in only}
            for export in config.convert.exports}


def keras_layer_names(model) -> dict[str, list[str]]:
    """Layer kind → the names of the layers holding its weights, in model order (a
    Bidirectional layer holds two LSTMs: LAYER/forward, then LAYER/backward)."""
    names: dict[str, list[str]] = {}
    for layer in model.layers:
        kind = pruning.layer_kind(layer)
        if kind:
            names.setdefault(kind, []).extend(name for name, _ in pruning.weight_owners(layer))
    return names


def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    model = artifacts.load_keras_model(files.stripped_model)
    layer_names = keras_layer_names(model)
    task = tasks.for_config(config)
    shipped = task.shipped_program
    flatbuffers = convert_all(model, config)
    if not methods.for_config(config).changes_weights:
        dense = flatbuffers
    else:  # the unpruned parent's timed programs, converted the same way: the reference
        dense = convert_all(artifacts.load_keras_model(files.trained_model), config,
                            task.paired_programs)
    client_files, client_reports = task.client_files(model, config, files, to_tflite)
    report = {}
    for export, programs in flatbuffers.items():
        entry = {"programs": {}}
        for name, flatbuffer in programs.items():
            path = out_dir / tflite_name(name, export)
            artifacts.atomic_write_bytes(path, flatbuffer)
            entry["programs"][name] = {"file": path.name, **litert.sizes(flatbuffer),
                                       "ops": sorted(set(litert.op_names(path)))}
            if name in dense[export]:
                entry["programs"][name]["dense_reference"] = litert.sizes(dense[export][name])
        window = out_dir / entry["programs"]["model"]["file"]
        if litert.FUSED_LSTM not in entry["programs"]["model"]["ops"]:
            raise StageError(f"{window.name} has no fused {litert.FUSED_LSTM} op (ops: "
                             f"{entry['programs']['model']['ops']}); the phone would run a "
                             "slow unrolled loop")
        entry["sparsity"] = litert.weight_sparsity(window, layer_names)
        if exports.REGISTRY[export].integer_weights:
            entry["float_lstms"] = litert.float_lstms(window)
            if entry["float_lstms"]:
                logging.warning(
                    "convert: %d LSTM layer(s) in %s stay float: the converter quantizes only "
                    "tensors of 1,024 elements or more, and each gate block (units x inputs) "
                    "is smaller. Expected for a model this small (the smoke flagfiles); for a "
                    "model you ship, the int8 file is larger and slower than it could be: keep "
                    "units x inputs >= 1,024 (e.g. fewer removed units or dimensions)",
                    entry["float_lstms"], window.name)
        entry["clients"] = {}
        for client, flatbuffer in client_files.get(export, {}).items():
            path = out_dir / f"{client}_{export}.tflite"
            artifacts.atomic_write_bytes(path, flatbuffer)
            entry["clients"][client] = {"file": path.name, **litert.sizes(flatbuffer),
                                        "made": client_reports[client]}
        entry.update({key: entry["programs"][shipped][key]
                      for key in ("file", "bytes", "gzip_bytes", "dense_reference")})
        if dense is not flatbuffers:  # kept so evaluate can time pruned and dense side by side
            for name in task.paired_programs:
                reference = out_dir / f"dense_{tflite_name(name, export)}"
                artifacts.atomic_write_bytes(reference, dense[export][name])
                program = entry["programs"][name]
                program["dense_reference"] = {**program["dense_reference"],
                                              "file": reference.name}
            entry["dense_reference"] = entry["programs"][shipped]["dense_reference"]
        report[export] = entry
    dense_float = report["float"]["dense_reference"]["gzip_bytes"] if "float" in report else None
    for entry in report.values():
        entry["gzip_compression_vs_dense_float"] = (dense_float / entry["gzip_bytes"]
                                                    if dense_float else None)
    artifacts.atomic_write_json(out_dir / files.conversions.name, report)
    return {export: {"bytes": r["bytes"], "gzip_bytes": r["gzip_bytes"],
                     "gzip_compression_vs_dense_float": r["gzip_compression_vs_dense_float"]}
            for export, r in report.items()}
