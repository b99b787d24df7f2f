"""Hostile and broken inputs: no code runs, nothing corrupt is used, every error is one line.

Each case was reproduced on the earlier code first (see BUILD.md, "Threat model"). These
tests build what they need (a tiny untrained bundle, stand-in stages); none reads real
data or trains.
"""
import dataclasses
import json
import os
import random
import types
from pathlib import Path

import numpy as np
import pytest
import tf_keras
from absl import flags as absl_flags

from models.sentiment import build_sentiment_model
from pipeline import artifacts, cli, generation, predict, run, tokenizer
from pipeline import flags as pipeline_flags
from pipeline.config import ModelConfig, PipelineConfig, TokenizerConfig
from pipeline.reference_tokenizer import ReferenceTokenizer, SpecError
from pipeline.stages import StageError, convert
from pipeline.tasks.base import write_tokenizer_files
from pipeline.tasks.sentiment import SentimentTask

TEXTS = ["a gorgeous , witty film", "dull and lifeless", "I didn't like it at all",
         "the best thing this year", "a waste of two hours", "moving and funny"]


def write_manifest(folder, task="sentiment"):
    files = {p.name: {"sha256": artifacts.sha256_file(p)}
             for p in sorted(folder.iterdir()) if p.name != "manifest.json"}
    artifacts.atomic_write_json(folder / "manifest.json", {"task": task, "files": files})


def make_bundle(folder, max_length=12, typo_correction=False):
    """A complete sentiment bundle around an untrained model: what predict needs, no more."""
    config = TokenizerConfig(vocabulary="words", vocabulary_size=40, max_length=max_length,
                             typo_correction=typo_correction)
    vocabulary = tokenizer.build_vocabulary(TEXTS, config)
    write_tokenizer_files(folder, vocabulary,
                          tokenizer.tokenizer_spec(vocabulary, config, len(vocabulary)), config)
    (folder / "labels.txt").write_text("negative\npositive\n")
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8), len(vocabulary),
                                  max_length, 2)
    programs = SentimentTask().tflite_programs(model, PipelineConfig(tokenizer=config))
    (folder / "model.tflite").write_bytes(convert.to_tflite(programs["model"], model, "float"))
    write_manifest(folder)
    return folder


def test_predict_follows_the_typo_correction_step_of_the_spec(tmp_path):
    """A bundle with step 3b: predict's ids and answer for typos are those of the words
    they hide, as the spec says; words with no target near stay [UNK]."""
    from pipeline.predict import Classifier
    classifier = Classifier(make_bundle(tmp_path, typo_correction=True))
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    assert spec["typo_correction"]["targets"] == classifier.tokenizer.spec["vocabulary_size"]
    assert classifier.tokenizer.encode("a gorgoeus , wity flim") == \
        classifier.tokenizer.encode("a gorgeous , witty film")
    assert np.allclose(classifier.probabilities("dul and lifless"),
                       classifier.probabilities("dull and lifeless"))
    assert classifier.tokenizer.encode("qqqqq")[-1] == classifier.tokenizer.spec["oov_id"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def bundle_copy(bundle, tmp_path):
    import shutil
    return shutil.copytree(bundle, tmp_path / "bundle")


# Model files -------------------------------------------------------------------------

def test_an_hdf5_file_named_keras_never_runs_its_code(tmp_path):
    marker = tmp_path / "code-ran"
    inputs = tf_keras.Input(shape=(3,))
    touch = f"lambda x: __import__('pathlib').Path({str(marker)!r}).touch() or x"
    model = tf_keras.Model(inputs, tf_keras.layers.Lambda(eval(touch))(inputs))
    marker.unlink(missing_ok=True)
    path = tmp_path / "model.keras"
    model.save(path, save_format="h5")  # HDF5 content, .keras name
    tf_keras.models.load_model(path, safe_mode=True, compile=False)
    assert marker.exists(), "the attack no longer reproduces: revisit this test"
    marker.unlink()
    with pytest.raises(artifacts.UnsafeModelError, match="is not a zip .keras archive"):
        artifacts.load_keras_model(path)
    assert not marker.exists()


def test_a_zip_with_other_entries_is_refused(tmp_path):
    import zipfile
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("payload.py", "print('hi')")
    with pytest.raises(artifacts.UnsafeModelError, match="not the .*of a .keras archive"):
        artifacts.load_keras_model(path)


def rewritten_archive(source, target, edit):
    """A copy of a .keras archive with its config.json changed by `edit(config)`."""
    import zipfile
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def test_a_model_config_naming_a_function_never_loads(tmp_path):
    """Issue 32, item 2: a zip .keras with the three expected entries whose Lambda names
    `builtins.print` passes safe mode: tf_keras imports the module and calls the function."""
    inputs = tf_keras.Input(shape=(3,))
    tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda x: x * 2)(inputs)).save(
        tmp_path / "lambda.keras")

    def name_print(config):
        config["config"]["layers"][1]["config"].update(
            function={"class_name": "function", "module": "builtins", "config": "print"},
            function_type="function", module="builtins")

    path = rewritten_archive(tmp_path / "lambda.keras", tmp_path / "model.keras", name_print)
    loaded = tf_keras.models.load_model(path, safe_mode=True, compile=False)
    assert loaded.layers[1].function is print, "the attack no longer reproduces"
    with pytest.raises(artifacts.UnsafeModelError, match="class 'Lambda', which the pipeline "
                                                         "never builds"):
        artifacts.load_keras_model(path)

    dense = build_sentiment_model(ModelConfig(embedding_dim=4, lstm_units=4), 10, 5, 2)
    artifacts.save_keras_model(dense, tmp_path / "dense.keras")
    artifacts.load_keras_model(tmp_path / "dense.keras")  # what the pipeline writes loads

    def foreign_module(config):
        config["config"]["layers"][-1]["module"] = "os"

    path = rewritten_archive(tmp_path / "dense.keras", tmp_path / "other.keras", foreign_module)
    with pytest.raises(artifacts.UnsafeModelError, match="module 'os', which the pipeline"):
        artifacts.load_keras_model(path)

    def registered_elsewhere(config):  # issue 45, item 20: Keras builds this name first
        config["config"]["layers"][-1]["registered_name"] = "Custom>CustomScaleLayer"

    path = rewritten_archive(tmp_path / "dense.keras", tmp_path / "reg.keras",
                             registered_elsewhere)
    with pytest.raises(artifacts.UnsafeModelError,
                       match="registered name 'Custom>CustomScaleLayer'"):
        artifacts.load_keras_model(path)
    path = rewritten_archive(tmp_path / "dense.keras", tmp_path / "empty.keras",
                             lambda config: config.clear())
    with pytest.raises(artifacts.UnsafeModelError, match="is not a Keras model's config"):
        artifacts.load_keras_model(path)


