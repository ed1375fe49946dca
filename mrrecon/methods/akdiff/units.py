"""The k-space units of AK-Diffusion's SDE, and the data's noise floor in those units.

The SDE's schedules (sigma(t), G_t) are fixed numbers, so the k-space they act on must have the same size at
training and at reconstruction, on any matrix. One helper, :func:`kspace_scale`, gives the factor
``z_model = z * scale`` for both (the score network's training loss and the PC sampler, which divides it out
again at the end):

* ``peak`` (default): ``scale = kspace_peak / max |z|``, the largest magnitude over coils and measured
  samples. The k-space centre is always measured and holds the peak, so the number is the same at training
  (fully sampled) and at reconstruction (undersampled), whatever the mask; a central k-space window (a lower
  resolution of the same field of view) keeps the peak, so it keeps the units, and a larger matrix of the same
  field of view (whose k-space values all grow by the same factor under the orthonormal FFT) gets the same
  values at the same frequency in cycles per field of view. ``kspace_peak`` (c) is a documented constant:
  c = 5.5 is the median ratio of the k-space peak to the RSS image peak of the full-FOV 128 x 128 simulated
  training slices, so that in model units a training slice's RSS image has a peak of about 1 and
  sigma_N = 1 is image-domain noise the size of the image (docs/akdiff.md).
* ``size`` (the earlier units): ``scale = reference_size / sqrt(H W)``, one number per matrix size.

:func:`robust_noise_std` measures the k-space noise floor (the std of the real, and of the imaginary, part of
the noise per sample and coil, the convention of the simulator's ``noise_sigma`` and of the SDE's complex
noise) from the outer corners of fully sampled k-space, where only noise remains: the median absolute
deviation of the real and imaginary parts, times 1.4826. :func:`measure_noise_floor` is its median over
slices in model units, the number the ``noise_floor`` rule for sigma_0 uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mrrecon.errors import ConfigError, DataError
from mrrecon.physics.kspace import mask_as_grid

__all__ = ["KSPACE_SCALINGS", "MAD_TO_STD", "kspace_scale", "measure_noise_floor", "robust_noise_std"]

KSPACE_SCALINGS = ("peak", "size")
MAD_TO_STD = 1.4826  # std of a Gaussian / its median absolute deviation


def kspace_scale(kspace: torch.Tensor, mask: torch.Tensor | None = None, *, scaling: str = "peak",
                 kspace_peak: float = 5.5, reference_size: int = 128) -> torch.Tensor:
    """Per-slice factor from the library's k-space to the SDE's units: (B, 1, 1, 1) float32 for (B, C, H, W)
    k-space ((C, H, W) gives (1, 1, 1, 1)). ``mask`` (broadcastable; nonzero = measured) restricts the peak to
    the measured samples (unmeasured samples are zero in zero-filled k-space anyway)."""
    k = kspace if kspace.ndim == 4 else kspace.reshape(1, *kspace.shape[-3:])
    if scaling == "size":
        value = reference_size / math.sqrt(k.shape[-2] * k.shape[-1])
        return torch.full((k.shape[0], 1, 1, 1), value, dtype=torch.float32, device=k.device)
    if scaling != "peak":
        raise ConfigError(f"kspace_scaling must be one of {KSPACE_SCALINGS}, got {scaling!r}")
    mag = k.abs()
    if mask is not None:
        mag = mag * mask_as_grid(mask, k).unsqueeze(1)
    peak = mag.flatten(1).amax(-1).to(torch.float32)  # (B,)
    if not bool(torch.isfinite(peak).all() & (peak > 0).all()):
        raise DataError(f"k-space peak must be finite and > 0 for the {scaling!r} units, got {peak.tolist()}")
    return (kspace_peak / peak).reshape(-1, 1, 1, 1)


def robust_noise_std(kspace: torch.Tensor, corner_fraction: float = 0.125) -> torch.Tensor:
    """Noise std per real component of fully sampled k-space (B, C, H, W) or (C, H, W): 1.4826 x the median
    absolute deviation of the real and imaginary parts of the samples in the four corner blocks
    (``corner_fraction`` of each axis), exact zeros (zero-padded k-space) left out. Returns (B,) float64."""
    if not 0 < corner_fraction <= 0.5:
        raise ConfigError(f"corner_fraction must be in (0, 0.5], got {corner_fraction}")
    k = kspace if kspace.ndim == 4 else kspace.reshape(1, *kspace.shape[-3:])
    h, w = k.shape[-2:]
    qh, qw = max(1, int(round(corner_fraction * h))), max(1, int(round(corner_fraction * w)))
    out = []
    for s in k:
        corners = torch.cat([s[:, :qh, :qw].flatten(), s[:, :qh, -qw:].flatten(), s[:, -qh:, :qw].flatten(),
                             s[:, -qh:, -qw:].flatten()])
        corners = corners[corners != 0]
        if corners.numel() < 16:
            raise DataError("the k-space corners hold fewer than 16 nonzero samples: no noise floor to measure")
        x = torch.cat([corners.real, corners.imag]).to(torch.float64)
        out.append(MAD_TO_STD * (x - x.median()).abs().median())
    return torch.stack(out)


def measure_noise_floor(slices: Iterable[torch.Tensor], scale_fn, corner_fraction: float = 0.125) -> float:
    """Median over fully sampled slices (each (C, H, W) k-space in any units) of :func:`robust_noise_std` of
    the slice in model units, ``k * scale_fn(k)`` (``scale_fn``: e.g. ``AKDiffusionModel.kspace_scale``)."""
    values = []
    for k in slices:
        k = k.to(torch.complex64)
        values.append(float(robust_noise_std(k * scale_fn(k), corner_fraction)[0]))
    if not values:
        raise DataError("no slices to measure the noise floor on")
    return float(torch.tensor(values, dtype=torch.float64).median())
