"""Retrospective undersampling and torch Datasets that yield :class:`~mrrecon.data.sample.Sample` objects.

One slice becomes a Sample in five explicit steps (:func:`make_slice_sample`):

1. full k-space ``(C, H, W)`` of the slice (fastMRI h5; or ``fft2c`` of image-domain data, flagged in
   ``meta.extra['kspace_synthesised']``); with ``crop`` the coil images are centre-cropped and
   transformed back (image-domain crop, as score-based MRI papers do for 320x320 fastMRI k-space);
2. target: the file's ``reconstruction_rss``/``reconstruction_esc`` when it has the k-space's (H, W),
   else the RSS of ``ifft2c`` of the full k-space (``meta.extra['target_source']`` says which). fastMRI
   targets are stored cropped to the header's recon size (e.g. 320x320) while k-space is larger (e.g.
   640x368); then the full-size RSS is used and ``meta.extra['recon_size']`` holds the crop that metrics
   must apply to both reconstruction and target (``center_crop(x, recon_size)``), which reproduces the
   stored target;
3. mask from ``mrrecon.physics.masks.make_mask`` with a recorded seed (``meta.seed``), or the file's own sampling
   (kind ``'file'``, or ``'auto'`` on k-space that is already undersampled: a stored ``mask`` or
   :func:`measured_sampling`); a retrospective mask on already undersampled k-space is a DataError;
4. undersampling: zeros outside the mask, k-space unchanged inside;
5. normalisation ``normalise='max'``: ``scale = max |zero-filled image|`` (RSS over coils of
   ``ifft2c(undersampled k-space)``), computed from measured data only; k-space and target are divided by
   it and ``meta.scale = scale``, so ``physical image = network image * meta.scale``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from mrrecon.data.fastmri import FastMRIFile, center_crop, clamp_crop_size
from mrrecon.data.formats import SampleSource, file_format, load_sample_source
from mrrecon.data.paired import Pair, find_pairs
from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c

Normalise = Literal["max", "none"]
CropSpec = tuple[int, int] | Literal["recon"] | None
FILE_MASK = "file"  # mask kind meaning "use the file's own sampling" (stored 'mask', or its measured samples)
AUTO_MASK = "auto"  # the file's own sampling when it is already undersampled, else DEFAULT_MASK_KIND
DEFAULT_MASK_KIND = "random1d"
# Already-undersampled k-space (see measured_sampling): unmeasured phase-encode columns inside the measured range
# (1-D), or unmeasured samples inside the measured bounding box (2-D; above an elliptical shutter's 21.5 %).
UNDERSAMPLED_MIN_GAP_FRACTION = 0.1
UNDERSAMPLED_MIN_ZERO_FRACTION_2D = 0.3
DEFAULT_TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")  # ground truths, not submissions


# --------------------------------------------------------------------------------------------------
# Seeds and masks
# --------------------------------------------------------------------------------------------------
def derive_seed(*parts: Any) -> int:
    """A seed in [0, 2**31 - 1) from any parts, stable across processes and machines (SHA-256, not hash())."""
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**31 - 1)


def _mask_tensor(mask: Any) -> torch.Tensor:
    m = mask.mask if hasattr(mask, "mask") and not isinstance(mask, (torch.Tensor, np.ndarray)) else mask
    m = torch.as_tensor(m)
    if m.dtype != torch.bool:
        if torch.is_complex(m) or not torch.all((m == 0) | (m == 1)):
            raise ShapeError("mask values must be boolean or {0, 1}")
        m = m != 0
    return m


def undersample(kspace_full: torch.Tensor, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep k-space where ``mask`` is True and set it to exactly 0 elsewhere.

    kspace_full: ``(..., C, H, W)`` complex. mask: a MaskResult (``.mask``) or a tensor/array of shape
    ``(W,)``, ``(H, W)``, ``(1, 1, W)``, ``(1, H, W)`` (or batched ``(B, 1, 1|H, W)``), bool or {0, 1}.
    Returns ``(kspace_under, mask)`` with the mask as bool ``(1, 1, W)``/``(1, H, W)`` (batched kept) on
    the k-space's device.
    """
    if not torch.is_complex(kspace_full) or kspace_full.ndim < 3:
        raise ShapeError(f"k-space must be complex (..., C, H, W); got {tuple(kspace_full.shape)} "
                         f"{kspace_full.dtype}")
    m = _mask_tensor(mask).to(kspace_full.device)
    H, W = kspace_full.shape[-2:]
    if m.ndim == 1:
        m = m.view(1, 1, -1)
    elif m.ndim == 2:
        m = m.unsqueeze(0)
    ok = (m.ndim >= 3 and m.shape[-1] == W and m.shape[-2] in (1, H) and m.shape[-3] == 1
          and m.ndim <= kspace_full.ndim)
    if ok and m.ndim > 3:
        ok = all(ms in (1, ks) for ms, ks in zip(m.shape[:-3], kspace_full.shape[:-3], strict=False))
    if not ok:
        raise ShapeError(f"mask shape {tuple(m.shape)} does not fit k-space {tuple(kspace_full.shape)} "
                         "(expected (1, 1, W) or (1, H, W))")
    under = torch.where(m, kspace_full, torch.zeros((), dtype=kspace_full.dtype, device=kspace_full.device))
    return under, m


