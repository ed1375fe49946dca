"""Deterministic DDIM posterior sampling of SSDM-MRI with any number of steps, and the reconstruction pipeline.

``sample_x0``: x_T ~ N(0, I) (from a seeded generator), then for the ``steps`` evenly spaced timesteps
T = t_1 > t_2 > ... > t_N and t_{N+1} = 0:

    v_hat = N(A^H y, x_t, gamma_bar_t)
    x0_hat = alpha_t x_t - sigma_t v_hat,  eps_hat = sigma_t x_t + alpha_t v_hat        (Sec. III.B)
    x_s = alpha_s x0_hat + sigma_s eps_hat                                          (DDIM, eta = 0)

so the 1-step student's whole reconstruction is x0_hat = -N(A^H y, x_T, 0) (alpha_T = 0, sigma_T = 1).
``steps`` network evaluations (NFE) in total.

``reconstruct_batch``: normalised k-space (B, C, H, W) -> condition (single-coil: A^H y; multi-coil:
Sec. III.C coil combination with estimated maps) -> [magnitude instance: remove the low-resolution phase]
-> ``sample_x0`` -> [restore the phase] -> data consistency on the final output (eq. 4; multi-coil: per
coil through the maps, then recombined).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mrrecon.data.sample import Batch
from mrrecon.diffusion.schedules import ddim_step, eps_from_v, x0_from_v
from mrrecon.errors import ConfigError
from mrrecon.methods.ssdm.network import from_channels, to_channels
from mrrecon.physics.consistency import dc_image
from mrrecon.physics.lowres import combine_coils, estimate_coil_maps, lowres_images, lowres_phase

if TYPE_CHECKING:
    from mrrecon.methods.ssdm.model import SSDMModel

__all__ = ["apply_dc", "dc_weight", "ddim_update", "reconstruct_batch", "reconstruct_kspace", "sample_x0",
           "timestep_pairs"]

MULTIPLE = 8  # 3 poolings


def timestep_pairs(model: SSDMModel, steps: int) -> list[tuple[int, int]]:
    """[(t, s)] for ``steps`` DDIM steps from T down to 0 (t > s, evenly spaced)."""
    ts = model.schedule.spaced_timesteps(steps).tolist()
    return list(zip(ts, ts[1:] + [0], strict=True))


def ddim_update(model: SSDMModel, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor | int,
                s: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step t -> s < t (ints or (B,) timesteps): returns (x_s, x0_hat)."""
    b = x.shape[0]
    tt = torch.as_tensor(t, device=x.device).long().expand(b)
    ss = torch.as_tensor(s, device=x.device).long().expand(b)
    alpha, sigma = model.schedule.alpha_sigma(tt)
    alpha_s, sigma_s = model.schedule.alpha_sigma(ss)
    v = model(x, cond, tt)
    x0 = x0_from_v(x, v, alpha, sigma)  # x0_hat = alpha_t x_t - sigma_t v_hat
    eps = eps_from_v(x, v, alpha, sigma)
    return ddim_step(x0, eps, alpha_s, sigma_s), x0


