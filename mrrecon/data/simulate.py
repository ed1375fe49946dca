"""The embedded default data: simulated multi-contrast, multi-coil brain k-space with ground truth.

Anatomy comes from the MNI ICBM152 2009a templates bundled inside the nilearn wheel (no download), made
subject-specific (random similarity + elastic warp + slice tilt), given what the skull-stripped average lacks
(meninges, skull with marrow, temporalis muscle, scalp fat and skin, fine texture, perivascular spaces and
vessels), turned into T1w / T2w / PDw / FLAIR images with BrainWeb's 1.5 T tissue parameters and spin-echo /
inversion-recovery signal equations, then given a bias field, a smooth background phase, coil sensitivities
(``mrrecon.physics.coils.simulate_coil_maps``) and complex Gaussian k-space noise. Everything is reproducible
from one integer seed. The pipeline, every constant and its source: docs/simulator.md.

For training sets, the contrast ``"random"`` draws tissue parameters and a signal equation per subject (domain
randomisation), and the matrix size, coil count, noise level and bias strength can be drawn per subject from
ranges (:func:`draw_acquisition`): docs/simulator.md, "Training sets".

    >>> data = simulate_subject(0, size=128, coils=8)          # dict: contrast -> SimulatedSlices
    >>> data["T2"].kspace.shape                                 # (slices, coils, H, W) complex64
    >>> simulate_dataset("sim/", subjects=4)                    # fastMRI-format h5 files
    >>> simulate_dataset("train/", subjects=240, contrasts=["T1", "T2", "PD", "FLAIR", "random"],
    ...                  size=(192, 224, 256), coils=(4, 16), single_coil_fraction=0.2,
    ...                  noise_level=(0.01, 0.08), bias_std=(0.05, 0.3), store_coil_maps=False)
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import numbers
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrrecon.data.phantom.anatomy import FOV_MM, Z_RANGE_MM, SubjectAnatomy, render_slice
from mrrecon.data.phantom.contrast import (
    ALL_CONTRASTS,
    CONTRASTS,
    FIELD_STRENGTH_T,
    RANDOM_CONTRAST,
    RANDOM_INTENSITY_FRACTION,
    TISSUE_NAMES,
    ContrastSpec,
    canonical_contrast,
    draw_random_contrast,
    named_contrast,
    signal,
)
from mrrecon.data.phantom.fields import CoarseField
from mrrecon.errors import ConfigError
from mrrecon.physics.fft import fft2c, ifft2c

DEFAULT_NOISE_LEVEL = 0.03  # noise std (per real part) / mean RSS signal over the head: head SNR ~ 33
DEFAULT_SLICE_SPACING_MM = 3.0
OVERSAMPLE = 2  # the object is rendered on a 2x finer grid and Fourier-cropped (no aliasing of fine detail)
BIAS_STD = 0.12  # log-amplitude std of the bias field shared by a subject's contrasts
BIAS_CONTRAST_STD = 0.04  # extra, per-contrast log-amplitude std
BIAS_CORR_MM = 80.0
PHASE_LINEAR_RAD = 0.5  # max |phase| at the FOV edge from each linear term
PHASE_QUADRATIC_RAD = 0.6  # max |phase| at the FOV edge from each quadratic term
PHASE_RANDOM_STD_RAD = 0.2
PHASE_CORR_MM = 50.0

LABELS = ("background", *TISSUE_NAMES)  # values of SimulatedSlices.labels

# Independent random streams, one per purpose: changing e.g. the contrasts never changes the anatomy.
_STREAM_ANATOMY, _STREAM_SLICE, _STREAM_BIAS, _STREAM_CONTRAST, _STREAM_COILS, _STREAM_NOISE = 1, 2, 3, 4, 5, 6
_STREAM_RANDOM_CONTRAST, _STREAM_ACQUISITION = 7, 8
# Sub-streams of _STREAM_ACQUISITION, one per drawn setting: fixing one setting never changes another's draw.
_ACQ_SIZE, _ACQ_COILS, _ACQ_SINGLE_COIL, _ACQ_NOISE, _ACQ_BIAS = 0, 1, 2, 3, 4

IntRange = int | tuple[int, int]
RealRange = float | tuple[float, float]


@dataclass
class SimulatedSlices:
    """One contrast of one simulated subject: ``S`` neighbouring axial slices, ``C`` coils, ``H x W`` pixels.

    kspace:     (S, C, H, W) complex64, fully sampled, with noise (noise-free if ``noise_level=0``).
    rss:        (S, H, W) float32, fastMRI target: RSS over coils of ifft2c(kspace) (noisy).
    rss_true:   (S, H, W) float32, RSS of the noise-free coil images.
    image:      (S, H, W) complex64, noise-free coil-combined image: the object with bias field and phase;
                coil image c = maps[:, c] * image exactly.
    maps:       (S, C, H, W) complex64 coil sensitivities (ones for a single coil).
    brain_mask: (S, H, W) bool, intracranial brain (GM/WM/CSF of the template, after the subject's warp).
    head_mask:  (S, H, W) bool, any tissue (the region the noise level refers to).
    labels:     (S, H, W) uint8 dominant tissue per pixel, an index into ``LABELS`` (0 = background).
    noise_sigma: std of the real (and of the imaginary) part of the noise per k-space sample and coil,
                E|n|^2 = 2 sigma^2; the RSS image's noise std in tissue is ~sigma.
    meta:       seeds, slice positions, sequence parameters, field of view, noise level.
    """

    contrast: str
    kspace: torch.Tensor
    rss: torch.Tensor
    rss_true: torch.Tensor
    image: torch.Tensor
    maps: torch.Tensor
    brain_mask: torch.Tensor
    head_mask: torch.Tensor
    labels: torch.Tensor
    noise_sigma: float
    meta: dict[str, Any] = field(default_factory=dict)


def _rss(x: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over the coil dim (-3) of complex coil images, float32."""
    return np.sqrt(np.square(x.real).sum(axis=-3) + np.square(x.imag).sum(axis=-3)).astype(np.float32)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def subject_seed(seed: int, index: int) -> int:
    """The seed of subject ``index`` of a dataset made with ``seed`` (a 32-bit hash of the pair)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not low <= value <= high:
        bound = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _pair(name: str, value: Any) -> tuple[Any, Any] | None:
    """``(low, high)`` when ``value`` is a list/tuple (a range), None for a scalar; other lengths raise."""
    if not isinstance(value, (tuple, list)):
        return None
    if len(value) != 2:
        raise ConfigError(f"{name} range must be (low, high), got {value!r}")
    return value[0], value[1]


def _int_range(name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An integer or an inclusive (low, high) range of integers, as (low, high)."""
    pair = _pair(name, value)
    if pair is None:
        v = _check_int(name, value, minimum)
        return v, v
    lo, hi = (_check_int(name, v, minimum) for v in pair)
    if lo > hi:
        raise ConfigError(f"{name} range must have low <= high, got {value!r}")
    return lo, hi


def _real_range(name: str, value: Any, *, log: bool = False) -> tuple[float, float]:
    """A number >= 0 or a (low, high) range of them, as (low, high); a log-uniform range needs low > 0."""
    pair = _pair(name, value)
    if pair is None:
        v = _check_real(name, value)
        return v, v
    lo, hi = (_check_real(name, v) for v in pair)
    if lo > hi:
        raise ConfigError(f"{name} range must have low <= high, got {value!r}")
    if log and lo < hi and lo == 0:
        raise ConfigError(f"{name} range is drawn log-uniformly and needs low > 0, got {value!r}")
    return lo, hi


def _size_choices(value: Any) -> tuple[int, ...]:
    """A matrix size or a list of sizes to choose from."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise ConfigError("size must be an integer or a non-empty list of sizes to choose from, got []")
        return tuple(_check_int("size", v, 16) for v in value)
    return (_check_int("size", value, 16),)


@dataclass(frozen=True)
class Acquisition:
    """One subject's acquisition: fixed, or drawn from ranges by :func:`draw_acquisition`."""

    size: int
    coils: int
    noise_level: float
    bias_std: float


def draw_acquisition(
    seed: int,
    *,
    size: int | Sequence[int] = 256,
    coils: IntRange = 8,
    noise_level: RealRange = DEFAULT_NOISE_LEVEL,
    bias_std: RealRange = BIAS_STD,
    single_coil_fraction: float = 0.0,
) -> Acquisition:
    """Subject ``seed``'s acquisition. Scalars are used as given; ranges are drawn from the subject's seed:

    size: a list of matrix sizes, one chosen uniformly.
    coils: (low, high), an integer uniform in [low, high]; then, with probability ``single_coil_fraction``,
        the subject is single-coil (coils = 1) instead.
    noise_level: (low, high), log-uniform (the head SNR ~ 1 / noise_level spans the range evenly in dB).
    bias_std: (low, high), uniform: the log-amplitude std of the subject's bias field.

    Each setting has its own random stream, so fixing one setting leaves the others' draws unchanged.
    """
    seed = _check_int("seed", seed, 0)
    sizes = _size_choices(size)
    coil_lo, coil_hi = _int_range("coils", coils, 1)
    noise_lo, noise_hi = _real_range("noise_level", noise_level, log=True)
    bias_lo, bias_hi = _real_range("bias_std", bias_std)
    single = _check_real("single_coil_fraction", single_coil_fraction, 0.0, 1.0)

    def u(stream: int) -> float:
        return float(_rng(seed, _STREAM_ACQUISITION, stream).random())

    size_v = sizes[0] if len(sizes) == 1 else sizes[min(int(u(_ACQ_SIZE) * len(sizes)), len(sizes) - 1)]
    coils_v = coil_lo if coil_lo == coil_hi else coil_lo + min(int(u(_ACQ_COILS) * (coil_hi - coil_lo + 1)),
                                                               coil_hi - coil_lo)
    if single > 0 and u(_ACQ_SINGLE_COIL) < single:
        coils_v = 1
    noise_v = noise_lo if noise_lo == noise_hi else noise_lo * (noise_hi / noise_lo) ** u(_ACQ_NOISE)
    bias_v = bias_lo if bias_lo == bias_hi else bias_lo + (bias_hi - bias_lo) * u(_ACQ_BIAS)
    return Acquisition(size=size_v, coils=coils_v, noise_level=noise_v, bias_std=bias_v)


def _parse_contrasts(contrasts: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    names = tuple(canonical_contrast(c) for c in contrasts)
    if not names:
        raise ConfigError("contrasts must name at least one of " + ", ".join(ALL_CONTRASTS))
    if len(set(names)) != len(names):
        raise ConfigError(f"contrasts listed twice: {list(contrasts)}")
    return names


def _fourier_crop(img: np.ndarray, size: int) -> torch.Tensor:
    """Band-limit (..., n, n) images to its central size x size k-space samples; keeps the intensity scale
    (orthonormal FFTs: the DC sample is sum/n, so the cropped image is scaled by size/n)."""
    n = img.shape[-1]
    k = fft2c(torch.from_numpy(np.ascontiguousarray(img)).to(torch.complex64))
    start = n // 2 - size // 2
    k = k[..., start:start + size, start:start + size]
    return ifft2c(k) * (size / n)


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    n = a.shape[-1] // f
    return a.reshape(n, f, n, f).mean(axis=(1, 3))


def _contrast_image(tissues, spec: ContrastSpec, jitter) -> np.ndarray:
    """Partial-volume signal: sum over tissues of fraction x signal(tissue's modulated PD, T1, T2); in the
    intensity mode, fraction x the tissue's intensity x the product of its PD, T1 and T2 texture factors."""
    out = np.zeros(tissues.flow.shape, np.float32)
    flat_out = out.ravel()
    mod = {p: m.ravel() for p, m in tissues.modulation.items()}
    for name, frac in tissues.fractions.items():
        tissue = spec.tissues[name]
        level = None if spec.intensity is None else spec.intensity[name]
        silent = tissue.pd == 0.0 if level is None else level == 0.0
        if silent:
            continue
        f = frac.ravel()
        idx = np.flatnonzero(f > 1e-6)
        if idx.size == 0:
            continue
        if level is not None:
            value = (level * mod["pd"][idx] * mod["t1"][idx] * mod["t2"][idx]).astype(np.float32)
            if name == "blood":
                value = value * tissues.flow.ravel()[idx]
            flat_out[idx] += f[idx] * value
            continue
        jit = jitter[name]
        pd = tissue.pd * jit["pd"] * mod["pd"][idx]
        if name == "blood":
            pd = pd * tissues.flow.ravel()[idx]
        t1 = tissue.t1 * jit["t1"] * mod["t1"][idx]
        t2 = tissue.t2 * jit["t2"] * mod["t2"][idx]
        flat_out[idx] += f[idx] * signal(spec.sequence, pd, t1, t2)
    return out


def _polynomial_phase(rng: np.random.Generator, size: int) -> np.ndarray:
    """phi0 + linear + quadratic terms in normalised coordinates (-1..1 over the FOV)."""
    c = (np.arange(size) - size // 2) / (size / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    phi0 = rng.uniform(-math.pi, math.pi)
    lin = rng.uniform(-PHASE_LINEAR_RAD, PHASE_LINEAR_RAD, size=2)
    quad = rng.uniform(-PHASE_QUADRATIC_RAD, PHASE_QUADRATIC_RAD, size=3)
    return (phi0 + lin[0] * yy + lin[1] * xx + quad[0] * yy**2 + quad[1] * xx**2 + quad[2] * yy * xx)


def simulate_subject(
    seed: int,
    *,
    size: int | Sequence[int] = 256,
    coils: IntRange = 8,
    contrasts: str | Iterable[str] = CONTRASTS,
    slices: int = 1,
    noise_level: RealRange = DEFAULT_NOISE_LEVEL,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
    bias_std: RealRange = BIAS_STD,
    single_coil_fraction: float = 0.0,
    random_intensity_fraction: float = RANDOM_INTENSITY_FRACTION,
) -> dict[str, SimulatedSlices]:
    """Simulate one subject: ``slices`` neighbouring axial slices in each of ``contrasts``.

    seed: non-negative integer; the same seed and options give bit-identical output. The anatomy, slice
        positions and coil maps depend only on ``seed`` (and ``slices``/``slice_spacing_mm``, and the coil
        count), never on the contrasts requested or the noise level; the anatomy does not depend on ``size``
        except for the realisation of the fine texture.
    size: image matrix (size x size) over a 240 mm field of view; a list: one drawn per subject.
    coils: receive channels; 1 gives a single-coil acquisition with unit sensitivity; (low, high): drawn.
    contrasts: any of "T1", "T2", "PD", "FLAIR" and "random" (case-insensitive); "random" draws tissue
        parameters and a sequence (or, with probability ``random_intensity_fraction``, an intensity per tissue)
        from the seed, without changing the other contrasts.
    noise_level: std of the k-space noise (each of real and imaginary part, per coil and sample) relative to
        the mean noise-free RSS intensity over the head, so the head's SNR in the RSS image is about
        1 / noise_level; 0 gives noise-free k-space; (low, high): drawn log-uniformly.
    slice_spacing_mm: distance between neighbouring slices.
    bias_std: log-amplitude std of the bias field shared by the contrasts; (low, high): drawn uniformly.
    single_coil_fraction: probability that the subject is single-coil whatever ``coils`` says.
    The draws of ranges: :func:`draw_acquisition`; the values used are in each result's ``meta``.

    Returns a dict contrast -> :class:`SimulatedSlices`, in the order requested.
    """
    seed = _check_int("seed", seed, 0)
    acq = draw_acquisition(seed, size=size, coils=coils, noise_level=noise_level, bias_std=bias_std,
                           single_coil_fraction=single_coil_fraction)
    size, coils, noise_level = acq.size, acq.coils, acq.noise_level
    slices = _check_int("slices", slices, 1)
    names = _parse_contrasts(contrasts)
    intensity_fraction = _check_real("random_intensity_fraction", random_intensity_fraction, 0.0, 1.0)
    if not isinstance(slice_spacing_mm, numbers.Real) or not slice_spacing_mm > 0:
        raise ConfigError(f"slice_spacing_mm must be > 0, got {slice_spacing_mm!r}")
    extent = (slices - 1) * float(slice_spacing_mm)
    if extent > Z_RANGE_MM[1] - Z_RANGE_MM[0]:
        raise ConfigError(f"{slices} slices {slice_spacing_mm} mm apart span {extent:g} mm, more than the "
                          f"{Z_RANGE_MM[1] - Z_RANGE_MM[0]:g} mm slab the simulator draws from")

    anatomy = SubjectAnatomy.draw(_rng(seed, _STREAM_ANATOMY), slices, float(slice_spacing_mm))
    n_render = OVERSAMPLE * size
    if coils == 1:
        maps = np.ones((1, size, size), np.complex64)
    else:
        from mrrecon.physics.coils import simulate_coil_maps

        coil_seed = int(_rng(seed, _STREAM_COILS).integers(0, 2**31 - 1))
        maps = simulate_coil_maps(coils, (size, size), seed=coil_seed).to(torch.complex64).numpy()

    # Bias field (shared by the subject's contrasts) and the size-independent pixel positions.
    px = FOV_MM / size
    c = (np.arange(size) - size // 2) * px
    log_bias = acq.bias_std * CoarseField(_rng(seed, _STREAM_BIAS), FOV_MM, BIAS_CORR_MM).grid(c, c)
    specs = {name: draw_random_contrast(_rng(seed, _STREAM_RANDOM_CONTRAST), intensity_fraction)
             if name == RANDOM_CONTRAST else named_contrast(name) for name in names}
    per_contrast = {}
    for name in names:
        rng_c = _rng(seed, _STREAM_CONTRAST, ALL_CONTRASTS.index(name))
        bias_c = BIAS_CONTRAST_STD * CoarseField(rng_c, FOV_MM, BIAS_CORR_MM).grid(c, c)
        phase = _polynomial_phase(rng_c, size) + PHASE_RANDOM_STD_RAD * CoarseField(rng_c, FOV_MM,
                                                                                    PHASE_CORR_MM).grid(c, c)
        weight = (np.exp(log_bias + bias_c) * np.exp(1j * phase)).astype(np.complex64)
        per_contrast[name] = (weight, _rng(seed, _STREAM_NOISE, ALL_CONTRASTS.index(name)))

    images = {name: [] for name in names}
    brain_masks, head_masks, labels = [], [], []
    for s, z_mm in enumerate(anatomy.z_mm):
        tissues = render_slice(anatomy, z_mm, n_render, _rng(seed, _STREAM_SLICE, s))
        brain_masks.append(_block_mean(tissues.brain, OVERSAMPLE) > 0.5)
        fractions = np.stack([_block_mean(tissues.fractions[t], OVERSAMPLE) for t in TISSUE_NAMES])
        head = fractions.sum(axis=0) > 0.5
        head_masks.append(head)
        labels.append(np.where(head, fractions.argmax(axis=0) + 1, 0).astype(np.uint8))
        objects = np.stack([_contrast_image(tissues, specs[name], anatomy.tissue_jitter) for name in names])
        cropped = _fourier_crop(objects, size).numpy()
        for j, name in enumerate(names):
            images[name].append(cropped[j] * per_contrast[name][0])
    head_mask = np.stack(head_masks)
    brain_mask, label_map = torch.from_numpy(np.stack(brain_masks)), torch.from_numpy(np.stack(labels))

    # All contrasts at once: coil images (K, S, C, H, W), k-space, noise, targets. Element-wise work is done in
    # numpy (single-threaded, predictable on a busy machine); the FFTs are mrrecon's fft2c / ifft2c.
    maps_s = np.broadcast_to(maps, (slices, *maps.shape)).copy()
    image_all = np.stack([np.stack(images[name]) for name in names])
    coil_images = maps_s[None] * image_all[:, :, None]
    rss_true_all = _rss(coil_images)
    sigmas = [float(noise_level) * float(rss_true_all[j][head_mask].mean()) if noise_level > 0 else 0.0
              for j in range(len(names))]
    # White circular complex Gaussian noise: real and imaginary parts each of std sigma (E|n|^2 = 2 sigma^2),
    # so the RSS image fluctuates with std ~sigma in tissue. ifft2c is unitary, so noise drawn in the image
    # domain is exactly such noise in k-space too; adding it before the one forward FFT gives the same
    # k-space statistics and rss = RSS(ifft2c(kspace)).
    noisy = coil_images
    if noise_level > 0:
        noisy = coil_images.copy()
        for j, name in enumerate(names):
            parts = per_contrast[name][1].standard_normal((*noisy[j].shape, 2), dtype=np.float32)
            noisy[j] += sigmas[j] * parts.view(np.complex64)[..., 0]
    kspace_all = fft2c(torch.from_numpy(noisy)).numpy()
    rss_all = _rss(noisy) if noise_level > 0 else rss_true_all.copy()
    as_tensor = torch.from_numpy
    maps_t = as_tensor(maps_s)

    out: dict[str, SimulatedSlices] = {}
    for j, name in enumerate(names):
        meta = {
            "seed": seed, "contrast": name, **_sequence_meta(specs[name]), "field_strength_T": FIELD_STRENGTH_T,
            "fov_mm": FOV_MM, "size": size, "coils": coils, "slice_z_mm": list(anatomy.z_mm),
            "slice_spacing_mm": float(slice_spacing_mm), "noise_level": float(noise_level),
            "noise_sigma": sigmas[j], "bias_std": acq.bias_std,
        }
        if name == RANDOM_CONTRAST:
            meta["random"] = _random_summary(specs[name])
        out[name] = SimulatedSlices(contrast=name, kspace=as_tensor(kspace_all[j]), rss=as_tensor(rss_all[j]),
                                    rss_true=as_tensor(rss_true_all[j]), image=as_tensor(image_all[j]), maps=maps_t,
                                    brain_mask=brain_mask, head_mask=as_tensor(head_mask), labels=label_map,
                                    noise_sigma=sigmas[j], meta=meta)
    return out


def _sequence_meta(spec: ContrastSpec) -> dict[str, Any]:
    """Acquisition name, sequence kind and its parameters (None where they do not apply)."""
    seq = spec.sequence
    times = (None, None, None, None) if seq is None else (seq.tr, seq.te, seq.ti, seq.flip_deg)
    return {"acquisition": spec.acquisition, "sequence": spec.kind,
            **dict(zip(("TR_ms", "TE_ms", "TI_ms", "flip_deg"), times, strict=True))}


def _random_summary(spec: ContrastSpec) -> dict[str, Any]:
    """The random contrast's draw: mode, and per tissue the intensity or the (PD, T1 ms, T2 ms) used."""
    if spec.intensity is not None:
        return {"mode": "intensity", "intensity": {n: round(v, 4) for n, v in spec.intensity.items()}}
    return {"mode": "physics",
            "tissues": {n: [round(t.pd, 4), round(t.t1, 1), round(t.t2, 1)] for n, t in spec.tissues.items()}}


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def simulate_dataset(
    out_dir: str | os.PathLike,
    *,
    subjects: int = 4,
    size: int | Sequence[int] = 256,
    coils: IntRange = 8,
    contrasts: str | Iterable[str] = CONTRASTS,
    slices: int = 1,
    seed: int = 0,
    noise_level: RealRange = DEFAULT_NOISE_LEVEL,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
    bias_std: RealRange = BIAS_STD,
    single_coil_fraction: float = 0.0,
    random_intensity_fraction: float = RANDOM_INTENSITY_FRACTION,
    store_coil_maps: bool = True,
    progress: bool = False,
    workers: int = 1,
) -> list[Path]:
    """Write ``subjects`` simulated subjects as fastMRI-format h5 files ``sub{index:03d}_{CONTRAST}.h5``.

    Subject ``i`` is ``simulate_subject(subject_seed(seed, i), ...)`` with the same options, so ranges of
    ``size``, ``coils``, ``noise_level`` and ``bias_std`` and ``single_coil_fraction`` are drawn per subject
    (:func:`draw_acquisition`). Multi-coil files hold ``kspace`` (S, C, H, W) and ``reconstruction_rss`` (RSS
    of the noisy k-space, the fastMRI convention); single-coil subjects' files hold ``kspace`` (S, H, W) and
    ``reconstruction_esc`` (its magnitude image), as the fastMRI single-coil track does. Both also hold
    ``reconstruction_true`` (the noise-free RSS / magnitude), and multi-coil files the true sensitivities
    ``coil_maps`` (S, C, H, W) complex64 unless ``store_coil_maps=False`` (they are as large as the k-space).
    Files are written atomically (``write_fastmri_h5``).
    Attributes: acquisition, patient_id, max/norm of the target, and the simulation parameters (including the
    subject's drawn ``size``, ``coils``, ``noise_level``, ``bias_std``).
    Returns the paths written, subject-major, contrasts in the order requested. ``progress``: a tqdm bar per
    subject on stderr when it is a terminal (silent otherwise). ``workers`` > 1: subjects are simulated in that
    many processes (the files are the same as with one).
    """
    from tqdm.auto import tqdm

    subjects = _check_int("subjects", subjects, 1)
    seed = _check_int("seed", seed, 0)
    names = _parse_contrasts(contrasts)
    if not isinstance(store_coil_maps, bool):
        raise ConfigError(f"store_coil_maps must be true or false, got {store_coil_maps!r}")
    options = dict(size=size, coils=coils, contrasts=names, slices=slices, noise_level=noise_level,
                   slice_spacing_mm=slice_spacing_mm, bias_std=bias_std, single_coil_fraction=single_coil_fraction,
                   random_intensity_fraction=random_intensity_fraction)
    workers = _check_int("workers", workers, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=subjects, desc="simulate", unit="subject", disable=None if progress else True)
    write = partial(_write_subject, out, seed=seed, options=options, store_coil_maps=store_coil_maps)
    per_subject = [write(0)]  # bad options fail here, before any other subject's files are written
    bar.update(1)
    with contextlib.ExitStack() as stack:
        if workers == 1 or subjects <= 2:
            rest = map(write, range(1, subjects))
        else:
            # Subject i depends only on subject_seed(seed, i): the same files in any process, in any order.
            # Spawned workers (no fork of a process whose thread pools are running), one thread each.
            pool = stack.enter_context(ProcessPoolExecutor(
                min(workers, subjects - 1), mp_context=multiprocessing.get_context("spawn"),
                initializer=torch.set_num_threads, initargs=(1,)))
            rest = pool.map(write, range(1, subjects))
        for paths in rest:
            per_subject.append(paths)
            bar.update(1)
    bar.close()
    return [path for paths in per_subject for path in paths]


def _write_subject(out: Path, i: int, *, seed: int, options: dict[str, Any], store_coil_maps: bool) -> list[Path]:
    """Simulate subject ``i`` of a dataset and write one file per contrast (simulate_dataset's unit of work)."""
    from mrrecon.data.fastmri import write_fastmri_h5

    sseed = subject_seed(seed, i)
    data = simulate_subject(sseed, **options)
    paths = []
    for name in options["contrasts"]:
        d = data[name]
        m = d.meta
        attrs = {
            "acquisition": m["acquisition"], "patient_id": f"sub{i:03d}", "simulated": True,
            "simulator": "mrrecon.data.simulate", "dataset_seed": seed, "subject_index": i,
            "subject_seed": sseed, "contrast": name, "sequence": m["sequence"],
            "TR_ms": _nan_if_none(m["TR_ms"]), "TE_ms": _nan_if_none(m["TE_ms"]), "TI_ms": _nan_if_none(m["TI_ms"]),
            "flip_deg": _nan_if_none(m["flip_deg"]), "noise_level": m["noise_level"],
            "noise_sigma": m["noise_sigma"], "slice_z_mm": np.asarray(m["slice_z_mm"], dtype=np.float64),
            "size": m["size"], "coils": m["coils"], "bias_std": m["bias_std"],
        }
        if "random" in m:
            attrs["random_contrast"] = json.dumps(m["random"], sort_keys=True)
        header = {"encoded_fov_mm": (FOV_MM, FOV_MM, 1.0), "recon_fov_mm": (FOV_MM, FOV_MM, 1.0),
                  "field_strength_T": FIELD_STRENGTH_T}
        path = out / f"sub{i:03d}_{name}.h5"
        extra = {"reconstruction_true": d.rss_true}
        if m["coils"] == 1:
            write_fastmri_h5(path, d.kspace[:, 0], reconstruction_esc=d.rss, attrs=attrs, header=header,
                             extra_datasets=extra)
        else:
            if store_coil_maps:
                extra["coil_maps"] = d.maps
            write_fastmri_h5(path, d.kspace, reconstruction_rss=d.rss, attrs=attrs, header=header,
                             extra_datasets=extra)
        paths.append(path)
    return paths
