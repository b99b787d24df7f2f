"""l1, l2, l1_l2: a penalty during dense training, then one magnitude cut with a fixed mask.

The penalty pushes weights towards zero while the model learns, so that one cut to the
target (the one_shot schedule) loses little; fine-tuning then keeps the mask fixed.
"""
from __future__ import annotations

from pipeline import pruning
from pipeline.config import ConfigError
from pipeline.methods.magnitude import MagnitudePruning


class _RegularizedPruning(MagnitudePruning):
    owned = ("regularization",)
    required: tuple[str, ...]   # penalties that must be > 0
    forbidden: tuple[str, ...]  # penalties that must be 0 (another method has them)

    def reads(self, stage: str, config) -> tuple[str, ...]:
        if stage == "train":  # the penalty goes to the weights of the pruned kinds only
            return ("regularization", "pruning_layers")
        return super().reads(stage, config)

    def validate(self, config) -> None:
        super().validate(config)
        penalty = config.regularization
        for name in self.required:
            if not getattr(penalty, name) > 0:
                raise ConfigError(f"--pruning_method={self.name} needs --{name} > 0 "
                                  f"(got --{name}={getattr(penalty, name)})")
        for name in self.forbidden:
            if getattr(penalty, name):
                raise ConfigError(f"--pruning_method={self.name} trains without --{name} "
                                  f"(got --{name}={getattr(penalty, name)}); use l1_l2 for "
                                  "both penalties")
        layers = config.pruning.pruning_layers
        for weight in penalty.regularized_weights:
            if not pruning.regularized_kinds(weight) & set(layers):
                raise ConfigError(
                    f"--regularized_weights names {weight}, which no layer in "
                    f"--pruning_layers={','.join(layers)} holds: a penalty on weights that "
                    "are never pruned only shrinks them; drop it or prune that layer")
        schedule = config.pruning.pruning_schedule
        if schedule != "one_shot":
            raise ConfigError(f"--pruning_method={self.name} cuts once and holds the mask "
                              f"fixed: add --pruning_schedule=one_shot (got {schedule})")

    def regularizers(self, config) -> dict:
        return pruning.regularizers(config.regularization, self.pruned_kinds(config))


class L1Pruning(_RegularizedPruning):
    name, required, forbidden = "l1", ("l1",), ("l2",)


class L2Pruning(_RegularizedPruning):
    name, required, forbidden = "l2", ("l2",), ("l1",)


class L1L2Pruning(_RegularizedPruning):
    name, required, forbidden = "l1_l2", (), ()