def _make_mask(kind: str, shape: tuple[int, int], acceleration: float, center_fraction: float | None,
               seed: int, options: dict[str, Any]):
    from mrrecon.physics.masks import make_mask

    return make_mask(kind, shape, acceleration, center_fraction=center_fraction, seed=seed, **options)


@dataclass
class _FileMask:
    """A stored mask dressed like a MaskResult (kind 'file')."""

    mask: torch.Tensor
    kind: str = FILE_MASK
    acceleration: float | None = None
    effective_acceleration: float | None = None
    center_fraction: float | None = None


def _file_mask(stored: torch.Tensor | None, shape: tuple[int, int], file) -> _FileMask:
    if stored is None:
        raise DataError("mask_kind='file' but the file has no 'mask' dataset", file)
    m = _mask_tensor(stored.squeeze()) if stored.ndim > 1 else _mask_tensor(stored)
    m = m.view(1, 1, -1) if m.ndim == 1 else m.view(1, *m.shape[-2:])
    if m.shape[-1] != shape[1] or m.shape[-2] not in (1, shape[0]):
        raise ShapeError(f"stored mask {tuple(stored.shape)} does not fit k-space {shape}", file)
    frac = float(m.float().mean())
    eff = 1.0 / frac if frac > 0 else float("inf")
    return _FileMask(mask=m, acceleration=eff, effective_acceleration=eff)


@dataclass
class MeasuredSampling:
    """The sampling pattern of k-space that is already undersampled: ``mask`` (1, 1, W) for a 1-D (column)
    pattern or (1, H, W) for a 2-D one, True where any coil holds a non-zero value."""

    mask: torch.Tensor
    pattern: str  # "1-D" | "2-D"

    @property
    def fraction(self) -> float:
        return float(self.mask.float().mean())

    @property
    def effective_acceleration(self) -> float:
        return 1.0 / self.fraction if self.fraction > 0 else float("inf")

    def describe(self) -> str:
        if self.pattern == "1-D":
            n, w = int(self.mask.sum()), int(self.mask.shape[-1])
            return f"{n} of {w} phase-encode lines measured, effective {self.effective_acceleration:.2f}x"
        return (f"{self.fraction:.1%} of k-space samples measured (2-D pattern), effective "
                f"{self.effective_acceleration:.2f}x")


def measured_sampling(kspace: torch.Tensor) -> MeasuredSampling | None:
    """The sampling of ``kspace`` (C, H, W) if it is already undersampled, else None.

    A sample is measured when any coil holds a non-zero value. Zero bands at the edges (zero padding, partial
    Fourier) are not undersampling, so only the bounding box of the measured samples counts: k-space whose
    columns inside it are each all measured or all empty is a 1-D pattern, undersampled when at least
    ``UNDERSAMPLED_MIN_GAP_FRACTION`` of those columns are empty; otherwise it is undersampled when at least
    ``UNDERSAMPLED_MIN_ZERO_FRACTION_2D`` of the samples inside the box are empty (2-D pattern). Fully sampled
    data hold no exact zeros inside the box, so both thresholds leave a wide margin.
    """
    sampled = (kspace != 0).reshape(-1, *kspace.shape[-2:]).any(dim=0)  # (H, W)
    if not bool(sampled.any()):
        return None  # all zero: refused later ("zero-filled image is all zero")
    rows, cols = sampled.any(dim=1), sampled.any(dim=0)
    r = torch.nonzero(rows).flatten()
    c = torch.nonzero(cols).flatten()
    box = sampled[int(r[0]):int(r[-1]) + 1, int(c[0]):int(c[-1]) + 1]
    box_cols = box.any(dim=0)
    if bool((box == box_cols.unsqueeze(0)).all()):  # every column all measured or all empty
        if 1.0 - float(box_cols.float().mean()) < UNDERSAMPLED_MIN_GAP_FRACTION:
            return None
        return MeasuredSampling(mask=cols.view(1, 1, -1).clone(), pattern="1-D")
    if 1.0 - float(box.float().mean()) < UNDERSAMPLED_MIN_ZERO_FRACTION_2D:
        return None
    return MeasuredSampling(mask=sampled.view(1, *sampled.shape).clone(), pattern="2-D")


