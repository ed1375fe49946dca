"""fastMRI HDF5 files: write, read lazily per slice, and crop to the reconstruction size.

Layout (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI", arXiv:1811.08839):

- ``kspace``: ``(slices, coils, H, W)`` complex64 (multi-coil) or ``(slices, H, W)`` (single-coil); H is the
  readout (frequency-encode, often 2x oversampled), W the phase-encode direction.
- ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil): ``(slices, h, w)`` float32
  magnitude targets, centre-cropped to the reconstruction size ``(h, w)`` of the header (usually 320x320).
- ``reconstruction``: a submission (one reconstructed volume, ``(slices, h, w)`` float32).
- ``mask``: ``(W,)`` sampling pattern in test/challenge files, whose k-space is already undersampled.
- ``ismrmrd_header``: ISMRMRD XML (Inati et al., MRM 2017) with ``encodedSpace``/``reconSpace`` matrix sizes
  (x = H, y = W) and ``encodingLimits/kspace_encoding_step_1`` (phase-encode line range and centre).
- file attributes ``acquisition``, ``max``, ``norm`` (max and L2 norm of the target volume), ``patient_id``.

Reading never keeps a file handle open: every access opens the file, copies the array out and closes it,
so :class:`FastMRIFile` objects can be pickled into DataLoader workers.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrrecon.errors import DataError, ShapeError
from mrrecon.utils.io import atomic_output

TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc", "reconstruction")
GYROMAGNETIC_H1_HZ_PER_T = 42.577478518e6  # CODATA 2018, gamma_p / 2pi
_ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


# --------------------------------------------------------------------------------------------------
# ISMRMRD header
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FastMRIHeader:
    """The parts of the ISMRMRD header that reconstruction needs. Sizes are (x, y, z) = (H, W, slices-ish)."""

    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float] | None = None
    recon_fov_mm: tuple[float, float, float] | None = None
    center_line: int | None = None  # kspace_encoding_step_1 centre
    min_line: int | None = None
    max_line: int | None = None
    field_strength_T: float | None = None
    xml: str = ""


def ismrmrd_header_xml(
    encoded_size: tuple[int, int],
    recon_size: tuple[int, int],
    *,
    num_coils: int | None = None,
    num_slices: int | None = None,
    encoded_fov_mm: tuple[float, float, float] | None = None,
    recon_fov_mm: tuple[float, float, float] | None = None,
    center_line: int | None = None,
    min_line: int = 0,
    max_line: int | None = None,
    field_strength_T: float = 3.0,
    trajectory: str = "cartesian",
) -> str:
    """A minimal ISMRMRD header (valid against ismrmrd.xsd v2) for 2-D Cartesian data.

    ``encoded_size``/``recon_size`` are (H, W) = (x, y). Default field of view: 1 mm pixels. Default
    phase-encode limits: lines 0 .. W-1 with centre W // 2 (the DC line of a centred FFT).
    """
    eh, ew = (int(s) for s in encoded_size)
    rh, rw = (int(s) for s in recon_size)
    thickness = 1.0
    enc_fov = encoded_fov_mm or (float(eh), float(ew), thickness)
    rec_fov = recon_fov_mm or (float(rh), float(rw), thickness)
    center = ew // 2 if center_line is None else int(center_line)
    maximum = ew - 1 if max_line is None else int(max_line)
    h1 = int(round(GYROMAGNETIC_H1_HZ_PER_T * float(field_strength_T)))

    def xyz(tag: str, vals) -> str:
        x, y, z = vals
        return f"<{tag}><x>{x}</x><y>{y}</y><z>{z}</z></{tag}>"

    def fov(vals) -> str:
        return xyz("fieldOfView_mm", tuple(f"{float(v):g}" for v in vals))

    system = f"<systemFieldStrength_T>{float(field_strength_T):g}</systemFieldStrength_T>"
    if num_coils is not None:
        system += f"<receiverChannels>{int(num_coils)}</receiverChannels>"
    limits = (f"<kspace_encoding_step_1><minimum>{int(min_line)}</minimum><maximum>{maximum}</maximum>"
              f"<center>{center}</center></kspace_encoding_step_1>")
    if num_slices is not None:
        n = int(num_slices)
        limits += (f"<slice><minimum>0</minimum><maximum>{max(n - 1, 0)}</maximum>"
                   f"<center>{n // 2}</center></slice>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{_ISMRMRD_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{_ISMRMRD_NS} ismrmrd.xsd">'
        f"<acquisitionSystemInformation>{system}</acquisitionSystemInformation>"
        f"<experimentalConditions><H1resonanceFrequency_Hz>{h1}</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        f"<encodedSpace>{xyz('matrixSize', (eh, ew, 1))}{fov(enc_fov)}</encodedSpace>"
        f"<reconSpace>{xyz('matrixSize', (rh, rw, 1))}{fov(rec_fov)}</reconSpace>"
        f"<encodingLimits>{limits}</encodingLimits>"
        f"<trajectory>{trajectory}</trajectory>"
        "</encoding>"
        "</ismrmrdHeader>"
    )


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def parse_ismrmrd_header(xml: str | bytes, file: str | os.PathLike | None = None) -> FastMRIHeader:
    """Parse the sizes and phase-encode limits of the first ``<encoding>`` of an ISMRMRD header."""
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    try:
        root = _strip_ns(ET.fromstring(xml.strip()))
    except ET.ParseError as e:
        raise DataError(f"ismrmrd_header is not valid XML ({e})", file) from None

    def node(path: str) -> ET.Element | None:
        return root.find(path)

    def number(path: str, kind=int):
        el = node(path)
        if el is None or el.text is None or not el.text.strip():
            return None
        try:
            return kind(float(el.text)) if kind is int else kind(el.text)
        except ValueError:
            raise DataError(f"ismrmrd_header: {path} is not a number ({el.text!r})", file) from None

    def triple(path: str, kind=int):
        vals = tuple(number(f"{path}/{a}", kind) for a in ("x", "y", "z"))
        return None if any(v is None for v in vals) else vals

    enc = triple("encoding/encodedSpace/matrixSize")
    rec = triple("encoding/reconSpace/matrixSize")
    if enc is None or rec is None:
        raise DataError("ismrmrd_header lacks encoding/encodedSpace or reconSpace matrixSize", file)
    lim = "encoding/encodingLimits/kspace_encoding_step_1"
    return FastMRIHeader(
        encoded_size=enc, recon_size=rec,
        encoded_fov_mm=triple("encoding/encodedSpace/fieldOfView_mm", float),
        recon_fov_mm=triple("encoding/reconSpace/fieldOfView_mm", float),
        center_line=number(f"{lim}/center"), min_line=number(f"{lim}/minimum"),
        max_line=number(f"{lim}/maximum"),
        field_strength_T=number("acquisitionSystemInformation/systemFieldStrength_T", float),
        xml=xml,
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bool:
            return x.numpy()
        return x.resolve_conj().numpy() if x.is_complex() else x.numpy()
    return np.asarray(x)


def _check_finite(arr: np.ndarray, what: str, file) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{what} contains {bad} NaN or inf values", file)


def write_fastmri_h5(
    path: str | os.PathLike,
    kspace: Any = None,
    *,
    reconstruction_rss: Any = None,
    reconstruction_esc: Any = None,
    reconstruction: Any = None,
    mask: Any = None,
    attrs: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | str | None = None,
    extra_datasets: Mapping[str, Any] | None = None,
) -> Path:
    """Write a fastMRI-layout HDF5 file atomically (temp file in the same folder + ``os.replace``).

    kspace: ``(slices, coils, H, W)`` (multi-coil) or ``(slices, H, W)`` (single-coil), stored complex64.
    reconstruction_*: ``(slices, h, w)`` float32 (magnitude is taken of complex input).
    mask: stored as given (bool), e.g. ``(W,)`` like the fastMRI test set.
    attrs: extra file attributes; ``max``/``norm`` default to the max / L2 norm of the target volume
    (``reconstruction_rss``, else ``_esc``, else ``reconstruction``), ``acquisition`` and ``patient_id``
    to ``"unknown"``.
    header: an ISMRMRD XML string written as is, or a dict of :func:`ismrmrd_header_xml` keyword arguments
    (``encoded_size``, ``recon_size``, ``encoded_fov_mm``, ``recon_fov_mm``, ``center_line``, ``min_line``,
    ``max_line``, ``field_strength_T``). Defaults: encoded size = k-space (H, W); recon size = target
    (h, w), else k-space (H, W).
    extra_datasets: more datasets written as given (e.g. simulator ground truth ``coil_maps``
    (slices, coils, H, W)); their names must not clash with the fastMRI ones.
    """
    path = Path(path)
    datasets: dict[str, np.ndarray] = {}
    num_slices = None
    if kspace is not None:
        k = _to_numpy(kspace)
        if k.ndim not in (3, 4):
            raise ShapeError(f"kspace must be (slices, coils, H, W) or (slices, H, W); got {k.shape}", path)
        k = k.astype(np.complex64, copy=False)
        _check_finite(k, "kspace", path)
        datasets["kspace"] = k
        num_slices = k.shape[0]
    for key, value in (("reconstruction_rss", reconstruction_rss), ("reconstruction_esc", reconstruction_esc),
                       ("reconstruction", reconstruction)):
        if value is None:
            continue
        v = _to_numpy(value)
        if np.iscomplexobj(v):
            v = np.abs(v)
        if v.ndim == 2:
            v = v[None]
        if v.ndim != 3:
            raise ShapeError(f"{key} must be (slices, h, w); got {v.shape}", path)
        if num_slices is not None and v.shape[0] != num_slices:
            raise ShapeError(f"{key} has {v.shape[0]} slices but kspace has {num_slices}", path)
        v = v.astype(np.float32, copy=False)
        _check_finite(v, key, path)
        datasets[key] = v
        num_slices = v.shape[0] if num_slices is None else num_slices
    if not datasets:
        raise DataError("nothing to write: give kspace and/or a reconstruction", path)
    reserved = {"kspace", *TARGET_KEYS, "mask", "ismrmrd_header"}
    extras: dict[str, np.ndarray] = {}
    for key, value in (extra_datasets or {}).items():
        if key in reserved:
            raise DataError(f"extra dataset name {key!r} clashes with a fastMRI dataset", path)
        extras[key] = _to_numpy(value)

    target = next((datasets[k] for k in TARGET_KEYS if k in datasets), None)
    file_attrs: dict[str, Any] = {"acquisition": "unknown", "patient_id": "unknown"}
    if target is not None:
        file_attrs["max"] = float(target.max())
        file_attrs["norm"] = float(np.linalg.norm(target.ravel().astype(np.float64)))
    file_attrs.update(dict(attrs or {}))

    if isinstance(header, str):
        xml = header
        parse_ismrmrd_header(xml, path)  # refuse to write a header we could not read back
    else:
        opts = dict(header or {})
        k = datasets.get("kspace")
        enc = opts.pop("encoded_size", None) or (k.shape[-2:] if k is not None else target.shape[-2:])
        rec = opts.pop("recon_size", None) or (target.shape[-2:] if target is not None else enc)
        if k is not None:
            opts.setdefault("num_coils", k.shape[1] if k.ndim == 4 else 1)
        opts.setdefault("num_slices", num_slices)
        xml = ismrmrd_header_xml(tuple(enc)[:2], tuple(rec)[:2], **opts)

    import h5py

    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as hf:
            for key, arr in {**datasets, **extras}.items():
                hf.create_dataset(key, data=arr)
            if mask is not None:
                hf.create_dataset("mask", data=_to_numpy(mask).astype(bool))
            hf.create_dataset("ismrmrd_header", data=np.bytes_(xml.encode("utf-8")))
            for key, value in file_attrs.items():
                hf.attrs[key] = value
    return path


def write_reconstruction(path: str | os.PathLike, volume: Any) -> Path:
    """Write a fastMRI submission file: dataset ``reconstruction`` ``(slices, h, w)`` float32, atomically."""
    path = Path(path)
    v = _to_numpy(volume)
    if np.iscomplexobj(v):
        v = np.abs(v)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3:
        raise ShapeError(f"reconstruction must be (slices, h, w); got {v.shape}", path)
    v = v.astype(np.float32, copy=False)
    _check_finite(v, "reconstruction", path)
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("reconstruction", data=v)
    return path


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_h5(path: str | os.PathLike) -> Iterator[Any]:
    """Open an HDF5 file read-only, turning every failure into a DataError that names the file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    if path.is_dir():
        raise DataError("is a folder, not an HDF5 file", path)
    try:
        hf = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001 -- h5py raises OSError, and other types on some corruptions
        try:
            is_hdf5 = bool(h5py.is_hdf5(path))
        except Exception:  # noqa: BLE001
            is_hdf5 = False
        if not is_hdf5:
            raise DataError("not an HDF5 file (wrong format or empty)", path) from None
        raise DataError(f"unreadable HDF5 file (truncated or corrupt): {_one_line(e)}", path) from None
    try:
        yield hf
    finally:
        hf.close()


