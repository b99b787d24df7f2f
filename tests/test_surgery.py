"""Unit surgery: the rebuilt smaller model computes exactly what the masked model computes."""
import dataclasses

import numpy as np
import pytest
import tf_keras

from models.sentiment import build_sentiment_model
from models.textgen import build_textgen_model
from pipeline import surgery
from pipeline.config import ModelConfig

VOCABULARY, LENGTH = 30, 7


def random_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def models():
    for layers in (1, 2):
        config = ModelConfig(embedding_dim=10, lstm_units=8, lstm_layers=layers)
        for pooling in ("max", "last"):
            yield f"sentiment-{pooling}-{layers}", build_sentiment_model(
                dataclasses.replace(config, pooling=pooling), VOCABULARY, LENGTH, 3)
        yield f"textgen-{layers}", build_textgen_model(config, VOCABULARY)


CASES = list(models())


@pytest.mark.parametrize("name, model", CASES, ids=[name for name, _ in CASES])
def test_shrink_gives_the_masked_models_outputs(name, model):
    tf_keras.utils.set_random_seed(1)
    random_weights(model)
    layout = surgery.Layout.of(model)
    ids = np.random.default_rng(2).integers(1, VOCABULARY, size=(5, LENGTH)).astype("int32")
    kept = surgery.plan(surgery.l2_scores(model), 6,
                        {lstm.name: 5 for lstm in layout.lstms})
    smaller = surgery.shrink(model, kept)
    surgery.mask(model, kept)
    np.testing.assert_allclose(smaller(ids, training=False).numpy(),
                               model(ids, training=False).numpy(), atol=1e-5)
    small = surgery.Layout.of(smaller)
    assert small.embedding.output_dim == 6 and [l.units for l in small.lstms] == \
        [5] * len(layout.lstms)
    assert [w.shape for w in small.lstms[0].get_weights()] == [(6, 20), (5, 20), (20,)]
    assert small.head.get_weights()[0].shape[0] == 5
    assert [layer.name for layer in smaller.layers] == [layer.name for layer in model.layers]


def test_groups_are_one_unit_across_all_four_gates():
    model = random_weights(build_textgen_model(
        ModelConfig(embedding_dim=4, lstm_units=3, lstm_layers=1), VOCABULARY))
    lstm = surgery.Layout.of(model).lstms[0]
    kernel, recurrent, bias = lstm.get_weights()
    kernel[:, [1, 4, 7, 10]] = 0  # unit 1 in gates i, f, c, o
    recurrent[:, [1, 4, 7, 10]] = 0
    recurrent[1, :] = 0
    bias[[1, 4, 7, 10]] = 0
    lstm.set_weights([kernel, recurrent, bias])
    head = model.get_layer("next_token_logits")
    head_kernel, head_bias = head.get_weights()
    head_kernel[1] = 0
    head.set_weights([head_kernel, head_bias])
    _, units = surgery.l2_scores(model)
    assert units["lstm_0"][1] == 0 and np.all(units["lstm_0"][[0, 2]] > 0)
    kept = surgery.plan(surgery.l2_scores(model), 4, {"lstm_0": 2})
    assert kept.units["lstm_0"].tolist() == [0, 2]


def test_taylor_scores_rank_a_silent_unit_last():
    model = random_weights(build_sentiment_model(
        ModelConfig(embedding_dim=4, lstm_units=4, dropout=0, embedding_dropout=0),
        VOCABULARY, LENGTH, 2))
    lstm = surgery.Layout.of(model).lstms[0]
    kept = surgery.Plan(np.arange(4), {lstm.name: np.array([0, 1, 3])})
    surgery.mask(model, kept)  # unit 2 now outputs 0 at every step
    rng = np.random.default_rng(0)
    batches = [(rng.integers(1, VOCABULARY, size=(8, LENGTH)).astype("int32"),
                rng.integers(0, 2, size=(8,))) for _ in range(3)]
    _, units = surgery.taylor_scores(model, batches,
                                     tf_keras.losses.SparseCategoricalCrossentropy())
    assert units[lstm.name][2] == 0 and np.all(units[lstm.name][[0, 1, 3]] > 0)


def test_other_architectures_are_refused():
    inputs = tf_keras.Input(shape=(4,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))
    with pytest.raises(surgery.SurgeryError, match="needs Embedding, LSTM..., Dense"):
        surgery.Layout.of(model)


