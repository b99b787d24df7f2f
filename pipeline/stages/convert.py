"""convert: the stripped model to TFLite (float and/or dynamic-range int8), builtin ops only."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from pipeline import artifacts, litert, pruning
from pipeline.config import PipelineConfig
from pipeline.stages import StageError
from pipeline.stages import strip as strip_stage
from pipeline.stages import train as train_stage


def tflite_name(export: str) -> str:
    return f"model_{export}.tflite"


def to_tflite(model, sequence_length: int, export: str) -> bytes:
    """Converts through a concrete function with batch 1.

    `from_keras_model` fails on the open batch dimension; a static [1, length] input gives
    the fused UNIDIRECTIONAL_SEQUENCE_LSTM kernel with builtin ops only.
    """
    function = tf.function(lambda ids: model(ids, training=False))
    concrete = function.get_concrete_function(
        tf.TensorSpec([1, sequence_length], tf.int32, name="token_ids"))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if export == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def keras_layer_names(model) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for layer in model.layers:
        kind = pruning.layer_kind(layer)
        if kind:
            names.setdefault(kind, []).append(layer.name)
    return names


def dense_reference_sizes(run_dir: Path, config: PipelineConfig) -> dict:
    """Sizes of the unpruned parent converted the same way, for the compression ratios."""
    dense = artifacts.load_keras_model(run_dir / "train" / train_stage.MODEL_FILE)
    return {export: litert.sizes(to_tflite(dense, config.tokenizer.max_length, export))
            for export in config.convert.exports}


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    model = artifacts.load_keras_model(run_dir / "strip" / strip_stage.MODEL_FILE)
    layer_names = keras_layer_names(model)
    report = {}
    for export in config.convert.exports:
        path = out_dir / tflite_name(export)
        flatbuffer = to_tflite(model, config.tokenizer.max_length, export)
        artifacts.atomic_write_bytes(path, flatbuffer)
        ops = sorted(set(litert.op_names(path)))
        if litert.FUSED_LSTM not in ops:
            raise StageError(f"{path.name} has no fused {litert.FUSED_LSTM} op (ops: {ops}); "
                             "the phone would run a slow unrolled loop")
        report[export] = {"file": path.name, **litert.sizes(flatbuffer), "ops": ops,
                          "sparsity": litert.weight_sparsity(path, layer_names)}
    dense = (dense_reference_sizes(run_dir, config)
             if config.pruning.method != "none" else
             {e: {"bytes": r["bytes"], "gzip_bytes": r["gzip_bytes"]} for e, r in report.items()})
    for export, entry in report.items():
        entry["dense_reference"] = dense[export]
        entry["gzip_compression_vs_dense_float"] = dense["float"]["gzip_bytes"] / \
            entry["gzip_bytes"] if "float" in dense else None
    artifacts.atomic_write_json(out_dir / "convert.json", report)
    return {export: {"bytes": r["bytes"], "gzip_bytes": r["gzip_bytes"],
                     "gzip_compression_vs_dense_float": r["gzip_compression_vs_dense_float"]}
            for export, r in report.items()}