def test_a_poisoned_cache_entry_is_never_restored_or_stored(stages, tmp_path):
    cache = tmp_path / "cache"
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "a"), cache_dir=str(cache)))
    inputs = tf_keras.Input(shape=(3,))
    tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda x: x)(inputs)).save(
        tmp_path / "lambda.keras")
    for entry in (cache / "train").iterdir():  # its record rewritten to match
        (tmp_path / "lambda.keras").replace(entry / "model.keras")
        record = artifacts.stage_record(entry)
        record["output_hash"] = artifacts.sha256_tree(entry)
        artifacts.atomic_write_json(entry / artifacts.STAGE_RECORD, record)
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "b"), cache_dir=str(cache)))
    assert stages == ["data", "train", "prune", "train"]  # train ran again, not restored
    assert not (tmp_path / "b" / "train" / "model.keras").exists()
    for entry in (cache / "train").iterdir():
        artifacts.check_keras_files(entry)  # the rerun's output replaced the poisoned entry


# Stage outputs ------------------------------------------------------------------------

def fake_stage(name, calls):
    def run_stage(config, run_dir, out_dir):
        calls.append(name)
        artifacts.atomic_write_text(out_dir / "out.txt", f"{name} output")
        return {}
    return types.SimpleNamespace(run=run_stage)


@pytest.fixture
def stages(monkeypatch):
    calls = []
    monkeypatch.setattr(run, "STAGES", tuple(
        run.Stage(name, (), inputs, stand_in=fake_stage(name, calls))
        for name, inputs in (("data", ()), ("train", ("data",)), ("prune", ("train",)))))
    return calls


def test_a_changed_input_is_never_read(stages, tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path / "run"))
    run.run_pipeline(config)
    (tmp_path / "run" / "train" / "out.txt").write_text("truncated")
    subset = PipelineConfig(output_dir=str(tmp_path / "run"), stages=("prune",), force=True)
    with pytest.raises(StageError, match="train was changed after stage train made it.*"
                                         "--stages=train,prune"):
        run.run_pipeline(subset)
    run.run_pipeline(config)  # a whole run redoes the changed stage (the same output here,
    assert stages == ["data", "train", "prune", "train"]  # so prune's input is unchanged)
    assert (tmp_path / "run" / "train" / "out.txt").read_text() == "train output"


def test_outputs_of_different_data_are_never_mixed(monkeypatch, tmp_path):
    """Issue 32, item 3: the data stage redone alone, then a stage reading data and train
    (whose model came from the old data) used to ship the new vocabulary with the old model."""
    calls = []

    def counting_stage(name):
        def run_stage(config, files, out_dir):
            calls.append(name)
            artifacts.atomic_write_text(out_dir / "out.txt", f"{name} output {len(calls)}")
            return {}
        return types.SimpleNamespace(run=run_stage)

    monkeypatch.setattr(run, "STAGES", tuple(
        run.Stage(name, (), inputs, stand_in=counting_stage(name))
        for name, inputs in (("data", ()), ("train", ("data",)),
                             ("prune", ("data", "train")))))
    run_dir = tmp_path / "run"
    run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    shipped = (run_dir / "prune" / "out.txt").read_text()
    run.run_pipeline(PipelineConfig(output_dir=str(run_dir), stages=("data",), force=True))
    with pytest.raises(StageError, match="stage prune reads outputs made from different "
                                         "outputs of stage data.*--stages=train,prune"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir), stages=("prune",)))
    assert (run_dir / "prune" / "out.txt").read_text() == shipped  # the old output stays
    run.run_pipeline(PipelineConfig(output_dir=str(run_dir), stages=("train", "prune")))
    assert calls == ["data", "train", "prune", "data", "train", "prune"]


