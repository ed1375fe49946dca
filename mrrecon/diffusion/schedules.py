"""Discrete variance-preserving noise schedules and the algebra between the three parameterisations.

A schedule is the table ``alphas_cumprod[t]`` (gamma_bar_t, the signal power at timestep ``t`` as the
network sees it). With ``alpha_t = sqrt(gamma_bar_t)`` and ``sigma_t = sqrt(1 - gamma_bar_t)``:

* forward process       x_t = alpha_t x0 + sigma_t eps
* v-prediction target   v   = alpha_t eps - sigma_t x0            (Salimans & Ho 2022; SSDM-MRI Alg. 1)
* inverses              x0  = alpha_t x_t - sigma_t v,   eps = sigma_t x_t + alpha_t v
                        x0  = (x_t - sigma_t eps) / alpha_t,  eps = (x_t - alpha_t x0) / sigma_t
* DDIM (Song et al. 2021) from t to s < t with x0_hat, eps_hat:
      x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
      c   = eta sqrt((sigma_s^2 / sigma_t^2)(1 - alpha_t^2 / alpha_s^2));
  eta = 0 is deterministic, eta = 1 on adjacent steps is the DDPM ancestral step.

Timestep conventions of the constructors:

* ``cosine(T)``: t = 0..T, gamma_bar_t = cos^2(pi/2 t/T) (SSDM-MRI, T = 128): index 0 is the clean image,
  index T pure noise (alpha_T = 0, which v-prediction handles).
* ``linear`` / ``scaled_linear``: DDPM / Stable Diffusion tables, t = 0..T-1 with
  gamma_bar_t = prod_{s<=t} (1 - beta_s); "t = -1" (clean) is ``alpha_sigma`` of a negative index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrrecon.errors import ConfigError

__all__ = ["NoiseSchedule", "ddim_step", "eps_from_v", "eps_from_x0", "v_target", "x0_from_eps", "x0_from_v"]


def _bcast(coef: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """(B,) coefficients -> (B, 1, ..., 1) so they broadcast over a (B, ...) tensor; scalars pass through."""
    if isinstance(coef, torch.Tensor):
        coef = coef.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)
        if coef.ndim == 1 and like.ndim > 1:
            return coef.reshape(-1, *([1] * (like.ndim - 1)))
    return coef


@dataclass(frozen=True)
class NoiseSchedule:
    """gamma_bar_t per network timestep (float64, values in [0, 1], non-increasing in t)."""

    alphas_cumprod: torch.Tensor

    def __post_init__(self):
        a = self.alphas_cumprod
        if a.ndim != 1 or a.numel() < 2:
            raise ConfigError("alphas_cumprod must be a 1-D table of at least 2 timesteps")
        if bool((a < 0).any() | (a > 1).any()) or bool((a[1:] > a[:-1] + 1e-12).any()):
            raise ConfigError("alphas_cumprod must lie in [0, 1] and be non-increasing")

    # -- constructors ---------------------------------------------------------------------------------
    @classmethod
    def cosine(cls, T: int = 128) -> NoiseSchedule:
        """gamma_t = cos^2(pi/2 * t/T), t = 0..T (SSDM-MRI Sec. III.B)."""
        t = torch.arange(T + 1, dtype=torch.float64)
        g = torch.cos(0.5 * math.pi * t / T) ** 2
        g[-1] = 0.0  # cos(pi/2) is 6e-17 in floating point; the end of the schedule is pure noise
        return cls(g.clamp(0.0, 1.0))

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """DDPM (Ho et al. 2020): betas linear in t."""
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(torch.cumprod(1.0 - betas, 0))

    @classmethod
    def scaled_linear(cls, T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> NoiseSchedule:
        """Stable Diffusion: sqrt(beta) linear in t."""
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=torch.float64) ** 2
        return cls(torch.cumprod(1.0 - betas, 0))

    # -- lookups -----------------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def alpha_sigma(self, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) as float32 tensors shaped like ``t``; a negative index means clean (1, 0)."""
        t = torch.as_tensor(t)
        table = self.alphas_cumprod.to(t.device)
        g = torch.where(t < 0, torch.ones((), dtype=table.dtype, device=t.device),
                        table[t.clamp_min(0).long()])
        return g.sqrt().float(), (1.0 - g).clamp_min(0).sqrt().float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = alpha_t x0 + sigma_t eps; ``t`` is (B,) for a (B, ...) batch."""
        alpha, sigma = self.alpha_sigma(t)
        return _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * noise

    def spaced_timesteps(self, steps: int, *, include_clean: bool = False) -> torch.Tensor:
        """``steps`` evenly spaced timesteps from the noisiest down (descending LongTensor).

        For the cosine table (index 0 clean) these are T, T - T/steps, ..., T/steps; the last step of a sampler
        goes to index 0. For DDPM tables (index 0 already slightly noisy) they are the "trailing" spacing
        T-1, ..., ending at T/steps - 1. ``include_clean`` appends the clean target index (0 or -1).
        """
        n = self.num_timesteps
        if not 1 <= steps <= n:
            raise ConfigError(f"steps must be in 1..{n}, got {steps}")
        clean_is_zero = bool(self.alphas_cumprod[0] >= 1.0 - 1e-12)
        top = n - 1 if clean_is_zero else n
        ts = torch.round(torch.arange(steps, 0, -1, dtype=torch.float64) * top / steps).long()
        if not clean_is_zero:
            ts = ts - 1
        if include_clean:
            ts = torch.cat([ts, ts.new_tensor([0 if clean_is_zero else -1])])
        return ts


# -- parameterisations ------------------------------------------------------------------------------------
def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """v = alpha eps - sigma x0."""
    return _bcast(alpha, x0) * eps - _bcast(sigma, x0) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x0 = alpha x_t - sigma v."""
    return _bcast(alpha, x_t) * x_t - _bcast(sigma, x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """eps = sigma x_t + alpha v."""
    return _bcast(sigma, x_t) * x_t + _bcast(alpha, x_t) * v


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x0 = (x_t - sigma eps) / alpha (alpha > 0)."""
    return (x_t - _bcast(sigma, x_t) * eps) / _bcast(alpha, x_t)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """eps = (x_t - alpha x0) / sigma (sigma > 0)."""
    return (x_t - _bcast(alpha, x_t) * x0) / _bcast(sigma, x_t)


def ddim_step(x0_hat: torch.Tensor, eps_hat: torch.Tensor, alpha_next, sigma_next, *, eta: float = 0.0,
              alpha=None, sigma=None, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDIM step to the next (less noisy) level: alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z.

    ``eta > 0`` needs the current ``alpha``/``sigma`` (for c) and draws ``z`` from ``generator`` unless
    ``noise`` is given.
    """
    a_s, s_s = _bcast(alpha_next, x0_hat), _bcast(sigma_next, x0_hat)
    if eta == 0.0:
        return a_s * x0_hat + s_s * eps_hat
    if alpha is None or sigma is None:
        raise ConfigError("ddim_step with eta > 0 needs the current alpha and sigma")
    a_t, s_t = _bcast(alpha, x0_hat), _bcast(sigma, x0_hat)
    ratio = (s_s ** 2 / (s_t ** 2 + 1e-20)) * (1.0 - a_t ** 2 / (a_s ** 2 + 1e-20))
    c = eta * torch.as_tensor(ratio).clamp_min(0).sqrt()
    if noise is None:
        noise = torch.randn(x0_hat.shape, generator=generator, dtype=x0_hat.dtype, device=x0_hat.device)
    direction = torch.as_tensor(s_s ** 2 - c ** 2).clamp_min(0).sqrt()
    return a_s * x0_hat + direction * eps_hat + c * noise