@pytest.mark.slow
def test_the_shrunk_tflite_has_smaller_tensors(tmp_path):
    from pipeline import litert
    from pipeline.config import PipelineConfig, TokenizerConfig
    from pipeline.stages import convert
    from pipeline.tasks.sentiment import SentimentTask
    model = random_weights(build_sentiment_model(ModelConfig(embedding_dim=10, lstm_units=8),
                                                 VOCABULARY, LENGTH, 2))
    layout = surgery.Layout.of(model)
    smaller = surgery.shrink(model, surgery.plan(surgery.l2_scores(model), 6,
                                                 {layout.lstms[0].name: 4}))
    config = PipelineConfig(tokenizer=TokenizerConfig(max_length=LENGTH))
    path = tmp_path / "model.tflite"
    path.write_bytes(convert.to_tflite(
        SentimentTask().tflite_programs(smaller, config)["model"], smaller, "float"))
    interpreter = litert._inspector(path)
    lstm = next(op for op in interpreter._get_ops_details() if op["op_name"] == litert.FUSED_LSTM)
    shapes = [tuple(interpreter.get_tensor_details()[i]["shape"]) for i in lstm["inputs"][1:9]]
    assert shapes == [(4, 6)] * 4 + [(4, 4)] * 4  # input-to-gate, then recurrent-to-gate
    gather = next(op for op in interpreter._get_ops_details() if op["op_name"] == "GATHER")
    assert tuple(interpreter.get_tensor_details()[gather["inputs"][0]]["shape"]) == \
        (VOCABULARY, 6)


@pytest.mark.slow
def test_the_shrunk_step_model_carries_smaller_states(tmp_path):
    from pipeline import generation
    from pipeline.stages import convert
    from pipeline.tasks import textgen
    model = random_weights(build_textgen_model(
        ModelConfig(embedding_dim=8, lstm_units=8, lstm_layers=2), VOCABULARY))
    kept = surgery.plan(surgery.l2_scores(model), 4, {"lstm_0": 5, "lstm_1": 3})
    smaller = surgery.shrink(model, kept)
    path = tmp_path / "step.tflite"
    path.write_bytes(convert.to_tflite(textgen.step_function(smaller), smaller, "float"))
    runner = generation.StepRunner(path)
    assert runner.state_shapes == {"h_0": (1, 5), "c_0": (1, 5), "h_1": (1, 3), "c_1": (1, 3)}
    window = np.arange(1, 9)
    surgery.mask(model, kept)
    expected = model(window[None], training=False).numpy()[0]
    state = runner.initial_state()
    for position, token in enumerate(window):
        logits, state = runner(int(token), state)
        np.testing.assert_allclose(logits, expected[position], atol=1e-4)



@pytest.mark.parametrize("name, model", CASES, ids=[name for name, _ in CASES])
def test_rotating_to_principal_directions_keeps_the_outputs(name, model):
    random_weights(model, seed=3)
    ids = np.random.default_rng(4).integers(1, VOCABULARY, size=(5, LENGTH)).astype("int32")
    before = model(ids, training=False).numpy()
    table = surgery.Layout.of(model).embedding.get_weights()[0]
    counts = np.random.default_rng(5).integers(0, 50, size=VOCABULARY).astype(float)
    shares = surgery.rotate_to_principal(model, counts)
    np.testing.assert_allclose(model(ids, training=False).numpy(), before, atol=1e-5)
    rotated = surgery.Layout.of(model).embedding.get_weights()[0]
    assert not np.allclose(rotated, table, atol=1e-3)
    # dimension k carries the k-th largest count-weighted share, and the shares add to 1
    weighted = np.sum(counts[:, None] * rotated.astype(np.float64) ** 2, axis=0)
    np.testing.assert_allclose(weighted / weighted.sum(), shares, atol=1e-5)
    assert np.all(np.diff(shares) <= 1e-9) and shares.sum() == pytest.approx(1.0)


