"""Pruning methods behind one interface; stages call the method, never test its name.

A method owns what differs between ways of pruning: the penalty the train stage adds, the
prune stage's procedure, its own configuration rules, what evaluate reports, and which
settings each of those reads (so they enter exactly those stage keys). Adding a method is
one new module with a `PruningMethod` subclass plus one line in REGISTRY.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tf_keras

    from pipeline.artifacts import RunFiles
    from pipeline.config import PipelineConfig

# name → "module:class"; modules load only when a method is used.
REGISTRY = {
    "none": "pipeline.methods.none:NoPruning",
    "magnitude": "pipeline.methods.magnitude:MagnitudePruning",
    "l1": "pipeline.methods.regularized:L1Pruning",
    "l2": "pipeline.methods.regularized:L2Pruning",
    "l1_l2": "pipeline.methods.regularized:L1L2Pruning",
    "structured": "pipeline.methods.structured:StructuredPruning",
}
# Sections that belong to some methods only: any other method needs them at their defaults.
OWNED_SECTIONS = {"regularization": "l1|l2|l1_l2 (--group_lasso also structured)",
                  "structured": "structured"}


class PruningMethod:
    name: str
    changes_weights = True  # False: the prune stage passes the dense model through

    def reads(self, stage: str, config: PipelineConfig) -> tuple[str, ...]:
        """Settings (fields or sections) this method's part in `stage` depends on.

        `config` lets a method read a setting only when an option that uses it is on.
        """
        return ()

    def validate(self, config: PipelineConfig) -> None:
        """Raises ConfigError naming the flag when the config does not fit the method."""

    def regularizers(self, config) -> dict:
        """Model-builder key → tf_keras regularizer, for the train stage."""
        return {}

    def prune(self, model: tf_keras.Model, config, task, files: RunFiles,
              out_dir: Path) -> tuple[tf_keras.Model, dict]:
        """The prune stage's work on the trained model: (model to save, summary)."""
        raise NotImplementedError

    def pruned_kinds(self, config) -> tuple[str, ...]:
        """Layer kinds whose zeros evaluate reports as this method's sparsity."""
        return ()


def require_defaults(config, method: str, sections) -> None:
    """Raises ConfigError when a section another method owns was set for `method`."""
    from pipeline.config import SECTIONS, ConfigError
    for section in sections:
        if getattr(config, section) != SECTIONS[section]():
            names = "/".join(f"--{f.name}" for f in dataclasses.fields(SECTIONS[section]))
            raise ConfigError(f"{names} apply only to --pruning_method="
                              f"{OWNED_SECTIONS[section]}, not {method}")


def get(name: str) -> PruningMethod:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def for_config(config) -> PruningMethod:
    return get(config.pruning.pruning_method)