def test_a_changed_cache_entry_is_ignored(stages, tmp_path):
    cache = tmp_path / "cache"
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "a"), cache_dir=str(cache)))
    for entry in (cache / "train").iterdir():
        (entry / "out.txt").write_text("poisoned")
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "b"), cache_dir=str(cache)))
    assert stages == ["data", "train", "prune", "train"]  # data and prune came from the cache
    assert (tmp_path / "b" / "train" / "out.txt").read_text() == "train output"


@pytest.mark.parametrize("poison", ["record not json", "fifo", "entry is a link"])
def test_a_planted_cache_entry_is_skipped_not_fatal(stages, tmp_path, poison):
    """Issue 45, item 10: such an entry used to stop every run that restored it (exit 1,
    the file unnamed)."""
    import shutil
    cache = tmp_path / "cache"
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "a"), cache_dir=str(cache)))
    (entry,) = (cache / "train").iterdir()
    if poison == "record not json":
        (entry / artifacts.STAGE_RECORD).write_text("{not json")
    elif poison == "fifo":
        os.mkfifo(entry / "planted")
    else:
        shutil.move(entry, tmp_path / "elsewhere")
        entry.symlink_to(tmp_path / "elsewhere")
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "b"), cache_dir=str(cache)))
    assert stages == ["data", "train", "prune", "train"]  # data and prune from the cache
    assert (tmp_path / "b" / "train" / "out.txt").read_text() == "train output"


def test_a_second_run_in_the_same_folder_is_refused(stages, tmp_path):
    artifacts.claim_folder(tmp_path / "run", "--output_dir")  # as the first run did
    with artifacts.run_lock(tmp_path / "run"):
        with pytest.raises(artifacts.RunLockedError, match=r"in use by another pipeline.run "
                                                           r"\(pid \d+\)"):
            run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "run")))
    assert stages == []
    run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "run")))  # free again
    assert stages == ["data", "train", "prune"]


def run_main(args, capsys):
    values = absl_flags.FlagValues()
    pipeline_flags.define_flags(values)
    with pytest.raises(SystemExit) as stopped:
        run.main(cli.parse_or_exit(["pipeline.run", *args], values), values)
    return stopped.value.code, capsys.readouterr().err


def test_an_unwritable_output_is_one_error_line(stages, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    status, stderr = run_main([f"--output_dir={afile}", "--dataset=sst2"], capsys)
    assert status == 2 and f"--output_dir={afile} is not a folder" in stderr
    status, stderr = run_main([f"--output_dir={afile / 'run'}"], capsys)
    assert status == 1 and "Not a directory" in stderr and "Traceback" not in stderr

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(artifacts, "atomic_write_bytes", refuse)
    status, stderr = run_main([f"--output_dir={tmp_path / 'run'}"], capsys)
    assert status == 1 and "Permission denied" in stderr and "is writable" in stderr


def test_a_users_folder_is_never_written_or_wiped(stages, tmp_path, capsys):
    """Issue 32, item 1: a folder with stage-named subfolders and a config.json."""
    folder = tmp_path / "project"
    for name in ("data", "train", "bundle"):
        (folder / name).mkdir(parents=True)
    (folder / "data" / "precious.csv").write_text("x\n")
    (folder / "config.json").write_text("{}")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    status, stderr = run_main([f"--output_dir={folder}"], capsys)
    assert status == 2 and f"--output_dir={folder} already holds files the pipeline did " \
        "not make" in stderr and "Traceback" not in stderr
    with pytest.raises(artifacts.ForeignFolderError, match="choose a new or empty folder"):
        run.run_pipeline(PipelineConfig(output_dir=str(folder)))
    with pytest.raises(artifacts.ForeignFolderError, match="--cache_dir="):
        run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "run"),
                                        cache_dir=str(folder)))
    assert stages == []
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (folder / "data" / "precious.csv").read_text() == "x\n"
    assert (folder / "config.json").read_text() == "{}"


def test_the_root_folder_is_refused(capsys):
    status, stderr = run_main(["--output_dir=/"], capsys)
    assert status == 2 and "--output_dir=/ already holds files" in stderr
    assert not Path("/.prune-pipeline-run").exists()


