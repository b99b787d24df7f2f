"""Dataset resolution (local mirror first, then TFDS), row validation and splits.

A registered name resolves from `<data_dir>/<name>/` before TFDS is asked; a file URI
(`tsv:`, `csv:`, `jsonl:`) names one file that is split here with a fixed seed. Rows
with no label, an unknown label or empty text are counted; too many of them is an error
that names the file and the first offending lines. Language-model corpora (`textgen`) are
one text each, split by characters the way TFDS splits tiny_shakespeare (90/5/5).
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.config import DataConfig

FILE_SCHEMES = ("tsv", "csv", "jsonl")
MIN_ROWS = 10  # per split: fewer cannot train or measure anything
FIELD_LIMIT = 16 << 20  # bytes per CSV/TSV field; csv's default (128 KiB) is below a long review
TEXT_SCHEME = "text"
TEXT_TRAIN_FRACTION = 0.9  # then validation and test share the rest equally, as in TFDS


class DataError(RuntimeError):
    """The data cannot be found or read; the message names the input and the fix."""


@dataclasses.dataclass(frozen=True)
class RegisteredDataset:
    mirror_files: dict[str, str]
    text_columns: tuple[str, ...]
    label_column: str
    label_values: tuple[str, ...]
    label_names: tuple[str, ...]
    tfds_name: str
    tfds_splits: dict[str, str]
    download_url: str  # where TFDS downloads it from: probed before TFDS is asked


REGISTRY = {
    # SST-2's shared copy spells the text column `sentence` in train and `content` in dev
    # and test; GLUE's test split on TFDS has no labels, so TFDS's validation is our test.
    "sst2": RegisteredDataset(
        mirror_files={"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"},
        text_columns=("sentence", "content"), label_column="label",
        label_values=("0", "1"), label_names=("negative", "positive"),
        tfds_name="glue/sst2", tfds_splits={"train": "train", "test": "validation"},
        download_url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"),
    "imdb_reviews": RegisteredDataset(
        mirror_files={"train": "train.tsv", "test": "test.tsv"},
        text_columns=("text",), label_column="label",
        label_values=("0", "1"), label_names=("negative", "positive"),
        tfds_name="imdb_reviews", tfds_splits={"train": "train", "test": "test"},
        download_url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"),
}


@dataclasses.dataclass(frozen=True)
class RegisteredCorpus:
    mirror_file: str
    tfds_name: str
    download_url: str


CORPORA = {
    # TFDS builds tiny_shakespeare from this same file, one example per split.
    "tiny_shakespeare": RegisteredCorpus(
        mirror_file="input.txt", tfds_name="tiny_shakespeare",
        download_url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                     "tinyshakespeare/input.txt"),
}


@dataclasses.dataclass
class Examples:
    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> "Examples":
        return Examples([self.texts[i] for i in indices], self.labels[np.asarray(indices)])


@dataclasses.dataclass
class Splits:
    train: Examples
    validation: Examples
    test: Examples
    label_names: tuple[str, ...]
    sources: dict[str, str]
    malformed: dict[str, int]
    validation_source: str


def parse_file_uri(dataset: str, schemes=FILE_SCHEMES) -> tuple[str, Path] | None:
    scheme, sep, rest = dataset.partition(":")
    if sep and scheme in schemes:
        return scheme, Path(rest).expanduser()
    return None


def check_labelled_dataset(config: DataConfig) -> None:
    """check_dataset for labelled texts: a registered name (REGISTRY) or a table file, which
    needs its label values."""
    if check_dataset(config, REGISTRY, FILE_SCHEMES) and len(config.labels) < 2:
        raise DataError(f"--dataset={config.dataset} needs --labels: the label values in class "
                        "order (at least two, e.g. --labels=0,1), so that a typo in one row "
                        "cannot become a class of its own")


def check_corpus(config: DataConfig) -> None:
    """check_dataset for one running text: a registered corpus (CORPORA) or a text file."""
    check_dataset(config, CORPORA, (TEXT_SCHEME,))


def check_dataset(config: DataConfig, names, schemes: tuple[str, ...]) -> Path | None:
    """Fails fast on a --dataset that is neither one of the task's registered `names` nor
    a file URI of one of its `schemes`; returns the file, if it is one."""
    if config.data_dir and not Path(config.data_dir).expanduser().is_dir():
        raise DataError(f"--data_dir={config.data_dir} is not a folder; give the local mirror "
                        "that holds <dataset>/ (or leave it empty to use TFDS)")
    if config.dataset in names:
        spec = names[config.dataset]
        if (_mirror_dir(config) is None and config.tfds_download
                and not _tfds_prepared(config, spec.tfds_name)):
            _check_download(config, spec)
        return None
    uri = parse_file_uri(config.dataset, schemes)
    if uri is None:
        raise DataError(f"--dataset={config.dataset} is not a registered {config.task} "
                        f"dataset ({', '.join(sorted(names))}) nor a file URI "
                        f"({', '.join(s + ':PATH' for s in schemes)})")
    if not uri[1].is_file():
        raise DataError(f"--dataset={config.dataset}: file {uri[1]} does not exist")
    return uri[1]


PROBE_TIMEOUT_S = 5


def _tfds_prepared(config: DataConfig, tfds_name: str) -> bool:
    """Whether TFDS already holds the dataset (a version folder with its dataset_info)."""
    root = Path(config.tfds_data_dir or "~/tensorflow_datasets").expanduser() / tfds_name
    return any(root.glob("*/dataset_info.json"))


def _check_download(config: DataConfig, spec) -> None:
    """With no mirror and nothing prepared, TFDS would download; offline it retries for
    minutes and leaves partial folders. One short request first (through any configured
    proxy) turns that into an error within seconds."""
    import urllib.error
    import urllib.request
    try:
        request = urllib.request.Request(spec.download_url, method="HEAD")
        urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the server answered: the network is there
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        tried = (f"{Path(config.data_dir).expanduser() / config.dataset}"
                 if config.data_dir else "none (no --data_dir, no PIPELINE_DATA_DIR)")
        raise DataError(
            f"dataset {config.dataset!r} has no local copy (mirror: {tried}; TFDS "
            f"{spec.tfds_name!r}: not prepared) and cannot be downloaded ({spec.download_url} "
            f"did not answer within {PROBE_TIMEOUT_S} s: {reason}). Put the files in "
            f"<data_dir>/{config.dataset}/ and set PIPELINE_DATA_DIR (README, \"Data\"), or "
            "run once with network access") from None


def source_files(config: DataConfig) -> list[Path]:
    """The local files a run reads (empty when the data comes from TFDS)."""
    uri = parse_file_uri(config.dataset, FILE_SCHEMES + (TEXT_SCHEME,))
    if uri:
        return [uri[1]]
    mirror = _mirror_dir(config)
    if mirror is None:
        return []
    return [mirror / name for name in _mirror_files(config.dataset)]


def _mirror_files(dataset: str) -> tuple[str, ...]:
    if dataset in CORPORA:
        return (CORPORA[dataset].mirror_file,)
    return tuple(REGISTRY[dataset].mirror_files.values())


def _mirror_dir(config: DataConfig) -> Path | None:
    if not config.data_dir:
        return None
    folder = Path(config.data_dir).expanduser() / config.dataset
    if all((folder / name).is_file() for name in _mirror_files(config.dataset)):
        return folder
    return None


def _not_found(config: DataConfig, files: tuple[str, ...], tfds_name: str,
               error: Exception) -> DataError:
    tried = (f"{Path(config.data_dir).expanduser() / config.dataset}"
             if config.data_dir else "(no --data_dir and no PIPELINE_DATA_DIR set)")
    return DataError(
        f"dataset {config.dataset!r} was not found. Tried the local mirror {tried} "
        f"(needs {', '.join(files)}) and TFDS {tfds_name!r} "
        f"in {config.tfds_data_dir or 'the default TFDS data dir'} "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
        "Put the files in <data_dir>/" + config.dataset + "/ and pass --data_dir (or set "
        "PIPELINE_DATA_DIR), or run once with network access so TFDS can download it")


def _read_rows(path: Path, scheme: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """Returns the column names and (line number, row) pairs of a delimited or JSONL file."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: drop a BOM
            if scheme == "jsonl":
                try:
                    rows = [(number, row if isinstance(row, dict) else {})
                            for number, row in artifacts.json_lines(handle)]
                except artifacts.JsonLinesError as error:
                    raise DataError(f"{path}:{error}; a jsonl file holds one JSON object per "
                                    "line") from None
                columns = sorted({key for _, row in rows for key in row})
                return columns, rows
            delimiter = "\t" if scheme == "tsv" else ","
            quoting = csv.QUOTE_NONE if scheme == "tsv" else csv.QUOTE_MINIMAL
            csv.field_size_limit(FIELD_LIMIT)
            # strict: a quote never closed is an error, not every later row in one field
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=True)
            rows, complete = [], 0
            try:
                header = next(reader, None)
                if not header:
                    raise DataError(f"{path} is empty: expected a header line naming the "
                                    "columns")
                complete = reader.line_num
                for values in reader:
                    rows.append((reader.line_num, dict(zip(header, values))))
                    complete = reader.line_num
            except csv.Error as error:
                if "unexpected end of data" in str(error):
                    raise DataError(f"{path}:{complete + 1}: a quoted field that starts on "
                                    "this line is never closed (the rest of the file would "
                                    "become one field); fix the quote") from None
                raise DataError(f"{path}:{reader.line_num}: {error}; fix the line (a field "
                                f"may hold at most {FIELD_LIMIT >> 20} MiB)") from None
            return header, rows
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}); re-encode it as UTF-8") from None
    except OSError as error:
        raise DataError(f"data file {path} cannot be read ({error})") from None


