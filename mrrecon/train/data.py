"""Training and validation data: the simulator cache, augmented training slices, seeded batch order.

Training sample ``index`` of epoch ``e`` is made in these steps (``TrainingSlices.__getitem__``):

1. the fully sampled k-space (C, H, W) of its (file, slice) is read (fastMRI h5: ``FastMRIFile``);
2. coil images = ifft2c(k); crop (random position when ``data.random_crop``, else centred; or the header's
   recon size) and random left-right / up-down flips, all drawn from ``derive_seed(seed, 'augment', e,
   index)``; for paired data the reference gets the identical crop and flips; k-space = fft2c(images);
   with ``data.reference_augment`` the reference (only) is then misregistered, re-contrasted, biased or
   dropped, from its own seed ``derive_seed(seed, 'reference', e, index)`` (:func:`augment_reference`);
3. the batch's mask kind and acceleration (drawn once per batch by :class:`EpochBatchSampler`) and the
   sample's own mask seed ``derive_seed(seed, 'mask', e, index)`` -> ``make_mask``;
4. ``make_slice_sample``: undersample, target = RSS of the (cropped) coil images, normalise by the peak of
   the zero-filled image (``meta.scale``).

Nothing depends on process-global RNG state, so the data of a step is a function of (seed, epoch, index)
alone: the same with any number of data-loader workers and after a resume.

Validation uses ``SliceDataset`` / ``PairedSliceDataset`` with fixed masks (a function of seed, file name
and slice), one copy per (kind, acceleration), grouped into volumes (one per file) for fastMRI-convention
scoring.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from mrrecon.data.datasets import PairedSliceDataset, SliceDataset, derive_seed, make_slice_sample
from mrrecon.data.fastmri import FastMRIFile, clamp_crop_size
from mrrecon.data.paired import find_pairs, parse_contrast_name
from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.errors import ConfigError, DataError
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.masks import make_mask
from mrrecon.train.config import DataConfig, ReferenceAugmentConfig, SimulationConfig
from mrrecon.utils.io import atomic_write_json

__all__ = [
    "EpochBatchSampler",
    "augment_reference",
    "SimulatedSplits",
    "TrainingSlices",
    "ValidationSet",
    "build_training_slices",
    "build_validation_set",
    "prepare_simulated",
    "select_contrasts",
    "warp_crop",
]


# --------------------------------------------------------------------------------------------------
# The simulator cache
# --------------------------------------------------------------------------------------------------
@dataclass
class SimulatedSplits:
    folder: Path
    train: list[Path]
    val: list[Path]


# Simulation settings added after caches existed: hashed only when not at their default, so the folders of the
# earlier settings keep their names.
_ADDED_SIM_KEYS = ("bias_std", "single_coil_fraction", "random_intensity_fraction", "store_coil_maps")


def _simulation_key(sim: SimulationConfig) -> str:
    values, default = asdict(sim), asdict(SimulationConfig())
    for k in _ADDED_SIM_KEYS:
        if values[k] == default[k]:
            del values[k]
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def simulated_folder(data: DataConfig) -> Path:
    return Path(data.cache_dir) / f"sim-{_simulation_key(data.simulation)}"


def prepare_simulated(data: DataConfig, *, generate: bool = True) -> SimulatedSplits:
    """The cached simulated train / validation files, generated on first use.

    The folder name is a hash of the simulation settings, so changing any of them makes a new set;
    ``manifest.json`` is written last, and a folder without it is (re)generated. With ``generate=False``
    (non-main processes) a missing set is an error instead.
    """
    from mrrecon.data.simulate import simulate_dataset

    sim = data.simulation
    folder = simulated_folder(data)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        train = [folder / p for p in info["train"]]
        val = [folder / p for p in info["val"]]
        if all(p.is_file() for p in train + val):
            return SimulatedSplits(folder, train, val)
    if not generate:
        raise DataError("simulated training set is missing or incomplete", folder)
    common = dict(size=sim.size, coils=sim.coils, contrasts=tuple(sim.contrasts), noise_level=sim.noise_level,
                  bias_std=sim.bias_std, single_coil_fraction=sim.single_coil_fraction,
                  random_intensity_fraction=sim.random_intensity_fraction, store_coil_maps=sim.store_coil_maps)
    # one process per 8 subjects, up to the machine's cores (a 240-subject set on 16 cores: 16 processes; the
    # tests' few-subject sets: one); the files do not depend on it
    workers = max(1, min(os.cpu_count() or 1, sim.subjects // 8))
    train = simulate_dataset(folder / "train", subjects=sim.subjects, slices=sim.slices, seed=sim.seed,
                             workers=workers, **common)
    val = simulate_dataset(folder / "val", subjects=sim.val_subjects, slices=sim.val_slices, seed=sim.val_seed,
                           **common)
    atomic_write_json(manifest, {"simulation": asdict(sim), "train": [str(p.relative_to(folder)) for p in train],
                                 "val": [str(p.relative_to(folder)) for p in val]})
    return SimulatedSplits(folder, list(train), list(val))


def _h5_files(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError("no such file or folder", p)
    files = sorted(q for q in p.iterdir() if q.suffix.lower() in (".h5", ".hdf5") and not q.name.startswith("."))
    if not files:
        raise DataError("folder holds no .h5 files", p)
    return files


# --------------------------------------------------------------------------------------------------
# Training slices
# --------------------------------------------------------------------------------------------------
def _crop_box(shape: tuple[int, int], size: tuple[int, int], rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a crop: uniform over valid positions with ``rng``, else fastMRI's centre."""
    (H, W), (h, w) = shape, size
    if rng is None:
        return (H - h) // 2, (W - w) // 2
    return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))


