"""Which stages a changed flag reruns, for every flag: the stage keys hold what stages read.

Each row changes one flag (plus what the change needs to stay valid) on a base config and
names the first stage that must rerun; every later stage reruns too, since it reads that
stage's output. Run-control flags rerun nothing. A flag missing from ROWS fails the test,
so a new setting cannot land without saying which stage reads it.
"""
import dataclasses

import pytest

from pipeline import run
from pipeline.config import (STAGE_NAMES, DataConfig, EmbeddingsConfig, HardeningConfig,
                             ModelConfig, PipelineConfig, PruningConfig, RegularizationConfig,
                             StructuredConfig, TokenizerConfig)
from pipeline.settings import FIELDS

BASES = {
    "magnitude": PipelineConfig(),
    "none": PipelineConfig(pruning=PruningConfig(pruning_method="none")),
    "l2": PipelineConfig(regularization=RegularizationConfig(l2=1e-5),
                         pruning=PruningConfig(pruning_method="l2",
                                               pruning_schedule="one_shot")),
    "structured": PipelineConfig(pruning=PruningConfig(pruning_method="structured"),
                                 structured=StructuredConfig(structured_units=0.5)),
    "structured_embedding": PipelineConfig(
        pruning=PruningConfig(pruning_method="structured"),
        structured=StructuredConfig(structured_units=0.5, structured_embedding=0.5)),
    "structured_grid": PipelineConfig(
        pruning=PruningConfig(pruning_method="structured", pruning_layers=("lstm", "dense")),
        structured=StructuredConfig(structured_units=0.5, structured_embedding=0.5,
                                    structured_embedding_levels=4)),
    "glove": PipelineConfig(embeddings=EmbeddingsConfig(pretrained_embeddings="glove-6b-50d"),
                            model=ModelConfig(embedding_dim=50)),
    "hardened": PipelineConfig(hardening=HardeningConfig(adversarial_sentences=1000)),
    "textgen": PipelineConfig(data=DataConfig(task="textgen", dataset="tiny_shakespeare"),
                              tokenizer=TokenizerConfig(vocabulary="characters")),
}
TEXTGEN = {"task": "textgen", "dataset": "tiny_shakespeare", "vocabulary": "characters"}

