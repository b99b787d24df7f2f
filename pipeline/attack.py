"""Measures how easily a sentiment bundle is fooled, querying only its .tflite.

    python -m pipeline.attack --bundle runs/sentiment/bundle --output attack.json
    python -m pipeline.attack --bundle runs/sentiment/bundle \\
        --model runs/sentiment/convert/dense_model_float.tflite --output dense_attack.json

Reads the bundle (tokenizer, labels, .tflite) as an app or an attacker would, and real
sentences of the run's dataset (the test split by default: the model never trained on
it, and nothing is tuned on these numbers). Reports accuracy under typo and word-drop
noise, then runs the black-box attack of `pipeline.robustness` on the first --sentences
sentences it classifies correctly: the same sentences, budget and seed for every variant
make variants comparable. Writes JSON (with successful adversarial texts to read) and
prints a summary.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

from pipeline import artifacts, cli, data, robustness
from pipeline.artifacts import BundleError
from pipeline.config import MAX_SEED, DataConfig
from pipeline.data import DataError, load_splits
from pipeline.predict import Classifier
from pipeline.tasks.sentiment import attack_lexicon

# --bundle is pipeline.predict's flag (the bundle directory), defined where Classifier is.
flags.DEFINE_string("model", None, "Another .tflite of the same run to attack behind the "
                    "bundle's tokenizer (e.g. <output_dir>/convert/dense_model_float.tflite); "
                    "default: the bundle's model.tflite.")
flags.DEFINE_string("output", None, "JSON file for the results; must not exist yet.")
flags.DEFINE_string("data_dir", "", "Local data mirror (default: $PIPELINE_DATA_DIR).")
flags.DEFINE_string("dataset", "", "The dataset to read sentences from, as pipeline.run's "
                    "--dataset (default: the bundle's, if it is a registered name; a file "
                    "the bundle names is never opened).")
flags.DEFINE_enum("split", "test", ["validation", "test"], "Sentences to attack.")
flags.DEFINE_integer("sentences", 500, "Sentences taken from the split, in file order.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 1, "Seed of the noise and of the attack's typos.",
                     lower_bound=0, upper_bound=MAX_SEED)
flags.DEFINE_integer("max_words", 3, "Words the attack may change per sentence, and at "
                     "most a fifth of its words (at least one).", lower_bound=1)
flags.DEFINE_integer("max_queries", 300, "Model calls the attack may make per sentence.",
                     lower_bound=1)
flags.DEFINE_integer("candidates", 50, "Synonym attack: nearest counter-fitted neighbours "
                     "looked at per word (only WordNet synonyms of its polarity are tried).",
                     lower_bound=0)
flags.DEFINE_float("min_similarity", 0.5, "Synonym attack: cosine similarity a neighbour "
                   "needs in the counter-fitted space, in (0, 1].")
flags.DEFINE_list("attacks", list(robustness.ATTACKS), "The named attacks to run: synonym "
                  "(meaning-preserving word substitutions) and/or typo.")
flags.DEFINE_integer("examples", 30, "Successful adversarial texts kept per attack, chosen "
                     "at random (seeded by --seed) among all successes.", lower_bound=0)
flags.DEFINE_list("noise_rates", ["0.1", "0.25"], "Share of words hit by each kind of noise.")
FLAGS = flags.FLAGS
QUICK_FLAGS = ("bundle", "output", "sentences", "attacks", "seed")
EXAMPLES = """
python -m pipeline.attack --bundle runs/sentiment/bundle --output attack.json
"""


class AttackError(ValueError):
    """A flag or input of the attack is unusable; the message names it."""


def settings() -> tuple[dict[str, robustness.Budget], tuple[float, ...]]:
    if not FLAGS.bundle or not FLAGS.output:
        raise AttackError("give --bundle DIR and --output FILE.json (see --helpfull)")
    if Path(FLAGS.output).exists():
        raise AttackError(f"--output={FLAGS.output} exists; choose a new file (results of "
                          "an earlier attack are never overwritten)")
    folder = Path(FLAGS.output).expanduser().absolute().parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)) or \
            str(folder).startswith(("/proc", "/sys", "/dev")):
        raise AttackError(f"--output={FLAGS.output}: {folder} is not a folder this process "
                          "can write a result into; choose another path (checked before "
                          "the attack runs)")
    unknown = sorted(set(FLAGS.attacks) - set(robustness.ATTACKS))
    if unknown or not FLAGS.attacks:
        raise AttackError(f"--attacks={','.join(FLAGS.attacks)}: choose among "
                          f"{', '.join(robustness.ATTACKS)}")
    if not 0 < FLAGS.min_similarity <= 1:
        raise AttackError(f"--min_similarity={FLAGS.min_similarity} must be in (0, 1]")
    try:
        rates = tuple(float(r) for r in FLAGS.noise_rates)
    except ValueError:
        raise AttackError(f"--noise_rates={','.join(FLAGS.noise_rates)} must be numbers "
                          "in (0, 1]") from None
    if not all(0 < r <= 1 for r in rates):
        raise AttackError(f"--noise_rates={','.join(FLAGS.noise_rates)} must be in (0, 1]")
    budgets = {name: dataclasses.replace(budget, candidates=FLAGS.candidates,
                                         min_similarity=FLAGS.min_similarity)
               for name, budget in robustness.budgets(FLAGS.max_words,
                                                      FLAGS.max_queries).items()}
    return budgets, rates


def data_config(bundle: Path, data_dir: str, dataset: str) -> DataConfig:
    """The run's dataset settings from the manifest, read whole from `data_dir`'s mirror.

    A bundle is untrusted: the dataset it names is used only if it is a registered name;
    a file it names is never opened (pass --dataset), and its TFDS settings are ignored
    (no download, TFDS's default folder).
    """
    try:
        saved = artifacts.read_json(bundle / "manifest.json")["config"]["data"]
        named = saved["dataset"]
        if not dataset and named not in data.REGISTRY:
            raise AttackError(f"{bundle}/manifest.json names the dataset {named!r}, not a "
                              f"registered one ({', '.join(sorted(data.REGISTRY))}); the "
                              "attack opens no path a bundle names: pass --dataset")
        # JSON keeps tuples (labels, augment) as lists; the frozen config wants tuples.
        config = DataConfig(**{**{name: tuple(value) if isinstance(value, list) else value
                                  for name, value in saved.items()},
                               "dataset": dataset or named, "train_limit": 0,
                               "eval_limit": 0, "tfds_data_dir": "", "tfds_download": False})
    except (KeyError, TypeError) as error:
        raise AttackError(f"{bundle}/manifest.json has no usable config.data ({error}); "
                          "rebuild the bundle with this version of pipeline.run") from None
    return dataclasses.replace(config, data_dir=data_dir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.stderr.write(f"error: unexpected arguments {argv[1:]} (see --helpfull)\n")
        sys.exit(2)
    try:
        budgets, rates = settings()
        classifier = Classifier(Path(FLAGS.bundle), FLAGS.model)
        data_dir = FLAGS.data_dir or os.environ.get("PIPELINE_DATA_DIR", "")
        split = getattr(load_splits(data_config(Path(FLAGS.bundle), data_dir, FLAGS.dataset)),
                        FLAGS.split)
        lexicon = attack_lexicon() if "synonym" in FLAGS.attacks else None
    except (AttackError, BundleError, DataError, ValueError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    texts, labels = split.texts[:FLAGS.sentences], split.labels[:FLAGS.sentences]
    start = time.perf_counter()
    noise = robustness.noise_accuracy(classifier.probabilities, texts, labels, rates,
                                      FLAGS.seed)
    noise_s = time.perf_counter() - start

    def progress(done: int, total: int) -> None:
        if done % 100 == 0:
            sys.stderr.write(f"attack: {done} sentences attacked "
                             f"({time.perf_counter() - start:.0f} s)\n")

    report = {"bundle": str(FLAGS.bundle), "model": FLAGS.model or "model.tflite",
              "split": FLAGS.split, "noise": noise, "noise_seconds": round(noise_s, 1),
              "attacks": {}}
    print(f"noise: {json.dumps(noise)}")
    for name in FLAGS.attacks:
        began = time.perf_counter()
        result = robustness.named_attack(name, classifier.probabilities, texts, labels,
                                         lexicon, budgets, FLAGS.seed, FLAGS.examples,
                                         progress)
        report["attacks"][name] = {**result,
                                   "seconds": round(time.perf_counter() - began, 1)}
        print(f"{name} attack: " + json.dumps({k: v for k, v in result.items()
                                               if k != "samples"}))
        for sample in result["samples"][:5]:
            print(f"- {sample['text']}\n  → {sample['adversarial']}")
    artifacts.atomic_write_json(Path(FLAGS.output), report)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
