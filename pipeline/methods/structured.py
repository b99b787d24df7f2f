"""structured: remove whole LSTM units and embedding dimensions, then prune by magnitude.

LiteRT's fused LSTM never skips zeros, so only a smaller dense LSTM runs faster. This
method ranks groups (see pipeline.surgery), removes the weakest in `--structured_steps`
steps with fine-tuning in between, and rebuilds a genuinely smaller model after each step
(with --structured_embedding_basis=principal, embedding dimensions are cut from a rotated
basis: see pipeline.surgery.rotate_to_principal). With --structured_embedding_levels the
embedding is then rounded to a coarse grid (the most used words kept exact) and frozen,
so its int8 codes compress under gzip.
The best validation epoch after the last step is kept; if `--final_sparsity` is above 0,
magnitude pruning then runs on the smaller model exactly as `--pruning_method=magnitude`.
"""
from __future__ import annotations

import itertools

import numpy as np

from pipeline import determinism, pruning, surgery
from pipeline.tasks.base import FitData, compile_model, keras_verbosity
from pipeline.config import ConfigError
from pipeline.methods.magnitude import MagnitudePruning


def kept(size: int, fraction: float) -> int:
    """Groups left after removing `fraction` of `size` (rounded to the nearest group)."""
    return size - int(round(size * fraction))


def training_batches(fit: FitData, count: int):
    """The first `count` (inputs, targets) batches of the training stream."""
    return [(x.numpy(), y.numpy()) for x, y in itertools.islice(fit.stream, count)]


def full_width(batches, width: int | None, padding_id: int | None):
    """`batches` with their inputs left-padded back to the model's input `width`: a
    length-bucketed batch (see pipeline.tasks.sentiment) may be shorter, and the Taylor
    probe is built at the model's own width."""
    if width is None or padding_id is None:
        return batches
    return [(np.pad(np.asarray(x), ((0, 0), (width - x.shape[1], 0)),
                    constant_values=padding_id), y) for x, y in batches]


def token_counts(fit: FitData, vocabulary_size: int, padding_id: int | None) -> np.ndarray:
    """How often each id occurs in one epoch of training inputs, padding left out."""
    counts = np.zeros(vocabulary_size)
    for x, _ in training_batches(fit, fit.steps_per_epoch):
        counts += np.bincount(np.asarray(x).ravel(), minlength=vocabulary_size)
    if padding_id is not None:
        counts[padding_id] = 0
    return counts


