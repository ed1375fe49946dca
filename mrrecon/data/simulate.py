"""The embedded default data: simulated multi-contrast, multi-coil brain k-space with ground truth.

Anatomy comes from the MNI ICBM152 2009a templates bundled inside the nilearn wheel (no download), made
subject-specific (random similarity + elastic warp + slice tilt), given what the skull-stripped average lacks
(meninges, skull with marrow, temporalis muscle, scalp fat and skin, fine texture, perivascular spaces and
vessels), turned into T1w / T2w / PDw / FLAIR images with BrainWeb's 1.5 T tissue parameters and spin-echo /
inversion-recovery signal equations, then given a bias field, a smooth background phase, coil sensitivities
(``mrrecon.physics.coils.simulate_coil_maps``) and complex Gaussian k-space noise. Everything is reproducible
from one integer seed. The pipeline, every constant and its source: docs/simulator.md.

    >>> data = simulate_subject(0, size=128, coils=8)          # dict: contrast -> SimulatedSlices
    >>> data["T2"].kspace.shape                                 # (slices, coils, H, W) complex64
    >>> simulate_dataset("sim/", subjects=4)                    # fastMRI-format h5 files
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrrecon.data.phantom.anatomy import FOV_MM, Z_RANGE_MM, SubjectAnatomy, render_slice
from mrrecon.data.phantom.contrast import (
    CONTRASTS,
    FIELD_STRENGTH_T,
    SEQUENCES,
    TISSUE_NAMES,
    TISSUES,
    canonical_contrast,
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


def _parse_contrasts(contrasts: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    names = tuple(canonical_contrast(c) for c in contrasts)
    if not names:
        raise ConfigError("contrasts must name at least one of " + ", ".join(CONTRASTS))
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


def _contrast_image(tissues, seq, jitter) -> np.ndarray:
    """Partial-volume signal: sum over tissues of fraction x signal(tissue's modulated PD, T1, T2)."""
    out = np.zeros(tissues.flow.shape, np.float32)
    flat_out = out.ravel()
    mod = {p: m.ravel() for p, m in tissues.modulation.items()}
    for name, frac in tissues.fractions.items():
        tissue = TISSUES[name]
        if tissue.pd == 0.0:
            continue
        f = frac.ravel()
        idx = np.flatnonzero(f > 1e-6)
        if idx.size == 0:
            continue
        jit = jitter[name]
        pd = tissue.pd * jit["pd"] * mod["pd"][idx]
        if name == "blood":
            pd = pd * tissues.flow.ravel()[idx]
        t1 = tissue.t1 * jit["t1"] * mod["t1"][idx]
        t2 = tissue.t2 * jit["t2"] * mod["t2"][idx]
        flat_out[idx] += f[idx] * signal(seq, pd, t1, t2)
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
    size: int = 256,
    coils: int = 8,
    contrasts: str | Iterable[str] = CONTRASTS,
    slices: int = 1,
    noise_level: float = DEFAULT_NOISE_LEVEL,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
) -> dict[str, SimulatedSlices]:
    """Simulate one subject: ``slices`` neighbouring axial slices in each of ``contrasts``.

    seed: non-negative integer; the same seed and options give bit-identical output. The anatomy, slice
        positions and coil maps depend only on ``seed`` (and ``slices``/``slice_spacing_mm``), never on the
        contrasts requested or the noise level; the anatomy does not depend on ``size`` except for the
        realisation of the fine texture.
    size: image matrix (size x size) over a 240 mm field of view.
    coils: receive channels; 1 gives a single-coil acquisition with unit sensitivity.
    contrasts: any of "T1", "T2", "PD", "FLAIR" (case-insensitive).
    noise_level: std of the k-space noise (each of real and imaginary part, per coil and sample) relative to
        the mean noise-free RSS intensity over the head, so the head's SNR in the RSS image is about
        1 / noise_level; 0 gives noise-free k-space.
    slice_spacing_mm: distance between neighbouring slices.

    Returns a dict contrast -> :class:`SimulatedSlices`, in the order requested.
    """
    seed = _check_int("seed", seed, 0)
    size = _check_int("size", size, 16)
    coils = _check_int("coils", coils, 1)
    slices = _check_int("slices", slices, 1)
    names = _parse_contrasts(contrasts)
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real) \
            or not math.isfinite(noise_level) or noise_level < 0:
        raise ConfigError(f"noise_level must be a finite number >= 0, got {noise_level!r}")
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
    log_bias = BIAS_STD * CoarseField(_rng(seed, _STREAM_BIAS), FOV_MM, BIAS_CORR_MM).grid(c, c)
    per_contrast = {}
    for name in names:
        rng_c = _rng(seed, _STREAM_CONTRAST, CONTRASTS.index(name))
        bias_c = BIAS_CONTRAST_STD * CoarseField(rng_c, FOV_MM, BIAS_CORR_MM).grid(c, c)
        phase = _polynomial_phase(rng_c, size) + PHASE_RANDOM_STD_RAD * CoarseField(rng_c, FOV_MM,
                                                                                    PHASE_CORR_MM).grid(c, c)
        weight = (np.exp(log_bias + bias_c) * np.exp(1j * phase)).astype(np.complex64)
        per_contrast[name] = (weight, _rng(seed, _STREAM_NOISE, CONTRASTS.index(name)))

    images = {name: [] for name in names}
    brain_masks, head_masks, labels = [], [], []
    for s, z_mm in enumerate(anatomy.z_mm):
        tissues = render_slice(anatomy, z_mm, n_render, _rng(seed, _STREAM_SLICE, s))
        brain_masks.append(_block_mean(tissues.brain, OVERSAMPLE) > 0.5)
        fractions = np.stack([_block_mean(tissues.fractions[t], OVERSAMPLE) for t in TISSUE_NAMES])
        head = fractions.sum(axis=0) > 0.5
        head_masks.append(head)
        labels.append(np.where(head, fractions.argmax(axis=0) + 1, 0).astype(np.uint8))
        objects = np.stack([_contrast_image(tissues, SEQUENCES[name], anatomy.tissue_jitter) for name in names])
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
        seq = SEQUENCES[name]
        meta = {
            "seed": seed, "contrast": name, "acquisition": seq.acquisition, "sequence": seq.kind,
            "TR_ms": seq.tr, "TE_ms": seq.te, "TI_ms": seq.ti, "field_strength_T": FIELD_STRENGTH_T,
            "fov_mm": FOV_MM, "size": size, "coils": coils, "slice_z_mm": list(anatomy.z_mm),
            "slice_spacing_mm": float(slice_spacing_mm), "noise_level": float(noise_level),
            "noise_sigma": sigmas[j],
        }
        out[name] = SimulatedSlices(contrast=name, kspace=as_tensor(kspace_all[j]), rss=as_tensor(rss_all[j]),
                                    rss_true=as_tensor(rss_true_all[j]), image=as_tensor(image_all[j]), maps=maps_t,
                                    brain_mask=brain_mask, head_mask=as_tensor(head_mask), labels=label_map,
                                    noise_sigma=sigmas[j], meta=meta)
    return out


