"""Run-directory layout and the only code that writes files which outlive a stage.

Every write goes to a temporary name beside its target and is renamed into place, so a
crash leaves either the old file or the new one, never half of one. A stage writes into
`<stage>.partial/` and the runner swaps that folder in only when the stage succeeded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

STAGE_RECORD = "stage.json"
LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is using the run directory."""


RUN_MARKER = ".prune-pipeline-run"


class ForeignFolderError(ValueError):
    """A folder holds files the pipeline did not make; nothing in it is written or deleted."""


def claim_folder(folder: Path, flag: str) -> None:
    """Makes `folder` a pipeline-owned folder, or refuses one that holds someone else's files.

    Runs replace stage folders and overwrite `config.json`, so they may only do that where
    the pipeline made everything: a folder that is new or empty gets the marker file before
    anything else is written; a non-empty folder without the marker is refused untouched
    (a user's project folder passed as `--output_dir` by mistake, or `/`).
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ForeignFolderError(f"{flag}={folder} is not a folder (a file or a link); choose "
                                 "a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    entries = {entry.name for entry in folder.iterdir()}
    marker = folder / RUN_MARKER
    if RUN_MARKER in entries:
        if marker.is_symlink() or not marker.is_file():
            raise ForeignFolderError(f"{marker} is not a plain file; {flag}={folder} was not "
                                     "made by the pipeline: choose a new or empty folder")
        return
    if entries:
        raise ForeignFolderError(
            f"{flag}={folder} already holds files the pipeline did not make (it has no "
            f"{RUN_MARKER} marker), and a run would replace or delete some of them; choose a "
            "new or empty folder. (A run directory from pipeline 0.1 before this check: "
            f"adopt it with `touch {marker}`.)")
    # A plain create, not a rename: another worker listing the folder meanwhile must see
    # the marker or nothing.
    descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    os.close(descriptor)


class UnsafeFileError(OSError):
    """A path the pipeline would write is a link, a special file or a second name of
    another file; nothing is written through it."""


def open_own_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A descriptor for writing `path`, which must be (or become) a regular file with one
    name: opened without following a symbolic link or waiting on a FIFO, and refused if
    it is a hard link to another file (writing it would change that file too)."""
    import stat
    try:
        descriptor = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise UnsafeFileError(f"cannot open {path} ({error.strerror}); it must be a plain "
                              "file: remove it and rerun") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        what = "not a plain file" if not stat.S_ISREG(status.st_mode) else \
            f"a hard link ({status.st_nlink} names for one file)"
        raise UnsafeFileError(f"{path} is {what}; the pipeline writes only files of its own: "
                              "remove it and rerun")
    return descriptor


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Holds an exclusive lock on the run directory while a run uses it.

    Two runs writing into one folder would race for its stage folders and could resume
    each other's checkpoints; the second one stops instead, naming the first. The lock is
    the kernel's (flock), so a killed run never leaves a stale one behind. The lock file is
    opened as open_own_file opens, so a link (symbolic or hard) or a FIFO planted there is
    never written through or waited on.
    """
    import fcntl
    path = Path(run_dir) / LOCK_FILE
    try:
        descriptor = open_own_file(path, os.O_RDWR | os.O_CREAT)
    except UnsafeFileError as error:
        raise RunLockedError(f"the run lock: {error}") from None
    handle = os.fdopen(descriptor, "r+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError(f"{run_dir} is in use by another pipeline.run (pid {holder}); "
                                 "wait for it to finish or choose another --output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from others
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_regular_text(path: Path) -> str:
    """A text file's contents, refusing a FIFO, device or folder (reading one would hang or
    fail half-way): raises OSError naming the path."""
    import stat
    path = Path(path)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise OSError(f"{path} is not a regular file")
    return path.read_text(encoding="utf-8")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


MAX_JSON_BYTES = 256 << 20


class JsonError(ValueError):
    """A JSON input cannot be read; the message names it."""


def parse_json(text: str, source: str):
    """The one JSON parser for what the project reads: a value, or JsonError naming
    `source` (malformed, nested deeper than Python's recursion allows, or too large)."""
    if len(text) > MAX_JSON_BYTES:
        raise JsonError(f"{source} is over {MAX_JSON_BYTES >> 20} MiB of JSON; not read")
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonError(f"{source}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as error:
        raise JsonError(f"{source}: not JSON ({error.msg} at line {error.lineno})") from None


def read_json(path: Path):
    """A JSON file's value: a regular file of at most MAX_JSON_BYTES (never a FIFO or a
    device, which would hang or never end), parsed by parse_json."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_JSON_BYTES:
        raise JsonError(f"{path} is over {MAX_JSON_BYTES >> 20} MiB; not read")
    return parse_json(read_regular_text(path), str(path))


class JsonLinesError(ValueError):
    """A JSON-lines file has a line that is not JSON; the message names the line."""


def json_lines(lines) -> list[tuple[int, object]]:
    """(line number, value) of every non-blank line of a JSON-lines text."""
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise JsonLinesError(f"{number}: not JSON ({error.msg})") from None
        except RecursionError:
            raise JsonLinesError(f"{number}: JSON nested too deeply to read") from None
    return values


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary path for a writer that insists on a file name (Keras, TFLite)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


def copy_file(source: Path, target: Path) -> None:
    atomic_write_bytes(target, Path(source).read_bytes())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LinkInOutputError(ValueError):
    """A stage output or cache entry holds a link or a special file, which the pipeline
    never writes."""


def sha256_tree(folder: Path) -> str:
    """Hash of every file's relative path and contents, skipping the stage record itself.

    A link is refused, never followed: the pipeline writes none, and one planted in a stage
    folder (with its record rewritten to match) would ship whatever file it points at.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise LinkInOutputError(f"{path} is a link; stage outputs hold only files the "
                                    "pipeline wrote. Remove it and rerun that stage with "
                                    "--force")
        relative = path.relative_to(folder).as_posix()
        if not (path.is_file() or path.is_dir()):  # a FIFO would hang a copy or a read
            raise LinkInOutputError(f"{path} is not a regular file; stage outputs hold only "
                                    "files the pipeline wrote. Remove it and rerun that "
                                    "stage with --force")
        if not path.is_file() or relative == STAGE_RECORD:
            continue
        digest.update(relative.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def matches_record(folder: Path) -> bool:
    """Whether a stage folder (or cache entry) holds exactly what its record says it made."""
    record = stage_record(folder)
    return record is not None and sha256_tree(folder) == record.get("output_hash")


def replace_dir(new: Path, target: Path) -> None:
    """Swaps a finished folder into place; the old one is removed only after the swap.

    Only a folder the pipeline made (one holding a stage record) is ever replaced: a
    folder of the same name without one is someone else's and is refused untouched.
    """
    target = Path(target)
    if target.is_symlink() or (target.exists() and not (target / STAGE_RECORD).is_file()):
        raise ForeignFolderError(f"{target} was not made by the pipeline (it has no "
                                 f"{STAGE_RECORD}), so it is not replaced; move it away and "
                                 "rerun")
    old = target.with_name(f".{target.name}.old")
    if old.is_symlink():
        old.unlink()
    elif old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def copy_tree(source: Path, target: Path) -> None:
    """Copies a finished folder to `target` through a temporary sibling and a swap."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stage_record(stage_dir: Path) -> dict | None:
    path = Path(stage_dir) / STAGE_RECORD
    return read_json(path) if path.is_file() else None


class NonFiniteWeightsError(ValueError):
    """A model about to be saved has NaN or infinite weights: training diverged."""


def save_keras_model(model, path: Path) -> None:
    """Saves in the `.keras` format, which loads back in safe mode (no pickled code).

    A model with a non-finite weight is refused: training diverged, and every later stage
    (the int8 converter crashes on it) would only carry the damage further.
    """
    import numpy as np
    for weight in model.weights:
        if not np.isfinite(weight.numpy()).all():
            raise NonFiniteWeightsError(
                f"the model for {path} has non-finite values in {weight.name}: training "
                "diverged. Lower --learning_rate (or --pruning_learning_rate) or set "
                "--clip_norm, then rerun")
    with atomic_path(path) as tmp:
        model.save(tmp, save_format="keras")
        canonical_keras_archive(tmp)


def canonical_keras_archive(path: Path) -> None:
    """Rewrites a `.keras` archive so that the same model always gives the same bytes.

    Keras stamps the save time (metadata.json's date_saved, the weights entry's zip time)
    and numbers shared objects by Python object ids; these go, or become their order of
    appearance, so two runs that trained the same weights write identical files.
    """
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    identities: dict[int, int] = {}

    def renumber(node):
        if isinstance(node, dict):
            return {key: (identities.setdefault(value, len(identities))
                          if key == "shared_object_id" else renumber(value))
                    for key, value in node.items()}
        if isinstance(node, list):
            return [renumber(value) for value in node]
        return node

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            if name == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif name == "config.json":
                data = json.dumps(renumber(json.loads(data))).encode()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


KERAS_ARCHIVE_ENTRIES = {"metadata.json", "config.json", "model.weights.h5"}


class UnsafeModelError(ValueError):
    """A model file is not the zip `.keras` archive the pipeline writes; it is not loaded."""


# What a model the pipeline writes may name: the layers models/ builds and their tfmot
# wrappers, the initializers, regularizers, schedules, losses and optimizers those carry.
# Anything else (Lambda, TFOpLambda, a "function", a custom class) is refused unread.
ALLOWED_CLASSES = frozenset({
    "Functional", "Sequential", "InputLayer", "Embedding", "LSTM", "Bidirectional", "Dense",
    "Dropout", "SpatialDropout1D", "GlobalMaxPooling1D", "Reshape",
    "PruneLowMagnitude", "PrunableBidirectional", "ConstantSparsity", "PolynomialDecay",
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
    "Orthogonal", "RandomUniform", "RandomNormal", "TruncatedNormal", "VarianceScaling",
    "Zeros", "Ones", "Constant", "Identity",
    "L1", "L2", "L1L2", "GateGroupLasso", "SparseCategoricalCrossentropy", "Adam",
    "CosineDecay"})
ALLOWED_MODULES = frozenset({
    "keras.layers", "keras.initializers", "keras.regularizers", "keras.losses",
    "keras.optimizers", "keras.optimizers.schedules", "tf_keras.src.engine.functional",
    "tf_keras.src.engine.sequential", "pipeline.pruning",
    "tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper",
    "tensorflow_model_optimization.python.core.sparsity.keras.pruning_schedule"})


def unsafe_entry(node, where: str = "config") -> str | None:
    """The first entry of a Keras model config outside the allow-lists, as a readable path."""
    if isinstance(node, dict):
        name = node.get("class_name")
        if name is not None and name not in ALLOWED_CLASSES:
            return f"{where}: class {name!r}"
        registered = node.get("registered_name")
        # Keras builds the registered name first: it may only be the class itself
        if registered not in (None, name, f"prune_pipeline>{name}"):
            return f"{where}: registered name {registered!r}"
        module = node.get("module")
        if module is not None and module not in ALLOWED_MODULES:
            return f"{where}: module {module!r}"
        if "function_type" in node or "function" in node:
            return f"{where}: a serialized function"
        for key, value in node.items():
            found = unsafe_entry(value, f"{where}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = unsafe_entry(value, f"{where}[{index}]")
            if found:
                return found
    return None


def check_keras_archive(path: Path) -> None:
    """Refuses anything but a zip `.keras` archive holding exactly what `save_keras_model`
    writes, naming only the classes and modules the pipeline builds.

    tf_keras applies safe mode only to zip archives: an HDF5 file named `.keras` goes to the
    legacy loader, which runs a Lambda layer's pickled bytecode. And safe mode still imports
    any module a config names and calls what it names there. So the container and the
    config are checked here, before any loader sees the file.
    """
    fix = "rerun the stage that makes it with --force"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" in names and \
                    archive.getinfo("config.json").file_size > MAX_JSON_BYTES:
                raise UnsafeModelError(f"model file {path}: its config.json unpacks to over "
                                       f"{MAX_JSON_BYTES >> 20} MiB; not read. {fix}")
            config_text = archive.read("config.json") if "config.json" in names else b""
    except (zipfile.BadZipFile, OSError) as error:
        raise UnsafeModelError(f"model file {path} is not a zip .keras archive ({error}); the "
                               "pipeline loads only the .keras files it writes (HDF5 and "
                               f"SavedModel files can run code). {fix[0].upper()}{fix[1:]}") \
            from None
    if names != KERAS_ARCHIVE_ENTRIES:
        raise UnsafeModelError(f"model file {path} holds {sorted(names)}, not the "
                               f"{sorted(KERAS_ARCHIVE_ENTRIES)} of a .keras archive written "
                               f"by the pipeline; {fix}")
    try:
        config = parse_json(config_text, f"model file {path}: config.json")
    except (UnicodeDecodeError, JsonError) as error:
        raise UnsafeModelError(f"{error}; {fix}") from None
    if not (isinstance(config, dict) and config.get("class_name") in ("Functional",
                                                                      "Sequential")
            and isinstance(config.get("config"), dict)
            and isinstance(config["config"].get("layers"), list)):
        raise UnsafeModelError(f"model file {path}: config.json is not a Keras model's "
                               f"config (a Functional or Sequential with layers); {fix}")
    found = unsafe_entry(config)
    if found:
        raise UnsafeModelError(f"model file {path} names {found}, which the pipeline never "
                               f"builds; it is not loaded (it could run code). {fix[0].upper()}"
                               f"{fix[1:]}")


def check_keras_files(folder: Path) -> None:
    """check_keras_archive for every .keras file under a stage folder or a cache entry."""
    for path in sorted(Path(folder).rglob("*.keras")):
        check_keras_archive(path)


def load_keras_model(path: Path, scope=None):
    """Loads a `.keras` archive in Keras safe mode; `scope` adds custom objects (tfmot)."""
    import tf_keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist: run the stage that "
                                "writes it first (see --stages)")
    check_keras_archive(path)
    with scope or contextlib.nullcontext():
        try:
            return tf_keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as error:
            raise UnsafeModelError(f"model file {path} could not be loaded safely "
                                   f"({type(error).__name__}: {error}); rerun its stage with "
                                   "--force") from None


class BundleError(RuntimeError):
    """The bundle is missing a file or a file does not match its manifest."""


def check_bundle(bundle_dir: Path, needs: tuple[str, ...] = ()) -> dict:
    """The bundle's manifest, after checking its form and every file's sha256; each of
    `needs` (the files the caller will read) must be among them: a client reads no file
    the manifest does not list and hash."""
    from pipeline.reference_tokenizer import SpecError, bundle_file
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{bundle_dir} has no manifest.json: pass the bundle/ folder of a "
                          "finished run")
    try:
        manifest = read_json(manifest_path)
    except (OSError, UnicodeDecodeError, JsonError) as error:
        raise BundleError(f"{manifest_path} is not readable JSON ({error}); copy the bundle "
                          "again from the run") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files or not isinstance(manifest.get("task"), str) \
            or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str)
                       for e in files.values()):
        raise BundleError(f"{manifest_path} is not a pipeline manifest (it needs a task and a "
                          "files table with a sha256 per file); copy the bundle again from "
                          "the run")
    unlisted = [name for name in needs if name not in files]
    if unlisted:
        raise BundleError(f"{manifest_path} does not list {', '.join(unlisted)}, which a "
                          "client reads; copy the bundle again from the run")
    for name, entry in files.items():
        try:
            path = bundle_file(bundle_dir, name)
        except SpecError as error:
            raise BundleError(f"{manifest_path}: {error}") from None
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"bundle file {path} does not match manifest.json's sha256; "
                              "copy the bundle again from the run")
    return manifest


class RunFiles:
    """Where each stage's outputs live in one run directory.

    The runner builds one per run and hands it to stages, tasks, methods and evaluators;
    they ask it for a split, the vocabulary or a model and never join paths under the run
    directory themselves, so the layout is written down here once.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def __repr__(self) -> str:
        return f"RunFiles({self.run_dir})"

    def stage(self, name: str) -> Path:
        """The folder a finished stage's outputs are in."""
        return self.run_dir / name

    def data(self, name: str) -> Path:
        """A file of the data stage (the task decides which files it writes)."""
        return self.stage("data") / name

    def split(self, name: str) -> dict:
        """The arrays the task saved for one split (train, validation, test)."""
        import numpy as np
        with np.load(self.data(f"{name}.npz")) as arrays:
            return {key: arrays[key] for key in arrays.files}

    @property
    def tokenizer_spec(self) -> Path:
        return self.data("tokenizer.json")

    @property
    def vocabulary(self) -> Path:
        return self.data("vocab.txt")

    @property
    def labels(self) -> Path:
        return self.data("labels.txt")

    def label_names(self) -> list[str]:
        return self.labels.read_text(encoding="utf-8").splitlines()

    def vocabulary_size(self) -> int:
        """Ids the model embeds (and, for text generation, predicts)."""
        return read_json(self.tokenizer_spec)["vocabulary_size"]

    @property
    def trained_model(self) -> Path:
        """The dense parent: every pruned model's reference."""
        return self.stage("train") / "model.keras"

    @property
    def pruned_model(self) -> Path:
        """The prune stage's model, pruning wrappers included."""
        return self.stage("prune") / "pruned.keras"

    @property
    def stripped_model(self) -> Path:
        return self.stage("strip") / "model.keras"

    @property
    def keras_sparsity(self) -> Path:
        return self.stage("strip") / "sparsity.json"

    @property
    def conversions(self) -> Path:
        """convert.json: every export's programs, sizes and dense-parent references."""
        return self.stage("convert") / "convert.json"

    def converted(self, file: str) -> Path:
        """A .tflite the convert stage wrote (a program of the model or of its parent)."""
        return self.stage("convert") / file

    @property
    def metrics(self) -> Path:
        return self.stage("evaluate") / "metrics.json"
