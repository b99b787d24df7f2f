"""The bundle's tokenizer spec, followed in plain Python, reproduces keras-nlp's ids."""
import json
import sys

import numpy as np
import pytest

from pipeline import data, tokenizer
from pipeline.config import DataConfig, TokenizerConfig
from pipeline.reference_tokenizer import ReferenceTokenizer

TRICKY = [
    "Crème BRÛLÉE!! isn't it…  great?",
    "ﬁne\u00a0day\u200bhere",
    "Straße ΣΊΣΥΦΟΣ",
    "a" * 150,
    "日本語のテキスト。",
    "tab\there\x0bvt\r\nline",
    "",
    "   ",
    "«quoted» — dash – and ‘curly’ “quotes”",
    "EMOJI 😀 and ＦＵＬＬＷＩＤＴＨ letters",
    "I didn't like it. DON'T go. It can’t fail, it won't.",
]


@pytest.fixture(scope="module", params=["wordpiece", "words", "words+glove"])
def sst2_bundle(shared_data, tmp_path_factory, request):
    splits = data.load_splits(DataConfig(dataset="sst2", data_dir=str(shared_data),
                                         train_limit=1500))
    kind, _, extra = request.param.partition("+")
    config = TokenizerConfig(vocabulary=kind, vocabulary_size=3000, max_length=48)
    vocabulary = tokenizer.build_vocabulary(splits.train.texts, config)
    if extra:  # the open vocabulary: frequent GloVe words the training slice lacks
        from pipeline import vectors
        vocabulary = vectors.extend_vocabulary(vocabulary, vectors.load("glove-6b-50d", 0),
                                               30000, tokenizer.whole_word_check(config))
        assert len(vocabulary) == len(set(vocabulary)) > 30000
    folder = tmp_path_factory.mktemp("bundle")
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    (folder / "tokenizer.json").write_text(
        json.dumps(tokenizer.tokenizer_spec(vocabulary, config)), encoding="utf-8")
    return folder, vocabulary, config, splits


@pytest.mark.slow
def test_reference_matches_pipeline_on_every_sst2_test_sentence(sst2_bundle):
    folder, vocabulary, config, splits = sst2_bundle
    pipeline_ids = tokenizer.encode(splits.test.texts, vocabulary, config)
    reference = ReferenceTokenizer.from_bundle(folder)
    mismatches = [text for text, ids in zip(splits.test.texts, pipeline_ids)
                  if reference.encode(text) != ids.tolist()]
    assert len(splits.test) == 1821 and not mismatches, mismatches[:3]
    assert (pipeline_ids == 1).any() and (pipeline_ids[:, 0] == 0).any()


@pytest.mark.slow
def test_reference_matches_pipeline_on_raw_user_text(sst2_bundle):
    folder, vocabulary, config, _ = sst2_bundle
    pipeline_ids = tokenizer.encode(TRICKY, vocabulary, config)
    reference = ReferenceTokenizer.from_bundle(folder)
    for text, ids in zip(TRICKY, pipeline_ids):
        assert reference.encode(text) == ids.tolist(), repr(text)


@pytest.mark.slow
def test_padding_is_left_and_truncation_keeps_the_first_tokens(sst2_bundle):
    folder, vocabulary, config, _ = sst2_bundle
    reference = ReferenceTokenizer.from_bundle(folder)
    short = reference.encode("good")
    assert short[:-1] == [0] * (config.max_length - 1) and short[-1] == vocabulary.index("good")
    long = reference.encode("good " * 100 + "bad")
    assert long == [vocabulary.index("good")] * config.max_length
    unknown = reference.encode("good ☃")
    assert unknown[-1] == vocabulary.index("[UNK]")


