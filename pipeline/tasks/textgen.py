"""Character language model: trained on windows, shipped as a stateful one-step .tflite.

Training samples windows of `--max_length` characters at random offsets of the training
text (short windows give more updates per second). Evaluation scores non-overlapping
windows of `--eval_window_length` characters of the validation and test text, each from a
zero state, in nats per character. The bundle's model is the one-step program: the
stripped weights applied to one character and the LSTM states, so a phone pays one small
invoke per generated character.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from models.textgen import build_textgen_model, lstm_layers
from pipeline import artifacts, data, generation, tokenizer
from pipeline.config import ConfigError, PipelineConfig
from pipeline.metrics import MetricsFile
from pipeline.stages import StageError
from pipeline.tasks.base import FitData, Parity, Task, save_split, write_tokenizer_files

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
OOV_ID = 0  # tokenizer.character_vocabulary puts [UNK] first
GENERATE_FILE = "generate.tflite"  # shipped beside model.tflite (the step model)


def load_ids(files: artifacts.RunFiles, name: str) -> np.ndarray:
    return files.split(name)["ids"]


def random_windows(ids: np.ndarray, length: int, batch_size: int,
                   seed: int) -> tf.data.Dataset:
    """Endless batches of (window, next characters) at random offsets of `ids`; the same
    seed gives the same batches, whatever was iterated before."""
    text = tf.constant(ids)
    starts = tf.data.Dataset.counter().map(  # window n's offset drawn from (seed, n) alone
        lambda number: tf.random.stateless_uniform(
            [], seed=tf.stack([tf.constant(seed, tf.int64), number]), minval=0,
            maxval=len(ids) - length - 1, dtype=tf.int64))
    return (starts.map(lambda s: (tf.reshape(text[s:s + length], [length]),
                                  tf.reshape(text[s + 1:s + length + 1], [length])))
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def windows(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, next-character target) windows covering the text once."""
    count = (len(ids) - 1) // length
    if count < 1:
        raise StageError(f"a split of {len(ids)} characters is shorter than one window of "
                         f"{length} + 1; use more text or a shorter window")
    inputs = ids[:count * length].reshape(count, length)
    targets = ids[1:count * length + 1].reshape(count, length)
    return inputs, targets


def language_model_metrics(logits: np.ndarray, targets: np.ndarray) -> dict:
    """Cross-entropy in nats per character, and keras-nlp's Perplexity of the same logits."""
    import keras_nlp
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probabilities, targets[..., None], axis=-1)
    perplexity = keras_nlp.metrics.Perplexity(from_logits=True)
    perplexity.update_state(targets, logits)
    return {"loss": float(-picked.mean()), "perplexity": float(perplexity.result()),
            "characters": int(targets.size)}