def _read_dataset(hf, key: str, path, index=None) -> np.ndarray:
    if key not in hf:
        raise DataError(f"missing key {key!r}; the file has {sorted(hf.keys())}", path)
    try:
        ds = hf[key]
        arr = ds[()] if index is None else ds[index]
        return np.array(arr, copy=True)
    except Exception as e:  # noqa: BLE001 -- any h5py/HDF5 failure on damaged data names the file
        raise DataError(f"cannot read {key!r} (truncated or corrupt file?): {_one_line(e)}", path) from None


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (HDF5 messages can span several lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _complex_kspace(arr: np.ndarray, path, what: str) -> torch.Tensor:
    if arr.dtype.names is not None:  # compound {r, i} written by another tool
        names = arr.dtype.names
        re_name = next((n for n in names if n.lower() in ("r", "real", "re")), None)
        im_name = next((n for n in names if n.lower() in ("i", "imag", "im")), None)
        if re_name is None or im_name is None:
            raise DataError(f"{what} has compound dtype {arr.dtype} without real/imag fields", path)
        arr = arr[re_name] + 1j * arr[im_name]
    if not np.iscomplexobj(arr):
        raise DataError(f"{what} is {arr.dtype}, expected complex k-space", path)
    arr = arr.astype(np.complex64, copy=False)
    _check_finite(arr, what, path)
    return torch.from_numpy(np.ascontiguousarray(arr))


class FastMRIFile:
    """Lazy view of a fastMRI h5 file: metadata on construction, arrays one slice at a time.

    ``kspace(i)`` returns ``(C, H, W)`` complex64 (C = 1 for single-coil), ``target(i)`` ``(h, w)`` float32.
    No handle is kept open; every read opens and closes the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open_h5(self.path) as hf:
            try:
                self.keys: tuple[str, ...] = tuple(sorted(hf.keys()))
                self.attrs: dict[str, Any] = {k: _attr_value(v) for k, v in hf.attrs.items()}
                self._shapes: dict[str, tuple[int, ...]] = {
                    k: tuple(hf[k].shape) for k in self.keys if hasattr(hf[k], "shape")}
                self._dtypes: dict[str, np.dtype] = {
                    k: hf[k].dtype for k in self.keys if hasattr(hf[k], "dtype")}
            except Exception as e:  # noqa: BLE001 -- a damaged index raises anything from h5py
                raise DataError(f"unreadable HDF5 file (truncated or corrupt): {_one_line(e)}", self.path) from None
            xml = _read_dataset(hf, "ismrmrd_header", self.path) if "ismrmrd_header" in self.keys else None
            self._mask = _read_dataset(hf, "mask", self.path) if "mask" in self.keys else None
        self.header: FastMRIHeader | None = None
        if xml is not None:
            try:
                raw = xml.item() if xml.ndim == 0 else bytes(xml)
            except Exception:  # noqa: BLE001 -- e.g. a numeric array where XML text belongs
                raise DataError(f"ismrmrd_header is not XML text (dtype {xml.dtype}, shape {xml.shape})",
                                self.path) from None
            if not isinstance(raw, (str, bytes)):
                raise DataError(f"ismrmrd_header is not XML text (dtype {xml.dtype})", self.path)
            self.header = parse_ismrmrd_header(raw, self.path)
        if self._mask is not None:
            if self._mask.dtype.kind not in "biuf" or self._mask.size == 0:
                raise DataError(f"'mask' must be a non-empty numeric or boolean array; got {self._mask.dtype} "
                                f"{self._mask.shape}", self.path)
            if not np.isfinite(self._mask.astype(np.float64)).all() or not np.isin(self._mask, (0, 1)).all():
                raise DataError("'mask' must hold only 0/1 (or booleans)", self.path)
        self._validate()

    def _validate(self) -> None:
        ks = self._shapes.get("kspace")
        if ks is not None and len(ks) not in (3, 4):
            raise ShapeError(f"kspace must be (slices, coils, H, W) or (slices, H, W); got {ks}", self.path)
        if ks is not None and 0 in ks:
            raise ShapeError(f"kspace is empty (shape {ks})", self.path)
        kd = self._dtypes.get("kspace")
        if kd is not None and kd.names is None and kd.kind != "c":
            raise DataError(f"kspace is {kd}, expected complex k-space (complex64, or a compound of real and "
                            "imaginary parts)", self.path)
        for k in TARGET_KEYS:
            if k in self._shapes and len(self._shapes[k]) != 3:
                raise ShapeError(f"{k} must be (slices, h, w); got {self._shapes[k]}", self.path)
            if k in self._shapes and 0 in self._shapes[k]:
                raise ShapeError(f"{k} is empty (shape {self._shapes[k]})", self.path)
            if k in self._dtypes and self._dtypes[k].kind not in "biufc":
                raise DataError(f"{k} has non-numeric dtype {self._dtypes[k]}", self.path)
        counts = {k: self._shapes[k][0] for k in ("kspace", *TARGET_KEYS) if k in self._shapes}
        if len(set(counts.values())) > 1:
            raise ShapeError(f"datasets disagree on the number of slices: {counts}", self.path)
        if ks is None and not any(k in self._shapes for k in TARGET_KEYS):
            raise DataError(f"no 'kspace' and no reconstruction dataset; the file has {list(self.keys)}",
                            self.path)

    # -- shapes and metadata ------------------------------------------------------------------------
    @property
    def has_kspace(self) -> bool:
        return "kspace" in self._shapes

    @property
    def num_slices(self) -> int:
        for k in ("kspace", *TARGET_KEYS):
            if k in self._shapes:
                return int(self._shapes[k][0])
        return 0

    @property
    def is_multicoil(self) -> bool:
        return len(self._shapes.get("kspace", ())) == 4

    @property
    def num_coils(self) -> int:
        ks = self._shapes.get("kspace")
        return int(ks[1]) if ks is not None and len(ks) == 4 else 1

    @property
    def kspace_shape(self) -> tuple[int, int]:
        """(H, W) of one k-space slice."""
        if "kspace" not in self._shapes:
            raise DataError(f"missing key 'kspace'; the file has {list(self.keys)}", self.path)
        return tuple(int(s) for s in self._shapes["kspace"][-2:])

    @property
    def target_keys(self) -> tuple[str, ...]:
        return tuple(k for k in TARGET_KEYS if k in self._shapes)

    def target_shape(self, key: str | None = None) -> tuple[int, int]:
        key = self.resolve_target_key(key)
        return tuple(int(s) for s in self._shapes[key][-2:])

    @property
    def recon_size(self) -> tuple[int, int] | None:
        """(h, w) of the reconstruction: the header's reconSpace matrix, else the stored target's size."""
        if self.header is not None:
            return int(self.header.recon_size[0]), int(self.header.recon_size[1])
        if self.target_keys:
            return self.target_shape(self.target_keys[0])
        return None

    @property
    def mask(self) -> torch.Tensor | None:
        """The stored sampling mask (bool, as stored, e.g. ``(W,)``), or None."""
        return None if self._mask is None else torch.from_numpy(self._mask.astype(bool))

    def __len__(self) -> int:
        return self.num_slices

    def __repr__(self) -> str:
        return (f"FastMRIFile({str(self.path)!r}, slices={self.num_slices}, keys={list(self.keys)}, "
                f"recon_size={self.recon_size})")

    # -- data -----------------------------------------------------------------------------------------
    def _check_index(self, i: int) -> int:
        n = self.num_slices
        if not -n <= i < n:
            raise IndexError(f"{self.path}: slice {i} out of range (file has {n} slices)")
        return int(i) % n

    def resolve_target_key(self, key: str | None) -> str:
        if key is None:
            if not self.target_keys:
                raise DataError(f"no target dataset ({', '.join(TARGET_KEYS)}); the file has "
                                f"{list(self.keys)}", self.path)
            return self.target_keys[0]
        if key not in self._shapes:
            raise DataError(f"missing key {key!r}; the file has {list(self.keys)}", self.path)
        return key

    def kspace(self, i: int) -> torch.Tensor:
        """k-space of slice ``i``: (C, H, W) complex64; DataError on NaN/inf."""
        i = self._check_index(i)
        with open_h5(self.path) as hf:
            arr = _read_dataset(hf, "kspace", self.path, index=i)
        k = _complex_kspace(arr, self.path, f"kspace slice {i}")
        return k if k.ndim == 3 else k.unsqueeze(0)

    def target(self, i: int, key: str | None = None) -> torch.Tensor:
        """Stored target of slice ``i``: (h, w) float32. ``key`` defaults to the first of TARGET_KEYS present."""
        i = self._check_index(i)
        key = self.resolve_target_key(key)
        with open_h5(self.path) as hf:
            arr = _read_dataset(hf, key, self.path, index=i)
        if np.iscomplexobj(arr):
            arr = np.abs(arr)
        arr = arr.astype(np.float32, copy=False)
        _check_finite(arr, f"{key} slice {i}", self.path)
        return torch.from_numpy(np.ascontiguousarray(arr))

    def read_slice(self, key: str, i: int) -> np.ndarray:
        """Slice ``i`` (along the first axis) of any dataset, copied out of the file."""
        i = self._check_index(i)
        with open_h5(self.path) as hf:
            return _read_dataset(hf, key, self.path, index=i)

    def read(self, key: str) -> np.ndarray:
        """A whole dataset as a numpy array (copied out of the file)."""
        with open_h5(self.path) as hf:
            return _read_dataset(hf, key, self.path)


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class FastMRIVolume:
    """A whole fastMRI file in memory. ``kspace`` (S, C, H, W) complex64 or None; ``targets`` by key."""

    file: Path
    kspace: torch.Tensor | None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    header: FastMRIHeader | None = None

    @property
    def recon_size(self) -> tuple[int, int] | None:
        if self.header is not None:
            return int(self.header.recon_size[0]), int(self.header.recon_size[1])
        for t in self.targets.values():
            return int(t.shape[-2]), int(t.shape[-1])
        return None

    @property
    def is_multicoil(self) -> bool:
        return self.kspace is not None and self.kspace.shape[1] > 1


def read_fastmri_volume(path: str | os.PathLike) -> FastMRIVolume:
    """Read a whole fastMRI file: k-space as (S, C, H, W) complex64 (C = 1 single-coil), targets (S, h, w)."""
    f = FastMRIFile(path)
    kspace = None
    targets: dict[str, torch.Tensor] = {}
    with open_h5(f.path) as hf:
        if f.has_kspace:
            kspace = _complex_kspace(_read_dataset(hf, "kspace", f.path), f.path, "kspace")
            if kspace.ndim == 3:
                kspace = kspace.unsqueeze(1)
        for key in f.target_keys:
            arr = _read_dataset(hf, key, f.path)
            arr = (np.abs(arr) if np.iscomplexobj(arr) else arr).astype(np.float32, copy=False)
            _check_finite(arr, key, f.path)
            targets[key] = torch.from_numpy(np.ascontiguousarray(arr))
    return FastMRIVolume(file=f.path, kspace=kspace, targets=targets, mask=f.mask, attrs=dict(f.attrs),
                         header=f.header)


# --------------------------------------------------------------------------------------------------
# Cropping
# --------------------------------------------------------------------------------------------------
def center_crop(x, shape: tuple[int, int]):
    """Centre-crop the last two dims to ``shape`` = (h, w), fastMRI convention: start = (size - crop) // 2.

    Works on torch tensors and numpy arrays. Raises ShapeError if the crop is larger than the data.
    """
    h, w = int(shape[0]), int(shape[1])
    H, W = int(x.shape[-2]), int(x.shape[-1])
    if not (0 < h <= H and 0 < w <= W):
        raise ShapeError(f"cannot centre-crop {(H, W)} to {(h, w)}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


def clamp_crop_size(data_shape: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Crop size limited to the data (fastMRI brain files can be narrower than the 320x320 recon size)."""
    return min(int(crop[0]), int(data_shape[-2])), min(int(crop[1]), int(data_shape[-1]))
