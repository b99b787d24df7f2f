"""Structured pruning by surgery: whole LSTM units and embedding dimensions leave the model.

A group is what one hidden unit owns: its column in each of the four gate blocks (Keras
order i, f, c, o: column `g * units + u`) of `kernel` and `recurrent_kernel`, its four bias
entries, its row of `recurrent_kernel`, and its input row in whatever reads the LSTM's
output (the next LSTM's `kernel`, or the head `Dense`). An embedding dimension is one
column of the embedding matrix and the matching row of the first LSTM's `kernel`.

Pretrained vectors spread their meaning over every embedding axis, so no raw axis is
unimportant; `rotate_to_principal` first turns the embedding onto the directions the
training tokens use most (an exact change of basis), so the weakest dimensions carry little.

Zeroing a unit's incoming weights and biases makes its state 0 forever (c = f·c + i·tanh(0)
stays 0, h = o·tanh(0) = 0), so `mask` and `shrink` give the same outputs: `shrink`
rebuilds the model with smaller `units`/`output_dim` from its own config and sliced
weights, and every later stage simply sees a smaller dense model.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras

GATES = 4


class SurgeryError(ValueError):
    """The model is not an Embedding → LSTM stack → Dense head that surgery understands."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """The weighted layers in data order: embedding, LSTMs, the head reading the last LSTM."""
    embedding: tf_keras.layers.Embedding
    lstms: tuple[tf_keras.layers.LSTM, ...]
    head: tf_keras.layers.Dense

    @classmethod
    def of(cls, model: tf_keras.Model) -> "Layout":
        weighted = [layer for layer in model.layers if layer.weights]
        kinds = [type(layer) for layer in weighted]
        lstms = tuple(layer for layer in weighted if isinstance(layer, tf_keras.layers.LSTM))
        if (len(weighted) < 3 or kinds[0] is not tf_keras.layers.Embedding
                or kinds[-1] is not tf_keras.layers.Dense or len(lstms) != len(weighted) - 2):
            raise SurgeryError(f"model {model.name} has weighted layers {[l.name for l in weighted]}"
                               "; structured pruning needs Embedding, LSTM..., Dense")
        return cls(weighted[0], lstms, weighted[-1])


@dataclasses.dataclass(frozen=True)
class Plan:
    """What stays: embedding dimensions, and the units of each LSTM (by layer name)."""
    embedding: np.ndarray
    units: dict[str, np.ndarray]


def gate_columns(kept: np.ndarray, units: int) -> np.ndarray:
    """The kernel columns of the kept units in all four gate blocks."""
    return np.concatenate([g * units + kept for g in range(GATES)])


def _readers(layout: Layout) -> list:
    """For each LSTM, the layer whose kernel rows are that LSTM's units."""
    return list(layout.lstms[1:]) + [layout.head]


def rotate_to_principal(model: tf_keras.Model, token_counts: np.ndarray) -> np.ndarray:
    """Rotates, in place, the embedding onto its token-weighted principal directions.

    With Q the eigenvectors of Σ_t count_t · e_t e_tᵀ (largest first), the embedding
    becomes E·Q and the first LSTM's kernel Qᵀ·W: E·Q·Qᵀ·W = E·W, so the model's outputs
    do not change, while dimension k now carries the k-th largest share of what the
    training tokens feed the LSTM. Returns each dimension's share of that total.
    """
    layout = Layout.of(model)
    table = layout.embedding.get_weights()[0].astype(np.float64)
    counts = np.asarray(token_counts, np.float64)
    if counts.shape != (table.shape[0],) or counts.sum() <= 0:
        raise SurgeryError(f"token counts of shape {counts.shape} (total {counts.sum():g}) do "
                           f"not weight the embedding's {table.shape[0]} rows")
    values, vectors = np.linalg.eigh((table.T * counts) @ table)
    order = np.argsort(-values, kind="stable")
    rotation = vectors[:, order]
    kernel, *rest = layout.lstms[0].get_weights()
    dtype = kernel.dtype
    layout.embedding.set_weights([(table @ rotation).astype(dtype)])
    layout.lstms[0].set_weights([(rotation.T @ kernel.astype(np.float64)).astype(dtype), *rest])
    energy = np.clip(values[order], 0, None)
    return energy / energy.sum()


def round_embedding(model: tf_keras.Model, levels: int, exact_rows=()) -> float:
    """Rounds, in place, the embedding's values to multiples of step = max |value| / levels,
    except those of `exact_rows`.

    Symmetric int8 maps each multiple to one code, so the rounded rows hold at most
    2·levels + 1 distinct codes, which gzip stores in a few bits each instead of 8.
    Returns the step.
    """
    layout = Layout.of(model)
    table = layout.embedding.get_weights()[0]
    largest = float(np.max(np.abs(table)))
    if largest == 0:
        return 0.0
    step = largest / levels
    rounded = (np.round(table / step) * step).astype(table.dtype)
    rows = np.asarray(exact_rows, dtype=int)
    rounded[rows] = table[rows]
    layout.embedding.set_weights([rounded])
    return step