# (base, {flag: value, ...}, first stage that reruns or None); the first flag is the one tested.
ROWS = [
    ("magnitude", {"output_dir": "elsewhere"}, None),
    ("magnitude", {"stages": ("data", "train")}, None),
    ("magnitude", {"force": True}, None),
    ("magnitude", {"cache_dir": "/tmp/cache"}, None),
    ("magnitude", TEXTGEN, "data"),
    ("magnitude", {"dataset": "imdb_reviews"}, "data"),
    ("magnitude", {"data_dir": "/mirror"}, "data"),
    ("magnitude", {"text_column": "review"}, "data"),
    ("magnitude", {"label_column": "stars"}, "data"),
    ("magnitude", {"labels": ("0", "1")}, "data"),
    ("magnitude", {"validation_fraction": 0.2}, "data"),
    ("magnitude", {"test_fraction": 0.2}, "data"),
    ("magnitude", {"max_malformed_fraction": 0.1}, "data"),
    ("magnitude", {"train_limit": 100}, "data"),
    ("magnitude", {"eval_limit": 100}, "data"),
    ("magnitude", {"tfds_data_dir": "/tfds"}, "data"),
    ("magnitude", {"tfds_download": False}, "data"),
    ("magnitude", {"data_seed": 2}, "data"),
    ("magnitude", {"vocabulary": "wordpiece"}, "data"),
    ("magnitude", {"vocabulary_size": 1000}, "data"),
    ("magnitude", {"max_length": 32}, "data"),
    ("magnitude", {"ptb_contractions": False}, "data"),
    ("magnitude", {"lowercase": False}, "data"),
    ("magnitude", {"strip_accents": False}, "data"),
    ("magnitude", {"typo_correction": True}, "data"),
    ("magnitude", {"typo_correction_targets": "vocabulary", "typo_correction": True}, "data"),
    ("magnitude", {"length_buckets": False}, "data"),  # the tokenizer section
    ("magnitude", {"synonym_encoding": True}, "data"),
    ("magnitude", {"pretrained_embeddings": "vectors.txt"}, "data"),
    ("glove", {"extra_vocabulary": 1000}, "data"),
    ("glove", {"missing_vectors": "zero"}, "data"),
    ("glove", {"freeze_embeddings": True}, "train"),
    ("magnitude", {"embedding_dim": 64}, "train"),
    ("magnitude", {"lstm_units": 64}, "train"),
    ("magnitude", {"lstm_layers": 2}, "train"),
    ("magnitude", {"bidirectional": True}, "train"),
    ("magnitude", {"embedding_dropout": 0.1}, "train"),
    ("magnitude", {"dropout": 0.1}, "train"),
    ("magnitude", {"pooling": "last"}, "train"),
    ("magnitude", {"epochs": 2}, "train"),
    ("magnitude", {"batch_size": 64}, "train"),
    ("magnitude", {"learning_rate": 0.01}, "train"),
    ("magnitude", {"early_stopping_patience": 2}, "train"),
    ("magnitude", {"learning_rate_schedule": "cosine"}, "train"),
    ("magnitude", {"clip_norm": 1.0}, "train"),
    ("magnitude", {"seed": 2}, "train"),
    ("magnitude", {"distribution": "mirrored"}, "train"),
    ("l2", {"l1": 1e-6, "pruning_method": "l1_l2"}, "train"),
    ("l2", {"l2": 1e-4}, "train"),
    ("l2", {"group_lasso": 1e-3}, "train"),
    ("l2", {"regularized_weights": ("kernel",)}, "train"),
    ("l2", {"pruning_layers": ("lstm", "dense")}, "train"),
    ("magnitude", {"pruning_method": "none"}, "prune"),
    ("magnitude", {"pruning_schedule": "constant"}, "prune"),
    ("magnitude", {"pruning_layers": ("lstm",)}, "prune"),
    ("magnitude", {"layer_sparsity": (("lstm", 0.5),)}, "prune"),
    ("magnitude", {"initial_sparsity": 0.1}, "prune"),
    ("magnitude", {"final_sparsity": 0.5}, "prune"),
    ("magnitude", {"pruning_begin_step": 10}, "prune"),
    ("magnitude", {"pruning_end_step": 500}, "prune"),
    ("magnitude", {"pruning_frequency": 50}, "prune"),
    ("magnitude", {"pruning_m": 1}, "prune"),
    ("magnitude", {"pruning_n": 8}, "prune"),
    ("magnitude", {"pruning_epochs": 3}, "prune"),
    ("magnitude", {"pruning_learning_rate": 1e-3}, "prune"),
    ("l2", {"final_sparsity": 0.9}, "prune"),
    # The dense baseline never reads the pruning settings; only the manifest records them.
    ("none", {"final_sparsity": 0.5}, "bundle"),
    ("none", {"pruning_layers": ("lstm",)}, "bundle"),
    ("structured", {"structured_units": 0.25}, "prune"),
    ("structured", {"structured_embedding": 0.5}, "prune"),
    ("structured", {"structured_criterion": "taylor"}, "prune"),
    ("structured", {"structured_steps": 3}, "prune"),
    ("structured", {"structured_epochs": 4}, "prune"),
    ("structured", {"taylor_batches": 5}, "prune"),
    ("structured_embedding", {"structured_embedding_basis": "principal"}, "prune"),
    ("structured_grid", {"structured_embedding_levels": 5}, "prune"),
    ("structured_grid", {"structured_embedding_exact_words": 3000}, "prune"),
    ("structured", {"final_sparsity": 0.0}, "prune"),
    ("structured", {"lstm_units": 64}, "train"),
    ("structured", {"group_lasso": 1e-3}, "train"),
    ("magnitude", {"exports": ("int8",)}, "convert"),
    ("magnitude", {"parity_tolerance": 1.0}, "evaluate"),
    ("magnitude", {"latency_runs": 300}, "evaluate"),
    ("magnitude", {"long_text": "first"}, "evaluate"),
    ("magnitude", {"long_text_stride": 16}, "evaluate"),
    ("magnitude", {"long_text_max_windows": 4}, "evaluate"),
    ("magnitude", {"augment": ("swap", "word_drop")}, "data"),
    ("magnitude", {"augment_rate": 0.2}, "data"),
    ("magnitude", {"augment_copies": 2}, "data"),
    ("magnitude", {"negated_phrases": 100}, "data"),
    ("textgen", {"augment_rate": 0.2}, "bundle"),
    ("magnitude", {"attack_sentences": 50}, "evaluate"),
    ("magnitude", {"attack_max_words": 1}, "evaluate"),
    ("magnitude", {"attack_max_queries": 50}, "evaluate"),
    ("textgen", {"attack_sentences": 50}, "bundle"),
    ("magnitude", {"adversarial_sentences": 500}, "prune"),
    ("hardened", {"adversarial_copies": 2}, "prune"),
    # Adversarial fine-tuning attacks with evaluate's budget; the count stays evaluate's.
    ("hardened", {"attack_max_words": 1}, "prune"),
    ("hardened", {"attack_max_queries": 50}, "prune"),
    ("hardened", {"attack_sentences": 50}, "evaluate"),
    ("textgen", {"long_text": "first"}, "bundle"),
    # Text-generation settings mean nothing to sentiment, and the reverse.
    ("magnitude", {"loss_parity_tolerance": 0.1}, "bundle"),
    ("magnitude", {"eval_window_length": 50}, "bundle"),
    ("magnitude", {"sample_prompt": "JULIET:"}, "bundle"),
    ("magnitude", {"sample_length": 100}, "bundle"),
    ("textgen", {"max_length": 50}, "train"),
    ("textgen", {"eval_window_length": 50}, "convert"),
    ("textgen", {"sample_prompt": "JULIET:"}, "evaluate"),
    ("textgen", {"sample_length": 100}, "evaluate"),
    ("textgen", {"loss_parity_tolerance": 0.1}, "evaluate"),
    ("textgen", {"latency_runs": 300}, "evaluate"),
    ("textgen", {"text_column": "review"}, "bundle"),
    ("textgen", {"pooling": "last"}, "train"),
    ("magnitude", {"bundle_export": "float"}, "bundle"),
]