def _complex_array(arr: np.ndarray, path, what: str) -> torch.Tensor:
    if arr.dtype.names is not None or not np.iscomplexobj(arr):
        arr = arr.astype(np.complex64) if arr.dtype.names is None else arr["r"] + 1j * arr["i"]
    arr = np.ascontiguousarray(arr, dtype=np.complex64)
    if not np.isfinite(arr.view(np.float32)).all():
        raise DataError(f"{what} contains NaN or inf values", path)
    return torch.from_numpy(arr)


# --------------------------------------------------------------------------------------------------
# Slice sources: fastMRI h5 (lazy) and everything else (via load_sample_source, cached)
# --------------------------------------------------------------------------------------------------
class _H5Slices:
    def __init__(self, path: Path, info: FastMRIFile | None = None):
        self.file = info if info is not None else FastMRIFile(path)
        if not self.file.has_kspace:
            raise DataError(f"missing key 'kspace'; the file has {list(self.file.keys)}", path)
        self.path = Path(path)
        self.recon_size = self.file.recon_size
        self.stored_mask = self.file.mask
        self.attrs = self.file.attrs

    @property
    def num_slices(self) -> int:
        return self.file.num_slices

    def kspace(self, s: int) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.file.kspace(s), {}

    def stored_target(self, s: int, key: str | None) -> tuple[torch.Tensor | None, str | None]:
        keys = (key,) if key is not None else DEFAULT_TARGET_KEYS
        for k in keys:
            if k in self.file.keys:
                return self.file.target(s, k), k
        if key is not None:
            self.file.resolve_target_key(key)  # raises a DataError listing the keys
        return None, None

    def coil_maps(self, s: int, key: str) -> torch.Tensor:
        arr = self.file.read_slice(key, s)
        maps = _complex_array(arr, self.path, f"{key} slice {s}")
        if maps.ndim == 2:
            maps = maps.unsqueeze(0)
        return maps


def _stamp(path: Path) -> tuple:
    """Size and modification time of the file(s) behind ``path``: part of the cache key, so that a file changed
    on disk is read again (BART pairs: both files; folders: the folder)."""
    files = [path.with_suffix(".cfl"), path.with_suffix(".hdr")] if file_format(path) == "cfl" else [path]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@lru_cache(maxsize=2)
def _cached_source(path: str, domain: str, coil_axis, slice_axis, key, stamp=None) -> SampleSource:
    return load_sample_source(path, domain=domain, coil_axis=coil_axis, slice_axis=slice_axis, key=key)


class _ArraySlices:
    def __init__(self, path: Path, domain: str = "auto", coil_axis: int | None = None,
                 slice_axis: int | None = None, key: str | None = None):
        self.path = Path(path)
        self._args = (str(path), domain, coil_axis, slice_axis, key)
        src = self.source
        self.kind = src.kind
        self.recon_size = src.extra.get("recon_size")
        self.stored_mask = None
        self.attrs = dict(src.extra.get("attrs") or {})
        self.real_valued = bool(src.extra.get("real_valued"))
        self._num_slices = src.num_slices

    @property
    def source(self) -> SampleSource:
        return _cached_source(*self._args, _stamp(self.path))

    @property
    def num_slices(self) -> int:
        return self._num_slices

    def kspace(self, s: int) -> tuple[torch.Tensor, dict[str, Any]]:
        data = self.source.data[s]
        if self.kind == "kspace":
            return data.clone(), {}
        note = {"kspace_synthesised": True, "synthesised_from": "image (fft2c)"}
        if self.real_valued:
            note["hermitian_symmetric"] = True  # k-space of a real image: k(-f) = conj(k(f))
        return fft2c(data), note

    def stored_target(self, s: int, key: str | None):
        return None, None

    def coil_maps(self, s: int, key: str) -> torch.Tensor:
        raise DataError(f"coil_maps_key={key!r}: coil maps are read from fastMRI h5 files only", self.path)


