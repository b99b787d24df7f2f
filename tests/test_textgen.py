"""Text generation: a real run on a slice of tiny Shakespeare, the step model, the samplers."""
import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tf_keras

from models.textgen import build_step_model, build_textgen_model
from pipeline import artifacts, data, generation, litert, run
from pipeline import metrics as metrics_file
from pipeline.config import ConfigError, DataConfig, ModelConfig, PipelineConfig
from pipeline.reference_tokenizer import CharacterTokenizer
from pipeline.stages import StageError, convert
from pipeline.tasks import textgen
from tests.conftest import REPO

# The smoke flagfile includes configs/textgen.flags and overrides some of its values.
SMOKE_FLAGS = dict(line.split("=", 1) for name in ("textgen.flags", "textgen_smoke.flags")
                   for line in (REPO / "configs" / name).read_text().splitlines()
                   if line.startswith("--") and "=" in line)
BUILTIN_STEP_OPS = {"ADD", "FULLY_CONNECTED", "GATHER", "LOGISTIC", "MUL", "SPLIT", "TANH"}


def generate_cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.generate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def textgen_run(textgen_smoke):
    return textgen_smoke[0]


@pytest.fixture(scope="module")
def lively_model(tmp_path_factory):
    """An untrained model with large random weights: its greedy text is varied, not 'eeee'."""
    tf_keras.utils.set_random_seed(3)
    model = build_textgen_model(ModelConfig(embedding_dim=16, lstm_units=32, dropout=0.0,
                                            embedding_dropout=0.0), 40)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    path = tmp_path_factory.mktemp("lively") / "step.tflite"
    path.write_bytes(convert.to_tflite(textgen.step_function(model), model, "float"))
    return model, path


@pytest.mark.slow
def test_split_is_tfds_character_split(shared_data):
    splits = data.load_text_splits(DataConfig(task="textgen", dataset="tiny_shakespeare",
                                              data_dir=str(shared_data)))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == \
        (1_003_854, 55_770, 55_770)
    text = (shared_data / "tiny_shakespeare" / "input.txt").read_text(encoding="utf-8")
    assert splits.train + splits.validation + splits.test == text


def test_task_mismatches_fail_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--vocabulary=words does not fit --task=textgen: "
                                          "use characters"):
        PipelineConfig(output_dir="x", data=DataConfig(task="textgen",
                                                       dataset="tiny_shakespeare"))
    with pytest.raises(data.DataError, match="not a registered textgen dataset"):
        data.check_corpus(DataConfig(task="textgen", dataset="sst2"))
    with pytest.raises(data.DataError, match="does not exist"):
        data.check_corpus(DataConfig(task="textgen", dataset=f"text:{tmp_path}/none.txt"))
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(data.DataError, match="at least 1,000"):
        data.load_text_splits(DataConfig(task="textgen", dataset=f"text:{short}"))


