"""Loading is safe and errors name the file; training resumes after a crash."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tf_keras

from pipeline import artifacts, litert, resume, run
from pipeline.config import DataConfig, ModelConfig, PipelineConfig, TokenizerConfig, TrainConfig


def test_lambda_layers_are_refused(tmp_path):
    inputs = tf_keras.Input(shape=(3,))
    model = tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match=f"model file {path} names config.config.layers.1.: "
                                         "class 'Lambda', which the pipeline never builds"):
        artifacts.load_keras_model(path)


def test_corrupt_files_are_named(tmp_path):
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=str(garbage)):
        artifacts.load_keras_model(garbage)
    with pytest.raises(FileNotFoundError, match="run the stage that writes it first"):
        artifacts.load_keras_model(tmp_path / "missing.keras")
    bad_tflite = tmp_path / "model.tflite"
    bad_tflite.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match=f"{bad_tflite} is not a loadable .tflite model"):
        litert.Runner(bad_tflite)


class Crash(Exception):
    pass


def trained(config: PipelineConfig, folder: Path) -> tuple[dict, list]:
    """The train stage's history and weights of `config` run whole in `folder`."""
    run.run_pipeline(dataclasses.replace(config, output_dir=str(folder)))
    files = artifacts.RunFiles(folder)
    return (artifacts.read_json(folder / "train" / "history.json")["history"],
            artifacts.load_keras_model(files.trained_model).get_weights())


@pytest.mark.slow
def test_killed_training_resumes_from_the_last_epoch(shared_data, tmp_path, monkeypatch):
    """Resumed training ends exactly where an uninterrupted run does (history and weights),
    even when the crash falls between the early-stopping state and the checkpoint; two
    uninterrupted runs are identical (BUILD.md, "Same seed, same bundle")."""
    config = PipelineConfig(
        output_dir=str(tmp_path / "run"), stages=("data", "train"),
        data=DataConfig(dataset="sst2", data_dir=str(shared_data), train_limit=600,
                        eval_limit=100),
        tokenizer=TokenizerConfig(vocabulary_size=300, max_length=16),
        model=ModelConfig(embedding_dim=8, lstm_units=8),
        train=TrainConfig(epochs=3, batch_size=32, early_stopping_patience=3))
    real_stopping = resume.ResumableEarlyStopping

    class CrashInSecondEpoch(real_stopping):  # after its state is saved, before the checkpoint
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch == 1:
                raise Crash("power cut")

    monkeypatch.setattr(resume, "ResumableEarlyStopping", CrashInSecondEpoch)
    with pytest.raises(Crash):
        run.run_pipeline(config)
    assert (tmp_path / "run" / "train.partial" / "progress" / "checkpoint").is_dir()
    assert not (tmp_path / "run" / "train").exists()
    monkeypatch.setattr(resume, "ResumableEarlyStopping", real_stopping)
    run.run_pipeline(config)
    history = artifacts.read_json(tmp_path / "run" / "train" / "history.json")
    assert history["epochs_run"] == 3  # epoch 1, from before the kill, is in the history too
    assert len(history["history"]["val_accuracy"]) == 3
    assert not (tmp_path / "run" / "train.partial").exists()

    whole, weights = trained(config, tmp_path / "whole")
    again, weights_again = trained(config, tmp_path / "again")
    assert again == whole
    assert all(np.array_equal(a, b) for a, b in zip(weights, weights_again))
    assert history["history"] == whole  # every epoch, the two after the crash included
    resumed_weights = artifacts.load_keras_model(
        artifacts.RunFiles(tmp_path / "run").trained_model).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, resumed_weights))