def _validated_examples(path: Path, scheme: str, text_columns: tuple[str, ...],
                        label_column: str, label_values: tuple[str, ...],
                        max_malformed_fraction: float) -> tuple[Examples, int]:
    columns, rows = _read_rows(path, scheme)
    text_column = next((c for c in text_columns if c in columns), None)
    if text_column is None or label_column not in columns:
        raise DataError(f"{path}: expected a text column ({' or '.join(text_columns)}) and a "
                        f"label column ({label_column}), found columns {columns}; set "
                        "--text_column/--label_column")
    index = {value: i for i, value in enumerate(label_values)}
    texts, labels, problems = [], [], []
    for number, row in rows:
        text = row.get(text_column)
        label = row.get(label_column)
        label = "" if label is None else str(label).strip()
        if not label:
            problems.append(f"line {number}: missing label")
        elif label not in index:
            problems.append(f"line {number}: label {label!r} is not one of {list(label_values)}")
        elif isinstance(text, (dict, list, bool)):  # JSONL: str() would train on "{...}"
            problems.append(f"line {number}: the text is a JSON {type(text).__name__}, "
                            "not text")
        elif text is None or not str(text).strip():
            problems.append(f"line {number}: empty text")
        else:
            texts.append(str(text))
            labels.append(index[label])
    if rows and len(problems) > max_malformed_fraction * len(rows):
        shown = "; ".join(problems[:5])
        raise DataError(f"{path}: {len(problems)} of {len(rows)} rows are malformed, more than "
                        f"--max_malformed_fraction={max_malformed_fraction} allows ({shown}). "
                        "Fix the file or raise the threshold")
    if not texts:
        raise DataError(f"{path} holds no usable rows")
    return Examples(texts, np.asarray(labels, dtype=np.int32)), len(problems)