def _open_slices(path: str | os.PathLike, domain: str = "auto", coil_axis: int | None = None,
                 slice_axis: int | None = None, key: str | None = None, *,
                 image_only_ok: bool = False) -> _H5Slices | _ArraySlices:
    """fastMRI h5 with k-space and no loader options -> lazy per-slice reads; anything else ->
    ``load_sample_source`` (whole volume, cached).

    A fastMRI h5 without ``kspace`` (only ``reconstruction_rss``/``_esc``) is refused: nothing measured is there
    to reconstruct. ``domain='image'`` (or ``key=<the image dataset>``) opts in to k-space synthesised from the
    stored image; ``image_only_ok`` allows it silently (fully sampled references of multi-contrast pairs).
    """
    path = Path(path)
    plain = domain == "auto" and coil_axis is None and slice_axis is None and key is None
    if plain and file_format(path) == "h5":
        info = FastMRIFile(path)
        if info.has_kspace:
            return _H5Slices(path, info)
        if not image_only_ok:
            raise DataError(f"no 'kspace' dataset, only the image(s) {', '.join(info.target_keys)}: there is no "
                            "measured k-space to reconstruct. To simulate k-space from the image (fft2c, "
                            "Hermitian, not comparable to measured data) opt in with the loader option "
                            "domain=image (FILE::domain=image)", path)
    return _ArraySlices(path, domain=domain, coil_axis=coil_axis, slice_axis=slice_axis, key=key)


# --------------------------------------------------------------------------------------------------
# One slice -> one Sample
# --------------------------------------------------------------------------------------------------
def _crop_size(crop: CropSpec, recon_size, shape: tuple[int, int], file) -> tuple[int, int] | None:
    if crop is None:
        return None
    if crop == "recon":
        if recon_size is None:
            raise DataError("crop='recon' but the file has no recon size (no ISMRMRD header or target)", file)
        crop = recon_size
    if isinstance(crop, str) or len(crop) != 2:
        raise ConfigError(f"crop must be None, 'recon' or (h, w); got {crop!r}")
    return clamp_crop_size(shape, crop)


def make_slice_sample(
    kspace_full: torch.Tensor,
    mask_result: Any,
    *,
    stored_target: torch.Tensor | None = None,
    coil_maps: torch.Tensor | None = None,
    normalise: Normalise = "max",
    meta: SampleMeta | None = None,
) -> Sample:
    """Undersample ``kspace_full`` (C, H, W), attach the target, normalise, and return a validated Sample.

    The target is ``stored_target`` when given (same (H, W) as the k-space), else the RSS of
    ``ifft2c(kspace_full)``. ``coil_maps`` (C, H, W) are attached unchanged (sensitivities carry no
    intensity scale). ``meta`` is completed with the mask description and ``scale``.
    """
    meta = replace(meta) if meta is not None else SampleMeta()
    meta.extra = dict(meta.extra)
    if stored_target is not None and tuple(stored_target.shape[-2:]) != tuple(kspace_full.shape[-2:]):
        raise ShapeError(f"target {tuple(stored_target.shape)} does not match k-space "
                         f"{tuple(kspace_full.shape)}", meta.file)
    target = stored_target if stored_target is not None else rss(ifft2c(kspace_full), dim=-3)
    kspace, mask = undersample(kspace_full, mask_result)
    if normalise == "max":
        scale = float(rss(ifft2c(kspace), dim=-3).max())
        if not np.isfinite(scale) or scale <= 0:
            raise DataError("zero-filled image is all zero (empty k-space or empty mask)", meta.file)
        kspace = kspace / scale
        target = target / scale
    elif normalise == "none":
        scale = 1.0
    else:
        raise ConfigError(f"normalise must be 'max' or 'none'; got {normalise!r}")
    meta.mask_type = getattr(mask_result, "kind", meta.mask_type)
    meta.acceleration = _float_or_none(getattr(mask_result, "acceleration", meta.acceleration))
    eff = getattr(mask_result, "effective_acceleration", None)
    if eff is None:
        frac = float(mask.float().mean())
        eff = 1.0 / frac if frac > 0 else float("inf")
    meta.effective_acceleration = float(eff)
    meta.center_fraction = _float_or_none(getattr(mask_result, "center_fraction", meta.center_fraction))
    meta.scale = scale
    meta.extra["normalise"] = normalise
    sample = Sample(kspace=kspace.to(torch.complex64), mask=mask, target=target.to(torch.float32),
                    coil_maps=None if coil_maps is None else coil_maps.to(torch.complex64), meta=meta)
    return sample.validate()


