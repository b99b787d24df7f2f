"""data: resolve and validate the dataset, learn the vocabulary, encode every split."""
from __future__ import annotations

from pathlib import Path

from pipeline import artifacts, data, tasks, vectors
from pipeline.config import PipelineConfig


def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    stats = tasks.for_config(config).prepare_data(config, out_dir)
    artifacts.atomic_write_json(out_dir / "stats.json", stats)
    return stats


def external_inputs(config: PipelineConfig) -> dict[str, str]:
    """sha256 of the local files the stage reads, so edited data triggers a rerun."""
    files = data.source_files(config.data)
    if config.declares("pretrained_embeddings"):
        files += vectors.source_files(config.embeddings.pretrained_embeddings)
    return {str(path): artifacts.sha256_file(path) for path in files if path.is_file()}
