"""The attenuated k-space diffusion (AK-Diffusion, Cui et al., Sec. III.B): forward SDE, perturbation kernel,
score, and the discretisation that Algorithm 1 walks.

Forward SDE (eq. 8), on multi-coil k-space z (B, C, H, W):

    dz = dG_t/dt (.) z(0) dt + sqrt(d sigma(t)^2 / dt) S S^* dw,

so that (perturbation kernel, Sec. III.B.3)

    z(t) | z(0) ~ N(G_t (.) z(0), [sigma(t)^2 - sigma(0)^2] S S^*),

where S S^* is ``Sbar Sbar^*`` (``mrrecon.methods.akdiff.coil_subspace``) and ``G_t`` (here
:meth:`AKDiffusionSDE.attenuation`) is the Fourier transform of a Gaussian blur of the image whose width grows
with t (eq. 7). ``G_0`` is exactly the identity; ``G_T`` is a Gaussian of standard deviation ``lowpass_std``:
only the low frequencies (the ACS region) survive. Two frequency units (``frequency_units``):

* ``fov`` (default): frequencies in cycles per field of view, i.e. the centred k-space sample index
  k = index - n // 2 along each axis, and ``lowpass_std`` in samples:

      G_t(k) = exp(-t^2 |k|^2 / (2 lowpass_std^2)).

  The central window of a larger matrix with the same field of view is then the same process restricted to
  that window (G_t on a 256 grid, cut to its central 128 x 128, equals G_t on the 128 grid), so a network
  trained on full-FOV 128 x 128 slices sees the same local k-space in the centre of a 256 x 256 matrix;
  the blur is the same in millimetres, n t / (2 pi lowpass_std) image pixels on an n-pixel axis.
* ``pixel`` (the earlier definition): frequencies in cycles per pixel (k / n), ``lowpass_std`` in
  cycles/pixel,

      G_t(k) = exp(-2 pi^2 b(t)^2 |k / n|^2),   b(t) = b_T * t  (blur standard deviation in image pixels),

  with ``b_T = 1 / (2 pi lowpass_std)``: the same blur in image pixels on any grid (an image crop and the
  full matrix), but a wider k-space window (in samples) on a larger matrix.

Noise levels: geometric, sigma(t) = sigma_0 (sigma_N / sigma_0)^t, t in [0, 1] (paper: sigma_0 = 0.01,
sigma_N = 1); Algorithm 1 uses sigma_i = sigma(i / N), G_i = G_{i/N}, i = 0..N.

Complex noise: n = n_re + i n_im with n_re, n_im ~ N(0, I) (the real 2-channel vector the network sees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrrecon.errors import ConfigError

__all__ = ["FREQUENCY_UNITS", "AKDiffusionSDE", "complex_noise"]

FREQUENCY_UNITS = ("fov", "pixel")


def complex_noise(shape, *, generator: torch.Generator | None = None, device=None,
                  dtype=torch.complex64) -> torch.Tensor:
    """n = n_re + i n_im, n_re, n_im ~ N(0, I) independent (Algorithm 1, lines 4 and 10)."""
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    parts = torch.randn((2, *shape), generator=generator, device=device, dtype=real_dtype)
    return torch.complex(parts[0], parts[1]).to(dtype)


@dataclass(frozen=True)
class AKDiffusionSDE:
    """Schedules of eq. 8: the width of G_t (through ``lowpass_std``, in ``frequency_units``) and sigma(t)."""

    sigma_min: float = 0.01  # sigma_0
    sigma_max: float = 1.0  # sigma_N
    lowpass_std: float = 5.0  # std of G_T: k-space samples (fov) or cycles/pixel (pixel)
    frequency_units: str = "fov"  # fov: cycles per field of view (sample index) | pixel: cycles per pixel

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.frequency_units not in FREQUENCY_UNITS:
            raise ConfigError(f"frequency_units must be one of {FREQUENCY_UNITS}, got {self.frequency_units!r}")
        if not 0 < self.lowpass_std:
            raise ConfigError(f"lowpass_std must be > 0, got {self.lowpass_std}")

    # -- schedules ------------------------------------------------------------------------------------
    @property
    def blur_max(self) -> float:
        """b_T: blur standard deviation at t = 1, in image pixels (``pixel``) or in field-of-view widths
        (``fov``: 1 / (2 pi lowpass_std); times n for image pixels on an n-pixel axis)."""
        return 1.0 / (2 * math.pi * self.lowpass_std)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t) = sigma_0 (sigma_N / sigma_0)^t (geometric), same shape as t."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def kernel_std(self, t: torch.Tensor) -> torch.Tensor:
        """sqrt(sigma(t)^2 - sigma(0)^2): the std of the perturbation kernel (0 at t = 0)."""
        return (self.sigma(t) ** 2 - self.sigma_min ** 2).clamp_min(0).sqrt()

    def blur(self, t: torch.Tensor) -> torch.Tensor:
        """b(t) = b_T t, blur standard deviation (units of :attr:`blur_max`; 0 at t = 0)."""
        return torch.as_tensor(t, dtype=torch.float64) * self.blur_max

    def attenuation(self, t: torch.Tensor, shape: tuple[int, int], device=None) -> torch.Tensor:
        """G_t on an (H, W) centred k-space grid: (B, 1, H, W) float32 for t of shape (B,) (eq. 7).

        k = index - n // 2 (the DC sample of fft2c). fov: G_t(k) = exp(-t^2 (ky^2 + kx^2) / (2 lowpass_std^2));
        pixel: G_t(k) = exp(-2 pi^2 b(t)^2 ((ky / H)^2 + (kx / W)^2))."""
        t = torch.as_tensor(t, dtype=torch.float64, device=device).reshape(-1)
        h, w = int(shape[0]), int(shape[1])
        if self.frequency_units == "fov":
            ky = torch.arange(h, dtype=torch.float64, device=device) - h // 2
            kx = torch.arange(w, dtype=torch.float64, device=device) - w // 2
            k2 = ky[:, None] ** 2 + kx[None, :] ** 2  # (H, W) squared sample index, (cycles / FOV)^2
            a = (t / self.lowpass_std) ** 2 / 2  # (B,)
            return torch.exp(-a[:, None, None] * k2[None]).unsqueeze(1).to(torch.float32)
        fy = (torch.arange(h, dtype=torch.float64, device=device) - h // 2) / h
        fx = (torch.arange(w, dtype=torch.float64, device=device) - w // 2) / w
        f2 = fy[:, None] ** 2 + fx[None, :] ** 2  # (H, W) squared frequency, cycles/pixel
        b2 = self.blur(t).to(device) ** 2
        g = torch.exp(-2 * math.pi ** 2 * b2[:, None, None] * f2[None])
        return g.unsqueeze(1).to(torch.float32)

    # -- the perturbation kernel ------------------------------------------------------------------------
    def perturb(self, z0: torch.Tensor, t: torch.Tensor, project, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw z(t) ~ N(G_t z(0), (sigma(t)^2 - sigma_0^2) S S^*) for z0 (B, C, H, W) and t (B,).

        ``project`` applies S S^* (any callable on (B, C, H, W) k-space). Returns (z_t, G_t)."""
        g = self.attenuation(t, z0.shape[-2:], z0.device)
        if noise is None:
            noise = complex_noise(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        std = self.kernel_std(t).to(device=z0.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        return g * z0 + std * project(noise), g

    # -- discretisation (Algorithm 1) --------------------------------------------------------------------
    def discretisation(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t_i = i / N and sigma_i = sigma(t_i) for i = 0..N (float64, (N + 1,))."""
        if steps < 1:
            raise ConfigError(f"the number of predictor steps N must be >= 1, got {steps}")
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        return t, self.sigma(t)