def _float_or_none(v) -> float | None:
    return None if v is None else float(v)


def _slice_sample(src, s: int, *, kind: str, acceleration: float, center_fraction: float | None,
                  mask_seed: int | None, normalise: Normalise, crop: CropSpec, target_key: str | None,
                  mask_options: dict[str, Any], contrast: str | None = None,
                  coil_maps_key: str | None = None, kspace_crop: tuple[int, int] | None = None) -> Sample:
    path = src.path
    k_full, note = src.kspace(s)
    extra: dict[str, Any] = dict(note)
    stored_mask = src.stored_mask
    stored_under = stored_mask is not None and not bool(stored_mask.all())
    if stored_mask is not None:
        _file_mask(stored_mask, tuple(k_full.shape[-2:]), path)  # a stored mask must fit the file's k-space
    if kspace_crop is not None:
        if stored_mask is not None and kind in (FILE_MASK, AUTO_MASK):
            raise ConfigError(f"mask_kind={kind!r} cannot be combined with kspace_crop (the stored mask fits the "
                              "uncropped k-space)")
        extra["kspace_cropped_from"] = tuple(int(n) for n in k_full.shape[-2:])
        k_full = center_crop(k_full, clamp_crop_size(tuple(k_full.shape[-2:]), tuple(kspace_crop)))
    H, W = k_full.shape[-2:]
    # Already undersampled? A stored 'mask' says so; else the measured (non-zero) samples tell.
    measured = None if stored_under or note.get("kspace_synthesised") else measured_sampling(k_full)
    if stored_under:
        how = (f"the file has a 'mask' dataset: {int(stored_mask.sum())} of {int(stored_mask.numel())} lines, "
               f"effective {float(stored_mask.numel()) / max(int(stored_mask.sum()), 1):.2f}x")
    elif measured is not None:
        how = measured.describe()
    if kind == AUTO_MASK:
        kind = FILE_MASK if stored_under or measured is not None else DEFAULT_MASK_KIND
        extra["mask_choice"] = ("auto: the file's own sampling (already undersampled)" if kind == FILE_MASK
                                else f"auto: {DEFAULT_MASK_KIND} (fully sampled k-space)")
    elif kind != FILE_MASK and (stored_under or measured is not None):
        raise DataError(f"k-space is already undersampled ({how}); a retrospective {kind!r} mask would "
                        "undersample it again. Reconstruct it with its own sampling: mask 'file' (--mask file "
                        "or --mask auto)", path)
    recon_size = src.recon_size
    crop_size = _crop_size(crop, recon_size, (H, W), path)
    if crop_size is not None and crop_size != (H, W):
        if kind == FILE_MASK:
            raise ConfigError("the file's own sampling (mask 'file') cannot be combined with crop (it fits the "
                              "uncropped k-space)")
        k_full = fft2c(center_crop(ifft2c(k_full), crop_size))
        extra["cropped_from"] = (int(H), int(W))
        H, W = crop_size
    maps = None
    if coil_maps_key is not None:
        maps = src.coil_maps(s, coil_maps_key)
        if tuple(maps.shape[-2:]) != (H, W):
            maps = center_crop(maps, (H, W))  # image-domain quantity: the same crop as the coil images
        if tuple(maps.shape) != tuple(k_full.shape):
            raise ShapeError(f"{coil_maps_key} slice {s} has shape {tuple(maps.shape)}, k-space "
                             f"{tuple(k_full.shape)}", path)
        extra["coil_maps_source"] = f"file:{coil_maps_key}"
    stored, stored_key = src.stored_target(s, target_key)
    if stored is not None and tuple(stored.shape) == (H, W):
        extra["target_source"] = f"file:{stored_key}"
    else:
        if stored is not None and target_key is not None:
            raise ShapeError(f"target {target_key!r} is {tuple(stored.shape)} but k-space is {(H, W)}; "
                             "use crop='recon' or leave target_key=None to compute the target", path)
        stored = None
        extra["target_source"] = "rss(ifft2c(kspace))"
    if recon_size is not None:
        extra["recon_size"] = clamp_crop_size((H, W), recon_size)
    if kind == FILE_MASK:
        if stored_under or (stored_mask is not None and measured is None):
            mask_result = _file_mask(stored_mask, (H, W), path)
            extra["mask_source"] = "file:mask"
        elif measured is not None:
            eff = measured.effective_acceleration
            mask_result = _FileMask(mask=measured.mask, acceleration=eff, effective_acceleration=eff)
            extra["mask_source"] = f"measured: {measured.pattern} pattern of non-zero k-space"
        else:
            raise DataError("mask 'file': the file has no 'mask' dataset and its k-space is fully sampled (no "
                            "unmeasured lines); choose a retrospective mask such as random1d", path)
        if stored_mask is not None and not stored_under and measured is not None:
            extra["mask_source"] += " (the stored 'mask' marks every line)"
        if stored_under or measured is not None:
            extra["already_undersampled"] = True  # the target is the zero-filled RSS, not a reference
    else:
        mask_result = _make_mask(kind, (H, W), acceleration, center_fraction, mask_seed, mask_options)
    if contrast is None:
        acq = src.attrs.get("contrast") or src.attrs.get("acquisition")
        contrast = None if acq in (None, "", "unknown") else str(acq)
    meta = SampleMeta(file=str(path), slice=int(s), seed=None if kind == FILE_MASK else int(mask_seed),
                      contrast=contrast, extra=extra)
    return make_slice_sample(k_full, mask_result, stored_target=stored, coil_maps=maps, normalise=normalise,
                             meta=meta)


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------
def _expand_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.suffix.lower() in (".h5", ".hdf5")
                           and not q.name.startswith("."))
            if not files:
                raise DataError("folder holds no .h5 files", p)
            return files
        return [p]
    return [Path(q) for q in paths]


