"""Atomic file writes: a reader sees either the old file or the complete new one, never a partial one.

The data go to a temporary file in the destination's folder (same file system), are flushed and
fsync'ed, and the temporary file is moved over the destination with ``os.replace`` (atomic on POSIX and
Windows). If anything fails the temporary file is removed and the destination is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "save_state_dict"]


def _default_mode(path: Path) -> int:
    """Permissions for the new file: the old file's if it exists, else 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it without changing it; os.umask (set and restore) is the portable fallback, but it
    # briefly changes the process-wide value, so it is used only where /proc is not available.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for any writer (h5py, nibabel, numpy ...); on success move it
    onto ``path`` with ``os.replace``. On error the temporary file is removed and ``path`` is untouched.

    The temporary name keeps the full suffix of ``path`` (``.nii.gz``, ``.npy`` ...) because some writers
    pick the format from it. The new file gets the old file's permissions, or 0o666 minus the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _default_mode(path)
    suffixes = path.suffixes
    suffix = "".join(suffixes[-2:]) if len(suffixes) >= 2 and suffixes[-1] == ".gz" else path.suffix
    stem = path.name[: len(path.name) - len(suffix)]
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # mkstemp creates 0o600
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating parent folders, fsync'ed); returns the path."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort; not possible on every OS / file system)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_default(obj: Any) -> Any:
    """Serialise numpy / torch scalars and arrays and paths, which ``json`` does not know."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _nonfinite_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nonfinite_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nonfinite_to_none(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, strict: bool = False) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically.

    numpy / torch values and paths are converted. Non-finite floats (e.g. the +inf PSNR of identical
    images) are written as Python's ``Infinity`` / ``NaN`` tokens, which ``json.load`` reads back; with
    ``strict=True`` they become ``null`` instead, for readers that only accept standard JSON.
    """
    if strict:
        obj = _nonfinite_to_none(json.loads(json.dumps(obj, default=_json_default)))
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=not strict, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def save_state_dict(state: dict[str, torch.Tensor], path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write tensors to a .safetensors file atomically (contiguous CPU copies; shared storage is fine)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)