def _split_off(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = max(1, int(round(fraction * len(examples))))
    return examples.subset(np.sort(order[cut:])), examples.subset(np.sort(order[:cut]))


def _limit(examples: Examples, limit: int, seed: int) -> Examples:
    if not limit or limit >= len(examples):
        return examples
    order = np.random.default_rng(seed).permutation(len(examples))
    return examples.subset(np.sort(order[:limit]))


def _load_tfds(config: DataConfig, spec: RegisteredDataset) -> dict[str, Examples]:
    try:
        import tensorflow_datasets as tfds
        loaded = tfds.load(spec.tfds_name, split=list(spec.tfds_splits.values()),
                           data_dir=config.tfds_data_dir or None,
                           download=config.tfds_download)
    except Exception as error:  # TFDS raises many types when offline or missing.
        raise _not_found(config, tuple(spec.mirror_files.values()), spec.tfds_name,
                         error) from None
    text_key = "sentence" if "sst2" in spec.tfds_name else "text"
    result = {}
    for name, dataset in zip(spec.tfds_splits, loaded):
        texts, labels = [], []
        for row in dataset.as_numpy_iterator():
            texts.append(row[text_key].decode("utf-8"))
            labels.append(int(row["label"]))
        result[name] = Examples(texts, np.asarray(labels, dtype=np.int32))
    return result


def load_splits(config: DataConfig) -> Splits:
    """Reads, validates and splits the configured dataset into train/validation/test."""
    check_labelled_dataset(config)
    malformed: dict[str, int] = {}
    sources: dict[str, str] = {}
    uri = parse_file_uri(config.dataset)
    if uri:
        scheme, path = uri
        examples, malformed[str(path)] = _validated_examples(
            path, scheme, (config.text_column,), config.label_column, config.labels,
            config.max_malformed_fraction)
        sources[str(path)] = "train/validation/test"
        rest, test = _split_off(examples, config.test_fraction, config.data_seed)
        train, validation = _split_off(rest, config.validation_fraction, config.data_seed + 1)
        label_names, validation_source = config.labels, "held out of the file"
        parts = {"train": train, "validation": validation, "test": test}
    else:
        spec = REGISTRY[config.dataset]
        label_names = spec.label_names
        mirror = _mirror_dir(config)
        if mirror is not None:
            parts = {}
            for split, name in spec.mirror_files.items():
                path = mirror / name
                parts[split], malformed[str(path)] = _validated_examples(
                    path, "tsv", spec.text_columns, spec.label_column, spec.label_values,
                    config.max_malformed_fraction)
                sources[str(path)] = split
        else:
            parts = _load_tfds(config, spec)
            sources[f"tfds:{spec.tfds_name}"] = ",".join(spec.tfds_splits)
        if "validation" in parts:
            validation_source = spec.mirror_files["validation"]
        else:
            parts["train"], parts["validation"] = _split_off(
                parts["train"], config.validation_fraction, config.data_seed)
            validation_source = (f"{config.validation_fraction:.0%} of train, held out with "
                                 f"seed {config.data_seed}")
    splits = Splits(
        train=_limit(parts["train"], config.train_limit, config.data_seed),
        validation=_limit(parts["validation"], config.eval_limit, config.data_seed),
        test=_limit(parts["test"], config.eval_limit, config.data_seed),
        label_names=tuple(label_names), sources=sources, malformed=malformed,
        validation_source=validation_source)
    check_splits(splits)
    return splits


def check_splits(splits: Splits) -> None:
    """Every split large enough to mean something, every class present in training."""
    for name in ("train", "validation", "test"):
        count = len(getattr(splits, name))
        if count < MIN_ROWS:
            raise DataError(f"the {name} split has {count} usable rows, fewer than {MIN_ROWS}; "
                            f"give more data (sources: {', '.join(splits.sources)}) or lower "
                            "--validation_fraction/--test_fraction only if the file is large")
    missing = [name for index, name in enumerate(splits.label_names)
               if not np.any(splits.train.labels == index)]
    if missing:
        raise DataError(f"the train split has no example of label(s) {', '.join(missing)}; a "
                        "classifier needs every class (check --labels and the label column)")


@dataclasses.dataclass
class TextSplits:
    train: str
    validation: str
    test: str
    sources: dict[str, str]


def split_text(text: str) -> tuple[str, str, str]:
    """TFDS's tiny_shakespeare split: the first 90% of the characters, then two halves."""
    train_end = int(len(text) * TEXT_TRAIN_FRACTION)
    validation_end = train_end + (len(text) - train_end) // 2
    return text[:train_end], text[train_end:validation_end], text[validation_end:]


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}); re-encode it as UTF-8") from None
    if len(text) < 1000:
        raise DataError(f"{path} holds {len(text)} characters; a language model needs a "
                        "corpus of at least 1,000 (tiny_shakespeare has 1.1 million)")
    return text