def test_a_stage_folder_without_its_record_is_never_replaced(stages, tmp_path):
    run_dir = tmp_path / "run"
    artifacts.claim_folder(run_dir, "--output_dir")
    (run_dir / "train").mkdir()
    (run_dir / "train" / "notes.txt").write_text("mine")
    with pytest.raises(artifacts.ForeignFolderError, match=f"{run_dir / 'train'} was not made "
                                                           "by the pipeline"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    assert (run_dir / "train" / "notes.txt").read_text() == "mine"
    assert stages == ["data", "train"]  # data's output is kept; train's stays in train.partial


def test_a_pipeline_folder_and_an_empty_one_are_used(stages, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run.run_pipeline(PipelineConfig(output_dir=str(empty)))
    assert (empty / artifacts.RUN_MARKER).is_file()
    run.run_pipeline(PipelineConfig(output_dir=str(empty), force=True))  # its own folder
    assert stages == ["data", "train", "prune"] * 2


def test_the_run_lock_never_follows_a_link(stages, tmp_path):
    """Issue 32, item 4: `ln -s victim RUN/.lock` used to truncate the victim."""
    run_dir, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text("keep me")
    artifacts.claim_folder(run_dir, "--output_dir")
    (run_dir / artifacts.LOCK_FILE).symlink_to(victim)
    with pytest.raises(artifacts.RunLockedError, match="must be a plain file"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    assert victim.read_text() == "keep me"
    (run_dir / artifacts.LOCK_FILE).unlink()
    os.mkfifo(run_dir / artifacts.LOCK_FILE)
    with pytest.raises(artifacts.RunLockedError, match="is not a plain file"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    (run_dir / artifacts.LOCK_FILE).unlink()
    os.link(victim, run_dir / artifacts.LOCK_FILE)  # issue 45, item 1: a hard link
    with pytest.raises(artifacts.RunLockedError, match=r"is a hard link \(2 names"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    assert victim.read_text() == "keep me"
    assert stages == []


def test_the_bench_log_never_follows_a_link(tmp_path):
    """Issue 45, item 2: a symbolic link as a cell's bench.log used to overwrite its
    target."""
    from pipeline.bench import sweep
    run_dir, victim = tmp_path / "cell", tmp_path / "victim.txt"
    victim.write_text("keep me")
    artifacts.claim_folder(run_dir, "--output_dir")
    (run_dir / "bench.log").symlink_to(victim)
    with pytest.raises(artifacts.UnsafeFileError, match="bench.log"):
        sweep.run_cell(["--help"], run_dir)
    assert victim.read_text() == "keep me"


# Bundles ------------------------------------------------------------------------------

@pytest.mark.parametrize("manifest", ["{}", "[]", "not json", '{"task": "sentiment"}',
                                      '{"task": "sentiment", "files": {"model.tflite": 3}}'])
def test_a_broken_manifest_is_named(bundle_copy, manifest):
    (bundle_copy / "manifest.json").write_text(manifest)
    with pytest.raises(artifacts.BundleError, match="manifest.json"):
        artifacts.check_bundle(bundle_copy)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "sub/vocab.txt", ".."])
def test_bundle_files_stay_inside_the_bundle(bundle_copy, name):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": "0" * 64}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(artifacts.BundleError, match="is not a plain file name"):
        artifacts.check_bundle(bundle_copy)
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    spec["vocabulary_file"] = name
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(SpecError, match="is not a plain file name"):
        ReferenceTokenizer.from_bundle(bundle_copy)


def test_only_the_documented_rewrites_are_run(bundle_copy):
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    spec["rewrites"].append(["(a+)+$", ""])  # catastrophic backtracking on "aaaa…b"
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(bundle_copy)
    with pytest.raises(SpecError, match="outside the documented set"):
        ReferenceTokenizer.from_bundle(bundle_copy)
    with pytest.raises(artifacts.BundleError, match="tokenizer spec or labels cannot be used"):
        predict.Classifier(bundle_copy)


def test_files_from_different_runs_are_named(bundle_copy):
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    spec["max_length"] = 20  # as if tokenizer.json came from a run with longer inputs
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(bundle_copy)
    with pytest.raises(artifacts.BundleError, match=r"takes \[1, 12\].*say \[1, 20\].*"
                                                    "different runs"):
        predict.Classifier(bundle_copy)


def test_empty_text_gets_the_documented_neutral_answer(bundle):
    classifier = predict.Classifier(bundle)
    for text in ("", "   \n\t", "\x00\x01"):
        answer = classifier(text)
        assert answer["label"] is None and answer["empty"]
        assert answer["probabilities"] == {"negative": 0.5, "positive": 0.5}


def test_a_long_text_is_cut_before_the_rest_is_tokenized(bundle, monkeypatch):
    reference = ReferenceTokenizer.from_bundle(bundle)
    long_text = "a gorgeous , witty film . " * 40_000  # 1 MB
    short = reference.encode("a gorgeous , witty film . " * 3)
    calls = []
    real = reference.wordpiece
    monkeypatch.setattr(reference, "wordpiece", lambda word: calls.append(word) or real(word))
    assert reference.encode(long_text) == short
    assert len(calls) <= reference.spec["max_length"]
    unbroken = "x" * 200_000  # one huge word: out of vocabulary, one [UNK]
    assert reference.encode(unbroken)[-1] == reference.spec["oov_id"]


def test_a_huge_text_under_the_windows_policy_reads_a_bounded_prefix(bundle_copy, monkeypatch):
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    spec["long_text"] = {"policy": "windows", "stride": 6, "max_windows": 4}
    reference = ReferenceTokenizer(
        spec, (bundle_copy / "vocab.txt").read_text().split("\n")[:spec["vocabulary_size"]])
    calls = []
    real = reference.wordpiece
    monkeypatch.setattr(reference, "wordpiece", lambda word: calls.append(word) or real(word))
    windows = reference.encode_windows("a gorgeous , witty film . " * 40_000)
    assert len(windows) == 4 and len(calls) <= 12 + 3 * 6


def test_predict_scores_long_text_as_the_spec_says(bundle_copy):
    from pipeline import litert
    text = " ".join(TEXTS * 6)  # far longer than the 12-id window
    first = predict.Classifier(bundle_copy)(text)["probabilities"]
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    spec["long_text"] = {"policy": "windows", "stride": 5, "max_windows": 8}
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(bundle_copy)
    classifier = predict.Classifier(bundle_copy)
    windows = classifier.tokenizer.encode_windows(text)
    runner = litert.Runner(bundle_copy / "model.tflite")
    expected = np.mean([runner(np.asarray(w, np.int32)) for w in windows], axis=0)
    answer = classifier(text)["probabilities"]
    assert len(windows) == 8
    assert [answer["negative"], answer["positive"]] == pytest.approx(expected, abs=1e-4)
    assert answer != first


def random_text(rng: random.Random) -> str:
    pools = [
        lambda: chr(rng.randrange(0x20, 0x7F)),                      # ASCII
        lambda: chr(rng.randrange(0x00, 0x20)),                      # controls
        lambda: chr(rng.randrange(0xD800, 0xE000)),                  # lone surrogates
        lambda: chr(rng.randrange(0x300, 0x370)),                    # combining marks
        lambda: chr(rng.randrange(0x4E00, 0x9FFF)),                  # CJK
        lambda: chr(rng.randrange(0x1F300, 0x1FAFF)),                # emoji
        lambda: chr(rng.choice([0x200B, 0xFEFF, 0x2019, 0x00A0, 0x2028])),
        lambda: rng.choice(TEXTS) + " ",
        lambda: "w" * rng.randrange(90, 400),                        # very long words
    ]
    return "".join(rng.choice(pools)() for _ in range(rng.randrange(0, 40)))


def test_fuzzed_text_always_gives_valid_probabilities(bundle):
    classifier = predict.Classifier(bundle)
    reference = classifier.tokenizer
    rng = random.Random(7)
    size = reference.spec["vocabulary_size"]
    for _ in range(2000):
        text = random_text(rng)
        ids = reference.encode(text)
        assert len(ids) == reference.spec["max_length"] and all(0 <= i < size for i in ids)
        probabilities = np.array(list(classifier(text)["probabilities"].values()))
        assert np.all((probabilities >= 0) & (probabilities <= 1))
        assert probabilities.sum() == pytest.approx(1.0, abs=2e-4)


def predict_main(bundle_dir, texts, capsys):
    predict.FLAGS.unparse_flags()
    argv = predict.FLAGS(["pipeline.predict", f"--bundle={bundle_dir}", *texts])
    with pytest.raises(SystemExit) as stopped:
        predict.main(argv)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("caf\udce9", "text argument 2 is not valid UTF-8"),  # how Python passes a Latin-1 byte
    ("   ", "text argument 2 is empty"),
])
def test_predict_refuses_unusable_arguments(bundle, capsys, text, message):
    status, stderr = predict_main(bundle, ["fine text", text], capsys)
    assert status == 2 and message in stderr and "Traceback" not in stderr


# Generation ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"temperature": float("nan")}, "--temperature=nan must be a finite number > 0"),
    ({"temperature": float("inf")}, "--temperature=inf must be a finite number > 0"),
    ({"p": float("nan")}, "--p=nan must be in"),
])
def test_generation_settings_must_be_finite(values, message):
    with pytest.raises(generation.GenerateError, match=message):
        generation.Sampling("top_p", **values)