def warp_crop(image: torch.Tensor, box: tuple[int, int], size: tuple[int, int], shift: tuple[float, float],
              angle_deg: float) -> torch.Tensor:
    """The (h, w) = ``size`` window at ``box`` of the (H, W) real ``image`` after a rigid motion: the content is
    turned by ``angle_deg`` about the window's centre c, then moved by ``shift`` = (dy, dx) pixels, i.e.
    out(p) = image(c + R^T (p - c - shift)) with R the rotation by the angle in (row, column) coordinates.
    Bilinear, sampled from the whole image (zeros outside it), so the window has no empty border where the
    image has content."""
    (h, w), (H, W) = size, image.shape[-2:]
    dtype = torch.float64
    cy, cx = box[0] + (h - 1) / 2, box[1] + (w - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dtype) + box[0] - cy - shift[0],
                            torch.arange(w, dtype=dtype) + box[1] - cx - shift[1], indexing="ij")  # p - c - shift
    a = np.deg2rad(angle_deg)
    cos, sin = float(np.cos(a)), float(np.sin(a))
    src_y = cy + cos * yy + sin * xx  # c + R^T (p - c - shift), R = [[cos, -sin], [sin, cos]]
    src_x = cx - sin * yy + cos * xx
    grid = torch.stack([(2 * src_x + 1) / W - 1, (2 * src_y + 1) / H - 1], dim=-1)[None].to(torch.float32)
    out = F.grid_sample(image[None, None].to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[0, 0]


def augment_reference(reference: torch.Tensor, aug: ReferenceAugmentConfig, rng: np.random.Generator, *,
                      full: torch.Tensor | None = None, box: tuple[int, int] = (0, 0),
                      size: tuple[int, int] | None = None, flips: tuple[bool, bool] = (False, False)
                      ) -> tuple[torch.Tensor, dict[str, Any]]:
    """The reference of one training item after ``data.reference_augment``; returns (image, what was drawn).

    reference: the (h, w) cropped and flipped magnitude, max 1; full: the uncropped, unflipped (H, W) magnitude
    (same scale) that the misregistration samples from, with the crop ``box`` / ``size`` and ``flips`` of the
    item (full = None: the reference itself is the whole image). Every random number is drawn, in a fixed order,
    whatever is enabled, so changing one setting does not reshuffle the others. The result has max 1 (zeros
    when dropped to zeros)."""
    dy, dx = (float(v) for v in rng.uniform(-1.0, 1.0, size=2) * aug.shift_px)
    angle = float(rng.uniform(-1.0, 1.0) * aug.rotate_deg)
    u_gamma = float(rng.uniform())
    bias_grid = rng.standard_normal((4, 4))
    u_drop, u_kind = float(rng.uniform()), float(rng.uniform())
    noise_seed = int(rng.integers(2**31 - 1))
    drawn: dict[str, Any] = {"shift_px": (dy, dx), "rotate_deg": angle, "gamma": None, "bias": False,
                             "dropped": None}
    ref = reference.to(torch.float32)
    if aug.shift_px > 0 or aug.rotate_deg > 0:  # misregistration, in the frame before the flips
        src = reference if full is None else full
        h, w = ref.shape[-2:]
        ref = warp_crop(src.to(torch.float32), box if full is not None else (0, 0), (h, w), (dy, dx), angle)
        ref = ref.flip(-2) if flips[0] else ref
        ref = ref.flip(-1) if flips[1] else ref
    if aug.gamma is not None:  # contrast: a power law, log-uniform exponent
        lo, hi = np.log(aug.gamma[0]), np.log(aug.gamma[1])
        g = float(np.exp(lo + u_gamma * (hi - lo)))
        ref = ref.clamp_min(0) ** g
        drawn["gamma"] = g
    if aug.bias_std > 0:  # smooth multiplicative bias field
        b = torch.as_tensor(bias_grid * aug.bias_std, dtype=torch.float32)[None, None]
        ref = ref * torch.exp(F.interpolate(b, size=tuple(ref.shape[-2:]), mode="bicubic", align_corners=True)[0, 0])
        drawn["bias"] = True
    peak = float(ref.max())
    if peak > 0 and ref is not reference:
        ref = ref / peak
    if u_drop < aug.drop:  # uninformative: the model must fall back on the single-contrast path
        kind = aug.drop_to[min(int(u_kind * len(aug.drop_to)), len(aug.drop_to) - 1)]
        if kind == "zeros":
            ref = torch.zeros_like(ref)
        else:
            ref = torch.rand(ref.shape, generator=torch.Generator().manual_seed(noise_seed))
            ref = ref / ref.max()
        drawn["dropped"] = kind
    return ref.to(torch.float32), drawn


class TrainingSlices(Dataset):
    """Fully sampled slices of h5 files, augmented and undersampled per item.

    Items are addressed by keys ``(index, mask_kind, acceleration, epoch)`` that
    :class:`EpochBatchSampler` produces; ``dataset[i]`` alone means ``(i, first kind, first
    acceleration, epoch 0)``.
    """

    def __init__(self, files: Sequence[str | os.PathLike], data: DataConfig, seed: int,
                 references: Sequence[str | os.PathLike] | None = None):
        self.files = [FastMRIFile(f) for f in files]
        for f in self.files:
            if not f.has_kspace:
                raise DataError(f"no 'kspace' dataset; training needs fully sampled k-space (keys {list(f.keys)})",
                                f.path)
            if f.mask is not None:
                raise DataError("k-space is already undersampled (the file has a 'mask'); training needs fully "
                                "sampled data", f.path)
        self.references = None if references is None else [FastMRIFile(f) for f in references]
        self.data = data
        self.seed = int(seed)
        self.index = [(i, s) for i, f in enumerate(self.files) for s in range(f.num_slices)]
        if not self.index:
            raise DataError("the training files hold no slices")
        self.combos = [(k, float(a)) for k in data.mask_kinds for a in data.accelerations]

    def __len__(self) -> int:
        return len(self.index)

    def batch_groups(self) -> list[tuple[int, tuple[int, int] | None]]:
        """Per slice, what must agree within a batch: (coils, matrix after the crop). A fixed crop makes every
        matrix alike; "recon" and no crop keep the file's own."""
        out = []
        for i, _ in self.index:
            f = self.files[i]
            shape = tuple(f.kspace_shape)
            out.append((f.num_coils if f.is_multicoil else 1, self._crop_size(f, shape) or shape))
        return out

    def _crop_size(self, f: FastMRIFile, shape: tuple[int, int]) -> tuple[int, int] | None:
        crop = self.data.crop
        if crop is None:
            return None
        if crop == "recon":
            if f.recon_size is None:
                raise DataError("data.crop='recon' but the file has no recon size", f.path)
            return clamp_crop_size(shape, f.recon_size)
        return clamp_crop_size(shape, tuple(crop))

    def _augment(self, images: torch.Tensor, box, size, flips) -> torch.Tensor:
        if size is not None:
            images = images[..., box[0]:box[0] + size[0], box[1]:box[1] + size[1]]
        if flips[0]:
            images = images.flip(-2)
        if flips[1]:
            images = images.flip(-1)
        return images

    def __getitem__(self, key) -> Sample:
        if isinstance(key, (int, np.integer)):
            key = (int(key), *self.combos[0], 0)
        index, kind, acceleration, epoch = key
        i, s = self.index[index]
        f = self.files[i]
        images = ifft2c(f.kspace(s))
        shape = tuple(images.shape[-2:])
        size = self._crop_size(f, shape)
        rng = np.random.default_rng(derive_seed(self.seed, "augment", epoch, index))
        box = _crop_box(shape, size, rng if self.data.random_crop and self.data.crop != "recon" else None) \
            if size is not None else (0, 0)
        flips = (bool(rng.integers(2)), bool(rng.integers(2))) if self.data.flip else (False, False)
        images = self._augment(images, box, size, flips)
        k_full = fft2c(images)
        mask_seed = derive_seed(self.seed, "mask", epoch, index)
        mask = make_mask(kind, tuple(k_full.shape[-2:]), acceleration, center_fraction=self.data.center_fraction,
                         seed=mask_seed)
        meta = SampleMeta(file=str(f.path), slice=int(s), seed=mask_seed,
                          extra={"epoch": int(epoch), "index": int(index), "crop_box": box, "flips": flips})
        sample = make_slice_sample(k_full, mask, normalise="max", meta=meta)
        if self.references is not None:
            ref_images = ifft2c(self.references[i].kspace(s))
            if tuple(ref_images.shape[-2:]) != shape:
                raise DataError(f"reference k-space {tuple(ref_images.shape[-2:])} does not match the target's "
                                f"{shape}", self.references[i].path)
            ref = rss(self._augment(ref_images, box, size, flips), dim=-3)
            peak = float(ref.max())
            if not peak > 0:
                raise DataError(f"reference slice {s} is all zero", self.references[i].path)
            sample.reference = (ref / peak).to(torch.float32)
            sample.meta.extra["reference_scale"] = peak
            aug = self.data.reference_augment
            if aug is not None:  # the reference only; its own seed: crops, flips, masks and target unchanged
                ref_rng = np.random.default_rng(derive_seed(self.seed, "reference", epoch, index))
                full = rss(ref_images, dim=-3) / peak if aug.shift_px > 0 or aug.rotate_deg > 0 else None
                sample.reference, drawn = augment_reference(
                    sample.reference, aug, ref_rng, full=full, box=box, size=size or shape, flips=flips)
                sample.meta.extra["reference_augment"] = drawn
        return sample


class EpochBatchSampler(Sampler):
    """Seeded batches of :class:`TrainingSlices` keys for one process of ``world``.

    Epoch ``e`` shuffles all slices with ``derive_seed(seed, 'order', e)`` and cuts the permutation into
    ``len // batch_size`` global batches (the remainder is dropped); process ``rank`` takes global batches
    ``rank, rank + world, ...`` so every process gets the same number. Global batch ``j`` draws its mask
    (kind, acceleration) from ``derive_seed(seed, 'combo', e, j)``. ``set_epoch(e, start, stop)`` restricts
    an epoch to this process's batches ``start .. stop - 1`` (resume; whole optimiser steps).

    ``groups`` (one hashable per slice, e.g. its coil count and matrix): a batch holds slices of one group only
    (slices of different shapes cannot be stacked). Each group's slices, in the epoch's shuffled order, are cut
    into batches (each group drops its own remainder) and the batches are shuffled with
    ``derive_seed(seed, 'batches', e)``. With one group (or None) the batches are exactly the ungrouped ones.
    """

    def __init__(self, num_samples: int, batch_size: int, combos: Sequence[tuple[str, float]], seed: int,
                 rank: int = 0, world: int = 1, groups: Sequence[Any] | None = None):
        self.n, self.batch_size, self.combos = int(num_samples), int(batch_size), list(combos)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        if groups is not None and len(groups) != self.n:
            raise ConfigError(f"{len(groups)} group labels for {self.n} slices")
        self.groups = None if groups is None or len(set(groups)) < 2 else list(groups)
        if self.groups is None:
            total = self.n // self.batch_size
        else:
            sizes = Counter(self.groups)
            total = sum(c // self.batch_size for c in sizes.values())
        self.per_rank = total // self.world
        if self.per_rank < 1:
            raise ConfigError(f"{self.n} training slices are too few for batch_size {self.batch_size} on "
                              f"{self.world} process(es)" + ("" if self.groups is None else
                                                               f" in groups of one shape ({len(sizes)} groups)"))
        self.epoch, self.start, self.stop = 0, 0, self.per_rank

    def set_epoch(self, epoch: int, start: int = 0, stop: int | None = None) -> None:
        self.epoch, self.start = int(epoch), int(start)
        self.stop = self.per_rank if stop is None else min(int(stop), self.per_rank)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def _global_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        perm = torch.randperm(self.n, generator=g).tolist()
        bs = self.batch_size
        if self.groups is None:
            return [perm[j * bs:(j + 1) * bs] for j in range(self.n // bs)]
        members: dict[Any, list[int]] = {}
        for i in perm:
            members.setdefault(self.groups[i], []).append(i)
        batches = []
        for key in sorted(members, key=repr):
            m = members[key]
            batches += [m[j * bs:(j + 1) * bs] for j in range(len(m) // bs)]
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(
            derive_seed(self.seed, "batches", self.epoch))).tolist()
        return [batches[o] for o in order]

    def __iter__(self) -> Iterator[list[tuple[int, str, float, int]]]:
        batches = self._global_batches()
        for b in range(self.start, self.stop):
            j = b * self.world + self.rank
            kind, acc = self.combos[derive_seed(self.seed, "combo", self.epoch, j) % len(self.combos)]
            yield [(i, kind, acc, self.epoch) for i in batches[j]]


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
@dataclass
class ValidationSet:
    """Volumes (lists of Samples of one file) per (kind, acceleration)."""

    volumes: dict[tuple[str, float], list[list[Sample]]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.volumes.values())


def _group_volumes(dataset, max_volumes: int | None, max_slices: int | None) -> list[list[Sample]]:
    by_file: dict[str, list[Sample]] = {}
    for idx in range(len(dataset)):
        i, s = dataset.index[idx]
        name = str(dataset.sources[i].path)
        if name not in by_file and max_volumes is not None and len(by_file) >= max_volumes:
            continue
        if max_slices is not None and len(by_file.get(name, [])) >= max_slices:
            continue
        by_file.setdefault(name, []).append(dataset[idx])
    return list(by_file.values())


def build_validation_set(data: DataConfig, seed: int, files: Sequence[Path] | None = None) -> ValidationSet | None:
    """Fixed-mask validation volumes, or None when there is no validation split."""
    kinds = data.val_mask_kinds or data.mask_kinds
    accs = data.val_accelerations or data.accelerations
    crop = None if data.val_crop is None else (data.val_crop if data.val_crop == "recon" else tuple(data.val_crop))
    volumes = {}
    for kind in kinds:
        for acc in accs:
            common = dict(mask_kinds=(kind,), accelerations=(float(acc),), center_fraction=data.center_fraction,
                          seed=seed, fixed_mask=True, crop=crop)
            if data.source == "paired":
                if not data.val_path:
                    return None
                ds = PairedSliceDataset(data.val_path, data.target_contrast, data.reference_contrast, **common)
            else:
                paths = files if files is not None else (_h5_files(data.val_path) if data.val_path else None)
                if not paths:
                    return None
                ds = SliceDataset(list(paths), **common)
            volumes[(kind, float(acc))] = _group_volumes(ds, data.val_max_volumes, data.val_max_slices)
    return ValidationSet(volumes)


def select_contrasts(files: Sequence[Path], contrasts: Sequence[str]) -> list[Path]:
    """The simulated files (``sub{index}_{CONTRAST}.h5``, read by the pairing module's naming rule) of ``contrasts``."""
    from mrrecon.data.phantom.contrast import canonical_contrast

    wanted = {canonical_contrast(c) for c in contrasts}
    return [Path(f) for f in files if (parsed := parse_contrast_name(f)) is not None and parsed[1] in wanted]


def build_training_slices(data: DataConfig, seed: int, files: Sequence[Path] | None = None) -> TrainingSlices:
    """The training dataset for ``data.source`` (``files``: the simulated training files, of which
    ``data.train_contrasts`` picks a subset when set)."""
    if data.source == "simulated":
        files = list(files or [])
        if data.train_contrasts is not None:
            files = select_contrasts(files, data.train_contrasts)
        return TrainingSlices(files, data, seed)
    if data.source == "fastmri":
        return TrainingSlices(_h5_files(data.train_path), data, seed)
    pairs = find_pairs(data.train_path, data.target_contrast, data.reference_contrast)
    if not pairs:
        raise DataError(f"no {data.target_contrast}/{data.reference_contrast} pairs", data.train_path)
    return TrainingSlices([p.target for p in pairs], data, seed, references=[p.reference for p in pairs])
