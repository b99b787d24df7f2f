"""Classifies raw text with a bundle alone: `python -m pipeline.predict --bundle DIR "text"`.

It reads only the bundle (tokenizer spec, vocabulary, labels, .tflite), exactly what a
phone app gets, and checks every file against the manifest's sha256 first. A text that
gives no token at all (empty, or only spaces and control characters) gets the documented
neutral answer: no label and equal probabilities. A text longer than the model's window is
scored as tokenizer.json's long_text policy says (windows averaged, or its first window).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from pipeline import cli, litert, long_text
from pipeline.artifacts import BundleError, check_bundle
from pipeline.reference_tokenizer import LONE_SURROGATE, ReferenceTokenizer, SpecError

flags.DEFINE_string("bundle", None, "Bundle directory written by pipeline.run "
                    "(<output_dir>/bundle).")
FLAGS = flags.FLAGS
QUICK_FLAGS = ("bundle",)
EXAMPLES = """
python -m pipeline.predict --bundle runs/sentiment/bundle "a gorgeous, witty film"
printf 'great fun\\nutterly boring\\n' | python -m pipeline.predict --bundle B -   # one text a line
"""


class Classifier:
    """A bundle's tokenizer, labels and .tflite; `model_file` runs another .tflite of the same
    run (e.g. its dense parent) behind the same tokenizer."""

    def __init__(self, bundle_dir: Path, model_file: Path | None = None):
        bundle_dir = Path(bundle_dir)
        manifest = check_bundle(bundle_dir, needs=(
            "tokenizer.json", "labels.txt", *(() if model_file else ("model.tflite",))))
        if manifest["task"] != "sentiment":
            raise BundleError(f"{bundle_dir} holds a {manifest['task']} model; "
                              "pipeline.predict classifies with a sentiment bundle (use "
                              "pipeline.generate for textgen)")
        try:
            self.tokenizer = ReferenceTokenizer.from_bundle(bundle_dir)
            if self.tokenizer.spec["vocabulary_file"] not in manifest["files"]:
                raise BundleError(f"{bundle_dir}/manifest.json does not list "
                                  f"{self.tokenizer.spec['vocabulary_file']}, which "
                                  "tokenizer.json reads; copy the bundle again from the run")
            self.labels = (bundle_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
        except (SpecError, KeyError, TypeError, ValueError, OSError) as error:
            raise BundleError(f"{bundle_dir}: the tokenizer spec or labels cannot be used "
                              f"({type(error).__name__}: {error})") from None
        model = Path(model_file) if model_file else bundle_dir / "model.tflite"
        self.runner = litert.Runner(model)
        expected = [1, self.tokenizer.spec["max_length"]]
        shape = [int(n) for n in self.runner.input["shape"]]
        outputs = [int(n) for n in self.runner.output["shape"]]
        if shape != expected or outputs != [1, len(self.labels)]:
            raise BundleError(f"{model} takes {shape} and gives {outputs}, but "
                              f"{bundle_dir}'s tokenizer.json and labels.txt say {expected} "
                              f"and {[1, len(self.labels)]}: the files are from different runs")
        rows, size = litert.embedding_rows(model), self.tokenizer.spec["vocabulary_size"]
        if rows is not None and size > rows:
            raise BundleError(f"{bundle_dir}'s tokenizer.json has {size} ids but {model} "
                              f"embeds {rows}: the files are from different runs")

    def probabilities(self, text: str) -> np.ndarray | None:
        """Class probabilities (windows averaged), or None for a text that gives no token."""
        windows = self.tokenizer.encode_windows(text)  # tokenized once
        if not any(windows[0]):
            return None
        return long_text.mean_probabilities(self.runner, windows)

    def __call__(self, text: str) -> dict:
        probabilities = self.probabilities(text)
        if probabilities is None:  # no token: nothing to classify
            share = round(1.0 / len(self.labels), 4)
            return {"text": text, "label": None, "empty": True,
                    "probabilities": {label: share for label in self.labels}}
        best = int(np.argmax(probabilities))
        return {"text": text, "label": self.labels[best],
                "probabilities": {label: round(float(p), 4)
                                  for label, p in zip(self.labels, probabilities)}}


def main(argv: list[str]) -> None:
    texts = argv[1:]
    if not FLAGS.bundle or not texts:
        sys.stderr.write('usage: python -m pipeline.predict --bundle DIR "text" ["text" ...] '
                         '(or - to read one text per line from standard input)\n')
        sys.exit(2)
    if texts == ["-"]:
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not texts:
            sys.stderr.write("error: standard input holds no text; give one text per line\n")
            sys.exit(2)
    for number, text in enumerate(texts, start=1):
        if LONE_SURROGATE.search(text):
            sys.stderr.write(f"error: text argument {number} is not valid UTF-8; pass UTF-8 "
                             "text\n")
            sys.exit(2)
        if not text.strip():
            sys.stderr.write(f"error: text argument {number} is empty; pass the text to "
                             "classify\n")
            sys.exit(2)
    try:
        classifier = Classifier(Path(FLAGS.bundle))
    except (BundleError, ValueError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    for text in texts:
        print(json.dumps(classifier(text), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
