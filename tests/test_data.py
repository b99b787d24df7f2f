import json

import numpy as np
import pytest

from pipeline import data
from pipeline.config import DataConfig


@pytest.mark.slow
def test_mirror_is_used_first_and_reads_both_header_spellings(shared_data):
    splits = data.load_splits(DataConfig(dataset="sst2", data_dir=str(shared_data)))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (67349, 872, 1821)
    assert splits.validation_source == "dev.tsv"
    assert all(path.startswith(str(shared_data)) for path in splits.sources)
    assert splits.label_names == ("negative", "positive")
    assert splits.test.texts[0] == "no movement , no yuks , not much of anything ."
    assert np.bincount(splits.test.labels).tolist() == [912, 909]


@pytest.mark.parametrize("dataset, check", [("sst2", data.check_labelled_dataset),
                                            ("tiny_shakespeare", data.check_corpus)])
def test_offline_without_a_mirror_is_an_error_within_seconds(tmp_path, monkeypatch,
                                                             dataset, check):
    """No mirror, nothing in TFDS, no network (a proxy on a closed loopback port): the
    check that runs before any work says so at once instead of TFDS retrying for minutes."""
    import time
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    task = "sentiment" if dataset == "sst2" else "textgen"
    config = DataConfig(task=task, dataset=dataset, tfds_data_dir=str(tmp_path / "tfds"))
    start = time.monotonic()
    with pytest.raises(data.DataError, match=f"dataset '{dataset}' has no local copy .*"
                                             "cannot be downloaded .*PIPELINE_DATA_DIR"):
        check(config)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "tfds").exists()


def test_missing_mirror_and_offline_tfds_names_every_place_tried(tmp_path):
    (tmp_path / "mirror").mkdir()  # a mirror without sst2/ in it
    config = DataConfig(dataset="sst2", data_dir=str(tmp_path / "mirror"),
                        tfds_data_dir=str(tmp_path / "tfds"), tfds_download=False)
    with pytest.raises(data.DataError) as error:
        data.load_splits(config)
    message = str(error.value)
    assert str(tmp_path / "mirror" / "sst2") in message
    assert "glue/sst2" in message and str(tmp_path / "tfds") in message
    assert "PIPELINE_DATA_DIR" in message


def test_unknown_dataset_name():
    with pytest.raises(data.DataError,
                       match="--dataset=nope is not a registered sentiment dataset"):
        data.check_labelled_dataset(DataConfig(dataset="nope"))