@pytest.mark.slow
def test_bundle_and_metrics(textgen_run):
    bundle = textgen_run / "bundle"
    manifest = artifacts.check_bundle(bundle)
    assert manifest["task"] == "textgen" and manifest["program"] == "step"
    assert set(manifest["files"]) == {"model.tflite", "generate.tflite", "vocab.txt",
                                      "tokenizer.json"}
    assert set(manifest["input"]) == {"token_id", "h_0", "c_0"}
    assert set(manifest["generate"]["input"]) == {"token_id", "h_0", "c_0", "uniforms",
                                                  "temperature", "k"}
    assert set(litert.op_names(bundle / "model.tflite")) <= BUILTIN_STEP_OPS
    generator = generation.GenerateRunner(bundle / "generate.tflite")
    assert manifest["generate"]["input"]["uniforms"]["shape"] == [generator.block]
    metrics = metrics_file.read(textgen_run / "evaluate" / "metrics.json")
    prompt, length = SMOKE_FLAGS["--sample_prompt"], int(SMOKE_FLAGS["--sample_length"])
    samples = metrics.details["samples"]["texts"]
    assert set(samples) == {"keras_dense", "keras_stripped", "tflite_float", "tflite_int8"}
    report = (textgen_run / "evaluate" / "report.md").read_text()
    for label, sample in samples.items():
        assert sample.startswith(prompt) and len(sample) == len(prompt) + length
        assert f"## Sample: {label}\n\n```\n{sample}\n```" in report
    for export in ("float", "int8"):
        test = metrics.scores(export, "test")
        assert test["perplexity"] == pytest.approx(math.exp(test["loss"]), rel=1e-3)
        assert abs(metrics.value("parity_gap_nats", export, "test")) <= \
            float(SMOKE_FLAGS["--loss_parity_tolerance"])
        speed = metrics.details["generation_speed"][export]
        for key in ("characters_per_second", "characters_per_second_numpy"):
            assert speed[key]["runs"] >= 15
            paired = speed[f"{key}_vs_dense"]  # timed alternately with the parent, per round
            assert len(paired["per_round"]) == speed[key]["runs"]
            assert paired["ratio"] == pytest.approx(np.median(paired["per_round"]))
            assert metrics.value(f"{key}_vs_dense", export) == paired["ratio"]
        assert metrics.value("in_graph_sample_identical", export) is True
        assert metrics.value("pruned_sparsity", export) >= 0.79
        files = metrics.details["size"]["files"][export]
        assert files["sparsity"]["lstm_0/kernel"]["tensors"] == 4
        for name, weight in files["sparsity"].items():  # read from the .tflite, per weight
            assert weight["sparsity"] >= 0.75, (export, name, weight)


@pytest.mark.slow
def test_a_schedule_ending_after_fine_tuning_is_refused(textgen_run):
    before = artifacts.stage_record(textgen_run / "prune")
    from pipeline.config import config_from_dict
    recorded = config_from_dict(artifacts.read_json(textgen_run / "config.json"))
    config = dataclasses.replace(  # the run's own settings, but a schedule ending too late
        recorded, output_dir=str(textgen_run), cache_dir="", stages=("prune",), force=True,
        pruning=dataclasses.replace(recorded.pruning, pruning_end_step=10**6,
                                    pruning_epochs=2))
    with pytest.raises(StageError, match="the target would never be reached"):
        run.run_pipeline(config)
    assert artifacts.stage_record(textgen_run / "prune") == before


@pytest.mark.slow
def test_reference_tokenizer_reproduces_the_run_ids(textgen_run, shared_data):
    splits = data.load_text_splits(DataConfig(
        task="textgen", dataset="tiny_shakespeare", data_dir=str(shared_data),
        eval_limit=int(SMOKE_FLAGS["--eval_limit"])))
    tokenizer = CharacterTokenizer.from_bundle(textgen_run / "bundle")
    ids = np.load(textgen_run / "data" / "test.npz")["ids"]
    assert tokenizer.encode(splits.test) == ids.tolist()
    assert tokenizer.decode(ids) == splits.test
    assert tokenizer.encode("ROMEO☃") == tokenizer.encode("ROMEO") + [tokenizer.spec["oov_id"]]


@pytest.mark.slow
def test_step_models_match_the_window_model(textgen_run):
    model = artifacts.load_keras_model(textgen_run / "strip" / "model.keras")
    length = int(SMOKE_FLAGS["--max_length"])
    window = np.load(textgen_run / "data" / "test.npz")["ids"][:length]
    expected = model.predict(window[None], verbose=0)[0]
    keras_step = build_step_model(model)
    tflite_step = generation.StepRunner(textgen_run / "convert" / "step_float.tflite")
    states = [np.zeros((1, s[-1]), np.float32) for s in keras_step.input_shape[1:]]
    state = tflite_step.initial_state()
    for position, token in enumerate(window):
        keras_logits, *states = keras_step([np.array([[token]]), *states])
        tflite_logits, state = tflite_step(int(token), state)
        np.testing.assert_allclose(keras_logits[0], expected[position], atol=1e-4)
        np.testing.assert_allclose(tflite_logits, expected[position], atol=1e-4)