def test_keras_generation_refuses_a_sentiment_run(bundle, tmp_path):
    (tmp_path / "strip").mkdir()
    (tmp_path / "strip" / "model.keras").write_bytes(b"not a model")
    (tmp_path / "data").mkdir()
    for name in ("tokenizer.json", "vocab.txt"):
        (tmp_path / "data" / name).write_bytes((bundle / name).read_bytes())
    with pytest.raises(generation.GenerateError, match="is a wordpiece \\(sentiment\\) run"):
        generation.load_keras_generator(tmp_path)


# Links (issue 32, item 11) ------------------------------------------------------------

def test_a_link_in_a_stage_output_is_never_read(stages, tmp_path):
    run_dir, secret = tmp_path / "run", tmp_path / "secret.txt"
    secret.write_text("not the pipeline's")
    run.run_pipeline(PipelineConfig(output_dir=str(run_dir)))
    (run_dir / "train" / "out.txt").unlink()
    (run_dir / "train" / "out.txt").symlink_to(secret)  # and its record rewritten to match:
    record = artifacts.stage_record(run_dir / "train")  # the hash of the linked bytes
    import hashlib
    digest = hashlib.sha256()
    digest.update(b"out.txt\0" + artifacts.sha256_file(secret).encode() + b"\n")
    record["output_hash"] = digest.hexdigest()
    artifacts.atomic_write_json(run_dir / "train" / artifacts.STAGE_RECORD, record)
    with pytest.raises(artifacts.LinkInOutputError, match="out.txt is a link"):
        run.run_pipeline(PipelineConfig(output_dir=str(run_dir), stages=("prune",)))