class StructuredPruning(MagnitudePruning):
    name = "structured"
    owned = ("structured", "regularization")  # of regularization, only --group_lasso

    def reads(self, stage: str, config) -> tuple[str, ...]:
        # Dense training is the magnitude method's unless --group_lasso is on, so runs
        # without it share the dense parent's cached train stage.
        if stage == "train" and config.regularization.group_lasso:
            return ("regularization",)
        return {"prune": ("pruning", "structured"), "evaluate": ("pruning",)}.get(stage, ())

    def validate(self, config) -> None:
        super().validate(config)
        cfg, model, penalty = config.structured, config.model, config.regularization
        if penalty.l1 or penalty.l2:
            raise ConfigError(f"--pruning_method=structured trains with --group_lasso only "
                              f"(got --l1={penalty.l1}, --l2={penalty.l2}); the per-weight "
                              "penalties belong to --pruning_method=l1|l2|l1_l2")
        if (penalty.regularized_weights != type(penalty)().regularized_weights
                and not penalty.group_lasso):
            raise ConfigError("--regularized_weights applies to --pruning_method=structured "
                              "only with --group_lasso > 0")
        if config.train.distribution != "none":
            raise ConfigError("--pruning_method=structured runs its own removal loop on one "
                              "process: use --distribution=none with it")
        if model.bidirectional:
            raise ConfigError("--pruning_method=structured does not yet remove units from "
                              "--bidirectional layers: use magnitude, l1 or l2 with them")
        if not (cfg.structured_units or cfg.structured_embedding):
            raise ConfigError("--pruning_method=structured needs --structured_units or "
                              "--structured_embedding above 0 (e.g. 0.5)")
        if cfg.structured_embedding_levels and "embedding" in self.magnitude_kinds(config):
            raise ConfigError(f"--structured_embedding_levels={cfg.structured_embedding_levels} "
                              "holds the embedding fixed on its grid, so the magnitude phase "
                              "cannot fine-tune it: leave embedding out of --pruning_layers "
                              "(or set its --layer_sparsity to 0)")
        for name, size, fraction in (("lstm_units", model.lstm_units, cfg.structured_units),
                                     ("embedding_dim", model.embedding_dim,
                                      cfg.structured_embedding)):
            if kept(size, fraction) < 1:
                raise ConfigError(f"removing {fraction:g} of --{name}={size} leaves no group; "
                                  "lower the fraction")

    def regularizers(self, config) -> dict:
        """The group lasso alone (when on): whole units driven to zero before removal."""
        if not config.declares("group_lasso"):  # off: reads() left the penalty out
            return {}
        return pruning.regularizers(config.regularization, ("lstm",))

    def pruned_kinds(self, config) -> tuple[str, ...]:
        return self.magnitude_kinds(config)

    @staticmethod
    def magnitude_kinds(config) -> tuple[str, ...]:
        """The layer kinds the magnitude phase prunes (none if every target is 0)."""
        return tuple(kind for kind, target in config.pruning.targets().items() if target > 0)

    def prune(self, model, config, task, files, out_dir):
        cfg = config.structured
        fit = task.fit_data(config, files, seed=config.train.seed + 1)
        layout = surgery.Layout.of(model)
        original = {"embedding": layout.embedding.output_dim,
                    **{lstm.name: lstm.units for lstm in layout.lstms}}
        rotating = cfg.structured_embedding_basis == "principal"
        counts = None
        if rotating or cfg.structured_embedding_levels:
            counts = token_counts(fit, layout.embedding.input_dim, task.padding_id)
        history, best, steps = [], None, []
        for epoch in range(cfg.structured_epochs):
            if epoch < cfg.structured_steps:
                share = (epoch + 1) / cfg.structured_steps
                model, removed = self.remove(model, config, task, fit, original, share,
                                             counts if rotating else None)
                steps.append({"epoch": epoch, **removed})
                compile_model(model, task, config.pruning.pruning_learning_rate,
                                    config.train, fit.steps_per_epoch *
                                    (cfg.structured_epochs - epoch))
            # A kill restarts this loop from its first step: every step and epoch draws
            # from (seed, epoch) alone, so the rerun repeats the first run exactly.
            logs = model.fit(**fit.arguments(epoch), initial_epoch=epoch, epochs=epoch + 1,
                             verbose=keras_verbosity(), callbacks=[
                                 determinism.EpochRandomness(config.train.seed, self.name),
                                 *determinism.kill_switch(self.name)]).history
            history.append({key: float(values[-1]) for key, values in logs.items()})
            value = history[-1][task.monitor]
            better = best is None or (value > best[0] if task.monitor_mode == "max"
                                      else value < best[0])
            if epoch >= cfg.structured_steps - 1 and better:
                best = (value, epoch, model.get_weights())
        model.set_weights(best[2])
        summary = {"method": self.name, "criterion": cfg.structured_criterion,
                   "embedding_basis": cfg.structured_embedding_basis,
                   "sizes_before": original, "steps": steps,
                   "sizes_after": {"embedding": surgery.Layout.of(model).embedding.output_dim,
                                   **{lstm.name: lstm.units
                                      for lstm in surgery.Layout.of(model).lstms}},
                   "kept_epoch": best[1], f"kept_{task.monitor}": best[0],
                   "history": {key: [entry[key] for entry in history] for key in history[0]}}
        if cfg.structured_embedding_levels:
            summary["embedding_grid"] = self.coarsen_embedding(model, cfg, counts, rotating)
        if not self.magnitude_kinds(config):
            return model, summary
        model, magnitude = super().prune(model, config, task, files, out_dir)
        summary["magnitude_history"] = magnitude.pop("history")
        return model, {**summary, "magnitude": {**magnitude, "method": "magnitude"}}

    @staticmethod
    def coarsen_embedding(model, cfg, counts: np.ndarray, rotating: bool) -> dict:
        """Rounds the embedding to --structured_embedding_levels, except the rows of the
        --structured_embedding_exact_words most used words, and freezes it on that grid.

        It runs once the removal phase has fine-tuned the embedding (a frozen embedding
        could no longer adapt to the removed units). With the principal basis the
        embedding is first turned onto its principal directions again (exact), so the
        dimensions the text uses least round to 0 most often."""
        if rotating:
            surgery.rotate_to_principal(model, counts)
        exact = np.argsort(-counts, kind="stable")[:cfg.structured_embedding_exact_words]
        step = surgery.round_embedding(model, cfg.structured_embedding_levels, exact)
        surgery.Layout.of(model).embedding.trainable = False  # the magnitude phase keeps it
        return {"levels": cfg.structured_embedding_levels, "step": step,
                "exact_words": len(exact),
                "exact_token_share": round(float(counts[exact].sum() / counts.sum()), 6)}

    def remove(self, model, config, task, fit, original: dict, share: float,
               counts: np.ndarray | None):
        """One removal step: rank the groups, keep the best, rebuild a smaller model.

        With token `counts` (--structured_embedding_basis=principal) the embedding is first
        rotated onto its principal directions; the step records their shares."""
        cfg = config.structured
        rotation = {}
        if counts is not None:
            shares = surgery.rotate_to_principal(model, counts)
            rotation["principal_shares"] = [round(float(x), 6) for x in shares]
        if cfg.structured_criterion == "taylor":
            batches = full_width(training_batches(fit, cfg.taylor_batches),
                                 model.inputs[0].shape[1], task.padding_id)
            scores = surgery.taylor_scores(model, batches, task.loss())
        else:
            scores = surgery.l2_scores(model)
        embedding_keep = kept(original["embedding"], cfg.structured_embedding * share)
        units_keep = {name: kept(size, cfg.structured_units * share)
                      for name, size in original.items() if name != "embedding"}
        plan = surgery.plan(scores, embedding_keep, units_keep)
        removed = {"embedding": original["embedding"] - embedding_keep,
                   **{name: original[name] - count for name, count in units_keep.items()},
                   **rotation}
        return surgery.shrink(model, plan), removed

