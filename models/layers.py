"""The layers both models share: embedding (+ dropout) and a stack of LSTMs (+ dropout)."""
from __future__ import annotations

import tf_keras

# Dropout draws from a tf.random.Generator whose state the training loop sets per epoch
# (pipeline.determinism), so a resumed run draws the masks an uninterrupted one did.
RNG_TYPE = "stateful"


def embed(ids, config, vocabulary_size: int, regularizers: dict):
    hidden = tf_keras.layers.Embedding(
        vocabulary_size, config.embedding_dim,
        embeddings_regularizer=regularizers.get("embeddings"), name="embedding")(ids)
    if config.embedding_dropout:
        hidden = tf_keras.layers.Dropout(config.embedding_dropout, rng_type=RNG_TYPE,
                                         name="embedding_dropout")(hidden)
    return hidden


def lstm_stack(hidden, config, regularizers: dict, last_returns_sequences: bool):
    """`config.lstm_layers` LSTMs named lstm_0, lstm_1, ..., each followed by dropout.

    With `config.bidirectional` each is a Bidirectional layer of that name whose two
    directions (forward_lstm_i, backward_lstm_i) are concatenated.
    """
    for index in range(config.lstm_layers):
        last = index == config.lstm_layers - 1
        lstm = tf_keras.layers.LSTM(
            config.lstm_units, return_sequences=not last or last_returns_sequences,
            kernel_regularizer=regularizers.get("lstm_kernel"),
            recurrent_regularizer=regularizers.get("recurrent_kernel"),
            name=f"lstm_{index}")
        if config.bidirectional:
            lstm = tf_keras.layers.Bidirectional(lstm, name=f"lstm_{index}")
        hidden = lstm(hidden)
        if config.dropout:
            hidden = tf_keras.layers.Dropout(config.dropout, rng_type=RNG_TYPE,
                                             name=f"dropout_{index}")(hidden)
    return hidden