class _StepWeights:
    """The window model's stripped weights as constants, and one LSTM step of plain ops.

    Converted with builtin ops only (GATHER, FULLY_CONNECTED, element-wise gates). Gate
    order follows Keras: input, forget, cell, output.

    Reading a character only looks up a row, so the first layer's input gates can be looked
    up whole: a table of embedding @ kernel + bias, one FULLY_CONNECTED fewer per step. It
    is used when it holds no more numbers than the nonzero weights it replaces (a small
    alphabet, a dense kernel); a pruned kernel keeps its zeros, which compress.
    """

    def __init__(self, model: tf_keras.Model):
        embeddings = model.get_layer("embedding").get_weights()[0]
        cells = [(layer, layer.get_weights()) for layer in lstm_layers(model)]
        self.cells = [(layer, [tf.constant(w) for w in values]) for layer, values in cells]
        kernel, _, bias = cells[0][1]
        self.first_gates, self.embeddings = None, tf.constant(embeddings)
        if embeddings.shape[0] * kernel.shape[1] <= (np.count_nonzero(embeddings)
                                                      + np.count_nonzero(kernel)):
            table = embeddings.astype(np.float64) @ kernel.astype(np.float64) + bias
            self.first_gates = tf.constant(table.astype(np.float32))
        self.head_kernel, self.head_bias = (
            tf.constant(w) for w in model.get_layer("next_token_logits").get_weights())

    def state_signature(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec([1, layer.units], tf.float32, name=f"{kind}_{index}")
                for index, (layer, _) in enumerate(self.cells) for kind in ("h", "c")]

    def advance(self, token_id, states) -> tuple[tf.Tensor, list]:
        """(logits [1, V], the states after reading token_id)."""
        hidden, new_states = None, []
        for index, (layer, (kernel, recurrent, bias)) in enumerate(self.cells):
            h, c = states[2 * index], states[2 * index + 1]
            if index == 0 and self.first_gates is not None:
                gates = tf.gather(self.first_gates, token_id) + tf.matmul(h, recurrent)
            else:
                inputs = tf.gather(self.embeddings, token_id) if index == 0 else hidden
                gates = tf.matmul(inputs, kernel) + tf.matmul(h, recurrent) + bias
            i, f, g, o = tf.split(gates, 4, axis=1)
            c = layer.recurrent_activation(f) * c + \
                layer.recurrent_activation(i) * layer.activation(g)
            hidden = layer.recurrent_activation(o) * layer.activation(c)
            new_states += [hidden, c]
        return tf.matmul(hidden, self.head_kernel) + self.head_bias, new_states

    def named_states(self, states) -> dict:
        return {f"{kind}_{index}": states[2 * index + position]
                for index in range(len(self.cells))
                for position, kind in enumerate(("h", "c"))}


def step_function(model: tf_keras.Model):
    """One character in, its logits and the new states out: the state is an explicit input
    and output, so the app owns it and nothing hides inside the interpreter."""
    weights = _StepWeights(model)
    signature = [tf.TensorSpec([1], tf.int32, name=generation.STEP_INPUT),
                 *weights.state_signature()]

    @tf.function(input_signature=signature)
    def step(token_id, *states):
        logits, states = weights.advance(token_id, states)
        return {generation.STEP_LOGITS: logits, **weights.named_states(states)}

    return step.get_concrete_function()


def generate_function(model: tf_keras.Model):
    """GENERATE_BLOCK steps per invoke, each sampling its next id in the graph.

    Step t reads the previous id, sorts the logits (the [UNK] id, 0, never wins), keeps the
    `k` best, softmaxes them at `temperature` and picks the first whose cumulative
    probability exceeds uniforms[t], as `generation.next_token` does. The loop is a WHILE
    op over one step's ops: unrolled, the steps ran 3-4x slower per character. Every op in
    the loop is paid per character and costs about as much as its arithmetic on a small
    model, so the loop holds as few as the sampler needs: [UNK]'s -inf sits in the output
    bias, the uniform number scales the k-th cumulative sum (no mask over the rest), and
    each id is written into its slot by adding a one-hot row. A k outside 1..vocabulary is
    clamped.
    The returned states have read the input id and all but the last generated id.
    """
    weights = _StepWeights(model)
    block = generation.GENERATE_BLOCK
    vocabulary = int(weights.head_bias.shape[0])
    weights.head_bias += tf.constant(
        np.where(np.arange(vocabulary) == OOV_ID, -np.inf, 0.0), tf.float32)
    slots = tf.eye(block, dtype=tf.int32)
    signature = [tf.TensorSpec([1], tf.int32, name=generation.STEP_INPUT),
                 *weights.state_signature(),
                 tf.TensorSpec([block], tf.float32, name="uniforms"),
                 tf.TensorSpec([], tf.float32, name="temperature"),
                 tf.TensorSpec([], tf.int32, name="k")]

    @tf.function(input_signature=signature)
    def generate(token_id, *inputs):
        *states, uniforms, temperature, k = inputs
        last = tf.clip_by_value(k - 1, 0, vocabulary - 1)  # the k-th best id's place

        def body(position, token, ids, *states):
            logits, states = weights.advance(token, states)
            best, order = tf.math.top_k(logits, vocabulary)
            scaled = best / temperature
            cumulative = tf.cumsum(tf.exp(scaled - scaled[:, :1]), axis=1)
            # Past the k-th id the sums only grow, so scaling the k-th sum counts the k best.
            threshold = tf.gather(uniforms, position) * tf.gather(cumulative, last, axis=1)
            chosen = tf.minimum(
                tf.reduce_sum(tf.cast(cumulative <= threshold, tf.int32), axis=1), last)
            token = tf.gather(order, chosen, axis=1, batch_dims=1)
            return (position + 1, token, ids + tf.gather(slots, position) * token, *states)

        _, _, ids, *states = tf.while_loop(
            lambda position, *_: position < block, body,
            (tf.constant(0), token_id, tf.zeros([block], tf.int32), *states))
        return {generation.GENERATE_OUTPUT: ids, **weights.named_states(states)}

    return generate.get_concrete_function()