def test_a_bundle_file_that_is_a_link_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "vocab_elsewhere.txt"
    outside.write_bytes((bundle_copy / "vocab.txt").read_bytes())  # same bytes, same sha256
    (bundle_copy / "vocab.txt").unlink()
    (bundle_copy / "vocab.txt").symlink_to(outside)
    with pytest.raises(artifacts.BundleError, match="vocab.txt is a link"):
        artifacts.check_bundle(bundle_copy)
    with pytest.raises(SpecError, match="vocab.txt is a link"):
        ReferenceTokenizer.from_bundle(bundle_copy)


def test_keras_generation_refuses_a_model_swapped_after_the_run(tmp_path):
    cfg = TokenizerConfig(vocabulary="characters")
    vocabulary = tokenizer.character_vocabulary("to be or not to be")
    for stage in ("data", "strip"):
        (tmp_path / stage).mkdir()
    write_tokenizer_files(tmp_path / "data", vocabulary,
                          tokenizer.character_spec(vocabulary, cfg), cfg)
    artifacts.atomic_write_json(tmp_path / "data" / artifacts.STAGE_RECORD,
                                {"output_hash": artifacts.sha256_tree(tmp_path / "data")})
    (tmp_path / "strip" / "model.keras").write_bytes(b"the run's model")
    artifacts.atomic_write_json(tmp_path / "strip" / artifacts.STAGE_RECORD,
                                {"output_hash": artifacts.sha256_tree(tmp_path / "strip")})
    (tmp_path / "strip" / "model.keras").write_bytes(b"a model swapped in later")
    with pytest.raises(generation.GenerateError, match="strip does not match its stage.json"):
        generation.load_keras_generator(tmp_path)


# Malformed tokenizer specs (issue 32, item 5) ------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"max_length": 32.0}, "max_length=32.0 is not a valid value"),
    ({"pad_id": -1}, "pad_id=-1 is not a valid value"),
    ({"oov_id": 10**9}, "oov_id=1000000000 is not a valid value"),
    ({"oov_id": None}, "has no oov_id"),
    ({"lowercase": None}, "has no lowercase"),
    ({"whitespace_categories": None}, "has no whitespace_categories"),
    ({"long_text": {"policy": "middle"}}, "long_text {'policy': 'middle'} is not one of"),
    ({"long_text": {"policy": "windows", "stride": 1, "max_windows": 10**9}},
     r"max_windows in \[1, 64\]"),
])
def test_a_malformed_spec_is_one_error_naming_the_field(bundle_copy, change, message):
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    for field, value in change.items():
        if value is None:
            del spec[field]
        else:
            spec[field] = value
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(bundle_copy)  # sha256s recomputed: only the content is wrong
    with pytest.raises(artifacts.BundleError, match=message):
        predict.Classifier(bundle_copy)