class _MaskPolicy:
    """Which mask (kind, acceleration, seed) slice ``s`` of ``file_name`` gets."""

    def __init__(self, mask_kinds, accelerations, center_fraction, seed, fixed_mask, mask_options):
        kinds = (mask_kinds,) if isinstance(mask_kinds, str) else tuple(mask_kinds)
        accs = (accelerations,) if isinstance(accelerations, (int, float)) else tuple(accelerations)
        if not kinds or not accs:
            raise ConfigError("mask_kinds and accelerations must not be empty")
        self.combos = [(k, float(a)) for k in kinds for a in accs]
        self.center_fraction = center_fraction
        self.seed = int(seed)
        self.fixed_mask = bool(fixed_mask)
        self.options = dict(mask_options or {})
        self.epoch = 0

    def choose(self, file_name: str, s: int, index: int) -> tuple[str, float, int]:
        if self.fixed_mask:  # evaluation: a function of (seed, file name, slice) only
            key = (self.seed, file_name, s)
        else:  # training: new masks every epoch, still reproducible from (seed, epoch, index)
            key = (self.seed, "train", self.epoch, index)
        kind, acc = self.combos[derive_seed(*key, "choice") % len(self.combos)]
        return kind, acc, derive_seed(*key, "mask")


class SliceDataset(Dataset):
    """Slices of fastMRI h5 files (or other formats, via ``load_sample_source``) as undersampled Samples.

    The index of (file, slice) is built from dataset shapes only; k-space is read per item.
    ``fixed_mask=True`` (evaluation): kind, acceleration and mask seed are derived from (seed, file name,
    slice), so every run and every machine sees the same masks. ``fixed_mask=False`` (training): derived
    from (seed, epoch, index); call :meth:`set_epoch` each epoch (before creating DataLoader iterators).
    ``mask_kinds=('file',)`` uses the mask stored in the file (fastMRI test/challenge data).
    ``crop``: None (native size), ``'recon'`` (header recon size) or (h, w): image-domain crop.
    ``skip_bad_files=True`` leaves out files that fail to open (listed in ``.skipped``) instead of raising.
    ``coil_maps_key``: a dataset of the h5 files, (slices, C, H, W) complex, attached as ``Sample.coil_maps``
    (e.g. the simulator's true sensitivities; cropped like the coil images).
    """

    def __init__(
        self,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        mask_kinds: Sequence[str] | str = ("random1d",),
        accelerations: Sequence[float] | float = (4,),
        center_fraction: float | None = None,
        seed: int = 0,
        fixed_mask: bool = True,
        target_key: str | None = None,
        crop: CropSpec = None,
        normalise: Normalise = "max",
        mask_options: dict[str, Any] | None = None,
        skip_bad_files: bool = False,
        source_options: dict[str, Any] | None = None,
        coil_maps_key: str | None = None,
    ):
        if normalise not in ("max", "none"):
            raise ConfigError(f"normalise must be 'max' or 'none'; got {normalise!r}")
        self.policy = _MaskPolicy(mask_kinds, accelerations, center_fraction, seed, fixed_mask, mask_options)
        self.target_key = target_key
        self.coil_maps_key = coil_maps_key
        self.crop = crop
        self.normalise = normalise
        self.sources: list[_H5Slices | _ArraySlices] = []
        self.skipped: list[tuple[str, str]] = []
        for p in _expand_paths(paths):
            try:
                self.sources.append(_open_slices(p, **(source_options or {})))
            except DataError as e:
                if not skip_bad_files:
                    raise
                self.skipped.append((str(p), str(e)))
                warnings.warn(f"skipping {e}", stacklevel=2)
        self.index = [(i, s) for i, src in enumerate(self.sources) for s in range(src.num_slices)]

    def set_epoch(self, epoch: int) -> None:
        self.policy.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _sample(self, src, s: int, index: int, contrast: str | None = None) -> Sample:
        kind, acc, mseed = self.policy.choose(src.path.name, s, index)
        return _slice_sample(src, s, kind=kind, acceleration=acc, center_fraction=self.policy.center_fraction,
                             mask_seed=mseed, normalise=self.normalise, crop=self.crop,
                             target_key=self.target_key, mask_options=self.policy.options, contrast=contrast,
                             coil_maps_key=self.coil_maps_key)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        index %= len(self)
        i, s = self.index[index]
        return self._sample(self.sources[i], s, index)


