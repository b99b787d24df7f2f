"""strip: remove the pruning wrappers and measure the zeros of every prunable weight."""
from __future__ import annotations

from pathlib import Path

from pipeline import artifacts, pruning
from pipeline.config import PipelineConfig
from pipeline.stages import prune as prune_stage

MODEL_FILE = "model.keras"


def run(config: PipelineConfig, run_dir: Path, out_dir: Path) -> dict:
    wrapped = artifacts.load_keras_model(run_dir / "prune" / prune_stage.MODEL_FILE,
                                         scope=pruning.load_scope())
    stripped = pruning.strip(wrapped)
    artifacts.save_keras_model(stripped, out_dir / MODEL_FILE)
    measured = pruning.weight_sparsity(stripped)
    artifacts.atomic_write_json(out_dir / "sparsity.json", measured)
    return {name: round(entry["sparsity"], 4) for name, entry in measured.items()}