def write_tsv(path, rows, header="label\ttext"):
    path.write_text(header + "\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    return path


def rows_with_problems(good: int):
    rows = [("1" if i % 2 else "0", f"sentence number {i}") for i in range(good)]
    rows += [("", "no label here"), ("7", "label outside the set"), ("1", "   ")]
    return rows


def test_malformed_rows_are_counted_under_the_threshold(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", rows_with_problems(297))
    config = DataConfig(dataset=f"tsv:{path}", text_column="text", labels=("0", "1"),
                        max_malformed_fraction=0.02)
    splits = data.load_splits(config)
    assert splits.malformed == {str(path): 3}
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 297


def test_too_many_malformed_rows_name_file_and_lines(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", rows_with_problems(97))
    config = DataConfig(dataset=f"tsv:{path}", text_column="text", labels=("0", "1"),
                        max_malformed_fraction=0.01)
    with pytest.raises(data.DataError) as error:
        data.load_splits(config)
    message = str(error.value)
    assert str(path) in message and "3 of 100 rows are malformed" in message
    assert "line 99: missing label" in message
    assert "line 100: label '7' is not one of ['0', '1']" in message
    assert "line 101: empty text" in message


def test_jsonl_and_csv_files_split_with_a_fixed_seed(tmp_path):
    rows = [{"review": f"text {i}", "stars": "pos" if i % 3 else "neg"} for i in range(200)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = DataConfig(dataset=f"jsonl:{jsonl}", text_column="review", label_column="stars",
                        labels=("neg", "pos"))
    first, second = data.load_splits(config), data.load_splits(config)
    assert first.label_names == ("neg", "pos")
    assert (len(first.train), len(first.validation), len(first.test)) == (162, 18, 20)
    assert first.test.texts == second.test.texts
    assert not set(first.test.texts) & set(first.train.texts)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('stars,review\n' + 'pos,"good, really"\nneg,bad\n' * 100)
    splits = data.load_splits(DataConfig(dataset=f"csv:{csv_path}", text_column="review",
                                         label_column="stars", labels=("neg", "pos")))
    assert "good, really" in splits.train.texts


def test_missing_column_is_named(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", [("1", "x")], header="label\tbody")
    with pytest.raises(data.DataError, match="expected a text column \\(text\\)"):
        data.load_splits(DataConfig(dataset=f"tsv:{path}", text_column="text",
                                    labels=("0", "1")))


def balanced(count):
    return [("1" if i % 2 else "0", f"sentence number {i}") for i in range(count)]


def test_a_byte_order_mark_and_long_fields_are_read(tmp_path):
    path = tmp_path / "d.tsv"
    long_review = "word " * 60_000  # 300 KB: above csv's default field limit of 128 KiB
    rows = balanced(200) + [("1", long_review)]
    path.write_text("\ufeff" + "label\ttext\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    splits = data.load_splits(DataConfig(dataset=f"tsv:{path}", text_column="text",
                                         labels=("0", "1")))
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 201
    assert any(len(t) == len(long_review) for part in (splits.train, splits.validation,
                                                      splits.test) for t in part.texts)


@pytest.mark.parametrize("rows, labels, message", [
    (balanced(30), ("0", "1"), "the validation split has 3 usable rows, fewer than 10"),
    ([("1", f"all positive {i}") for i in range(200)], ("0", "1"),
     "the train split has no example of label\\(s\\) 0"),
])
def test_useless_data_is_refused(tmp_path, rows, labels, message):
    path = write_tsv(tmp_path / "d.tsv", rows)
    with pytest.raises(data.DataError, match=message):
        data.load_splits(DataConfig(dataset=f"tsv:{path}", text_column="text", labels=labels))


def test_file_datasets_declare_their_labels_and_data_dir_must_exist(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", balanced(200))
    with pytest.raises(data.DataError, match="needs --labels"):
        data.check_labelled_dataset(DataConfig(dataset=f"tsv:{path}", text_column="text"))
    with pytest.raises(data.DataError, match="--data_dir=.*/typo is not a folder"):
        data.check_labelled_dataset(DataConfig(dataset="sst2", data_dir=str(tmp_path / "typo")))


def test_a_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"review": "fine", "stars": "pos"}\n{"review": oops}\n')
    with pytest.raises(data.DataError, match="d.jsonl:2: not JSON"):
        data.load_splits(DataConfig(dataset=f"jsonl:{path}", text_column="review",
                                    label_column="stars", labels=("neg", "pos")))


def test_jsonl_texts_that_are_objects_or_nested_too_deep_are_named(tmp_path):
    """Issue 45, items 13 and 21: an object as text used to train as str(dict); a deeply
    nested line raised RecursionError."""
    path = tmp_path / "d.jsonl"
    rows = [{"review": {"not": "text"}, "stars": "pos"}] * 3 + \
        [{"review": "fine", "stars": "pos"}] * 20
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = DataConfig(dataset=f"jsonl:{path}", text_column="review", label_column="stars",
                        labels=("neg", "pos"), max_malformed_fraction=0.05)
    with pytest.raises(data.DataError, match="line 1: the text is a JSON dict, not text"):
        data.load_splits(config)
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(data.DataError, match="d.jsonl:1: JSON nested too deeply"):
        data.load_splits(config)


def test_an_unclosed_quote_is_named_not_merged(tmp_path):
    """Issue 32, item 12: the csv reader used to fold every later row into one field."""
    path = tmp_path / "data.csv"
    path.write_text("text,label\ngood film,1\n\"bad film,0\nfine,1\nawful,0\n")
    with pytest.raises(data.DataError, match=f"{path}:3: a quoted field that starts on this "
                                             "line is never closed"):
        data.load_splits(DataConfig(dataset=f"csv:{path}", labels=("0", "1")))


def test_bad_dataset_contents_exit_2(tmp_path, capsys):
    from absl import flags as absl_flags

    from pipeline import cli, run
    from pipeline import flags as pipeline_flags
    path = tmp_path / "data.csv"
    path.write_text("text,label\ngood film,1\n\"bad film,0\n")
    values = absl_flags.FlagValues()
    pipeline_flags.define_flags(values)
    with pytest.raises(SystemExit) as stopped:
        run.main(cli.parse_or_exit(["pipeline.run", f"--dataset=csv:{path}", "--labels=0,1",
                                    "--stages=data", f"--output_dir={tmp_path / 'run'}"],
                                   values), values)
    assert stopped.value.code == 2
    assert "is never closed" in capsys.readouterr().err
    assert not (tmp_path / "run" / "data").exists()
