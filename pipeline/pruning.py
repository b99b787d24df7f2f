"""tfmot magnitude pruning and the penalties of the regularized methods; no data, no files.

`apply_pruning` wraps the layers a PruningConfig selects with tfmot's
`prune_low_magnitude`, each with its own schedule; `strip` removes the wrappers and
`weight_sparsity` measures what is left, per Keras weight.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from pipeline import resume
from pipeline.config import PruningConfig, RegularizationConfig

sparsity = tfmot.sparsity.keras

LAYER_KINDS = {
    "embedding": tf_keras.layers.Embedding,
    "lstm": (tf_keras.layers.LSTM, tf_keras.layers.Bidirectional),
    "dense": tf_keras.layers.Dense,
}
# The weights each layer kind prunes (tfmot's registry), by the suffix of their name.
PRUNED_WEIGHTS = ("embeddings", "kernel", "recurrent_kernel")


def unwrapped(layer):
    """The layer inside a pruning wrapper (a Bidirectional wrapper is itself the layer)."""
    if (isinstance(layer, tf_keras.layers.Wrapper)
            and not isinstance(layer, tf_keras.layers.Bidirectional)):
        return layer.layer
    return layer


def layer_kind(layer) -> str | None:
    layer = unwrapped(layer)
    for kind, cls in LAYER_KINDS.items():
        if isinstance(layer, cls):
            return kind
    return None


def resolve_end_step(config: PruningConfig, steps_per_epoch: int) -> int:
    """The last step of the schedule: explicit, or the start of the final fine-tune epoch.

    Leaving the last epoch at full sparsity lets the model recover before it is measured.
    The automatic end lands on a mask-update step, so the final target is met exactly.
    """
    if config.pruning_schedule == "one_shot":
        return one_shot_step(config)
    if config.pruning_end_step != -1:
        return config.pruning_end_step
    epochs, begin, frequency = (config.pruning_epochs, config.pruning_begin_step,
                                config.pruning_frequency)
    total = steps_per_epoch * epochs
    end = steps_per_epoch * (epochs - 1) if epochs > 1 else int(0.7 * total)
    updates = max(1, (end - begin) // frequency)
    return begin + updates * frequency


class KeepBestAtTarget(tf_keras.callbacks.Callback):
    """Keeps the weights of the best validation epoch among those at full sparsity.

    Epochs that end before the schedule does are never chosen, so the kept model always
    has the target sparsity; the choice uses the validation split, never the test split.
    With a `state_folder`, the best so far is saved after each epoch and survives a kill.
    """

    def __init__(self, end_step: int, steps_per_epoch: int, monitor: str = "val_accuracy",
                 mode: str = "max", state_folder: Path | None = None):
        super().__init__()
        self.end_step, self.steps_per_epoch, self.monitor = end_step, steps_per_epoch, monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.best, self.best_epoch, self.best_weights = None, None, None
        self.states = resume.EpochStates(state_folder, "keep_best",
                                          resume.KEEP_BEST_FIELDS) if state_folder else None
        self.first_epoch = 0  # where the fit starts: set by resume.fit from the checkpoint

    def on_train_begin(self, logs=None):
        if self.states is not None:  # see pipeline.resume
            state, weights = self.states.before(self.first_epoch, "best_epoch")
            if state is not None and state["best_epoch"] is not None:
                self.best, self.best_epoch, self.best_weights = (state["best"],
                                                                 state["best_epoch"], weights)

    def on_epoch_end(self, epoch, logs=None):
        at_target = (epoch + 1) * self.steps_per_epoch >= self.end_step
        value = (logs or {}).get(self.monitor)
        improved = at_target and value is not None and (
            self.best is None or self.sign * (value - self.best) > 0)
        if improved:
            self.best, self.best_epoch = float(value), epoch
            self.best_weights = self.model.get_weights()
        if self.states is not None:
            self.states.save(epoch, {"best": self.best, "best_epoch": self.best_epoch},
                             self.best_weights if improved else None)

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def one_shot_step(config: PruningConfig) -> int:
    """tfmot counts the first training step as step 1, so a mask at "step 0" is step 1."""
    return max(config.pruning_begin_step, 1)


def _schedule(config: PruningConfig, target: float, end_step: int):
    if config.pruning_schedule == "one_shot":  # one mask update, then the mask is held fixed
        step = one_shot_step(config)
        return sparsity.ConstantSparsity(target, begin_step=step, end_step=step, frequency=1)
    if config.pruning_schedule == "polynomial_decay":
        return sparsity.PolynomialDecay(initial_sparsity=config.initial_sparsity,
                                        final_sparsity=target,
                                        begin_step=config.pruning_begin_step,
                                        end_step=end_step, frequency=config.pruning_frequency)
    # constant and m_by_n: the mask is recomputed every `frequency` steps from begin_step.
    return sparsity.ConstantSparsity(target, begin_step=config.pruning_begin_step,
                                     end_step=end_step, frequency=config.pruning_frequency)


@tf_keras.saving.register_keras_serializable(package="prune_pipeline")
class PrunableBidirectional(tf_keras.layers.Bidirectional, sparsity.PrunableLayer):
    """A Bidirectional LSTM that tfmot can wrap: it names both directions' LSTM kernels.

    tfmot refuses to wrap Bidirectional (tensorflow/model-optimization#374); a layer that
    implements PrunableLayer itself is wrapped, and its forward and backward `kernel` and
    `recurrent_kernel` get masks like a plain LSTM's. Used only while pruning: `strip`
    turns it back into a plain Bidirectional.
    """

    def get_prunable_weights(self):
        return [weight for direction in (self.forward_layer, self.backward_layer)
                for weight in (direction.cell.kernel, direction.cell.recurrent_kernel)]


def _swap_bidirectional(model: tf_keras.Model, cls, wrap=lambda layer: layer):
    """A clone of `model` whose Bidirectional layers are of class `cls`, then `wrap`ped.

    Other layers are reused (their weights carry over); a swapped layer is a new object
    and gets the original's weights once the clone is built.
    """
    swapped = []

    def clone(layer):
        if isinstance(layer, tf_keras.layers.Bidirectional) and type(layer) is not cls:
            replacement = cls.from_config(layer.get_config())
            swapped.append((replacement, layer.get_weights()))
            layer = replacement
        return wrap(layer)

    clone_model = tf_keras.models.clone_model(model, clone_function=clone)
    for replacement, weights in swapped:
        replacement.set_weights(weights)
    return clone_model


def apply_pruning(model: tf_keras.Model, config: PruningConfig,
                  steps_per_epoch: int) -> tf_keras.Model:
    """Returns a clone of `model` whose selected layers are wrapped for magnitude pruning."""
    targets = config.targets()
    end_step = resolve_end_step(config, steps_per_epoch)

    def wrap(layer):
        kind = layer_kind(layer)
        if kind not in targets:
            return layer
        options = {"pruning_schedule": _schedule(config, targets[kind], end_step)}
        if config.pruning_schedule == "m_by_n":
            options["sparsity_m_by_n"] = (config.pruning_m, config.pruning_n)
        return sparsity.prune_low_magnitude(layer, **options)

    return _swap_bidirectional(model, PrunableBidirectional, wrap)


@tf_keras.saving.register_keras_serializable(package="prune_pipeline")
class GateGroupLasso(tf_keras.regularizers.L1L2):
    """L1/L2 plus a group lasso over LSTM hidden units.

    For a kernel of shape [inputs, 4 * units] (gates i, f, c, o side by side) the group of
    unit j is its column in all four gate blocks; the penalty `group * sum_j ||group_j||_2`
    drives whole units to zero, which structured pruning can later remove.
    """

    def __init__(self, l1=0.0, l2=0.0, group=0.0):
        super().__init__(l1=l1, l2=l2)
        self.group = group

    def __call__(self, kernel):
        units = kernel.shape[-1] // 4
        per_unit = tf.reshape(kernel, [-1, 4, units])
        norms = tf.sqrt(tf.reduce_sum(tf.square(per_unit), axis=[0, 1]) + 1e-12)
        return super().__call__(kernel) + self.group * tf.reduce_sum(norms)

    def get_config(self):
        return {**super().get_config(), "group": float(self.group)}


# --regularized_weights name → (model-builder key, layer kind holding it)
REGULARIZER_TARGETS = {
    "embeddings": (("embeddings", "embedding"),),
    "kernel": (("lstm_kernel", "lstm"), ("dense_kernel", "dense")),
    "recurrent_kernel": (("recurrent_kernel", "lstm"),)}


def regularized_kinds(weight: str) -> set[str]:
    """The layer kinds holding a --regularized_weights entry."""
    return {kind for _, kind in REGULARIZER_TARGETS[weight]}


def regularizers(config: RegularizationConfig, layer_kinds: tuple[str, ...]) -> dict:
    """Model-builder key → tf_keras regularizer for the train stage of the l1/l2 methods:
    the --regularized_weights (empty: all) of the layer kinds that will be pruned."""
    if not (config.l1 or config.l2 or config.group_lasso):
        return {}
    plain = tf_keras.regularizers.L1L2(l1=config.l1, l2=config.l2)
    lstm = (GateGroupLasso(config.l1, config.l2, config.group_lasso)
            if config.group_lasso else plain)
    chosen = {}
    for weight in config.regularized_weights or tuple(REGULARIZER_TARGETS):
        for key, kind in REGULARIZER_TARGETS[weight]:
            if kind not in layer_kinds:
                continue
            if key in ("lstm_kernel", "recurrent_kernel"):
                chosen[key] = lstm
            elif config.l1 or config.l2:  # the group lasso alone leaves the rest unpenalised
                chosen[key] = plain
    return chosen


def weight_owners(layer) -> list[tuple[str, object]]:
    """(name prefix, layer holding the weights): a Bidirectional layer holds two LSTMs,
    named LAYER/forward and LAYER/backward; any other layer is its own owner."""
    layer = unwrapped(layer)
    if isinstance(layer, tf_keras.layers.Bidirectional):
        return [(f"{layer.name}/forward", layer.forward_layer),
                (f"{layer.name}/backward", layer.backward_layer)]
    return [(layer.name, layer)]


def prunable_weights(model: tf_keras.Model):
    """Yields (Keras name, layer kind, values) for every weight magnitude pruning touches."""
    for layer in model.layers:
        kind = layer_kind(layer)
        if kind is None:
            continue
        for prefix, owner in weight_owners(layer):
            for weight in owner.weights:
                short = weight.name.split("/")[-1].split(":")[0]
                if short in PRUNED_WEIGHTS:
                    yield f"{prefix}/{short}", kind, weight.numpy()


def magnitude_histograms(model: tf_keras.Model) -> dict[str, dict]:
    """Per prunable weight: exact zeros and a log10 histogram of the other magnitudes."""
    edges = np.arange(-8.0, 1.5, 0.5)
    result = {}
    for name, _, values in prunable_weights(model):
        magnitudes = np.abs(values).ravel()
        nonzero = magnitudes[magnitudes > 0]
        counts, _ = np.histogram(np.log10(nonzero), bins=edges)
        result[name] = {"zeros": int(magnitudes.size - nonzero.size),
                        "log10_edges": edges.tolist(), "counts": counts.tolist(),
                        "below_first_edge": int(np.sum(nonzero < 10.0 ** edges[0]))}
    return result


def callbacks(log_dir: str) -> list:
    return [sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir=log_dir)]


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """The model without pruning wrappers, made of plain tf_keras layers only."""
    stripped = sparsity.strip_pruning(model)
    if any(isinstance(layer, PrunableBidirectional) for layer in stripped.layers):
        return _swap_bidirectional(stripped, tf_keras.layers.Bidirectional)
    return stripped


def load_scope():
    """Custom-object scope under which a model with pruning wrappers can be loaded."""
    return sparsity.prune_scope()


def weight_sparsity(model: tf_keras.Model) -> dict[str, dict]:
    """Zero fraction of every prunable weight of every embedding, LSTM and dense layer."""
    result = {}
    for name, kind, values in prunable_weights(model):
        zeros = int(np.count_nonzero(values == 0))
        result[name] = {"kind": kind, "size": int(values.size), "zeros": zeros,
                        "sparsity": zeros / values.size}
    return result
