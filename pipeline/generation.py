"""Text generation with a stateful one-step model: LiteRT for the bundle, keras-nlp for Keras.

The LiteRT path reads only what ships (tokenizer spec, vocabulary, .tflite files), as an
app would: the step model feeds the prompt, and then either NumPy samples after every step
or, faster, the generate model samples GENERATE_BLOCK characters per invoke inside the
graph from uniform numbers the caller draws; both give the same ids for the same seed. The
Keras path drives a Keras step model with keras-nlp's samplers. All carry the LSTM state
and none ever emits the [UNK] id.
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
IN_GRAPH_SAMPLERS = ("greedy", "top_k", "random")  # top_p stays in NumPy (step model)
STEP_INPUT = "token_id"
STEP_LOGITS = "logits"
GENERATE_BLOCK = 32  # characters per invoke of the generate model
GENERATE_INPUTS = ("uniforms", "temperature", "k")
GENERATE_OUTPUT = "token_ids"


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
    sort), and one uniform draw picks from the cumulative probabilities. Candidates are
    ordered from the most likely (ties: lower id first), as the generate model orders them,
    so the same uniform number picks the same id on both paths.
    """
    if sampling.sampler == "greedy":
        return int(np.argmax(logits))
    if sampling.sampler == "top_k" and sampling.k < len(logits):
        keep = np.sort(np.argpartition(logits, len(logits) - sampling.k)[-sampling.k:])
        keep = keep[np.argsort(-logits[keep], kind="stable")]
    else:
        keep = np.argsort(-logits, kind="stable")
    candidates = logits[keep]
    scaled = candidates.astype(np.float64) / sampling.temperature
    weights = np.exp(scaled - scaled.max())
    if sampling.sampler == "top_p":
        before = np.cumsum(weights) - weights
        nucleus = before < sampling.p * weights.sum()
        keep, weights = keep[nucleus], weights[nucleus]
    cumulative = np.cumsum(weights)
    chosen = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")),
                 len(weights) - 1)
    return int(keep[chosen])


class _Runner:
    """A textgen .tflite through LiteRT, tensors set and read by index.

    The signature runner's call would resize and re-allocate every tensor on every call,
    a large share of a small step's time; only the tensor indices are kept, since a live
    signature runner would make LiteRT refuse the interpreter's own invoke().
    """
    kind, extra_inputs, output = "one-step", (), STEP_LOGITS

    def __init__(self, path: Path, threads: int = 1):
        from pipeline import litert  # LiteRT loads only when a model runs
        try:
            interpreter = litert.open_interpreter(path, threads)
            signature = interpreter.get_signature_runner()
            details, outputs = signature.get_input_details(), signature.get_output_details()
        except (ValueError, RuntimeError) as error:
            raise GenerateError(f"{path} is not a loadable {self.kind} .tflite ({error})") from None
        del signature
        for name in (STEP_INPUT, *self.extra_inputs):
            if name not in details:
                raise GenerateError(f"{path} has no {name} input: it is not a textgen "
                                    f"{self.kind} model")
        if self.output not in outputs:
            raise GenerateError(f"{path} has no {self.output} output: it is not a textgen "
                                f"{self.kind} model")
        self.state_shapes = {name: tuple(d["shape"]) for name, d in details.items()
                             if name not in (STEP_INPUT, *self.extra_inputs)}
        self.interpreter = interpreter
        self.token = np.zeros([1], np.int32)
        self.input_indices = {name: d["index"] for name, d in details.items()}
        self.output_index = outputs[self.output]["index"]
        self.output_shape = tuple(outputs[self.output]["shape"])
        self.state_outputs = {name: outputs[name]["index"] for name in self.state_shapes}

    def initial_state(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape, np.float32) for name, shape in self.state_shapes.items()}

    def _invoke(self, token: int, state: dict) -> tuple[np.ndarray, dict]:
        self.token[0] = token
        self.interpreter.set_tensor(self.input_indices[STEP_INPUT], self.token)
        for name, value in state.items():
            self.interpreter.set_tensor(self.input_indices[name], value)
        self.interpreter.invoke()
        return (self.interpreter.get_tensor(self.output_index),
                {name: self.interpreter.get_tensor(index)
                 for name, index in self.state_outputs.items()})