def test_after_rotation_a_cut_to_the_used_words_dimensions_changes_nothing_on_them():
    """Two words make up the training text: two rotated dimensions hold all they feed the
    LSTM, so keeping only those leaves sentences of those words exactly where they were,
    while keeping two raw axes (ranked by L2, as before) does not."""
    model = random_weights(build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=6),
                                                 VOCABULARY, LENGTH, 2), seed=6)
    used = [4, 9]
    ids = np.random.default_rng(7).choice(used, size=(6, LENGTH)).astype("int32")
    before = model(ids, training=False).numpy()
    layout = surgery.Layout.of(model)
    units = {lstm.name: lstm.units for lstm in layout.lstms}
    raw = surgery.shrink(model, surgery.plan(surgery.l2_scores(model), 2, units))
    assert np.abs(raw(ids, training=False).numpy() - before).max() > 1e-3
    counts = np.zeros(VOCABULARY)
    counts[used] = [30, 10]
    surgery.rotate_to_principal(model, counts)
    rotated = surgery.shrink(model, surgery.Plan(np.arange(2), {
        name: np.arange(size) for name, size in units.items()}))
    np.testing.assert_allclose(rotated(ids, training=False).numpy(), before, atol=1e-5)


def test_counts_that_do_not_fit_the_embedding_are_refused():
    model = random_weights(build_textgen_model(ModelConfig(embedding_dim=4, lstm_units=3),
                                               VOCABULARY))
    with pytest.raises(surgery.SurgeryError, match="do not weight the embedding's 30 rows"):
        surgery.rotate_to_principal(model, np.ones(VOCABULARY - 1))
    with pytest.raises(surgery.SurgeryError, match="total 0"):
        surgery.rotate_to_principal(model, np.zeros(VOCABULARY))


def test_token_counts_cover_one_epoch_of_the_stream_and_leave_padding_out():
    from pipeline.methods.structured import token_counts
    from pipeline.tasks.base import FitData
    from pipeline.tasks.sentiment import shuffled_batches
    x = np.array([[0, 0, 3, 4], [0, 2, 3, 3], [1, 1, 1, 1]], dtype="int32")
    y = np.zeros(3, dtype="int32")
    fit = FitData(shuffled_batches(x, y, 2, seed=1), {}, steps_per_epoch=2)
    assert token_counts(fit, 6, padding_id=0).tolist() == [0, 4, 1, 3, 1, 0]
    assert token_counts(fit, 6, padding_id=None).tolist() == [3, 4, 1, 3, 1, 0]


def test_a_rounded_embedding_ships_as_few_int8_codes_that_gzip_smaller(tmp_path):
    """--structured_embedding_levels=5: every value becomes a multiple of max/5, which
    symmetric int8 maps to 11 codes; a table of random 8-bit codes barely compresses."""
    import gzip

    from pipeline import litert
    from pipeline.config import PipelineConfig, TokenizerConfig
    from pipeline.stages import convert
    from pipeline.tasks.sentiment import SentimentTask
    words = 600  # the converter quantizes tensors of 1,024 elements or more

    def int8_embedding(model, name):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert.to_tflite(SentimentTask().tflite_programs(model, PipelineConfig(
            tokenizer=TokenizerConfig(max_length=LENGTH)))["model"], model, "int8"))
        interpreter = litert._inspector(path)
        gather = next(op for op in interpreter._get_ops_details() if op["op_name"] == "GATHER")
        codes = interpreter.get_tensor(gather["inputs"][0])
        assert codes.dtype == np.int8 and codes.shape == (words, 10)
        return codes

    model = random_weights(build_sentiment_model(ModelConfig(embedding_dim=10, lstm_units=8),
                                                 words, LENGTH, 2), seed=8)
    table = surgery.Layout.of(model).embedding.get_weights()[0]
    plain = int8_embedding(model, "plain")
    step = surgery.round_embedding(model, 5)
    rounded = surgery.Layout.of(model).embedding.get_weights()[0]
    assert step == pytest.approx(np.abs(table).max() / 5)
    assert np.abs(rounded - table).max() <= step / 2 + 1e-6
    assert len(np.unique(np.round(rounded / step))) == 11  # -5 ... 5
    codes = int8_embedding(model, "rounded")
    assert len(np.unique(codes)) == 11 and np.abs(codes).max() == 127
    assert len(gzip.compress(codes.tobytes(), 9)) < 0.6 * len(gzip.compress(plain.tobytes(), 9))