class TextGenTask(Task):
    name = "textgen"
    monitor, monitor_mode = "val_loss", "min"
    primary_metric, higher_is_better = "loss", False
    score_directions = {"loss": False, "perplexity": False, "characters": None}
    parity = Parity("loss", "loss_parity_tolerance", 1.0, "parity_gap_nats", "nats/char")
    keras_batch_size = 256
    vocabularies = ("characters",)
    shipped_program, latency_per = "step", "character"
    paired_programs = ("step", "generate")
    stage_reads = {"data": ("dataset", "data_dir", "train_limit", "eval_limit",
                            "tfds_data_dir", "tfds_download", "vocabulary"),
                   "train": ("max_length",), "prune": ("max_length",),
                   "convert": ("eval_window_length",),
                   "evaluate": ("eval_window_length",)}
    # Settings that mean something for word-level sentiment only: set, they are refused.
    SENTIMENT_ONLY = (
        ("pretrained_embeddings", "embeddings", "are word vectors; the text generation model "
                                                "reads characters"),
        ("augment", "data", "adds noisy copies of training sentences; the text generation "
                            "data is one running text"),
        ("negated_phrases", "data", "adds negated sentiment phrases"),
        ("bidirectional", "model", "reads the text backwards too, which a language model "
                                   "predicting the next character may not do"),
        ("adversarial_sentences", "hardening", "attacks sentiment sentences"))

    def validate(self, config: PipelineConfig) -> None:
        super().validate(config)
        for name, section, why in self.SENTIMENT_ONLY:
            value = getattr(getattr(config, section), name)
            if value:
                shown = "" if value is True else "=" + (
                    ",".join(value) if isinstance(value, tuple) else str(value))
                raise ConfigError(f"--{name}{shown} {why}: use it with --task=sentiment")

    def check_inputs(self, config: PipelineConfig) -> None:
        data.check_corpus(config.data)

    def prepare_data(self, config: PipelineConfig, out_dir: Path) -> dict:
        splits = data.load_text_splits(config.data)
        vocabulary = tokenizer.character_vocabulary(splits.train)
        write_tokenizer_files(out_dir, vocabulary,
                              tokenizer.character_spec(vocabulary, config.tokenizer),
                              config.tokenizer)
        lengths, unknown = {}, {}
        for name in SPLITS:
            ids = tokenizer.encode_characters(getattr(splits, name), vocabulary)
            save_split(out_dir, name, ids=ids)
            lengths[name] = len(ids)
            unknown[name] = int(np.count_nonzero(ids == OOV_ID))
        logging.info("data: %d train / %d validation / %d test characters, %d distinct",
                     lengths["train"], lengths["validation"], lengths["test"],
                     len(vocabulary) - 1)
        return {"characters": lengths, "unknown_characters": unknown,
                "sources": splits.sources, "vocabulary_size": len(vocabulary)}

    def build_model(self, config: PipelineConfig, files: artifacts.RunFiles,
                    regularizers: dict) -> tf_keras.Model:
        return build_textgen_model(config.model, files.vocabulary_size(),
                                   regularizers=regularizers)

    def loss(self) -> tf_keras.losses.Loss:
        return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def fit_data(self, config: PipelineConfig, files: artifacts.RunFiles, seed: int) -> FitData:
        """Random windows of the training text, as many characters per epoch as it holds."""
        ids = load_ids(files, "train")
        length, batch = config.tokenizer.max_length, config.train.batch_size
        if len(ids) <= length + 1:
            raise StageError(f"the training text has {len(ids)} characters, not more than "
                             f"one window of --max_length={length}")
        steps = max(1, len(ids) // (length * batch))
        return FitData(random_windows(ids, length, batch, seed), {"validation_data": windows(load_ids(files, "validation"), length),
                               "validation_batch_size": 256}, steps)

    def tflite_programs(self, model: tf_keras.Model, config: PipelineConfig) -> dict:
        window = tf.function(lambda ids: model(ids, training=False))
        return {"model": window.get_concrete_function(
                    tf.TensorSpec([1, config.eval.eval_window_length], tf.int32,
                                  name="token_ids")),
                "step": step_function(model), "generate": generate_function(model)}

    def eval_data(self, config: PipelineConfig, files: artifacts.RunFiles) -> dict:
        length = config.eval.eval_window_length
        return {name: windows(load_ids(files, name), length) for name in EVAL_SPLITS}

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        return language_model_metrics(outputs, targets)

    def bundle(self, config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path,
               metrics: MetricsFile) -> dict:
        # The state sizes come from the shipped file: structured pruning may have shrunk them.
        shapes = generation.StepRunner(out_dir / "model.tflite").state_shapes
        shipped = metrics.details["size"]["files"][config.bundle.bundle_export]
        program = shipped["programs"]["generate"]
        source = files.converted(program["file"])
        artifacts.copy_file(source, out_dir / GENERATE_FILE)
        if artifacts.sha256_file(out_dir / GENERATE_FILE) != program["sha256"]:
            raise StageError(f"{source} is not the file evaluate measured (sha256 differs); "
                             "rerun --stages=convert,evaluate,bundle")
        block = generation.GenerateRunner(out_dir / GENERATE_FILE).block
        state = {name: {"shape": [int(n) for n in shape], "dtype": "float32"}
                 for name, shape in sorted(shapes.items())}
        return {
            "files": (GENERATE_FILE,),
            "signature": "serving_default",
            "input": {generation.STEP_INPUT: {"shape": [1], "dtype": "int32"}, **state},
            "output": {generation.STEP_LOGITS: {"shape": [1, files.vocabulary_size()],
                                              "dtype": "float32",
                                              "meaning": "next-character logits, ids as in "
                                                         "vocab.txt"},
                       **state},
            "state": "start every text with zero h_i and c_i; feed each output state back "
                     "as the next step's input state. The model holds no hidden state of its "
                     "own, so no reset is needed",
            "generate": {
                "file": GENERATE_FILE,
                "input": {generation.STEP_INPUT: {"shape": [1], "dtype": "int32"}, **state,
                          "uniforms": {"shape": [block], "dtype": "float32",
                                       "meaning": "one uniform number in [0, 1) per "
                                                  "generated character, drawn by the app"},
                          "temperature": {"shape": [], "dtype": "float32"},
                          "k": {"shape": [], "dtype": "int32",
                                "meaning": "sample among the k most likely ids (1: greedy; "
                                           "the vocabulary size: the whole distribution; "
                                           "values outside 1..size are clamped)"}},
                "output": {generation.GENERATE_OUTPUT: {"shape": [block], "dtype": "int32"},
                           **state},
                "use": f"feed the prompt through model.tflite except its last id; then call "
                       f"this model with that id: it returns {block} sampled ids and the "
                       "state after reading all but the last of them; call it again with "
                       "the last id. Each id is the first of the k best (sorted by logit, "
                       "[UNK] excluded) whose cumulative softmax(logits / temperature) "
                       "probability exceeds uniforms[t] times their total",
            },
            "samples": metrics.details["samples"]["texts"],
        }
