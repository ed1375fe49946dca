"""Readers and writers for the array formats MR data arrive in, and one explicit loader for reconstruction.

``read_array(path, key=None)`` dispatches on the suffix and returns a numpy array exactly as stored
(logical axis order; no squeezing, no reorientation):

=====================  =====================================================================================
suffix                 notes
=====================  =====================================================================================
.npy / .npz            ``allow_pickle=False``; ``.npz`` needs ``key`` when it holds several arrays
.mat (v4-v7)           scipy; ``key`` names the variable, dotted for struct fields (``"data.images"``)
.mat (v7.3, HDF5)      h5py; axes reversed to MATLAB order, complex compound ``{real, imag}`` -> complex
.h5 / .hdf5            a dataset of any HDF5 file (``key`` as an HDF5 path)
.png/.jpg/.tif/.bmp    grayscale float32 of the stored values (RGB -> ITU-R 601 luma), not rescaled
.nii / .nii.gz         nibabel, voxel axes (i, j, k[, t]); scl_slope/inter applied
.dcm or a folder       pydicom; RescaleSlope/Intercept applied; a folder is a stack ``(slices, rows, cols)``
.cfl (+ .hdr)          BART: complex64, Fortran order, dims from the .hdr
=====================  =====================================================================================

``load_sample_source`` turns any of these into ``(slices, coils, H, W)`` complex64 with rules written in
its docstring and in docs/data.md; it never guesses the domain from the values.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mrrecon.data.fastmri import TARGET_KEYS, FastMRIFile, open_h5, read_fastmri_volume
from mrrecon.errors import DataError, ShapeError
from mrrecon.utils.io import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = (".npy", ".npz", ".mat", ".h5", ".hdf5", *IMAGE_SUFFIXES, *NIFTI_SUFFIXES, ".dcm",
                      ".ima", ".cfl")


def file_format(path: str | os.PathLike) -> str:
    """The format name of ``path``: npy, npz, mat, h5, image, nifti, dicom, cfl; DataError if unknown."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    suffix = p.suffix.lower()
    if suffix in (".cfl",) or (suffix == ".hdr" and p.with_suffix(".cfl").exists()):
        return "cfl"
    if suffix == "" and p.with_suffix(".cfl").exists():
        return "cfl"
    table = {".npy": "npy", ".npz": "npz", ".mat": "mat", ".h5": "h5", ".hdf5": "h5", ".dcm": "dicom",
             ".ima": "dicom", **{s: "image" for s in IMAGE_SUFFIXES}}
    if suffix in table:
        return table[suffix]
    raise DataError(f"unknown file type {suffix or '(no suffix)'!r}; supported: "
                    f"{', '.join(SUPPORTED_SUFFIXES)} or a folder of DICOM files", path)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read one array from ``path`` (see the module docstring for formats). DataError naming the file on
    a missing file, unknown suffix, unreadable content or missing key (listing the keys that exist)."""
    path = Path(path)
    fmt = file_format(path) if path.exists() or path.with_suffix(".cfl").exists() else None
    if fmt is None:
        raise DataError("file not found", path)
    reader = {"npy": _read_npy, "npz": _read_npz, "mat": _read_mat, "h5": _read_h5, "image": _read_image,
              "nifti": _read_nifti, "dicom": _read_dicom, "cfl": lambda p, k: read_cfl(p)}[fmt]
    try:
        return reader(path, key)
    except DataError:
        raise
    except Exception as e:  # any library failure on bad content becomes a DataError naming the file
        raise DataError(f"cannot read as {fmt}: {type(e).__name__}: {e}", path) from e


def _read_npy(path: Path, key: str | None) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _pick_key(keys: list[str], key: str | None, path: Path, what: str = "arrays") -> str:
    if key is not None:
        if key not in keys:
            raise DataError(f"missing key {key!r}; the file has {sorted(keys)}", path)
        return key
    if len(keys) == 1:
        return keys[0]
    raise DataError(f"the file holds {len(keys)} {what} {sorted(keys)}; choose one with key=...", path)


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return np.array(z[_pick_key(list(z.files), key, path)])


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    if _is_hdf5(path):
        return _read_mat73(path, key)
    import scipy.io

    data = scipy.io.loadmat(path)
    variables = [k for k in data if not k.startswith("__")]
    top, _, rest = (key or "").partition(".")
    name = _pick_key(variables, top or None, path, "variables")
    value = data[name]
    for part in filter(None, rest.split(".")):
        value = _mat_struct_field(value, part, path, name)
        name = f"{name}.{part}"
    if not isinstance(value, np.ndarray) or value.dtype.names is not None or value.dtype == object:
        raise DataError(f"variable {name!r} is not a numeric array (a struct or cell?); "
                        "name a numeric field with a dotted key, e.g. key='data.images'", path)
    return value


def _mat_struct_field(value: Any, part: str, path: Path, name: str) -> Any:
    if isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    names = getattr(getattr(value, "dtype", None), "names", None)
    if not names:
        raise DataError(f"{name!r} is not a struct, cannot take field {part!r}", path)
    if part not in names:
        raise DataError(f"struct {name!r} has no field {part!r}; fields: {list(names)}", path)
    field_value = value[part]
    if isinstance(field_value, np.ndarray) and field_value.dtype == object and field_value.size == 1:
        field_value = field_value.reshape(-1)[0]
    return field_value


def _read_mat73(path: Path, key: str | None) -> np.ndarray:
    """MATLAB v7.3 (HDF5): datasets are stored column-major, so h5py sees the axes reversed."""
    import h5py

    with open_h5(path) as hf:
        variables = [k for k in hf.keys() if not k.startswith("#")]
        top, _, rest = (key or "").partition(".")
        name = _pick_key(variables, top or None, path, "variables")
        node = hf[name]
        for part in filter(None, rest.split(".")):
            if not isinstance(node, h5py.Group) or part not in node:
                fields = list(node.keys()) if isinstance(node, h5py.Group) else []
                raise DataError(f"{name!r} has no field {part!r}; fields: {fields}", path)
            node, name = node[part], f"{name}.{part}"
        if not isinstance(node, h5py.Dataset):
            raise DataError(f"{name!r} is a struct; name a field with a dotted key; fields: "
                            f"{list(node.keys())}", path)
        arr = node[()]
        if node.attrs.get("MATLAB_class", b"") in (b"cell", b"struct") or arr.dtype == object:
            raise DataError(f"variable {name!r} is a cell/struct, not a numeric array", path)
    if arr.dtype.names is not None:
        names = arr.dtype.names
        if "real" not in names or "imag" not in names:
            raise DataError(f"variable {name!r} has compound dtype {arr.dtype} (expected real/imag)", path)
        real, imag = arr["real"], arr["imag"]
        ctype = np.complex128 if real.dtype == np.float64 else np.complex64
        arr = real.astype(ctype) + 1j * imag.astype(ctype)
    return np.ascontiguousarray(np.transpose(arr))


def _read_h5(path: Path, key: str | None) -> np.ndarray:
    import h5py

    with open_h5(path) as hf:
        names: list[str] = []
        hf.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
        name = _pick_key(names, key, path, "datasets")
        return np.array(hf[name][()], copy=True)


def _read_image(path: Path, key: str | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
            arr = np.asarray(im)
        elif im.mode in ("1",):
            arr = np.asarray(im.convert("L"))
        else:  # palette, RGB, RGBA, LA, CMYK: luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)
            rgb = np.asarray(im.convert("RGB")).astype(np.float32)
            arr = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.asarray(arr, dtype=np.float32)


def _read_nifti(path: Path, key: str | None) -> np.ndarray:
    import nibabel as nib

    img = nib.load(str(path))
    if np.issubdtype(img.get_data_dtype(), np.complexfloating):
        return np.asanyarray(img.dataobj)
    return img.get_fdata(dtype=np.float32)


def _dicom_pixels(ds, path: Path) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as e:
        raise DataError(f"cannot decode DICOM pixel data ({e}); compressed transfer syntaxes need an extra "
                        "pydicom pixel-data plugin", path) from None
    arr = arr.astype(np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def _read_dicom(path: Path, key: str | None) -> np.ndarray:
    import pydicom

    if not path.is_dir():
        with warnings.catch_warnings():  # pydicom's notes on odd files (e.g. "Expected implicit VR"): not ours
            warnings.simplefilter("ignore", UserWarning)
            return _dicom_pixels(pydicom.dcmread(path), path)
    slices = []
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ds = pydicom.dcmread(f)
        except pydicom.errors.InvalidDicomError:
            continue  # not a DICOM file (README, DICOMDIR-less extras ...)
        if "PixelData" in ds:
            slices.append((f, ds))
    if not slices:
        raise DataError("folder holds no DICOM images", path)
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise DataError(f"folder mixes {len(series)} DICOM series; give a folder with one series", path)
    order = _dicom_slice_order([ds for _, ds in slices])
    arrays = [_dicom_pixels(slices[i][1], slices[i][0]) for i in order]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ShapeError(f"DICOM slices have different sizes {sorted(shapes)}", path)
    return np.stack(arrays)


def _dicom_slice_order(datasets: list) -> list[int]:
    """Sort by position along the slice normal (ImagePositionPatient . (row x col direction)) when every
    slice has geometry and positions are distinct; else by InstanceNumber; else by file name."""
    n = len(datasets)
    try:
        positions = []
        for ds in datasets:
            iop = np.asarray(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            positions.append(float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
        if len(set(np.round(positions, 4))) == n:
            return sorted(range(n), key=lambda i: positions[i])
    except (AttributeError, ValueError, TypeError):
        pass
    numbers = [getattr(ds, "InstanceNumber", None) for ds in datasets]
    if all(v is not None for v in numbers) and len(set(numbers)) == n:
        return sorted(range(n), key=lambda i: int(numbers[i]))
    return list(range(n))


def _cfl_base(base: str | os.PathLike) -> Path:
    base = Path(base)
    return base.with_suffix("") if base.suffix.lower() in (".cfl", ".hdr") else base


def read_cfl(base: str | os.PathLike) -> np.ndarray:
    """Read a BART ``base.cfl``/``base.hdr`` pair: complex64, Fortran (column-major) order."""
    base = _cfl_base(base)
    hdr, cfl = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    for p in (hdr, cfl):
        if not p.exists():
            raise DataError("file not found (BART data need both .cfl and .hdr)", p)
    lines = [ln for ln in hdr.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        dims = [int(x) for x in lines[0].split()]
    except (IndexError, ValueError):
        raise DataError("BART header has no dimension line", hdr) from None
    expected = int(np.prod(dims)) * 8
    size = cfl.stat().st_size
    if size != expected:
        raise DataError(f"BART data has {size} bytes, header dims {dims} need {expected} (truncated?)", cfl)
    return np.fromfile(cfl, dtype=np.complex64).reshape(dims, order="F")


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _numpy(arr: Any) -> np.ndarray:
    if isinstance(arr, torch.Tensor):
        t = arr.detach().cpu()
        return t.resolve_conj().numpy() if t.is_complex() else t.numpy()
    return np.asarray(arr)


def write_cfl(base: str | os.PathLike, arr: Any) -> Path:
    """Write a BART pair ``base.cfl`` + ``base.hdr`` (complex64, Fortran order). Each file is replaced
    atomically; the data file is written before the header."""
    base = _cfl_base(base)
    a = _numpy(arr).astype(np.complex64)
    dims = list(a.shape) or [1]
    with atomic_output(base.with_suffix(".cfl")) as tmp:
        np.asfortranarray(a).ravel(order="F").tofile(tmp)
    with atomic_output(base.with_suffix(".hdr")) as tmp:
        tmp.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    return base


def write_array(path: str | os.PathLike, arr: Any, *, key: str = "data", affine: Any = None) -> Path:
    """Write ``arr`` atomically; the format follows the suffix.

    .npy (exact), .mat (v5, variable ``key``), .nii/.nii.gz (``affine`` default identity; complex64 kept),
    .cfl (BART), .h5 (dataset ``key``), .png: magnitude; uint8 input written as 8-bit unchanged, anything
    else scaled by its max to 16-bit (lossy, for viewing).
    """
    path = Path(path)
    a = _numpy(arr)
    name = path.name.lower()
    if name.endswith(".cfl"):
        write_cfl(path, a)
        return path
    if name.endswith(".npy"):
        with atomic_output(path) as tmp:
            np.save(tmp, a)
    elif name.endswith(".mat"):
        import scipy.io

        with atomic_output(path) as tmp:
            scipy.io.savemat(tmp, {key: a})
    elif name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib

        if a.dtype == np.float64:
            a = a.astype(np.float32)
        if a.dtype == np.complex128:
            a = a.astype(np.complex64)
        img = nib.Nifti1Image(a, np.eye(4) if affine is None else np.asarray(affine, float))
        with atomic_output(path) as tmp:
            nib.save(img, str(tmp))
    elif name.endswith((".h5", ".hdf5")):
        import h5py

        with atomic_output(path) as tmp, h5py.File(tmp, "w") as hf:
            hf.create_dataset(key, data=a)
    elif name.endswith(".png"):
        from PIL import Image

        if a.ndim != 2:
            raise ShapeError(f"PNG needs a 2-D image; got shape {a.shape}", path)
        if a.dtype != np.uint8:
            mag = np.abs(a).astype(np.float64)
            peak = mag.max() if mag.size and np.isfinite(mag).all() else 0.0
            a = np.round(mag / peak * 65535).astype(np.uint16) if peak > 0 else np.zeros(a.shape, np.uint16)
        with atomic_output(path) as tmp:
            Image.fromarray(a).save(tmp, format="PNG")
    else:
        raise DataError("cannot write this file type; use .npy, .mat, .nii, .nii.gz, .cfl, .h5 or .png", path)
    return path


# --------------------------------------------------------------------------------------------------
# Loading something to reconstruct
# --------------------------------------------------------------------------------------------------
@dataclass
class SampleSource:
    """Data ready to become Samples: ``data`` is (slices, coils, H, W) complex64 in domain ``kind``."""

    kind: Literal["kspace", "image"]
    data: torch.Tensor
    file: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_slices(self) -> int:
        return int(self.data.shape[0])


def _arrange(arr: np.ndarray, coil_axis: int | None, slice_axis: int | None, path: Path) -> np.ndarray:
    """Move ``slice_axis`` to 0 and ``coil_axis`` to 1 (inserting singletons where absent), squeeze the
    other singleton axes; exactly two axes, (H, W) in their stored order, must remain."""
    shape = arr.shape
    n = arr.ndim

    def norm(ax: int | None, what: str) -> int | None:
        if ax is None:
            return None
        if not -n <= ax < n:
            raise ShapeError(f"{what}={ax} is out of range for an array of shape {shape}", path)
        return ax % n

    c, s = norm(coil_axis, "coil_axis"), norm(slice_axis, "slice_axis")
    if c is not None and c == s:
        raise ShapeError(f"coil_axis and slice_axis are the same axis ({c})", path)
    rest = [ax for ax in range(n) if ax not in (c, s)]
    spatial = [ax for ax in rest if shape[ax] != 1]
    if len(spatial) != 2:
        hint = "" if len(spatial) < 2 else (" pass the loader options coil_axis= and/or slice_axis= (inline: "
                                            "FILE::coil_axis=-1) to say what the others are;")
        raise ShapeError(f"array of shape {shape} leaves {len(spatial)} non-singleton image axes "
                         f"{[shape[a] for a in spatial]} (need exactly 2: H, W);{hint} "
                         f"coil_axis={coil_axis}, slice_axis={slice_axis}", path)
    order = ([s] if s is not None else []) + ([c] if c is not None else []) + spatial
    out = np.transpose(arr, order + [ax for ax in range(n) if ax not in order])
    out = out.reshape([shape[a] for a in order])
    if s is None:
        out = out[None]
    if c is None:
        out = out[:, None]
    return out


def load_sample_source(
    path: str | os.PathLike,
    *,
    domain: Literal["auto", "image", "kspace"] = "auto",
    coil_axis: int | None = None,
    key: str | None = None,
    slice_axis: int | None = None,
) -> SampleSource:
    """Load a file as (slices, coils, H, W) complex64 k-space or image data, by explicit rules.

    Domain (``domain='auto'``): fastMRI ``.h5`` with a ``kspace`` dataset -> k-space; BART ``.cfl`` ->
    k-space; everything else (npy, npz, mat, h5 without kspace, png/jpg, NIfTI, DICOM) -> image. Values
    are never inspected to guess; pass ``domain='kspace'`` for e.g. a ``.mat`` holding k-space.
    ``domain='image'`` on a fastMRI file reads its target (``key`` or the first of reconstruction_rss,
    reconstruction_esc, reconstruction).

    Axes: the stored order is kept; ``slice_axis`` moves to 0 and ``coil_axis`` to 1; remaining singleton
    axes are dropped and exactly two axes (H, W) must remain, else ShapeError. Defaults: fastMRI as
    stored; NIfTI ``slice_axis=2`` (the k voxel axis) for 3-D and higher; DICOM folders/multi-frame
    ``slice_axis=0``; BART ``coil_axis=3`` and, for images whose x, y, z are all > 1, ``slice_axis=2``
    (3-D k-space needs an explicit ``slice_axis``, after an inverse FFT along it).
    Real input becomes complex with zero imaginary part (``extra['real_valued'] = True``).
    """
    path = Path(path)
    if not path.exists() and not (path.suffix == "" and path.with_suffix(".cfl").exists()):
        raise DataError("file not found", path)
    if domain not in ("auto", "image", "kspace"):
        raise DataError(f"domain must be 'auto', 'image' or 'kspace'; got {domain!r}", path)
    fmt = file_format(path)
    extra: dict[str, Any] = {"format": fmt}

    if fmt == "h5" and key in (None, "kspace", *TARGET_KEYS) and coil_axis is None and slice_axis is None:
        with open_h5(path) as hf:
            try:
                names = set(hf.keys())
            except Exception as e:  # noqa: BLE001 -- a damaged index
                raise DataError(f"unreadable HDF5 file (truncated or corrupt): {type(e).__name__}: {e}", path) from None
            fastmri_like = "kspace" in names or any(k in names for k in TARGET_KEYS)
        if fastmri_like:
            return _load_fastmri_source(path, domain, key, extra)

    arr = read_array(path, key)
    extra["stored_shape"] = tuple(arr.shape)
    if arr.dtype.kind not in "biufc":
        raise DataError(f"array has non-numeric dtype {arr.dtype}", path)
    if fmt == "cfl":
        kind = "image" if domain == "image" else "kspace"
        if coil_axis is None and arr.ndim > 3:
            coil_axis = 3
        if slice_axis is None and arr.ndim >= 3 and all(d > 1 for d in arr.shape[:3]):
            if kind == "kspace":
                raise ShapeError(f"BART k-space {arr.shape} has three non-singleton spatial dims (3-D "
                                 "k-space?); inverse-FFT along the slice direction and pass slice_axis=", path)
            slice_axis = 2
    else:
        kind = "kspace" if domain == "kspace" else "image"
        if slice_axis is None and fmt == "nifti" and arr.ndim >= 3:
            slice_axis = 2
        if slice_axis is None and fmt == "dicom" and arr.ndim == 3:
            slice_axis = 0
    data = _arrange(arr, coil_axis, slice_axis, path)
    extra.update(coil_axis=coil_axis, slice_axis=slice_axis, real_valued=not np.iscomplexobj(data))
    return _finish(kind, data, path, extra)


def _finish(kind: str, data: np.ndarray, path: Path, extra: dict[str, Any]) -> SampleSource:
    data = np.ascontiguousarray(data).astype(np.complex64, copy=False)
    finite = np.isfinite(data.view(np.float32))
    if not finite.all():
        raise DataError(f"{'k-space' if kind == 'kspace' else 'image'} contains "
                        f"{int(finite.size - finite.sum())} NaN or inf values", path)
    return SampleSource(kind=kind, data=torch.from_numpy(data), file=str(path), extra=extra)


def _load_fastmri_source(path: Path, domain: str, key: str | None, extra: dict[str, Any]) -> SampleSource:
    info = FastMRIFile(path)
    extra.update(fastmri=True, recon_size=info.recon_size, attrs=dict(info.attrs))
    if key == "kspace" and domain == "image":
        raise DataError("key='kspace' with domain='image': read the k-space as k-space", path)
    if key not in (None, "kspace") and domain == "kspace":
        raise DataError(f"key={key!r} is an image (reconstruction) dataset, but domain='kspace'", path)
    want_image = domain == "image" or (key is not None and key != "kspace") or (
        domain == "auto" and key is None and not info.has_kspace)
    if want_image:
        if not info.target_keys:
            raise DataError(f"no reconstruction dataset to read as image; the file has {list(info.keys)}",
                            path)
        target_key = info.resolve_target_key(key)
        vol = read_fastmri_volume(path)
        extra.update(target_key=target_key, real_valued=True)
        return _finish("image", vol.targets[target_key].numpy()[:, None], path, extra)
    if not info.has_kspace:
        raise DataError(f"missing key 'kspace'; the file has {list(info.keys)}", path)
    vol = read_fastmri_volume(path)
    extra.update(real_valued=False)
    return _finish("kspace", vol.kspace.numpy(), path, extra)
