"""The sentiment model as a file MediaPipe Tasks' TextClassifier runs with no project code.

MediaPipe reads TFLite metadata: a RegexTokenizer (a delimiter regex and a vocabulary file of
"token id" lines, looked up case-sensitively) on the one int32 input, and a label file on
the output. Its tokenizer is not the pipeline's, so the file differs from model.tflite in
four documented ways, each measured in BUILD.md ("Standard clients"):
- Its LSTMs are unrolled, so no state survives from one text to the next (MediaPipe does
  not reset the fused kernel's state tensors between texts).
- MediaPipe pads on the right; the graph first moves the ids to the right end (left
  padding, as the model was trained), so the LSTM reads pads first, as in training.
- Delimiters (whitespace and punctuation, the pipeline's split characters) are dropped, so
  the model never sees punctuation. Most training sentences end with one (95% of SST-2's end
  with "."), and the last step weighs most in an LSTM: the graph appends the id of "." after
  the text.
- Lookup is exact: the vocabulary file lists each word lower-case, Capitalised and
  UPPER-CASE, and the stems MediaPipe cuts from English negations at the apostrophe
  ("didn" of "didn't") as the id of "n", the piece that carries the negation in the
  pipeline's "did n ' t".
Since the model never sees punctuation there, it is first fine-tuned for one epoch on the
training texts as MediaPipe tokenizes them (pruned weights stay zero), and the tuned copy
is kept when it does better on the validation texts (tokenized the same way).
"""
from __future__ import annotations

import io
import unicodedata
import zipfile

import numpy as np

# RE2, as MediaPipe compiles it: the pipeline's split characters (tokenizer.json step 2).
DELIMITER_PATTERN = (r"[\t\n\f\r \p{Cc}\p{Cf}!-/:-@\[-`{-~\p{P}]+")
PAD, UNKNOWN = "<PAD>", "<UNKNOWN>"
NEGATION_STEMS = ("ain", "aren", "can", "couldn", "didn", "doesn", "don", "hadn", "hasn",
                  "haven", "isn", "mightn", "mustn", "needn", "shan", "shouldn", "wasn",
                  "weren", "won", "wouldn")
VOCABULARY_FILE, LABELS_FILE = "mediapipe_vocab.txt", "labels.txt"
MIN_PARSER_VERSION = "1.2.1"  # the first metadata parser that reads RegexTokenizerOptions
# Associated files are stored with a fixed time, so a rerun writes the same bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def vocabulary_text(vocabulary: list[str], pad_id: int, oov_id: int) -> str:
    """MediaPipe's vocabulary file: "<PAD> id", "<UNKNOWN> id", then every spelling it can
    look up with the pipeline id it stands for (an earlier, more frequent word wins)."""
    return "".join(f"{token} {number}\n"
                   for token, number in lookup_table(vocabulary, pad_id, oov_id).items())


def lookup_table(vocabulary: list[str], pad_id: int, oov_id: int) -> dict[str, int]:
    table = {PAD: pad_id, UNKNOWN: oov_id}
    for number, word in enumerate(vocabulary):
        if number in (pad_id, oov_id):
            continue
        for spelling in (word, word.capitalize(), word.upper()):
            if spelling and not any(c.isspace() for c in spelling):
                table.setdefault(spelling, number)
    if "n" in vocabulary:
        for stem in NEGATION_STEMS:
            for spelling in (stem, stem.capitalize(), stem.upper()):
                table.setdefault(spelling, vocabulary.index("n"))
    return table


def _is_delimiter(char: str) -> bool:
    """DELIMITER_PATTERN's class, character by character (RE2's \\s is [\\t\\n\\f\\r ])."""
    code = ord(char)
    return (char in "\t\n\f\r " or 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96
            or 123 <= code <= 126 or unicodedata.category(char) in ("Cc", "Cf")
            or unicodedata.category(char).startswith("P"))


def regex_tokens(text: str) -> list[str]:
    """MediaPipe's RegexTokenizer in Python: the runs of non-delimiter characters."""
    tokens, current = [], []
    for char in text:
        if _is_delimiter(char):
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    return tokens + (["".join(current)] if current else [])


