"""tf.distribute: TF_CONFIG checks, each worker's part, and two real workers pruning together."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from pipeline import artifacts, distribute, pruning
from pipeline.config import ConfigError, PipelineConfig, TrainConfig
from tests.conftest import REPO


def tf_config(index, workers=2, chief=False):
    cluster = {"worker": [f"localhost:{2000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["localhost:1999"]
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize("value, message", [
    ("", "--distribution=multi_worker needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a cluster description (JsonError: TF_CONFIG: not JSON"),
    ("[" * 100_000, "TF_CONFIG is not a cluster description (JsonError: TF_CONFIG: JSON "
                    "nested too deeply"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a cluster description (KeyError"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task type 'ps': this pipeline runs chief and worker tasks only"),
    (tf_config(2), "TF_CONFIG task worker 2 is not in its cluster (2 worker addresses)"),
    # Issue 32, item 6: a string was counted by characters; a bad port gave a traceback.
    ('{"cluster": {"worker": "localhost:2000"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG cluster worker is 'localhost:2000', not a list of host:port addresses"),
    ('{"cluster": {"worker": ["host:notaport"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG cluster worker[0] = 'host:notaport' is not host:port"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
     "TF_CONFIG task index '0' is not a whole number"),
])
def test_a_bad_tf_config_is_named(value, message):
    with pytest.raises(ConfigError) as error:
        distribute.worker_from_environment({"TF_CONFIG": value})
    assert message in str(error.value)


def test_a_bad_worker_timeout_is_named(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(0))
    monkeypatch.setenv("PIPELINE_WORKER_TIMEOUT_S", "soon")
    config = PipelineConfig(train=TrainConfig(distribution="multi_worker"))
    with pytest.raises(ConfigError, match="PIPELINE_WORKER_TIMEOUT_S=soon must be a number"):
        distribute.check(config)


def test_worker_zero_is_the_chief_unless_there_is_a_chief_task():
    assert distribute.worker_from_environment({"TF_CONFIG": tf_config(0)}).is_chief
    assert not distribute.worker_from_environment({"TF_CONFIG": tf_config(1)}).is_chief
    with_chief = distribute.worker_from_environment({"TF_CONFIG": tf_config(0, chief=True)})
    assert not with_chief.is_chief and with_chief.workers == 3


def test_the_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(0, workers=3))
    config = PipelineConfig(train=TrainConfig(distribution="multi_worker", batch_size=128))
    with pytest.raises(ConfigError, match="--batch_size=128 does not split evenly over 3"):
        distribute.check(config)


def test_another_worker_runs_the_training_stages_in_its_own_folder(monkeypatch):
    config = PipelineConfig(output_dir="runs/x", cache_dir="/tmp/cache",
                            train=TrainConfig(distribution="multi_worker"))
    monkeypatch.setattr(distribute, "_worker",
                        lambda: distribute.Worker("worker", 1, 2, has_chief=False))
    mine = distribute.for_this_worker(config)
    assert (mine.output_dir, mine.stages, mine.cache_dir) == (
        os.path.join("runs/x", "workers", "1"), ("data", "train", "prune"), "")
    assert distribute.runs_on_every_worker("train") and not distribute.runs_on_every_worker(
        "convert")
    monkeypatch.setattr(distribute, "_worker",
                        lambda: distribute.Worker("worker", 0, 2, has_chief=False))
    assert distribute.for_this_worker(config) is config


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# Fewer rows and epochs than the smoke run, the same shapes (512 rows still fill its 1,000
# words), so its single-process sparsity is the reference.
SMALL = ["--flagfile=configs/sentiment_smoke.flags", "--train_limit=512", "--eval_limit=100",
         "--epochs=1", "--pruning_epochs=1", "--stages=data,train,prune,strip"]


def start_worker(run_dir, data_dir, tf_config_value):
    env = {**os.environ, "PIPELINE_DATA_DIR": str(data_dir), "TF_CONFIG": tf_config_value}
    return subprocess.Popen([sys.executable, "-m", "pipeline.run", *SMALL,
                             f"--output_dir={run_dir}", "--distribution=multi_worker"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stripped_weights(run_dir):
    model = artifacts.load_keras_model(artifacts.RunFiles(run_dir).pruned_model,
                                       scope=pruning.load_scope())
    return pruning.strip(model)


@pytest.mark.slow
def test_a_missing_peer_is_named_instead_of_a_silent_wait(shared_data, tmp_path):
    ports = free_ports(2)
    cluster = {"cluster": {"worker": [f"localhost:{port}" for port in ports]},
               "task": {"type": "worker", "index": 0}}
    env = {**os.environ, "PIPELINE_DATA_DIR": str(shared_data),
           "TF_CONFIG": json.dumps(cluster), "PIPELINE_WORKER_TIMEOUT_S": "3"}
    result = subprocess.run([sys.executable, "-m", "pipeline.run", *SMALL,
                             f"--output_dir={tmp_path / 'run'}", "--distribution=multi_worker"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]  # stopped by the watchdog
    assert f"the workers did not all start within 3 s: localhost:{ports[1]} did not " \
        "answer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_workers_prune_to_the_target_with_identical_weights(shared_data, sentiment_smoke,
                                                                tmp_path):
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    run_dir = tmp_path / "run"
    workers = [start_worker(run_dir, shared_data,
                            json.dumps({"cluster": {"worker": addresses},
                                        "task": {"type": "worker", "index": i}}))
               for i in range(2)]
    for process in workers:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]

    chief, other = stripped_weights(run_dir), stripped_weights(run_dir / "workers" / "1")
    for mine, theirs in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # the same masks and values everywhere
    distributed = pruning.weight_sparsity(chief)
    # The smoke run: one process, the same shapes (1,000 words, 16 dimensions and units).
    alone = artifacts.read_json(sentiment_smoke[0] / "strip" / "sparsity.json")
    assert set(distributed) == set(alone)
    for name, entry in distributed.items():
        assert entry["size"] == alone[name]["size"], name
        assert entry["sparsity"] == pytest.approx(0.8, abs=1 / entry["size"]), name
        assert entry["zeros"] == alone[name]["zeros"], name  # exactly as one process prunes
    assert (run_dir / "strip").is_dir()  # the chief's work only:
    assert not (run_dir / "workers" / "1" / "strip").exists()
