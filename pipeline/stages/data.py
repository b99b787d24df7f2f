"""data: resolve and validate the dataset, learn the vocabulary, encode every split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import logging

from pipeline import artifacts, data, tokenizer
from pipeline.config import PipelineConfig

SPLITS = ("train", "validation", "test")


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    splits = data.load_splits(config.data)
    logging.info("data: %d train / %d validation (%s) / %d test rows; malformed rows: %s",
                 len(splits.train), len(splits.validation), splits.validation_source,
                 len(splits.test), splits.malformed)
    vocabulary = tokenizer.build_vocabulary(splits.train.texts, config.tokenizer)
    artifacts.atomic_write_text(out_dir / "vocab.txt", "\n".join(vocabulary) + "\n")
    artifacts.atomic_write_json(out_dir / "tokenizer.json",
                                tokenizer.tokenizer_spec(vocabulary, config.tokenizer))
    artifacts.atomic_write_text(out_dir / "labels.txt", "\n".join(splits.label_names) + "\n")
    counts = {}
    for name in SPLITS:
        examples = getattr(splits, name)
        ids = tokenizer.encode(examples.texts, vocabulary, config.tokenizer)
        with artifacts.atomic_path(out_dir / f"{name}.npz") as tmp:
            np.savez_compressed(tmp, ids=ids, labels=examples.labels)
        counts[name] = len(examples)
    stats = {"rows": counts, "malformed_rows": splits.malformed, "sources": splits.sources,
             "validation_source": splits.validation_source,
             "vocabulary_size": len(vocabulary), "labels": list(splits.label_names)}
    artifacts.atomic_write_json(out_dir / "stats.json", stats)
    return stats


def external_inputs(config: PipelineConfig) -> dict[str, str]:
    """sha256 of the local files the stage reads, so edited data triggers a rerun."""
    return {str(path): artifacts.sha256_file(path) for path in data.source_files(config.data)
            if path.is_file()}


def load_split(run_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(run_dir) / "data" / f"{name}.npz") as arrays:
        return arrays["ids"], arrays["labels"]


def vocabulary_size(run_dir: Path) -> int:
    return len((Path(run_dir) / "data" / "vocab.txt").read_text(encoding="utf-8").splitlines())


def label_names(run_dir: Path) -> list[str]:
    return (Path(run_dir) / "data" / "labels.txt").read_text(encoding="utf-8").splitlines()