def l2_scores(model: tf_keras.Model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """L2 norm of every group's weights: (per embedding dimension, per LSTM unit)."""
    layout = Layout.of(model)
    first_kernel = layout.lstms[0].get_weights()[0]
    embedding = np.sqrt(np.sum(layout.embedding.get_weights()[0] ** 2, axis=0)
                        + np.sum(first_kernel ** 2, axis=1))
    units = {}
    for lstm, reader in zip(layout.lstms, _readers(layout)):
        kernel, recurrent, bias = lstm.get_weights()
        size = lstm.units

        def per_unit(matrix):  # [rows, 4 * units] → sum of squares per unit
            return np.sum(matrix.reshape(-1, GATES, size) ** 2, axis=(0, 1))

        squares = (per_unit(kernel) + per_unit(recurrent) + per_unit(bias[None, :])
                   + np.sum(recurrent ** 2, axis=1) + np.sum(reader.get_weights()[0] ** 2, axis=1))
        units[lstm.name] = np.sqrt(squares)
    return embedding, units


def taylor_scores(model: tf_keras.Model, batches, loss) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """First-order Taylor importance: mean over batches of Σ |activation × gradient| per group.

    It estimates how much the loss would change if the group's output were zero
    (Molchanov et al. 2017), measured on training batches only.
    """
    layout = Layout.of(model)
    layers = [layout.embedding, *layout.lstms]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers] + [model.output])
    totals = [np.zeros(layer.output.shape[-1]) for layer in layers]
    count = 0
    for x, y in batches:
        with tf.GradientTape() as tape:
            *activations, prediction = probe(x, training=False)
            value = loss(y, prediction)
        gradients = tape.gradient(value, activations)
        for index, (activation, gradient) in enumerate(zip(activations, gradients)):
            product = tf.abs(activation * gradient)
            totals[index] += tf.reduce_sum(
                product, axis=list(range(product.shape.rank - 1))).numpy()
        count += 1
    if not count:
        raise SurgeryError("no training batch to measure Taylor importance on")
    totals = [t / count for t in totals]
    return totals[0], {lstm.name: t for lstm, t in zip(layout.lstms, totals[1:])}


def plan(scores: tuple[np.ndarray, dict[str, np.ndarray]], embedding_keep: int,
         units_keep: dict[str, int]) -> Plan:
    """Keeps the highest-scoring groups (ties broken by index), in their original order."""
    def top(values, count):
        order = np.lexsort((np.arange(len(values)), -np.asarray(values)))
        return np.sort(order[:count])

    embedding, units = scores
    return Plan(top(embedding, embedding_keep),
                {name: top(values, units_keep[name]) for name, values in units.items()})


def mask(model: tf_keras.Model, kept: Plan) -> None:
    """Zeroes, in place, the incoming weights of every group `kept` leaves out."""
    layout = Layout.of(model)
    table = layout.embedding.get_weights()[0]
    table[:, np.setdiff1d(np.arange(table.shape[1]), kept.embedding)] = 0
    layout.embedding.set_weights([table])
    for lstm in layout.lstms:
        kernel, recurrent, bias = lstm.get_weights()
        dropped = np.setdiff1d(np.arange(lstm.units), kept.units[lstm.name])
        columns = gate_columns(dropped, lstm.units)
        kernel[:, columns], recurrent[:, columns], bias[columns] = 0, 0, 0
        lstm.set_weights([kernel, recurrent, bias])


def shrink(model: tf_keras.Model, kept: Plan) -> tf_keras.Model:
    """The same model with only the kept groups: smaller `output_dim` and `units`."""
    layout = Layout.of(model)
    config = model.get_config()
    sizes = {layout.embedding.name: ("output_dim", len(kept.embedding)),
             **{lstm.name: ("units", len(kept.units[lstm.name])) for lstm in layout.lstms}}
    for layer in config["layers"]:
        if layer["config"]["name"] in sizes:
            key, size = sizes[layer["config"]["name"]]
            layer["config"][key] = size
    smaller = tf_keras.Model.from_config(config)
    smaller.get_layer(layout.embedding.name).set_weights(
        [layout.embedding.get_weights()[0][:, kept.embedding]])
    rows = kept.embedding
    for lstm in layout.lstms:
        kernel, recurrent, bias = lstm.get_weights()
        units = kept.units[lstm.name]
        columns = gate_columns(units, lstm.units)
        smaller.get_layer(lstm.name).set_weights(
            [kernel[rows][:, columns], recurrent[units][:, columns], bias[columns]])
        rows = units
    head_kernel, *head_rest = layout.head.get_weights()
    smaller.get_layer(layout.head.name).set_weights([head_kernel[rows], *head_rest])
    return smaller
