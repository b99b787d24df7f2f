"""magnitude: tfmot's prune_low_magnitude with a schedule, fine-tuned on the training split."""
from __future__ import annotations

import shutil

import tf_keras

from pipeline import pruning, resume
from pipeline.tasks.base import compile_model, keras_verbosity
from pipeline.config import ConfigError
from pipeline.methods import OWNED_SECTIONS, PruningMethod, require_defaults
from pipeline.stages import StageError


class MagnitudePruning(PruningMethod):
    name = "magnitude"

    def reads(self, stage: str, config) -> tuple[str, ...]:
        return {"prune": ("pruning",), "evaluate": ("pruning_layers",)}.get(stage, ())

    owned: tuple[str, ...] = ()  # the sections of OWNED_SECTIONS this method uses

    def validate(self, config) -> None:
        if not config.pruning.pruning_layers:
            raise ConfigError("--pruning_layers is empty: name at least one of embedding, "
                              "lstm, dense, or use --pruning_method=none")
        require_defaults(config, self.name, set(OWNED_SECTIONS) - set(self.owned))

    def pruned_kinds(self, config) -> tuple[str, ...]:
        return tuple(config.pruning.pruning_layers)

    def prune(self, model, config, task, files, out_dir):
        cfg = config.pruning
        tf_keras.utils.set_random_seed(config.train.seed)
        # Another seed than dense training: fine-tuning sees fresh random windows.
        fit = task.fit_data(config, files, seed=config.train.seed + 1)
        steps_per_epoch = fit.steps_per_epoch
        end_step = pruning.resolve_end_step(cfg, steps_per_epoch)
        total_steps = steps_per_epoch * cfg.pruning_epochs
        if end_step > total_steps:
            raise StageError(
                f"the pruning schedule ends at step {end_step}, after the {total_steps} "
                f"fine-tuning steps ({cfg.pruning_epochs} epochs of {steps_per_epoch}): the "
                "target would never be reached. Lower --pruning_end_step (-1: automatic) or "
                "raise --pruning_epochs")
        pruned = pruning.apply_pruning(model, cfg, steps_per_epoch)
        progress = out_dir / "progress"
        keep_best = pruning.KeepBestAtTarget(end_step, steps_per_epoch, task.monitor,
                                             task.monitor_mode, state_folder=progress)
        log = resume.EpochLog(progress)
        compile_model(pruned, task, cfg.pruning_learning_rate, config.train, total_steps)
        resume.fit(pruned, fit, epochs=cfg.pruning_epochs, folder=progress,
                   seed=config.train.seed, stream="prune", verbose=keras_verbosity(),
                   callbacks=[*pruning.callbacks(str(out_dir / "tensorboard")), log, keep_best])
        history = log.history()
        shutil.rmtree(progress)
        summary = {"method": self.name, "schedule": cfg.pruning_schedule,
                   "targets": cfg.targets(), "end_step": end_step, "steps": total_steps,
                   "kept_epoch": keep_best.best_epoch, f"kept_{task.monitor}": keep_best.best,
                   "history": history}
        return pruned, summary