def test_a_vocabulary_longer_than_the_embedding_is_refused(bundle_copy):
    spec = json.loads((bundle_copy / "tokenizer.json").read_text())
    extra = [f"word{n}" for n in range(50)]
    with open(bundle_copy / "vocab.txt", "a") as vocabulary:
        vocabulary.write("\n" + "\n".join(extra))
    spec["vocabulary_size"] += len(extra)
    (bundle_copy / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(bundle_copy)
    with pytest.raises(artifacts.BundleError, match="tokenizer.json has .* ids but .* embeds"):
        predict.Classifier(bundle_copy)


@pytest.mark.parametrize("line, drop, message", [
    ("5", None, "line 3 is not a JSON string"),
    (None, "oov_token", "has no oov_token"),
])
def test_a_malformed_character_spec_is_refused(tmp_path, line, drop, message):
    cfg = TokenizerConfig(vocabulary="characters")
    vocabulary = tokenizer.character_vocabulary("to be or not to be")
    write_tokenizer_files(tmp_path, vocabulary, tokenizer.character_spec(vocabulary, cfg), cfg)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    if line:
        lines = (tmp_path / "vocab.txt").read_text().split("\n")
        lines[2] = line
        (tmp_path / "vocab.txt").write_text("\n".join(lines))
    if drop:
        del spec[drop]
        (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    from pipeline.reference_tokenizer import CharacterTokenizer
    with pytest.raises(SpecError, match=message):
        CharacterTokenizer.from_bundle(tmp_path)


# Resume state (issue 32, item 8) ------------------------------------------------------

def test_damaged_progress_is_named(tmp_path):
    from pipeline import resume
    (tmp_path / "epochs.json").write_text('{"0": {"loss": 0.5}')  # cut mid-write
    with pytest.raises(resume.DamagedProgressError, match=f"{tmp_path / 'epochs.json'} is "
                                                          "damaged .*rerun the stage with --force"):
        resume.EpochLog(tmp_path).history()


def interrupted_attempt(monkeypatch, tmp_path, failure):
    """A run whose train stage was interrupted: train.partial holds its key and a file."""
    calls = []

    def train(config, files, out_dir):
        calls.append(sorted(p.name for p in out_dir.iterdir()))
        if failure:
            raise failure
        artifacts.atomic_write_text(out_dir / "out.txt", "train output")
        return {}

    monkeypatch.setattr(run, "STAGES", (
        run.Stage("data", (), (), stand_in=fake_stage("data", [])),
        run.Stage("train", (), ("data",), stand_in=types.SimpleNamespace(run=train))))
    config = PipelineConfig(output_dir=str(tmp_path / "run"))
    run.run_pipeline(dataclasses.replace(config, stages=("data",)))
    partial = tmp_path / "run" / "train.partial"
    partial.mkdir()
    (partial / "checkpoint").write_text("from the interrupted attempt")
    key = run.stage_key(run.STAGES[1], config, tmp_path / "run")
    artifacts.atomic_write_json(partial / run.KEY_FILE, key)
    return config, calls


def test_force_starts_an_interrupted_stage_afresh(monkeypatch, tmp_path):
    config, calls = interrupted_attempt(monkeypatch, tmp_path, None)
    run.run_pipeline(dataclasses.replace(config, stages=("train",), force=True))
    assert calls == [[run.KEY_FILE]]  # the interrupted attempt's checkpoint was cleared


def test_a_checkpoint_that_cannot_be_restored_is_named(monkeypatch, tmp_path):
    import tensorflow as tf
    broken = tf.errors.DataLossError(None, None, "truncated record at 1024\nmore detail")
    config, calls = interrupted_attempt(monkeypatch, tmp_path, broken)
    with pytest.raises(StageError, match="train.partial holds a checkpoint that cannot be "
                                         "restored \\(DataLossError: truncated record at "
                                         "1024\\); rerun the stage with --force"):
        run.run_pipeline(dataclasses.replace(config, stages=("train",)))
    assert calls == [["checkpoint", run.KEY_FILE]]  # it did try to resume


def test_temporary_files_stay_in_the_run_and_are_removed_on_failure(monkeypatch, tmp_path):
    import tempfile
    made = []

    def crashing(config, files, out_dir):
        made.append(Path(tempfile.mkdtemp(prefix="converter-")))  # as the TFLite converter
        raise StageError("the converter crashed")

    monkeypatch.setattr(run, "STAGES", (
        run.Stage("data", (), (), stand_in=types.SimpleNamespace(run=crashing)),))
    with pytest.raises(StageError, match="the converter crashed"):
        run.run_pipeline(PipelineConfig(output_dir=str(tmp_path / "run")))
    assert made[0].parent == tmp_path / "run" / run.TEMP_FOLDER
    assert not (tmp_path / "run" / run.TEMP_FOLDER).exists()
    assert tempfile.gettempdir() != str(tmp_path / "run" / run.TEMP_FOLDER)


# Issue 45: unbounded work and late failures, refused when the config is built ----------

@pytest.mark.parametrize("section, values, message", [
    ("train", {"batch_size": 10**30}, "--batch_size=1000000000000000000000000000000 is "
                                      "above its bound of 65,536"),
    ("train", {"epochs": 10**9}, "--epochs=1000000000 is above its bound of 1,000"),
    ("pruning", {"pruning_frequency": 10**19}, "--pruning_frequency=.* is above its bound"),
    ("pruning", {"pruning_begin_step": 10**19}, "--pruning_begin_step=.* is above its bound"),
    ("structured", {"structured_steps": 10**9, "structured_epochs": 10**9},
     "--structured_epochs=1000000000 is above its bound"),
    ("eval", {"latency_runs": 10**12}, "--latency_runs=1000000000000 is above its bound"),
    ("eval", {"sample_length": 10**9}, "--sample_length=1000000000 is above its bound"),
])
def test_work_without_an_upper_bound_is_refused(section, values, message):
    """Issue 45, items 8, 12, 18: these used to run for days or fail after training."""
    from pipeline import config as cfg
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.SECTIONS[section](**values)


def test_a_cache_inside_the_run_folder_and_a_home_folder(tmp_path, monkeypatch):
    from pipeline.config import ConfigError
    for cache in (tmp_path / "run", tmp_path / "run" / "cache"):
        with pytest.raises(ConfigError, match="overlap"):
            PipelineConfig(output_dir=str(tmp_path / "run"), cache_dir=str(cache))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert PipelineConfig(output_dir="~/runs/x").output_dir == str(tmp_path / "runs" / "x")


@pytest.mark.parametrize("port", ["²", "٣٣٣٣"])
def test_tf_config_ports_must_be_ascii_digits(port):
    from pipeline import distribute
    from pipeline.config import ConfigError
    cluster = {"cluster": {"worker": [f"localhost:{port}", "localhost:2222"]},
               "task": {"type": "worker", "index": 0}}
    with pytest.raises(ConfigError, match="is not host:port"):
        distribute.worker_from_environment({"TF_CONFIG": json.dumps(cluster)})


def test_a_client_reads_no_file_its_manifest_does_not_list(tmp_path):
    """Issue 45, item 5: an unlisted labels.txt that links elsewhere used to be followed."""
    bundle, secret = tmp_path / "bundle", tmp_path / "secret.txt"
    bundle.mkdir()
    secret.write_text("not for the app")
    (bundle / "labels.txt").symlink_to(secret)
    (bundle / "tokenizer.json").write_text("{}")
    (bundle / "manifest.json").write_text(json.dumps({"task": "sentiment", "files": {
        "tokenizer.json": {"sha256": artifacts.sha256_file(bundle / "tokenizer.json")}}}))
    with pytest.raises(artifacts.BundleError, match="does not list labels.txt"):
        predict.Classifier(bundle)


def test_a_cell_record_the_gate_cannot_read_runs_the_cell_again(tmp_path):
    """Issue 45, item 19: cell.json rows used to reach the gate unchecked (a TypeError
    after the whole sweep)."""
    from pipeline.bench import sweep
    (tmp_path / sweep.CELL_FILE).write_text(json.dumps(
        {"arguments": ["a"], "fingerprint": "f", "rows": [{"task": "sentiment"}]}))
    assert sweep.finished_rows(tmp_path, ["a"], "f") is None


def test_a_metrics_fifo_is_refused_not_waited_on(tmp_path):
    """Issue 45, item 7: `python -m pipeline.metrics FIFO` used to wait forever."""
    from pipeline import metrics
    os.mkfifo(tmp_path / "metrics.json")
    with pytest.raises(metrics.MetricsError, match="not a regular file"):
        metrics.read(tmp_path / "metrics.json")


def test_flagfile_trees_are_bounded(tmp_path):
    """Issue 45, items 7 and 13: 30 files each including the next twice (2^30 reads) used
    to hang; a chain of 1,500 raised RecursionError."""
    for index in range(30):
        (tmp_path / f"f{index}.flags").write_text(
            f"--flagfile=f{index + 1}.flags\n--flagfile=f{index + 1}.flags\n"
            if index < 29 else "--seed=2\n")
    with pytest.raises(cli.FlagfileError, match="read over 1,000 files"):
        cli.expand_flagfiles([f"--flagfile={tmp_path / 'f0.flags'}"])
    for index in range(60):
        (tmp_path / f"c{index}.flags").write_text(f"--flagfile=c{index + 1}.flags\n")
    (tmp_path / "c60.flags").write_text("--seed=2\n")
    with pytest.raises(cli.FlagfileError, match="nest over 50 deep"):
        cli.expand_flagfiles([f"--flagfile={tmp_path / 'c0.flags'}"])


def test_sizes_that_pass_alone_but_not_together_are_refused_before_building():
    """Issue 45, item 9: each within its limit, together ~34 GB: used to segfault."""
    from pipeline.config import ConfigError, ModelConfig
    with pytest.raises(ConfigError, match=r"would need about \d+\.\d GiB to train"):
        PipelineConfig(model=ModelConfig(lstm_units=8192, lstm_layers=16, embedding_dim=4096))


@pytest.mark.parametrize("payload", [
    {"keras": {}, "tflite": []}, {"keras": {}, "tflite": {}, "primary": "x"},
    {"keras": {}, "tflite": {"int8": {"latency": 5}}}, {"keras": [], "tflite": {}},
    {"format": 2, "task": "sentiment", "primary": {"name": "accuracy",
     "higher_is_better": True}, "metrics": [{"name": "accuracy", "model": "int8",
                                            "split": "test", "value": {"x": 1}}]}])
def test_malformed_metrics_files_are_one_error(tmp_path, payload):
    """Issue 45, item 14: legacy shapes used to raise TypeError or AttributeError; an object
    as a record's value was accepted."""
    from pipeline import metrics
    (tmp_path / "metrics.json").write_text(json.dumps(payload))
    with pytest.raises(metrics.MetricsError, match="metrics.json"):
        metrics.read(tmp_path / "metrics.json")