def test_exact_rows_keep_their_values_while_the_rest_round():
    model = random_weights(build_textgen_model(ModelConfig(embedding_dim=6, lstm_units=3),
                                               VOCABULARY), seed=9)
    table = surgery.Layout.of(model).embedding.get_weights()[0]
    step = surgery.round_embedding(model, 3, exact_rows=[2, 7])
    rounded = surgery.Layout.of(model).embedding.get_weights()[0]
    np.testing.assert_array_equal(rounded[[2, 7]], table[[2, 7]])
    others = np.setdiff1d(np.arange(VOCABULARY), [2, 7])
    np.testing.assert_allclose(rounded[others] / step, np.round(rounded[others] / step),
                               atol=1e-5)
    assert not np.allclose(rounded[others], table[others])
    surgery.Layout.of(model).embedding.set_weights([np.zeros_like(table)])
    assert surgery.round_embedding(model, 3) == 0.0  # nothing to round, and no division by 0
    assert not surgery.Layout.of(model).embedding.get_weights()[0].any()


@pytest.mark.parametrize("dimensions, float_lstms", [(8, 1), (16, 0)])
def test_an_lstm_with_gate_blocks_under_1024_weights_is_reported_float(
        dimensions, float_lstms, tmp_path):
    """The converter leaves tensors under 1,024 elements float: with 64 units, 8 inputs
    (64 x 8 = 512 per gate) keep the whole LSTM float in the int8 file; 16 do not."""
    from pipeline import litert
    from pipeline.config import PipelineConfig, TokenizerConfig
    from pipeline.stages import convert
    from pipeline.tasks.sentiment import SentimentTask
    model = random_weights(build_sentiment_model(
        ModelConfig(embedding_dim=dimensions, lstm_units=64), 600, LENGTH, 2))
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(convert.to_tflite(SentimentTask().tflite_programs(model, PipelineConfig(
        tokenizer=TokenizerConfig(max_length=LENGTH)))["model"], model, "int8"))
    assert litert.float_lstms(path) == float_lstms


def test_paired_latency_times_the_example_it_is_given(tmp_path):
    """Sentiment latency is timed on a real sentence: with a zero padding row (as
    --structured_embedding_levels leaves it) all-padding input lets LiteRT skip work."""
    from pipeline import litert
    from pipeline.config import PipelineConfig, TokenizerConfig
    from pipeline.stages import convert
    from pipeline.tasks.sentiment import SentimentTask
    model = random_weights(build_sentiment_model(ModelConfig(embedding_dim=6, lstm_units=4),
                                                 VOCABULARY, LENGTH, 2))
    path = tmp_path / "model.tflite"
    path.write_bytes(convert.to_tflite(SentimentTask().tflite_programs(model, PipelineConfig(
        tokenizer=TokenizerConfig(max_length=LENGTH)))["model"], model, "float"))
    interpreter = litert.Runner(path).interpreter
    ids = np.arange(1, LENGTH + 1, dtype="int32")
    litert.set_timing_inputs(interpreter, np.random.default_rng(0), ids)
    assert interpreter.get_tensor(interpreter.get_input_details()[0]["index"]).ravel().tolist() \
        == ids.tolist()
    paired = litert.paired_latency(path, path, runs=9, ids=ids)
    assert paired["inputs"].startswith("a test example's ids") and paired["ratio"] > 0
    assert litert.paired_latency(path, path, runs=9)["inputs"].startswith("zero ids")


def test_taylor_importance_reads_length_bucketed_batches_at_the_models_width():
    from pipeline.methods.structured import full_width
    from pipeline.tasks.sentiment import bucketed_batches
    tf_keras.utils.set_random_seed(0)
    model = build_sentiment_model(ModelConfig(embedding_dim=8, lstm_units=8), VOCABULARY,
                                  LENGTH, 2)
    ids = np.zeros((64, LENGTH), np.int32)
    ids[:, -2:] = np.random.default_rng(0).integers(2, VOCABULARY, (64, 2))  # short texts
    batches = [(x.numpy(), y.numpy()) for x, y in
               bucketed_batches(ids, np.arange(64) % 2, 16, seed=0, padding_id=0).take(8)]
    assert min(x.shape[1] for x, _ in batches) < LENGTH  # some were cut
    padded = full_width(batches, LENGTH, 0)
    assert all(x.shape == (16, LENGTH) for x, _ in padded)
    assert all((p[:, -2:] == x[:, -2:]).all() for (p, _), (x, _) in zip(padded, batches))
    embedding, lstm = surgery.taylor_scores(model, padded,
                                            tf_keras.losses.SparseCategoricalCrossentropy())
    assert embedding.shape == (8,) and lstm["lstm_0"].shape == (8,)