class PairedSliceDataset(SliceDataset):
    """Slices of the target contrast (undersampled) with the fully sampled reference contrast image.

    ``pairs``: output of :func:`find_pairs`, tuples ``(subject, target_path, reference_path)``, or a folder
    (then ``find_pairs(folder, target_contrast, reference_contrast)``). Both files of a pair must have the
    same number of slices and (after ``crop``) the same (H, W). The reference is the file's stored target if
    it has the right size, else the RSS of its (possibly synthesised) full k-space, normalised to max 1;
    its divisor is ``meta.extra['reference_scale']``. ``reference_options``: loader options of the reference
    files (default: ``source_options``); with ``key`` they let both contrasts come from one file
    (``T2_FLAIR.mat`` with variables ``T2`` and ``FLAIR``). Other options as :class:`SliceDataset`.
    """

    def __init__(self, pairs, target_contrast: str, reference_contrast: str, *,
                 reference_options: dict[str, Any] | None = None, **options):
        if isinstance(pairs, (str, os.PathLike)):
            pairs = find_pairs(pairs, target_contrast, reference_contrast)
        pairs = [Pair(str(p[0]), Path(p[1]), Path(p[2])) for p in pairs]
        if not pairs:
            raise DataError(f"no {target_contrast}/{reference_contrast} pairs to load")
        self.pairs = pairs
        self.target_contrast, self.reference_contrast = target_contrast, reference_contrast
        skip = options.pop("skip_bad_files", False)
        super().__init__([p.target for p in pairs], skip_bad_files=False, **options)
        self.reference_sources = []
        kept_sources, kept_pairs = [], []
        ref_options = reference_options if reference_options is not None else options.get("source_options")
        for pair, src in zip(pairs, self.sources, strict=True):
            try:
                ref = _open_slices(pair.reference, **(ref_options or {}), image_only_ok=True)
                if ref.num_slices != src.num_slices:
                    raise DataError(f"{ref.num_slices} slices, but target {pair.target} has {src.num_slices}",
                                    pair.reference)
            except DataError as e:
                if not skip:
                    raise
                self.skipped.append((str(pair.reference), str(e)))
                warnings.warn(f"skipping pair {pair.subject}: {e}", stacklevel=2)
                continue
            kept_sources.append(src)
            kept_pairs.append(pair)
            self.reference_sources.append(ref)
        self.sources, self.pairs = kept_sources, kept_pairs
        self.index = [(i, s) for i, src in enumerate(self.sources) for s in range(src.num_slices)]

    def reference_image(self, i: int, s: int, shape: tuple[int, int]) -> tuple[torch.Tensor, float]:
        """Reference image of pair ``i``, slice ``s``, as (H, W) float32 with max 1, and its divisor."""
        ref = self.reference_sources[i]
        k_full, _ = ref.kspace(s)
        crop_size = _crop_size(self.crop, ref.recon_size, tuple(k_full.shape[-2:]), ref.path)
        if crop_size is not None and crop_size != tuple(k_full.shape[-2:]):
            k_full = fft2c(center_crop(ifft2c(k_full), crop_size))
        stored, _ = ref.stored_target(s, None)
        image = stored if stored is not None and tuple(stored.shape) == tuple(k_full.shape[-2:]) else (
            rss(ifft2c(k_full), dim=-3))
        if tuple(image.shape) != tuple(shape):
            raise ShapeError(f"reference image {tuple(image.shape)} does not match the target k-space "
                             f"{tuple(shape)} of {self.pairs[i].target}", ref.path)
        peak = float(image.max())
        if not np.isfinite(peak) or peak <= 0:
            raise DataError(f"reference slice {s} is all zero", ref.path)
        return (image / peak).to(torch.float32), peak

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        index %= len(self)
        i, s = self.index[index]
        sample = self._sample(self.sources[i], s, index, contrast=self.target_contrast)
        reference, ref_scale = self.reference_image(i, s, sample.shape)
        sample.reference = reference
        sample.meta.reference_contrast = self.reference_contrast
        sample.meta.extra.update(reference_file=str(self.pairs[i].reference), reference_scale=ref_scale,
                                 subject=self.pairs[i].subject)
        return sample.validate()