def load_text_splits(config: DataConfig) -> TextSplits:
    """Reads a language-model corpus and splits it by characters into train/validation/test."""
    check_corpus(config)
    uri = parse_file_uri(config.dataset, (TEXT_SCHEME,))
    if uri:
        parts = split_text(_read_text(uri[1]))
        source = {str(uri[1]): "train/validation/test (90/5/5 by characters)"}
    else:
        spec = CORPORA[config.dataset]
        mirror = _mirror_dir(config)
        if mirror is not None:
            path = mirror / spec.mirror_file
            parts = split_text(_read_text(path))
            source = {str(path): "train/validation/test (90/5/5 by characters, as TFDS)"}
        else:
            parts = _load_tfds_text(config, spec)
            source = {f"tfds:{spec.tfds_name}": "train,validation,test"}
    train, validation, test = parts
    if config.train_limit:
        train = train[:config.train_limit]
    if config.eval_limit:
        validation, test = validation[:config.eval_limit], test[:config.eval_limit]
    return TextSplits(train, validation, test, source)


def _load_tfds_text(config: DataConfig, spec: RegisteredCorpus) -> tuple[str, str, str]:
    try:
        import tensorflow_datasets as tfds
        loaded = tfds.load(spec.tfds_name, split=["train", "validation", "test"],
                           data_dir=config.tfds_data_dir or None,
                           download=config.tfds_download)
    except Exception as error:  # TFDS raises many types when offline or missing.
        raise _not_found(config, (spec.mirror_file,), spec.tfds_name, error) from None
    return tuple("".join(row["text"].decode("utf-8") for row in split.as_numpy_iterator())
                 for split in loaded)