def client_inputs(texts: list[str], table: dict[str, int], max_length: int,
                  end_id: int | None) -> np.ndarray:
    """What the MediaPipe file's graph feeds the model for each text: the first words'
    ids, then end_id, padded on the left (the fine-tuning inputs)."""
    pad_id, oov_id, ends = table[PAD], table[UNKNOWN], 0 if end_id is None else 1
    rows = np.full((len(texts), max_length), pad_id, np.int32)
    for row, text in zip(rows, texts):
        ids = [table.get(token, oov_id) for token in regex_tokens(text)][:max_length - ends]
        ids += [] if end_id is None else [end_id]
        row[max_length - len(ids):] = ids
    return rows


def stateless_copy(model):
    """The model with every LSTM unrolled: plain ops per time step instead of the fused
    kernel, whose state tensors carry the last text's final state into the next invocation
    (MediaPipe never resets them; measured: the same text scores 0.97, then 0.21 after a
    negative one)."""
    import tf_keras

    def unrolled(config: dict) -> dict:
        if config.get("class_name") == "LSTM":
            return {**config, "config": {**config["config"], "unroll": True}}
        if isinstance(config.get("config"), dict) and "layer" in config["config"]:
            return {**config, "config": {**config["config"],
                                         "layer": unrolled(config["config"]["layer"])}}
        return config

    def clone(layer):
        described = unrolled({"class_name": type(layer).__name__, "config": layer.get_config()})
        return type(layer).from_config(described["config"])

    copy = tf_keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def classifier_function(model, max_length: int, pad_id: int, end_id: int | None):
    """The graph MediaPipe runs: right-padded ids → the text's ids then `end_id` (when the
    vocabulary has "."), moved to the right end → the (stateless) model's probabilities; a
    text with no token gets equal probabilities, as pipeline.predict answers it."""
    import tensorflow as tf

    labels = int(model.output_shape[-1])
    ends, end = (0, pad_id) if end_id is None else (1, end_id)

    @tf.function(input_signature=[tf.TensorSpec([1, max_length], tf.int32, name="token_ids")])
    def classify(ids):
        row = ids[0]
        words = tf.reduce_sum(tf.cast(tf.not_equal(row, pad_id), tf.int32))
        kept = tf.minimum(words, max_length - ends)
        positions = tf.range(max_length, dtype=tf.int32)
        ended = tf.where(positions < kept, row, tf.where(positions == kept, end, pad_id))
        # Rotate by the ids used: the pads come first, the text (and its end id) last.
        aligned = tf.gather(ended, tf.math.floormod(positions + kept + ends, max_length))
        probabilities = model(aligned[None, :], training=False)
        return tf.where(words > 0, probabilities, tf.fill([1, labels], 1.0 / labels))
    return classify.get_concrete_function()


def end_id_of(vocabulary: list[str]) -> int | None:
    return vocabulary.index(".") if "." in vocabulary else None


def fine_tuned(model, train: dict, validation: dict, vocabulary: list[str], spec: dict,
               learning_rate: float, batch_size: int, seed: int):
    """(model, report): a copy trained one epoch on the inputs MediaPipe's tokenizer gives
    the training texts, exact zeros (pruned weights) kept zero; kept only if it classifies
    the validation texts (tokenized the same way) better. `train` and `validation` hold
    "texts" and "labels"."""
    import tf_keras

    table = lookup_table(vocabulary, spec["pad_id"], spec["oov_id"])

    def inputs(split: dict) -> tuple[np.ndarray, np.ndarray]:
        return (client_inputs(split["texts"], table, spec["max_length"], end_id_of(vocabulary)),
                np.asarray(split["labels"]))

    (ids, labels), (check_ids, check_labels) = inputs(train), inputs(validation)

    def accuracy(candidate) -> float:
        predicted = candidate.predict(check_ids, batch_size=1024, verbose=0).argmax(axis=1)
        return float(np.mean(predicted == check_labels))

    tf_keras.utils.set_random_seed(seed)
    tuned = tf_keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    masks = [(weight, (weight.numpy() != 0).astype(weight.dtype.as_numpy_dtype))
             for weight in tuned.trainable_weights if not weight.numpy().all()]
    tuned.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy")
    keep_zeros = tf_keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_: [
        weight.assign(weight * mask) for weight, mask in masks])
    tuned.fit(ids, labels, batch_size=batch_size, epochs=1, verbose=0, callbacks=[keep_zeros])
    before, after = accuracy(model), accuracy(tuned)
    report = {"validation_texts": len(check_ids), "validation_accuracy_before": before,
              "validation_accuracy_after": after, "kept": after > before,
              "learning_rate": learning_rate, "epochs": 1}
    return (tuned if after > before else model), report


