"""Text generation with a stateful one-step model: LiteRT for the bundle, keras-nlp for Keras.

The LiteRT path reads only what ships (tokenizer spec, vocabulary, step .tflite) and
samples with NumPy, as an app would; the Keras path drives a Keras step model with
keras-nlp's samplers. Both feed the prompt one character at a time and carry the LSTM
state, and neither ever emits the [UNK] id.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from pipeline.reference_tokenizer import CharacterTokenizer

SAMPLERS = ("greedy", "top_k", "top_p", "random")
STEP_INPUT = "token_id"
STEP_LOGITS = "logits"


class GenerateError(ValueError):
    """A generation setting or input is unusable; the message names it."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    sampler: str = "top_k"
    k: int = 5
    p: float = 0.9
    temperature: float = 1.0
    seed: int = 1

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise GenerateError(f"--sampler={self.sampler} is not one of {', '.join(SAMPLERS)}")
        if self.k < 1:
            raise GenerateError(f"--k={self.k} must be >= 1")
        if not 0.0 < self.p <= 1.0:
            raise GenerateError(f"--p={self.p} must be in (0, 1]")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise GenerateError(f"--temperature={self.temperature} must be a finite number > 0")
        if not math.isfinite(self.p):
            raise GenerateError(f"--p={self.p} must be in (0, 1]")


def next_token(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """Picks the next id from one step's logits, as the keras-nlp sampler of that name does.

    Per character this runs on every step of generation, so it avoids work that does not
    change the distribution: top-k softmaxes only its k candidates (found by a partial
    sort), and one uniform draw picks from the cumulative probabilities.
    """
    if sampling.sampler == "greedy":
        return int(np.argmax(logits))
    if sampling.sampler == "top_k" and sampling.k < len(logits):
        keep = np.argpartition(logits, len(logits) - sampling.k)[-sampling.k:]
        candidates = logits[keep]
    else:
        keep, candidates = None, logits
    scaled = candidates.astype(np.float64) / sampling.temperature
    weights = np.exp(scaled - scaled.max())
    if sampling.sampler == "top_p":
        order = np.argsort(-weights, kind="stable")
        ordered = weights[order]
        before = np.cumsum(ordered) - ordered
        nucleus = before < sampling.p * ordered.sum()
        keep, weights = order[nucleus], ordered[nucleus]
    cumulative = np.cumsum(weights)
    chosen = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")),
                 len(weights) - 1)
    return int(chosen if keep is None else keep[chosen])


class StepRunner:
    """The bundle's one-step model through LiteRT: (token, state) → (logits, state)."""

    def __init__(self, path: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            signature = interpreter.get_signature_runner()
            details, outputs = signature.get_input_details(), signature.get_output_details()
        except (ValueError, RuntimeError) as error:
            raise GenerateError(f"{path} is not a loadable one-step .tflite ({error})") from None
        # Only the tensor indices are kept: a live signature runner would make LiteRT refuse
        # the interpreter's own invoke().
        del signature
        if STEP_INPUT not in details:
            raise GenerateError(f"{path} has no {STEP_INPUT} input: it is not a textgen step "
                                "model")
        self.state_shapes = {name: tuple(d["shape"]) for name, d in details.items()
                             if name != STEP_INPUT}
        if STEP_LOGITS not in outputs:
            raise GenerateError(f"{path} has no {STEP_LOGITS} output: it is not a textgen step "
                                "model")
        self.vocabulary_size = int(outputs[STEP_LOGITS]["shape"][-1])
        self.interpreter = interpreter
        self.token = np.zeros([1], np.int32)
        self.token_index = details[STEP_INPUT]["index"]
        self.state_indices = {name: details[name]["index"] for name in self.state_shapes}
        self.logits_index = outputs[STEP_LOGITS]["index"]
        self.output_indices = {name: outputs[name]["index"] for name in self.state_shapes}

    def initial_state(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape, np.float32) for name, shape in self.state_shapes.items()}

    def __call__(self, token: int, state: dict) -> tuple[np.ndarray, dict]:
        # Tensors are set and read by index: the signature runner's call would resize and
        # re-allocate every tensor on every character, a large share of a small step's time.
        self.token[0] = token
        self.interpreter.set_tensor(self.token_index, self.token)
        for name, value in state.items():
            self.interpreter.set_tensor(self.state_indices[name], value)
        self.interpreter.invoke()
        return (self.interpreter.get_tensor(self.logits_index)[0],
                {name: self.interpreter.get_tensor(index)
                 for name, index in self.output_indices.items()})