class StepRunner(_Runner):
    """The bundle's one-step model: (token, state) → (logits, state)."""

    def __init__(self, path: Path, threads: int = 1):
        super().__init__(path, threads)
        self.vocabulary_size = int(self.output_shape[-1])

    def __call__(self, token: int, state: dict) -> tuple[np.ndarray, dict]:
        logits, state = self._invoke(token, state)
        return logits[0], state


class GenerateRunner(_Runner):
    """The bundle's generate model: (token, state, uniforms, temperature, k) → (ids, state).

    One invoke runs GENERATE_BLOCK steps, each sampling the next id inside the graph from
    one caller-drawn uniform number, so Python and NumPy cost nothing per character.
    """
    kind, extra_inputs, output = "generate", GENERATE_INPUTS, GENERATE_OUTPUT

    def __init__(self, path: Path, threads: int = 1):
        super().__init__(path, threads)
        self.block = int(self.output_shape[0])

    def set_sampling(self, sampling: Sampling, vocabulary_size: int) -> None:
        """Sets the sampler's temperature and k (greedy is k=1, random is every id)."""
        if sampling.sampler not in IN_GRAPH_SAMPLERS:
            raise GenerateError(f"the generate model samples with {', '.join(IN_GRAPH_SAMPLERS)}"
                                f"; --sampler={sampling.sampler} needs the step model")
        k = {"greedy": 1, "top_k": min(sampling.k, vocabulary_size),
             "random": vocabulary_size}[sampling.sampler]
        temperature = 1.0 if sampling.sampler == "greedy" else sampling.temperature
        self.interpreter.set_tensor(self.input_indices["temperature"], np.float32(temperature))
        self.interpreter.set_tensor(self.input_indices["k"], np.int32(k))

    def __call__(self, token: int, state: dict, uniforms: np.ndarray) -> tuple[np.ndarray, dict]:
        self.interpreter.set_tensor(self.input_indices["uniforms"],
                                    uniforms.astype(np.float32))
        return self._invoke(token, state)


def generate_litert(runner: StepRunner, prompt_ids: list[int], length: int,
                    sampling: Sampling, oov_id: int, emit=None,
                    generator: GenerateRunner | None = None) -> list[int]:
    """Feeds the prompt, then samples `length` ids; [UNK] is never generated.

    With `generator` (the generate model; greedy, top_k and random only) the ids are
    sampled in the graph, a block per invoke, from the same uniform numbers the NumPy
    path would draw. `emit`, if given, is called with each id as soon as it is sampled.
    """
    rng = np.random.default_rng(sampling.seed)
    state = runner.initial_state()
    for token in prompt_ids[:-1]:
        _, state = runner(token, state)
    token, generated = prompt_ids[-1], []
    if generator is not None:
        generator.set_sampling(sampling, runner.vocabulary_size)
        while len(generated) < length:
            ids, state = generator(token, state, rng.random(generator.block))
            block = [int(i) for i in ids[:length - len(generated)]]
            generated += block
            token = block[-1]
            if emit is not None:
                for token_id in block:
                    emit(token_id)
        return generated
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
    files = artifacts.RunFiles(run_dir)
    path = files.stripped_model
    if not path.is_file():
        raise GenerateError(f"{path} does not exist: --keras takes a textgen run directory "
                            "whose strip stage has finished")
    try:
        spec, vocabulary = read_spec_and_vocabulary(files.stage("data"))
    except (OSError, ValueError, KeyError, TypeError, SpecError) as error:
        raise GenerateError(f"{files.stage('data')} has no usable tokenizer.json and vocab.txt "
                            f"({error}); rerun the run's data stage") from None
    if spec.get("algorithm") != "characters":
        raise GenerateError(f"{run_dir} is a {spec.get('algorithm')} (sentiment) run; "
                            "--keras needs a textgen run directory")
    for stage in ("data", "strip"):  # what the run made, not a file swapped in since
        try:
            unchanged = artifacts.matches_record(files.stage(stage))
        except ValueError as error:
            raise GenerateError(str(error)) from None
        if not unchanged:
            raise GenerateError(f"{files.stage(stage)} does not match its "
                                f"{artifacts.STAGE_RECORD} (changed since the run made it); "
                                f"rerun --stages={stage} --force")
    try:
        model = artifacts.load_keras_model(path)
    except ValueError as error:
        raise GenerateError(str(error)) from None
    return build_step_model(model), CharacterTokenizer(spec, vocabulary)