def sample_x0(model: SSDMModel, cond: torch.Tensor, steps: int, *, generator: torch.Generator | None = None,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """cond (B, 2, H, W) -> x0_hat (B, c, H, W) after ``steps`` DDIM steps from x_T = ``noise`` (or N(0, I))."""
    b, _, h, w = cond.shape
    if noise is None:
        noise = torch.randn((b, model.image_channels, h, w), generator=generator, device=cond.device)
    x = noise.to(cond.dtype)
    for t, s in timestep_pairs(model, steps):
        x, _ = ddim_update(model, x, cond, t, s)
    return x


def dc_weight(mode: str, soft_weight: float = 0.5) -> float | None:
    """eq. 4: ``hard`` -> 1 (replace measured samples), ``soft`` -> the official code's 50/50 blend, ``none``."""
    if mode == "hard":
        return 1.0
    if mode == "soft":
        return float(soft_weight)
    if mode == "none":
        return None
    raise ConfigError(f"ssdm dc must be hard, soft or none; got {mode!r}")


def apply_dc(image: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None,
             mode: str = "hard", soft_weight: float = 0.5) -> torch.Tensor:
    """Data consistency (eq. 4) of (B, H, W) complex images against (B, C, H, W) k-space (per coil via maps)."""
    w = dc_weight(mode, soft_weight)
    return image if w is None else dc_image(image, kspace, mask, maps, weight=w)


def _pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


@torch.no_grad()
def reconstruct_kspace(model: SSDMModel, kspace: torch.Tensor, mask: torch.Tensor, *, steps: int | None = None,
                       seed: int = 0, samples: int = 1, dc: str | None = None, maps: torch.Tensor | str = "walsh",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """SSDM-MRI reconstruction of normalised k-space.

    kspace (B, C, H, W) complex, mask broadcastable to it; ``maps``: ``"walsh"`` (estimated, multi-coil) or a
    (B, C, H, W) tensor. Returns (B, H, W) complex images, or (samples, B, H, W) when ``samples > 1`` (each
    from its own x_T; ``seed`` seeds all of them unless a ``generator`` is given).
    """
    cfg = model.config
    steps = cfg.sampling_steps if steps is None else int(steps)
    kspace = kspace.to(torch.complex64)
    multicoil = kspace.shape[1] > 1
    low = lowres_images(kspace, cfg.phase_window)  # low-resolution coil images: coil maps and smooth phase
    if not multicoil:
        coil_maps = None
    elif isinstance(maps, torch.Tensor):
        coil_maps = maps.to(kspace.device, torch.complex64)
    elif maps == "walsh":
        coil_maps = estimate_coil_maps(kspace, size=cfg.phase_window, low=low)
    else:
        raise ConfigError(f"ssdm maps must be 'walsh' or a tensor of coil maps; got {maps!r}")
    combined = combine_coils(kspace, coil_maps)  # A^H y (Sec. III.C steps 1-2)
    phase = None
    if not cfg.complex_data:
        phase = lowres_phase(kspace, coil_maps, cfg.phase_window, low=low)
        combined = combined * torch.polar(torch.ones_like(phase), -phase)
    gain = model.input_gain(combined)  # the network's units (config.normalise); undone before DC
    if gain is not None:
        combined = combined * gain
    cond, (h, w) = _pad(to_channels(combined, True))
    b = cond.shape[0]
    if samples > 1:
        cond = cond.repeat(samples, 1, 1, 1)
    if generator is None:
        generator = torch.Generator(device=cond.device).manual_seed(int(seed))
    x0 = sample_x0(model, cond, steps, generator=generator)[..., :h, :w]  # Sec. III.C step 3 (no DC yet)
    image = from_channels(x0)
    if gain is not None:
        image = image / gain.repeat(samples, 1, 1)
    if phase is not None:
        image = image * torch.polar(torch.ones_like(phase), phase).repeat(samples, 1, 1)
    if samples > 1:
        image = image.reshape(samples, b, h, w)
    mode = cfg.dc if dc is None else dc
    rep = (lambda t: t) if samples == 1 else (lambda t: None if t is None else t.unsqueeze(0))
    return apply_dc(image, rep(kspace), rep(mask), rep(coil_maps), mode, cfg.dc_weight)  # eq. 4 / steps 4-5


def reconstruct_batch(model: SSDMModel, batch: Batch, *, steps: int | None = None, seed: int = 0, samples: int = 1,
                      dc: str | None = None) -> torch.Tensor:
    """``reconstruct_kspace`` of a Batch (its k-space is already normalised); complex (B, H, W)."""
    return reconstruct_kspace(model, batch.kspace, batch.mask, steps=steps, seed=seed, samples=samples, dc=dc,
                              maps="walsh")