# --------------------------------------------------------------------------------------------------
# One file -> Samples (CLI, benchmark)
# --------------------------------------------------------------------------------------------------
def central_slices(num_slices: int, max_slices: int | None) -> list[int]:
    """The ``max_slices`` slices around the middle of a volume (all when None or enough)."""
    if max_slices is None or max_slices >= num_slices:
        return list(range(num_slices))
    if max_slices < 1:
        raise ConfigError(f"max_slices must be >= 1; got {max_slices}")
    start = (num_slices - max_slices) // 2
    return list(range(start, start + max_slices))


def samples_from_file(
    path: str | os.PathLike,
    *,
    mask_kind: str,
    acceleration: float,
    center_fraction: float | None = None,
    seed: int = 0,
    max_slices: int | None = None,
    normalise: Normalise = "max",
    crop: CropSpec = None,
    target_key: str | None = None,
    domain: Literal["auto", "image", "kspace"] = "auto",
    coil_axis: int | None = None,
    slice_axis: int | None = None,
    key: str | None = None,
    mask_options: dict[str, Any] | None = None,
    kspace_crop: tuple[int, int] | None = None,
) -> Iterator[Sample]:
    """Yield undersampled Samples from one file of any supported format.

    fastMRI h5 (multi- or single-coil) is read lazily; other formats go through
    :func:`~mrrecon.data.formats.load_sample_source` (``domain``, ``coil_axis``, ``slice_axis``, ``key``);
    image-domain data become k-space by ``fft2c`` (``meta.extra['kspace_synthesised'] = True``). Masks use
    the same seeds as ``SliceDataset(fixed_mask=True)``: ``derive_seed(seed, file name, slice, 'mask')``.
    ``max_slices`` keeps that many slices around the middle of the volume. ``mask_kind``: a retrospective kind
    (``random1d`` ...), ``'file'`` (the file's own sampling: its stored ``mask``, else its measured samples) or
    ``'auto'`` (``'file'`` for k-space that is already undersampled, else ``random1d``). A retrospective kind on
    k-space that is already undersampled (a stored ``mask``, or :func:`measured_sampling`) is a DataError: it
    would be undersampled twice. A fastMRI h5 without ``kspace`` is refused unless ``domain='image'``.
    ``kspace_crop=(h, w)`` keeps the central h x w of the full k-space before anything else (a lower
    resolution, same field of view): for data zero-padded in k-space, so that padding is not counted as
    sampled.
    """
    path = Path(path)
    src = _open_slices(path, domain=domain, coil_axis=coil_axis, slice_axis=slice_axis, key=key)
    if src.num_slices < 1:
        raise DataError("the file holds no slices", path)
    for s in central_slices(src.num_slices, max_slices):
        mseed = derive_seed(int(seed), path.name, s, "mask")
        sample = _slice_sample(src, s, kind=mask_kind, acceleration=float(acceleration),
                               center_fraction=center_fraction, mask_seed=mseed, normalise=normalise, crop=crop,
                               target_key=target_key, mask_options=dict(mask_options or {}),
                               kspace_crop=kspace_crop)
        if isinstance(src, _ArraySlices) and src.kind == "kspace":
            sample.meta.extra["input_zero_fraction"] = float((src.source.data[s] == 0).float().mean())
        yield sample
