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
from pathlib import Path

STAGE_RECORD = "stage.json"


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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


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


def sha256_tree(folder: Path) -> str:
    """Hash of every file's relative path and contents, skipping the stage record itself."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == STAGE_RECORD:
            continue
        digest.update(relative.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def replace_dir(new: Path, target: Path) -> None:
    """Swaps a finished folder into place; the old one is removed only after the swap."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
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


def save_keras_model(model, path: Path) -> None:
    """Saves in the `.keras` format, which loads back in safe mode (no pickled code)."""
    with atomic_path(path) as tmp:
        model.save(tmp, save_format="keras")


def load_keras_model(path: Path, scope=None):
    """Loads a `.keras` model in Keras safe mode; `scope` adds custom objects (tfmot)."""
    import tf_keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist: run the stage that "
                                "writes it first (see --stages)")
    with scope or contextlib.nullcontext():
        try:
            return tf_keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as error:
            raise ValueError(f"model file {path} could not be loaded safely "
                             f"({type(error).__name__}: {error}); rerun its stage with "
                             "--force") from None


class BundleError(RuntimeError):
    """The bundle is missing a file or a file does not match its manifest."""


def check_bundle(bundle_dir: Path) -> dict:
    manifest_path = bundle_dir / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{bundle_dir} has no manifest.json: pass the bundle/ folder of a "
                          "finished run")
    manifest = read_json(manifest_path)
    for name, entry in manifest["files"].items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"bundle file {path} does not match manifest.json's sha256; "
                              "copy the bundle again from the run")
    return manifest
