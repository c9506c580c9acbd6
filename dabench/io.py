"""Atomic, verifiable file I/O.

Every artefact of a run goes through here so that an interrupted job never leaves a half-written
file under its final name, and a corrupt or truncated checkpoint is refused with its path named
instead of being used silently.

- ``atomic_path``: write to a temporary name in the same folder, then ``os.replace``.
- ``save_npy`` / ``save_npz`` / ``save_json`` / ``save_text``: numpy arrays (never pickles) and JSON.
- ``save_tensors`` / ``load_tensors``: safetensors with a JSON sidecar that records the file's
  SHA-256; loading checks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


class CorruptFileError(RuntimeError):
    """A file on disk does not match the checksum recorded in its sidecar."""


def default_mode(directory: bool = False) -> int:
    """The permissions a plain ``open`` / ``mkdir`` would give under the current umask: what a
    scratch file or folder from ``tempfile`` (private, 0600 / 0700) gets before it becomes a
    result others on the file system read."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, default_mode())       # mkstemp makes it private (0600)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)


def load_npy(path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def save_npz(path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path, keys=None) -> dict[str, np.ndarray]:
    """The arrays of an .npz (only ``keys`` when given: the others are not read)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in (z.files if keys is None else keys)}


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_json(path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def load_json(path) -> Any:
    return json.loads(Path(path).read_text())


def save_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_leftovers(directory, pattern: str, keep=None) -> None:
    """Delete the files of ``directory`` matching the glob ``pattern`` except ``keep`` — a job's
    resume state once the output it resumed towards is written (the one clean-up rule of every
    resumable stage). ``keep``: one path or several."""
    kept = set() if keep is None else {Path(k) for k in ([keep] if isinstance(keep, (str, Path))
                                                         else keep)}
    for leftover in Path(directory).glob(pattern):
        if leftover not in kept:
            leftover.unlink(missing_ok=True)


def resume_pattern(resume_path) -> tuple[Path, str]:
    """(directory, glob) of a resume file and its sidecar: ``x.resume.safetensors`` and
    ``x.resume.json``."""
    path = Path(resume_path)
    return path.parent, f"{path.stem}.*"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_suffix(".json")


def save_tensors(path, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write ``tensors`` (name -> torch tensor) as safetensors plus a JSON sidecar.

    The sidecar holds ``meta`` and the file's ``sha256``; it is written after the tensor file, so
    a sidecar always describes a complete file.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
        digest = sha256(tmp)
    save_json(sidecar_path(path), {**meta, "sha256": digest, "file": Path(path).name})


def verify_digest(path, expected, what: str = "") -> None:
    """Raise :class:`CorruptFileError` naming ``path`` when its SHA-256 is not ``expected`` (the
    value recorded in its sidecar)."""
    digest = sha256(path)
    if digest != expected:
        raise CorruptFileError(
            f"{what}{path} is corrupt or truncated: its SHA-256 {digest[:12]}… does not match "
            f"{str(expected)[:12]}… recorded in {sidecar_path(path).name}. Delete it (and its "
            f"sidecar) and re-run to recompute it.")


def load_tensors(path, verify: bool = True) -> tuple[dict, dict]:
    """Load a safetensors file written by :func:`save_tensors`; return ``(tensors, meta)``.

    Raises :class:`CorruptFileError` naming the file when it is truncated, altered, or lacks its
    sidecar.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    side = sidecar_path(path)
    if not side.exists():
        raise CorruptFileError(f"checkpoint {path} has no sidecar {side.name}; refusing to use it")
    meta = load_json(side)
    if verify:
        verify_digest(path, meta.get("sha256"), "checkpoint ")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CorruptFileError(f"checkpoint {path} cannot be read: {exc}") from exc
    return tensors, meta


def load_checked_npy(path, mmap: bool = False) -> np.ndarray:
    """Load an .npy whose JSON sidecar records its ``sha256`` (features); refuse it, naming the
    file, when it does not match (truncated, altered, or rewritten without its sidecar)."""
    path = Path(checked_path(path))
    try:
        return load_npy(path, mmap=mmap)
    except ValueError as exc:
        raise CorruptFileError(f"{path} cannot be read: {exc}") from exc


def npy_header(path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a C-ordered .npy file, from its header."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        if fortran:
            raise CorruptFileError(f"{path}: Fortran-ordered arrays are not supported")
        return tuple(shape), dtype, fh.tell()


def read_rows(path, start: int, stop: int) -> np.ndarray:
    """Rows ``start … stop-1`` of a .npy file by plain reads: unlike a memory map, the pages read
    do not stay in the process's resident memory."""
    shape, dtype, offset = npy_header(path)
    stop = min(stop, shape[0])
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    with open(path, "rb") as fh:
        fh.seek(offset + start * row * dtype.itemsize)
        data = np.fromfile(fh, dtype=dtype, count=max(0, stop - start) * row)
    if data.size != max(0, stop - start) * row:
        raise CorruptFileError(f"{path} is truncated: rows {start}…{stop} are missing")
    return data.reshape(max(0, stop - start), *shape[1:])


class RowWriter:
    """A .npy of ``shape`` written block by block with plain writes (no memory map, so what is
    written does not stay in the writer's resident memory); the file appears under its name only
    when the ``with`` block completes. A row is ``shape[lead:]``; :meth:`write` takes consecutive
    rows at a flat index over the ``lead`` leading axes (C order)."""

    def __init__(self, path, shape: tuple[int, ...], dtype=np.float32, lead: int = 1):
        self.path, self.shape, self.dtype = Path(path), tuple(int(s) for s in shape), np.dtype(dtype)
        self.lead = lead
        self._n_rows = int(np.prod(self.shape[:lead], dtype=np.int64))
        self._row = int(np.prod(self.shape[lead:], dtype=np.int64)) * self.dtype.itemsize

    def __enter__(self):
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._fh = open(self._tmp, "wb")
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": self.shape})
        self._offset = self._fh.tell()
        self._fh.truncate(self._offset + self._n_rows * self._row)
        return self

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[self.lead:] or start + len(rows) > self._n_rows:
            raise ValueError(f"rows of shape {rows.shape} at {start} do not fit {self.shape}")
        self._fh.seek(self._offset + start * self._row)
        self._fh.write(rows.tobytes())

    def __exit__(self, *exc):
        self._fh.close()
        return self._ctx.__exit__(*exc)


def checked_path(path):
    """A feature file, its checksum verified (the solver then reads it in chunks)."""
    side = sidecar_path(path)
    if side.exists():
        expected = load_json(side).get("sha256")
        if expected is not None:
            verify_digest(path, expected)
    return str(path)
