"""What the sentiment evaluators share: each .tflite as a classifier of raw text, through
the tokenizer spec as an app reads it (the run's long-text policy included)."""
from __future__ import annotations

import functools

from pipeline import litert, long_text
from pipeline.evaluators import Context
from pipeline.reference_tokenizer import ReferenceTokenizer, read_spec_and_vocabulary

# What classifying raw text reads (the tokenizer's window and the long-text policy): every
# evaluator that uses policy_windows or text_classifiers declares these.
CLASSIFIER_SETTINGS = ("max_length", "long_text", "long_text_stride", "long_text_max_windows")


def policy_windows(context: Context) -> dict:
    """Long-text policy → its tokenizer's encode_windows, each text tokenized once however
    many models read it: "first" and the run's --long_text policy."""
    def make() -> dict:
        spec, vocabulary = read_spec_and_vocabulary(context.files.stage("data"))
        policies = {"first": {**spec, "long_text": {"policy": "first"}},
                    context.config.eval.long_text: {**spec, "long_text":
                                                    long_text.spec_entry(context.config)}}
        return {name: functools.lru_cache(maxsize=None)(
                    ReferenceTokenizer(policy_spec, vocabulary).encode_windows)
                for name, policy_spec in policies.items()}
    return context.shared("policy_windows", make)


def text_classifiers(context: Context) -> dict:
    """Model label (each export and its dense parent) → probabilities_of(text), under the
    run's long-text policy."""
    chosen = policy_windows(context)[context.config.eval.long_text]

    def classifier(runner: litert.Runner):
        return lambda text: long_text.classify(runner, chosen, text)[0]

    return {label: classifier(litert.Runner(path))
            for label, path in context.with_dense_parents().items()}