def changed(base: PipelineConfig, values: dict) -> PipelineConfig:
    top = {k: v for k, v in values.items() if FIELDS[k][0] is None}
    sections = {}
    for name, value in values.items():
        section = FIELDS[name][0]
        if section is not None:
            sections.setdefault(section, {})[name] = value
    return dataclasses.replace(base, **top, **{
        section: dataclasses.replace(getattr(base, section), **fields)
        for section, fields in sections.items()})


def rerun_stages(before: PipelineConfig, after: PipelineConfig) -> list[str]:
    """Stages whose settings key changes, then every stage reading a rerun stage's output."""
    rerun = []
    for stage in run.STAGES:
        own = before.settings(run.stage_settings(stage, before)) != \
            after.settings(run.stage_settings(stage, after))
        if own or set(stage.inputs) & set(rerun):
            rerun.append(stage.name)
    return rerun


@pytest.mark.parametrize("base, values, first", ROWS,
                         ids=[f"{b}:{next(iter(v))}" for b, v, _ in ROWS])
def test_changing_a_flag_reruns_exactly_these_stages(base, values, first):
    expected = [] if first is None else list(STAGE_NAMES[STAGE_NAMES.index(first):])
    assert rerun_stages(BASES[base], changed(BASES[base], values)) == expected


def test_every_flag_has_a_row():
    tested = {next(iter(values)) for _, values, _ in ROWS}
    assert tested == set(FIELDS), sorted(set(FIELDS) ^ tested)
