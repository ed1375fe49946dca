"""Dual-Stage Sampler (DSS, LDPM Sec. II.B.3) and the plain sampler of the ``ldpm-no-dss`` ablation.

Spaced sampling over the T = 1000 training timesteps (``NoiseSchedule.spaced_timesteps``). At each step t,
with a_t = alphas_cumprod[t] (the paper's alpha_t) and the next (smaller) spaced timestep s:

* eq. 8   z0_hat = (z_t - sqrt(1 - a_t) eps_t) / sqrt(a_t),  eps_t = eps_theta(z_t, p, t, c_latent).
  (The paper writes the factor sqrt(a_{t-1}) into eq. 8; it belongs to the update, eq. 12, as in DDIM,
  because z0_hat is decoded as a clean image in eqs. 9-10. We apply it there.)
* stage 1, t > p (p = 200):  z0' = E[DC(D(z0_hat), k_u, M)]            (eq. 9; plain DC, no random phase)
* stage 2, t <= p:           delta = ||(F(D(z0_hat)) - k_u) M||_2^2      (eq. 10)
                             z0' = z0_hat - g grad_{z0_hat} delta, g = 0.1  (eq. 11)
* eq. 12  z_s = sqrt(a_s) z0' + sqrt(1 - a_s - sigma_t^2) eps_t + sigma_t noise
  (``ddim_step``; sigma_t = eta * DDPM posterior std, eta = 0: the deterministic sampler of the conference
  paper; eta = 1: the extended paper's spaced-DDPM variant).

The last spaced step goes to the clean level (a = 1), so the sampler's image is D(z0') of the last step.

Final data consistency (not in the paper; ``final_dc``, docs/ldpm.md "Choices the paper leaves open"): the
decoded image D(z_0) (clamped to >= 0, the magnitude the sampler used to return) is made consistent with the
measured k-space once more, ``x = DC[D(z_0), k_u, M]`` with ``mrrecon.physics.consistency.dc_image``:
``hard`` (default: measured samples replaced, as in eqs. 3 and 9), ``soft`` (moved a fraction
``final_dc_weight`` toward k_u) or ``none`` (the paper: D(z_0) itself). Without it the output ignores the
measurements wherever the VAE or the prior miss them (the last stage, t <= p, only takes gradient steps).
Images are padded (zero background) to a multiple of ``pad_multiple`` for the networks and cropped back for
DC, guidance and the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mrrecon.diffusion.schedules import NoiseSchedule, ddim_step, x0_from_eps
from mrrecon.errors import ConfigError
from mrrecon.methods.ldpm.physics import Measurement

__all__ = ["FINAL_DC", "SamplerSettings", "crop_to", "dc_step", "dual_stage_sample", "final_dc", "guidance_step",
           "pad_to"]

FINAL_DC = ("hard", "soft", "none")


@dataclass
class SamplerSettings:
    steps: int = 10  # measured: 50 steps lose 3.5 dB against 10 with the small weights (docs/ldpm.md)
    stage_boundary: int = 200  # p
    guidance_scale: float = 0.1  # g
    eta: float = 1.0  # spaced DDPM (the extended paper); measured +0.5-0.8 dB over eta 0 (docs/ldpm.md)
    mode: str = "dss"  # "dss" (the paper) or "plain" (no DC, no guidance: the w/o-DSS ablation)
    final_dc: str = "hard"  # DC of D(z_0) after the last step: hard | soft | none (the paper's output)
    final_dc_weight: float = 0.5  # soft only: the fraction w in (0, 1) measured samples move toward k_u

    def check(self) -> SamplerSettings:
        if self.mode not in ("dss", "plain"):
            raise ConfigError(f"sampler mode must be 'dss' or 'plain', got {self.mode!r}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.final_dc not in FINAL_DC:
            raise ConfigError(f"final_dc must be one of {FINAL_DC}, got {self.final_dc!r}")
        if self.final_dc == "soft" and not 0.0 < self.final_dc_weight < 1.0:
            raise ConfigError(f"final_dc_weight must be in (0, 1) for soft DC (1 is hard, 0 none); got "
                              f"{self.final_dc_weight}")
        return self

    def final_weight(self) -> float | None:
        """The ``dc_image`` weight of the final DC: 1 (hard), ``final_dc_weight`` (soft) or None (none)."""
        return {"hard": 1.0, "soft": float(self.final_dc_weight), "none": None}[self.final_dc]


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad (B, H, W) images symmetrically to multiples of ``multiple``; returns the pad (l, r, t, b)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pad) if ph or pw else x), pad


def crop_to(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    l, r, t, b = pad
    h, w = x.shape[-2:]
    return x[..., t:h - b, l:w - r]


def dc_step(z0: torch.Tensor, vae, meas: Measurement, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Stage 1 (t > p): z0' = E[DC(D(z0), k_u, M)] (eq. 9)."""
    with torch.no_grad():
        x0 = crop_to(vae.decode(z0), pad)
        return vae.encode(F.pad(meas.dc(x0), pad))