def classifier_file(model, vocabulary: list[str], labels: list[str], spec: dict, export: str,
                    convert) -> bytes:
    """The MediaPipe file of one export: `convert(concrete, model, export)` makes the
    flatbuffer (the convert stage's converter), then the metadata joins it."""
    stateless = stateless_copy(model)
    end_id = end_id_of(vocabulary)
    function = classifier_function(stateless, spec["max_length"], spec["pad_id"], end_id)
    return with_metadata(convert(function, stateless, export), vocabulary, labels,
                         spec["pad_id"], spec["oov_id"], "prune-pipeline sentiment LSTM",
                         "Classifies English text; see the bundle's manifest.json")


def with_metadata(flatbuffer: bytes, vocabulary: list[str], labels: list[str], pad_id: int,
                  oov_id: int, name: str, description: str) -> bytes:
    """The converted classifier with TFLite metadata and its associated files appended (a
    .tflite file that is also a zip archive, as MediaPipe's metadata extractor reads it)."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    from tensorflow.lite.python import schema_py_generated
    from tensorflow.lite.tools import flatbuffer_utils

    def associated(file_name: str, kind, text: str):
        entry = schema.AssociatedFileT()
        entry.name, entry.type, entry.description = file_name, kind, text
        return entry

    tokenizer = schema.ProcessUnitT()
    tokenizer.optionsType = schema.ProcessUnitOptions.RegexTokenizerOptions
    tokenizer.options = schema.RegexTokenizerOptionsT()
    tokenizer.options.delimRegexPattern = DELIMITER_PATTERN
    tokenizer.options.vocabFile = [associated(
        VOCABULARY_FILE, schema.AssociatedFileType.VOCABULARY,
        "token id per line; each word in three casings")]
    def feature_tensor(name: str, description: str):
        tensor = schema.TensorMetadataT()
        tensor.name, tensor.description = name, description
        tensor.content = schema.ContentT()
        tensor.content.contentPropertiesType = schema.ContentProperties.FeatureProperties
        tensor.content.contentProperties = schema.FeaturePropertiesT()
        return tensor

    text_input = feature_tensor("token_ids", "The text's token ids, padded on the right with <PAD>")
    text_input.processUnits = [tokenizer]
    scores = feature_tensor("probability", "Softmax probability of each label")
    scores.associatedFiles = [associated(LABELS_FILE, schema.AssociatedFileType.TENSOR_AXIS_LABELS,
                                         "One label per line, in output order")]
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [text_input], [scores]
    metadata = schema.ModelMetadataT()
    metadata.name, metadata.description = name, description
    metadata.version, metadata.minParserVersion = "1", MIN_PARSER_VERSION
    metadata.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), b"M001")

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema_py_generated.BufferT()
    buffer.data = np.frombuffer(bytes(builder.Output()), np.uint8)
    model.buffers.append(buffer)
    entry = schema_py_generated.MetadataT()
    entry.name, entry.buffer = b"TFLITE_METADATA", len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"TFLITE_METADATA"]
    model.metadata.append(entry)
    archive = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    archive.seek(0, io.SEEK_END)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_STORED) as files:  # MediaPipe: stored only
        for file_name, text in ((VOCABULARY_FILE, vocabulary_text(vocabulary, pad_id, oov_id)),
                                (LABELS_FILE, "".join(f"{label}\n" for label in labels))):
            files.writestr(zipfile.ZipInfo(file_name, ZIP_TIME), text.encode("utf-8"))
    return archive.getvalue()