def simulate_dataset(
    out_dir: str | os.PathLike,
    *,
    subjects: int = 4,
    size: int = 256,
    coils: int = 8,
    contrasts: str | Iterable[str] = CONTRASTS,
    slices: int = 1,
    seed: int = 0,
    noise_level: float = DEFAULT_NOISE_LEVEL,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
    progress: bool = False,
) -> list[Path]:
    """Write ``subjects`` simulated subjects as fastMRI-format h5 files ``sub{index:03d}_{CONTRAST}.h5``.

    Subject ``i`` is ``simulate_subject(subject_seed(seed, i), ...)``. Multi-coil files hold ``kspace``
    (S, C, H, W) and ``reconstruction_rss`` (RSS of the noisy k-space, the fastMRI convention); single-coil
    files (``coils=1``) hold ``kspace`` (S, H, W) and ``reconstruction_esc`` (its magnitude image), as the
    fastMRI single-coil track does. Both also hold ``reconstruction_true`` (the noise-free RSS / magnitude),
    and multi-coil files the true sensitivities ``coil_maps`` (S, C, H, W) complex64. Files are written
    atomically (``write_fastmri_h5``).
    Attributes: acquisition, patient_id, max/norm of the target, and the simulation parameters.
    Returns the paths written, subject-major, contrasts in the order requested. ``progress``: a tqdm bar per
    subject on stderr when it is a terminal (silent otherwise).
    """
    from tqdm.auto import tqdm

    from mrrecon.data.fastmri import write_fastmri_h5

    subjects = _check_int("subjects", subjects, 1)
    seed = _check_int("seed", seed, 0)
    names = _parse_contrasts(contrasts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    bar = tqdm(total=subjects, desc="simulate", unit="subject", disable=None if progress else True)
    for i in range(subjects):
        bar.set_postfix_str(f"sub{i:03d}")
        sseed = subject_seed(seed, i)
        data = simulate_subject(sseed, size=size, coils=coils, contrasts=names, slices=slices,
                                noise_level=noise_level, slice_spacing_mm=slice_spacing_mm)
        for name in names:
            d = data[name]
            m = d.meta
            attrs = {
                "acquisition": m["acquisition"], "patient_id": f"sub{i:03d}", "simulated": True,
                "simulator": "mrrecon.data.simulate", "dataset_seed": seed, "subject_index": i,
                "subject_seed": sseed, "contrast": name, "sequence": m["sequence"], "TR_ms": m["TR_ms"],
                "TE_ms": m["TE_ms"], "TI_ms": m["TI_ms"] if m["TI_ms"] is not None else float("nan"),
                "noise_level": m["noise_level"], "noise_sigma": m["noise_sigma"],
                "slice_z_mm": np.asarray(m["slice_z_mm"], dtype=np.float64),
            }
            header = {"encoded_fov_mm": (FOV_MM, FOV_MM, 1.0), "recon_fov_mm": (FOV_MM, FOV_MM, 1.0),
                      "field_strength_T": FIELD_STRENGTH_T}
            path = out / f"sub{i:03d}_{name}.h5"
            extra = {"reconstruction_true": d.rss_true}
            if coils == 1:
                write_fastmri_h5(path, d.kspace[:, 0], reconstruction_esc=d.rss, attrs=attrs, header=header,
                                 extra_datasets=extra)
            else:
                extra["coil_maps"] = d.maps
                write_fastmri_h5(path, d.kspace, reconstruction_rss=d.rss, attrs=attrs, header=header,
                                 extra_datasets=extra)
            paths.append(path)
        bar.update(1)
    bar.close()
    return paths
