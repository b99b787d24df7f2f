"""Classifies raw text with a bundle alone: `python -m pipeline.predict --bundle DIR "text"`.

It reads only the bundle (tokenizer spec, vocabulary, labels, .tflite), exactly what a
phone app gets, and checks every file against the manifest's sha256 first.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from pipeline import cli, litert
from pipeline.artifacts import BundleError, check_bundle
from pipeline.reference_tokenizer import ReferenceTokenizer

flags.DEFINE_string("bundle", None, "Bundle directory written by pipeline.run "
                    "(<output_dir>/bundle).")
FLAGS = flags.FLAGS


class Classifier:
    def __init__(self, bundle_dir: Path):
        bundle_dir = Path(bundle_dir)
        manifest = check_bundle(bundle_dir)
        if manifest.get("task", "sentiment") != "sentiment":
            raise BundleError(f"{bundle_dir} holds a {manifest['task']} model; "
                              "pipeline.predict classifies with a sentiment bundle (use "
                              "pipeline.generate for textgen)")
        self.tokenizer = ReferenceTokenizer.from_bundle(bundle_dir)
        self.labels = (bundle_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
        self.runner = litert.Runner(bundle_dir / "model.tflite")

    def __call__(self, text: str) -> dict:
        probabilities = self.runner(np.asarray(self.tokenizer.encode(text), dtype=np.int32))
        best = int(np.argmax(probabilities))
        return {"text": text, "label": self.labels[best],
                "probabilities": {label: round(float(p), 4)
                                  for label, p in zip(self.labels, probabilities)}}


def main(argv: list[str]) -> None:
    texts = argv[1:]
    if not FLAGS.bundle or not texts:
        sys.stderr.write('usage: python -m pipeline.predict --bundle DIR "text" ["text" ...]\n')
        sys.exit(2)
    try:
        classifier = Classifier(Path(FLAGS.bundle))
    except (BundleError, ValueError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    for text in texts:
        print(json.dumps(classifier(text), ensure_ascii=False))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_or_exit)