def test_reference_tokenizer_needs_no_tensorflow():
    import subprocess
    code = ("import sys, pipeline.reference_tokenizer; "
            "assert 'tensorflow' not in sys.modules and 'keras_nlp' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_left_pad_shifts_rows_to_the_right():
    import tensorflow as tf
    ragged = tf.ragged.constant([[5, 6], [1, 2, 3, 4, 5], []], dtype=tf.int32)
    assert tokenizer.left_pad(ragged, 4).numpy().tolist() == \
        [[0, 0, 5, 6], [1, 2, 3, 4], [0, 0, 0, 0]]
    assert np.asarray(tokenizer.left_pad(ragged, 4)).dtype == np.int32


@pytest.mark.slow
def test_raw_contractions_meet_the_sst2_spelling(sst2_bundle):
    folder, _, _, _ = sst2_bundle
    reference = ReferenceTokenizer.from_bundle(folder)
    assert list(reference.words("I didn't like it, it can’t")) == \
        list(reference.words("i did n't like it , it ca n't"))


def windows_tokenizer(stride, max_windows, max_length=4):
    vocabulary = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(20)]
    spec = tokenizer.tokenizer_spec(vocabulary, TokenizerConfig(max_length=max_length))
    spec["long_text"] = {"policy": "windows", "stride": stride, "max_windows": max_windows}
    return ReferenceTokenizer(spec, vocabulary)


def text_of(count):
    return " ".join(f"w{i}" for i in range(count))


def test_long_text_windows_cover_the_text_up_to_the_limit():
    reference = windows_tokenizer(stride=2, max_windows=3)
    assert reference.encode_windows(text_of(3)) == [[0, 2, 3, 4]]  # short: one padded input
    assert reference.encode_windows(text_of(4)) == [[2, 3, 4, 5]]
    assert reference.encode_windows(text_of(7)) == [[2, 3, 4, 5], [4, 5, 6, 7], [5, 6, 7, 8]]
    # At most max_length + (max_windows - 1) * stride = 8 ids are read.
    assert reference.encode_windows(text_of(20)) == [[2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    first = ReferenceTokenizer({**reference.spec, "long_text": {"policy": "first"}},
                               list(reference.vocabulary))
    assert first.encode_windows(text_of(20)) == [[2, 3, 4, 5]]


@pytest.mark.parametrize("policy", [{"policy": "windows", "stride": 0, "max_windows": 2},
                                    {"policy": "windows", "stride": "2", "max_windows": 2}])
def test_a_bad_long_text_entry_is_refused(policy):
    from pipeline.reference_tokenizer import SpecError
    tokenizer = windows_tokenizer(2, 2)
    spec = {**tokenizer.spec, "long_text": policy}
    with pytest.raises(SpecError, match=r"needs whole numbers stride in \[1, max_length\]"):
        ReferenceTokenizer(spec, list(tokenizer.vocabulary))


def test_length_buckets_pad_a_short_text_only_to_the_smallest_length_that_holds_it():
    reference = windows_tokenizer(stride=4, max_windows=3, max_length=12)
    spec = {**reference.spec, "length_buckets": {"lengths": [4, 8, 12]}}
    bucketed = ReferenceTokenizer(spec, list(reference.vocabulary))
    assert bucketed.encode_windows(text_of(3)) == [[0, 2, 3, 4]]
    assert bucketed.encode_windows(text_of(5)) == [[0, 0, 0, 2, 3, 4, 5, 6]]
    padded = ReferenceTokenizer({**spec, "length_buckets": {"lengths": [4, 8, 12],
                                                            "min_pads": 2}},
                                list(reference.vocabulary))
    assert padded.encode_windows(text_of(2)) == [[0, 0, 2, 3]]
    assert padded.encode_windows(text_of(3)) == [[0, 0, 0, 0, 0, 2, 3, 4]]
    assert padded.encode_windows(text_of(11)) == reference.encode_windows(text_of(11))
    assert bucketed.encode_windows(text_of(12)) == reference.encode_windows(text_of(12))
    # A text longer than max_length keeps its full windows; encode stays max_length long.
    assert bucketed.encode_windows(text_of(20)) == reference.encode_windows(text_of(20))
    assert len(bucketed.encode(text_of(3))) == 12


@pytest.mark.parametrize("buckets", [{"lengths": [4, 8]}, {"lengths": [8, 4, 12]},
                                     {"lengths": [0, 12]}, {"lengths": "12"}, [12],
                                     {"lengths": [12], "min_pads": 12},
                                     {"lengths": [12], "min_pads": -1}])
def test_a_bad_length_buckets_entry_is_refused(buckets):
    from pipeline.reference_tokenizer import SpecError
    reference = windows_tokenizer(stride=4, max_windows=3, max_length=12)
    with pytest.raises(SpecError, match="length_buckets .* needs lengths: increasing whole "
                                        "numbers >= 1 ending at max_length, and min_pads"):
        ReferenceTokenizer({**reference.spec, "length_buckets": buckets},
                           list(reference.vocabulary))
