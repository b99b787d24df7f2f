"""none: the dense model through every stage, as the baseline of a comparison."""
from __future__ import annotations

from pipeline.methods import OWNED_SECTIONS, PruningMethod, require_defaults


class NoPruning(PruningMethod):
    name = "none"
    changes_weights = False

    def validate(self, config) -> None:
        require_defaults(config, self.name, OWNED_SECTIONS)

    def prune(self, model, config, task, files, out_dir):
        return model, {"method": self.name}