@pytest.mark.slow
def test_greedy_generation_is_identical_in_keras_and_tflite(textgen_run, lively_model):
    model, step_path = lively_model
    prompt = [1, 2, 3]
    keras_ids = generation.generate_keras(build_step_model(model), prompt, 200,
                                          generation.Sampling("greedy"), oov_id=0)
    tflite_ids = generation.generate_litert(generation.StepRunner(step_path), prompt, 200,
                                            generation.Sampling("greedy"), oov_id=0)
    assert keras_ids == tflite_ids
    assert len(set(keras_ids)) > 5 and 0 not in keras_ids
    bundle = textgen_run / "bundle"
    tokenizer = CharacterTokenizer.from_bundle(bundle)
    prompt = tokenizer.encode("ROMEO:")
    run_model = artifacts.load_keras_model(textgen_run / "strip" / "model.keras")
    assert generation.generate_keras(build_step_model(run_model), prompt, 200,
                                     generation.Sampling("greedy"), 0) == \
        generation.generate_litert(generation.StepRunner(textgen_run / "convert" /
                                                         "step_float.tflite"),
                                   prompt, 200, generation.Sampling("greedy"), 0)


@pytest.mark.parametrize("pruned", [False, True])
def test_the_step_model_folds_the_first_kernel_only_when_dense(tmp_path, pruned):
    """A dense first kernel is looked up as one gate table per character; a pruned one is
    kept (its zeros compress). Either way the step gives the Keras step model's logits."""
    tf_keras.utils.set_random_seed(4)
    # A small alphabet and a wide embedding, as for characters: the table is the smaller.
    model = build_textgen_model(ModelConfig(embedding_dim=16, lstm_units=16, lstm_layers=2,
                                            dropout=0.0, embedding_dropout=0.0), 12)
    rng = np.random.default_rng(4)
    weights = [rng.normal(0, 0.6, w.shape).astype(np.float32) for w in model.get_weights()]
    if pruned:
        kernel = weights[1]  # the first LSTM's kernel, after the embedding
        kernel[rng.random(kernel.shape) < 0.8] = 0.0
    model.set_weights(weights)
    assert (textgen._StepWeights(model).first_gates is None) == pruned
    path = tmp_path / "step.tflite"
    path.write_bytes(convert.to_tflite(textgen.step_function(model), model, "float"))
    keras_step, tflite_step = build_step_model(model), generation.StepRunner(path)
    states = [np.zeros((1, s[-1]), np.float32) for s in keras_step.input_shape[1:]]
    state = tflite_step.initial_state()
    for token in (1, 5, 11, 5, 0, 7):
        keras_logits, *states = keras_step([np.array([[token]]), *states])
        tflite_logits, state = tflite_step(token, state)
        np.testing.assert_allclose(tflite_logits, keras_logits[0], atol=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("export", ["float", "int8"])
def test_generate_model_samples_what_numpy_samples(tmp_path, layers, export):
    """The same seed gives the same ids whether NumPy samples after each step or the
    generate model samples in the graph (several blocks, every in-graph sampler)."""
    tf_keras.utils.set_random_seed(3)
    model = build_textgen_model(ModelConfig(embedding_dim=8, lstm_units=16, lstm_layers=layers,
                                            dropout=0.0, embedding_dropout=0.0), 30)
    rng = np.random.default_rng(layers)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    step_path, generate_path = tmp_path / "step.tflite", tmp_path / "generate.tflite"
    step_path.write_bytes(convert.to_tflite(textgen.step_function(model), model, export))
    generate_path.write_bytes(convert.to_tflite(textgen.generate_function(model), model,
                                                export))
    step, generator = generation.StepRunner(step_path), generation.GenerateRunner(generate_path)
    assert generator.block == generation.GENERATE_BLOCK
    length, seen = 2 * generator.block + 7, set()  # a partial last block
    for sampling in (generation.Sampling("greedy"),
                     generation.Sampling("top_k", k=4, temperature=0.8, seed=2),
                     generation.Sampling("random", temperature=1.5, seed=5)):
        expected = generation.generate_litert(step, [1, 2, 3], length, sampling, 0)
        emitted = []
        assert generation.generate_litert(step, [1, 2, 3], length, sampling, 0,
                                          emit=emitted.append, generator=generator) == expected
        assert emitted == expected and 0 not in expected
        seen.update(expected)
    assert len(seen) > 5  # the ids vary, so agreement is not trivial
    with pytest.raises(generation.GenerateError, match="--sampler=top_p needs the step model"):
        generation.generate_litert(step, [1], 5, generation.Sampling("top_p"), 0,
                                   generator=generator)
    with pytest.raises(generation.GenerateError, match="has no uniforms input"):
        generation.GenerateRunner(step_path)


def test_timing_inputs_give_a_step_model_a_running_state(tmp_path):
    """Latency is timed on a nonzero state: LiteRT's int8 kernels skip all-zero vectors,
    which would flatter a model whose state starts at zero."""
    model = build_textgen_model(ModelConfig(embedding_dim=4, lstm_units=8, lstm_layers=2,
                                            dropout=0.0, embedding_dropout=0.0), 10)
    path = tmp_path / "step.tflite"
    path.write_bytes(convert.to_tflite(textgen.step_function(model), model, "int8"))
    runner = generation.StepRunner(path)
    litert.set_timing_inputs(runner.interpreter, np.random.default_rng(0))
    values = {name: runner.interpreter.get_tensor(index)
              for name, index in runner.input_indices.items()}
    assert set(values) == {"token_id", "h_0", "c_0", "h_1", "c_1"}
    assert values["token_id"].tolist() == [0]
    for name in ("h_0", "c_0", "h_1", "c_1"):
        assert np.all(values[name] != 0) and np.all(np.abs(values[name]) < 1), name
    assert litert.time_calls(runner.interpreter.invoke, 5)["median_ms"] > 0


def test_the_generate_model_clamps_k(tmp_path):
    """An app may pass any k: below 1 samples greedily, above the vocabulary samples from
    all of it, as set_sampling's clamped values do."""
    tf_keras.utils.set_random_seed(5)
    model = build_textgen_model(ModelConfig(embedding_dim=8, lstm_units=8, lstm_layers=1,
                                            dropout=0.0, embedding_dropout=0.0), 12)
    path = tmp_path / "generate.tflite"
    path.write_bytes(convert.to_tflite(textgen.generate_function(model), model, "float"))
    generator = generation.GenerateRunner(path)
    uniforms = np.random.default_rng(1).random(generator.block)

    def ids_with(k: int) -> list[int]:
        generator.set_sampling(generation.Sampling("random", temperature=3.0), 12)
        generator.interpreter.set_tensor(generator.input_indices["k"], np.int32(k))
        return [int(i) for i in generator(3, generator.initial_state(), uniforms)[0]]

    assert ids_with(0) == ids_with(-4) == ids_with(1)
    assert ids_with(500) == ids_with(12) != ids_with(1)
    assert 0 not in ids_with(500)


@pytest.mark.slow
def test_samplers_are_deterministic_per_seed(lively_model):
    model, step_path = lively_model
    runner, step_model = generation.StepRunner(step_path), build_step_model(model)
    for name in ("top_k", "top_p", "random"):
        first, second, other = (generation.Sampling(name, k=5, p=0.9, temperature=0.8, seed=s)
                                for s in (1, 1, 2))
        assert generation.generate_litert(runner, [1], 100, first, 0) == \
            generation.generate_litert(runner, [1], 100, second, 0)
        assert generation.generate_litert(runner, [1], 100, first, 0) != \
            generation.generate_litert(runner, [1], 100, other, 0)
        assert generation.generate_keras(step_model, [1], 60, first, 0) == \
            generation.generate_keras(step_model, [1], 60, second, 0)


def test_next_token_limits_the_candidates():
    logits = np.array([0.0, 3.0, 2.9, -1.0])
    rng = np.random.default_rng(0)
    assert generation.next_token(logits, generation.Sampling("greedy"), rng) == 1
    top_two = {generation.next_token(logits, generation.Sampling("top_k", k=2), rng)
               for _ in range(200)}
    assert top_two == {1, 2}
    assert {generation.next_token(logits, generation.Sampling("top_p", p=0.01), rng)
            for _ in range(50)} == {1}
    with pytest.raises(generation.GenerateError, match="--temperature=0"):
        generation.Sampling("top_k", temperature=0)


@pytest.mark.parametrize("sampling, expected", [
    (generation.Sampling("top_k", k=3), {1: np.e, 2: np.e ** 2, 3: np.e ** 3}),
    (generation.Sampling("top_k", k=2, temperature=0.5), {2: np.e ** 4, 3: np.e ** 6}),
    (generation.Sampling("top_p", p=0.7), {2: np.e ** 2, 3: np.e ** 3}),
    (generation.Sampling("random"), {i: np.e ** i for i in range(4)}),
])
def test_next_token_draws_from_the_sampler_distribution(sampling, expected):
    logits, rng, draws = np.arange(4, dtype=np.float32), np.random.default_rng(1), 20000
    counts = np.bincount([generation.next_token(logits, sampling, rng) for _ in range(draws)],
                         minlength=4)
    total = sum(expected.values())
    for token in range(4):
        assert counts[token] / draws == pytest.approx(expected.get(token, 0) / total, abs=0.015)


@pytest.mark.slow
def test_generate_command_handles_unknown_characters_and_bad_input(textgen_run):
    bundle = textgen_run / "bundle"
    result = generate_cli(f"--bundle={bundle}", "--prompt=ROMEO ☃:", "--length=20",
                          "--sampler=top_k", "--seed=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ROMEO ☃:") and len(result.stdout.rstrip("\n")) == 28
    assert "☃" in result.stderr and "[UNK]" in result.stderr
    again = generate_cli(f"--bundle={bundle}", "--prompt=ROMEO ☃:", "--length=20", "--seed=1")
    assert again.stdout == result.stdout
    empty = generate_cli(f"--bundle={bundle}", "--prompt=", "--length=20")
    assert empty.returncode == 2 and "--prompt is empty" in empty.stderr
    keras = generate_cli(f"--keras={textgen_run}", "--prompt=ROMEO:", "--length=20",
                         "--sampler=greedy")
    assert keras.returncode == 0, keras.stderr[-2000:]
    assert keras.stdout.startswith("ROMEO:")
    manifest = json.loads((bundle / "manifest.json").read_text())
    shipped = {(m["name"], m["model"]): m["value"] for m in manifest["metrics"]}
    assert shipped["characters_per_second", manifest["export"]] > 0
    for args, message in [(["--length=10000000"], "--length=10000000 must be in [1, 100,000]"),
                          (["--temperature=nan"], "--temperature=nan must be a finite")]:
        refused = generate_cli(f"--bundle={bundle}", "--prompt=ROMEO:", *args)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("manifest", ["{}", "[]", "{not json"])
def test_generate_names_a_broken_manifest(textgen_run, tmp_path, manifest):
    bundle = tmp_path / "bundle"
    shutil.copytree(textgen_run / "bundle", bundle)
    (bundle / "manifest.json").write_text(manifest)
    result = generate_cli(f"--bundle={bundle}", "--prompt=ROMEO:", "--length=5")
    assert result.returncode == 2 and "manifest.json" in result.stderr
    assert "Traceback" not in result.stderr
