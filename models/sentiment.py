"""Embedding → stacked LSTM → Dense softmax classifier over fixed-length, left-padded ids."""
from __future__ import annotations

import tf_keras


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
    hidden = tf_keras.layers.Embedding(
        vocabulary_size, config.embedding_dim,
        embeddings_regularizer=regularizers.get("embeddings"), name="embedding")(ids)
    if config.embedding_dropout:
        hidden = tf_keras.layers.Dropout(config.embedding_dropout,
                                         name="embedding_dropout")(hidden)
    for index in range(config.lstm_layers):
        last = index == config.lstm_layers - 1
        every_step = not last or config.pooling == "max"
        hidden = tf_keras.layers.LSTM(
            config.lstm_units, return_sequences=every_step,
            kernel_regularizer=regularizers.get("lstm_kernel"),
            recurrent_regularizer=regularizers.get("recurrent_kernel"),
            name=f"lstm_{index}")(hidden)
        if config.dropout:
            hidden = tf_keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    if config.pooling == "max":
        hidden = tf_keras.layers.GlobalMaxPooling1D(name="max_over_time")(hidden)
    probabilities = tf_keras.layers.Dense(
        num_labels, activation="softmax", kernel_regularizer=regularizers.get("dense_kernel"),
        name="classifier")(hidden)
    return tf_keras.Model(ids, probabilities, name="sentiment_lstm")
