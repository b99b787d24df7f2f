"""Character language model: Embedding → stacked LSTM → Dense logits at every position."""
from __future__ import annotations

import tf_keras

from models.layers import embed, lstm_stack


def build_textgen_model(config, vocabulary_size: int,
                        regularizers: dict | None = None) -> tf_keras.Model:
    """Builds the window model from a ModelConfig-like object.

    It reads a window of characters of any length and predicts the next character at every
    position (logits, not probabilities): training and scoring may use different window
    lengths. TFLite conversion fixes the length, which gives it the fused LSTM kernel.
    """
    ids = tf_keras.Input(shape=(None,), dtype="int32", name="token_ids")
    regularizers = regularizers or {}
    hidden = embed(ids, config, vocabulary_size, regularizers)
    hidden = lstm_stack(hidden, config, regularizers, last_returns_sequences=True)
    logits = tf_keras.layers.Dense(vocabulary_size,
                                   kernel_regularizer=regularizers.get("dense_kernel"),
                                   name="next_token_logits")(hidden)
    return tf_keras.Model(ids, logits, name="textgen_lstm")


def lstm_layers(window_model: tf_keras.Model) -> list:
    return [layer for layer in window_model.layers
            if isinstance(layer, tf_keras.layers.LSTM)]


def build_step_model(window_model: tf_keras.Model) -> tf_keras.Model:
    """The window model's weights, one token at a time, with every LSTM state in and out.

    Inputs: token ids [batch, 1], then h and c of each layer [batch, units]. Outputs: the
    next-token logits [batch, vocabulary], then the new h and c of each layer. Dropout is
    left out: this model only runs inference.
    """
    embedding = window_model.get_layer("embedding")
    head = window_model.get_layer("next_token_logits")
    token = tf_keras.Input(shape=(1,), dtype="int32", name="token_id")
    inputs, outputs = [token], []
    step_embedding = tf_keras.layers.Embedding(embedding.input_dim, embedding.output_dim,
                                               name="embedding")
    hidden = step_embedding(token)
    copies = [(step_embedding, embedding)]
    for index, trained in enumerate(lstm_layers(window_model)):
        state = [tf_keras.Input(shape=(trained.units,), name=f"{kind}_{index}")
                 for kind in ("h", "c")]
        inputs += state
        cell = tf_keras.layers.LSTM(trained.units, return_sequences=True, return_state=True,
                                    name=f"lstm_{index}")
        hidden, h, c = cell(hidden, initial_state=state)
        outputs += [h, c]
        copies.append((cell, trained))
    step_head = tf_keras.layers.Dense(head.units, name="next_token_logits")
    logits = tf_keras.layers.Reshape((head.units,), name="logits")(step_head(hidden))
    copies.append((step_head, head))
    model = tf_keras.Model(inputs, [logits, *outputs], name="textgen_step")
    for copy, source in copies:
        copy.set_weights(source.get_weights())
    return model