def guidance_step(z0: torch.Tensor, vae, meas: Measurement, pad: tuple[int, int, int, int], scale: float
                  ) -> torch.Tensor:
    """Stage 2 (t <= p): delta = ||(F(D(z0)) - k_u) M||^2 (eq. 10); z0' = z0 - g grad_z0 delta (eq. 11)."""
    with torch.enable_grad():
        zg = z0.detach().requires_grad_(True)
        delta = meas.residual(crop_to(vae.decode(zg), pad)).sum()
        (grad,) = torch.autograd.grad(delta, zg)
    return (z0 - scale * grad).detach()


def final_dc(x: torch.Tensor, meas: Measurement, settings: SamplerSettings) -> torch.Tensor:
    """The final data consistency of the decoded image x (B, H, W) >= 0: DC[x, k_u, M] with the weight of
    ``settings.final_dc`` (``dc_image``; SENSE-combined for multi-coil), or x itself for ``none``.
    Returns the complex image (B, H, W) complex64; its magnitude is the output."""
    w = settings.final_weight()
    return x.to(torch.complex64) if w is None else meas.dc_complex(x, weight=w)


def dual_stage_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], vae, meas: Measurement,
                      schedule: NoiseSchedule, settings: SamplerSettings, latent_shape: tuple[int, ...],
                      pad: tuple[int, int, int, int], generator: torch.Generator | None = None,
                      complex_output: bool = False) -> tuple[torch.Tensor, int]:
    """Sample z_0, decode it and apply the final DC. ``eps_fn(z_t, t)`` is the (controlled) denoiser with its
    condition bound.

    Returns ((B, H, W) magnitude at the measurement's size -- with ``complex_output`` the complex image whose
    magnitude that is --, number of denoiser evaluations).
    """
    settings.check()
    device = meas.kspace.device
    z = torch.randn(latent_shape, generator=generator).to(device)
    ts = schedule.spaced_timesteps(settings.steps).tolist()
    nfe = 0
    z0 = z
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((latent_shape[0],), t, dtype=torch.long, device=device)
        a_t, sig_t = schedule.alpha_sigma(tt)
        a_s, sig_s = schedule.alpha_sigma(torch.full_like(tt, s))
        with torch.no_grad():
            eps = eps_fn(z, tt)
        nfe += 1
        z0 = x0_from_eps(z, eps, a_t, sig_t)  # eq. 8
        if settings.mode == "dss":
            if t > settings.stage_boundary:
                z0 = dc_step(z0, vae, meas, pad)  # eq. 9
            elif settings.guidance_scale != 0:
                z0 = guidance_step(z0, vae, meas, pad, settings.guidance_scale)  # eqs. 10-11
        noise = None
        if settings.eta > 0 and s >= 0:
            noise = torch.randn(z.shape, generator=generator).to(device)
        z = ddim_step(z0, eps, a_s, sig_s, eta=settings.eta, alpha=a_t, sigma=sig_t, noise=noise)  # eq. 12
    with torch.no_grad():
        x = crop_to(vae.decode(z), pad).clamp_min(0)  # D(z_0): the paper's output
        xc = final_dc(x, meas, settings)
    if complex_output:
        return xc, nfe
    return (x if settings.final_dc == "none" else xc.abs().to(x.dtype)), nfe
