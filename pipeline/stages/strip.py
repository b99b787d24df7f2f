"""strip: remove the pruning wrappers and measure the zeros of every prunable weight."""
from __future__ import annotations

from pathlib import Path

from pipeline import artifacts, pruning
from pipeline.config import PipelineConfig



def run(config: PipelineConfig, files: artifacts.RunFiles, out_dir: Path) -> dict:
    wrapped = artifacts.load_keras_model(files.pruned_model,
                                         scope=pruning.load_scope())
    stripped = pruning.strip(wrapped)
    artifacts.save_keras_model(stripped, out_dir / files.stripped_model.name)
    measured = pruning.weight_sparsity(stripped)
    artifacts.atomic_write_json(out_dir / files.keras_sparsity.name, measured)
    return {name: round(entry["sparsity"], 4) for name, entry in measured.items()}
