"""Embedding → stacked LSTM → Dense softmax classifier over fixed-length, left-padded ids."""
from __future__ import annotations

import tf_keras

from models.layers import embed, lstm_stack


def build_sentiment_model(config, vocabulary_size: int, sequence_length: int,
                          num_labels: int, regularizers: dict | None = None) -> tf_keras.Model:
    """Builds the classifier from a ModelConfig-like object.

    The text is summarised by the last LSTM state (`pooling="last"`) or by the maximum of
    every state over time (`"max"`). `regularizers` maps "embeddings", "lstm_kernel",
    "recurrent_kernel" and "dense_kernel" to tf_keras regularizers.

    The sequence length is part of the input shape so that the TFLite converter can emit
    the fused UNIDIRECTIONAL_SEQUENCE_LSTM kernel.
    """
    ids = tf_keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    regularizers = regularizers or {}
    hidden = embed(ids, config, vocabulary_size, regularizers)
    hidden = lstm_stack(hidden, config, regularizers,
                        last_returns_sequences=config.pooling == "max")
    if config.pooling == "max":
        hidden = tf_keras.layers.GlobalMaxPooling1D(name="max_over_time")(hidden)
    probabilities = tf_keras.layers.Dense(
        num_labels, activation="softmax", kernel_regularizer=regularizers.get("dense_kernel"),
        name="classifier")(hidden)
    return tf_keras.Model(ids, probabilities, name="sentiment_lstm")