def generate_litert(runner: StepRunner, prompt_ids: list[int], length: int,
                    sampling: Sampling, oov_id: int, emit=None) -> list[int]:
    """Feeds the prompt, then samples `length` ids; [UNK] is never generated.

    `emit`, if given, is called with each id as soon as it is sampled (streaming output).
    """
    rng = np.random.default_rng(sampling.seed)
    state = runner.initial_state()
    for token in prompt_ids[:-1]:
        _, state = runner(token, state)
    token, generated = prompt_ids[-1], []
    for _ in range(length):
        logits, state = runner(token, state)
        logits[oov_id] = -np.inf
        token = next_token(logits, sampling, rng)
        generated.append(token)
        if emit is not None:
            emit(token)
    return generated


def keras_sampler(sampling: Sampling):
    import keras_nlp
    samplers = keras_nlp.samplers
    if sampling.sampler == "greedy":
        return samplers.GreedySampler()
    if sampling.sampler == "top_k":
        return samplers.TopKSampler(k=sampling.k, seed=sampling.seed,
                                    temperature=sampling.temperature)
    if sampling.sampler == "top_p":
        return samplers.TopPSampler(p=sampling.p, seed=sampling.seed,
                                    temperature=sampling.temperature)
    return samplers.RandomSampler(seed=sampling.seed, temperature=sampling.temperature)


def generate_keras(step_model, prompt_ids: list[int], length: int, sampling: Sampling,
                   oov_id: int) -> list[int]:
    """Drives a Keras step model (`models.textgen.build_step_model`) with a keras-nlp sampler.

    The sampler's cache is every layer's (h, c) stacked; `next` feeds the id before `index`
    and returns the logits for position `index`, the way keras-nlp's causal LMs do.
    """
    import tensorflow as tf
    step = tf.function(lambda inputs: step_model(inputs, training=False))
    states = [tf.zeros((1, shape[-1])) for shape in step_model.input_shape[1:]]
    for token in prompt_ids[:-1]:
        _, *states = step([tf.constant([[token]], tf.int32), *states])
    vocabulary_size = step_model.output_shape[0][-1]
    never = tf.one_hot(oov_id, vocabulary_size) * -1e9

    def next_fn(prompt, cache, index):
        token = prompt[:, index - 1:index]
        logits, *new = step([token, *tf.unstack(cache, axis=1)])
        return logits + never, None, tf.stack(new, axis=1)

    total = len(prompt_ids) + length
    prompt = np.zeros((1, total), np.int32)
    prompt[0, :len(prompt_ids)] = prompt_ids
    mask = np.arange(total)[None, :] < len(prompt_ids)
    output = keras_sampler(sampling)(next_fn, tf.constant(prompt),
                                     cache=tf.stack(states, axis=1),
                                     index=len(prompt_ids), mask=tf.constant(mask))
    return [int(t) for t in np.asarray(output)[0, len(prompt_ids):]]


def encode_prompt(tokenizer: CharacterTokenizer, prompt: str) -> list[int]:
    if not prompt:
        raise GenerateError("--prompt is empty: give at least one character to continue")
    unknown = tokenizer.unknown(prompt)
    if unknown:
        sys.stderr.write(f"warning: the prompt has characters outside the vocabulary "
                         f"{json.dumps(''.join(unknown), ensure_ascii=False)}; they become "
                         f"{tokenizer.spec['oov_token']} (id {tokenizer.spec['oov_id']}), as "
                         "tokenizer.json says\n")
    return tokenizer.encode(prompt)


def load_keras_generator(run_dir: Path):
    """The stripped Keras model of a textgen run as a step model, and its tokenizer."""
    from models.textgen import build_step_model
    from pipeline import artifacts
    from pipeline.reference_tokenizer import SpecError, read_spec_and_vocabulary
    path = run_dir / "strip" / "model.keras"
    if not path.is_file():
        raise GenerateError(f"{path} does not exist: --keras takes a textgen run directory "
                            "whose strip stage has finished")
    try:
        spec, vocabulary = read_spec_and_vocabulary(run_dir / "data")
    except (OSError, ValueError, KeyError, TypeError, SpecError) as error:
        raise GenerateError(f"{run_dir / 'data'} has no usable tokenizer.json and vocab.txt "
                            f"({error}); rerun the run's data stage") from None
    if spec.get("algorithm") != "characters":
        raise GenerateError(f"{run_dir} is a {spec.get('algorithm')} (sentiment) run; "
                            "--keras needs a textgen run directory")
    try:
        model = artifacts.load_keras_model(path)
    except ValueError as error:
        raise GenerateError(str(error)) from None
    return build_step_model(model), CharacterTokenizer(spec, vocabulary)
