"""Generates text with a textgen bundle (LiteRT) or a run's Keras model (keras-nlp samplers).

    python -m pipeline.generate --bundle runs/textgen/bundle --prompt "ROMEO:" --length 300 \\
        --sampler top_k --k 5 --temperature 0.8 --seed 1
    python -m pipeline.generate --keras runs/textgen --prompt "ROMEO:" ...

--bundle reads only the bundle, as a phone app would: the greedy, top_k and random samplers
run in its generate.tflite (a block of characters per invoke), top_p in NumPy after each
step of model.tflite; --keras uses the run's stripped Keras model. See
`pipeline.generation` for how each path samples.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags

from pipeline import cli
from pipeline.config import MAX_SEED
from pipeline.artifacts import BundleError, check_bundle
from pipeline.generation import (IN_GRAPH_SAMPLERS, SAMPLERS, GenerateError, GenerateRunner,
                                 Sampling, StepRunner, encode_prompt, generate_keras,
                                 generate_litert, load_keras_generator)
from pipeline.reference_tokenizer import CharacterTokenizer, SpecError

MAX_LENGTH = 100_000  # about 13 s at the 7,500 characters/s measured in BUILD.md
QUICK_FLAGS = ("bundle", "prompt", "length", "sampler", "temperature", "seed")
EXAMPLES = """
python -m pipeline.generate --bundle runs/textgen/bundle --prompt "ROMEO:" --length 300
python -m pipeline.generate --keras runs/textgen --sampler top_p --p 0.9
"""

flags.DEFINE_string("bundle", None, "A textgen bundle directory (<output_dir>/bundle): "
                    "generate with its step .tflite through LiteRT.")
flags.DEFINE_string("keras", None, "A textgen run directory: generate with its stripped Keras "
                    "model through keras-nlp's samplers instead of the bundle.")
flags.DEFINE_string("prompt", "ROMEO:", "Text the generation continues. Characters outside the "
                    "vocabulary become the [UNK] id, as tokenizer.json says (with a warning).")
flags.DEFINE_integer("length", 300, "Characters to generate after the prompt, at most "
                     f"{MAX_LENGTH:,}; the bundle path prints them as they come.")
flags.DEFINE_enum("sampler", "top_k", SAMPLERS, "greedy: the most likely character; top_k: "
                  "sample among the k most likely; top_p: sample among the most likely whose "
                  "probabilities add up to p; random: sample from the whole distribution.")
flags.DEFINE_integer("k", 5, "k of --sampler=top_k.")
flags.DEFINE_float("p", 0.9, "p of --sampler=top_p, in (0, 1].")
flags.DEFINE_float("temperature", 1.0, "Divides the logits before sampling (< 1: safer, "
                   "> 1: wilder); greedy ignores it.")
flags.DEFINE_integer("seed", 1, "Seed of the sampler: the same seed gives the same text.",
                     lower_bound=0, upper_bound=MAX_SEED)
flags.DEFINE_integer("threads", 1, "LiteRT threads (bundle path), 1 to 64.", lower_bound=1,
                     upper_bound=64)
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1 or bool(FLAGS.bundle) == bool(FLAGS.keras):
        sys.stderr.write("usage: python -m pipeline.generate (--bundle DIR | --keras RUN_DIR) "
                         "--prompt TEXT [--length N --sampler top_k --k 5 --temperature 0.8 "
                         "--seed 1]\n")
        sys.exit(2)
    try:
        sampling = Sampling(FLAGS.sampler, FLAGS.k, FLAGS.p, FLAGS.temperature, FLAGS.seed)
        if not 1 <= FLAGS.length <= MAX_LENGTH:
            raise GenerateError(f"--length={FLAGS.length} must be in [1, {MAX_LENGTH:,}]")
        if FLAGS.bundle:
            bundle = Path(FLAGS.bundle)
            try:
                manifest = check_bundle(bundle, needs=("model.tflite", "tokenizer.json"))
                if manifest["task"] != "textgen":
                    raise GenerateError(f"{bundle} holds a {manifest['task']} model; "
                                        "pipeline.generate needs a textgen bundle")
                tokenizer = CharacterTokenizer.from_bundle(bundle)
            except (BundleError, SpecError, KeyError, TypeError, ValueError) as error:
                raise GenerateError(str(error)) from None
            runner = StepRunner(bundle / "model.tflite", FLAGS.threads)
            if runner.vocabulary_size != len(tokenizer.vocabulary):
                raise GenerateError(f"{bundle}/model.tflite predicts {runner.vocabulary_size} "
                                    f"ids but vocab.txt has {len(tokenizer.vocabulary)}: the "
                                    "files are from different runs")
            generator = None
            if "generate.tflite" in manifest["files"] and sampling.sampler in IN_GRAPH_SAMPLERS:
                generator = GenerateRunner(bundle / "generate.tflite", FLAGS.threads)
            prompt_ids = encode_prompt(tokenizer, FLAGS.prompt)
            sys.stdout.write(FLAGS.prompt)
            start = time.perf_counter()
            ids = generate_litert(runner, prompt_ids, FLAGS.length, sampling,
                                  tokenizer.spec["oov_id"],
                                  emit=lambda token: print(tokenizer.decode([token]), end="",
                                                           flush=True), generator=generator)
            print()
        else:
            step_model, tokenizer = load_keras_generator(Path(FLAGS.keras))
            prompt_ids = encode_prompt(tokenizer, FLAGS.prompt)
            start = time.perf_counter()
            ids = generate_keras(step_model, prompt_ids, FLAGS.length, sampling,
                                 tokenizer.spec["oov_id"])
            print(FLAGS.prompt + tokenizer.decode(ids))
    except (GenerateError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    elapsed = time.perf_counter() - start
    sys.stderr.write(f"{len(ids)} characters in {elapsed:.2f} s "
                     f"({len(ids) / max(elapsed, 1e-9):.0f} characters/s)\n")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
