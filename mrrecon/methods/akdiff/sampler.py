"""Predictor-corrector sampling of the reverse AK-Diffusion (Algorithm 1) with the PI correction of line 6.

For one slice y (C, H, W) (zeros where not measured) and its mask, in the model's k-space units
(:meth:`PCSampler.reconstruct_kspace` converts with ``model.kspace_scale``, the helper the training loss uses,
computed from the measured samples only, and converts the result back):

    2:  z_N ~ N(G_N (.) y, sigma_N^2 Sbar Sbar^*)
    3:  for i = N-1 .. 0
    5:    z0'  = h(z_{i+1}, t_{i+1})
    6:    z0'' = argmin 1/2 ||M z - y||^2 + ||H(z) N||_F^2 + lam ||z - z0'||^2        (correction)
    7:    Sbar Sbar^* eps = Sbar Sbar^* (G_{i+1} (.) z0' - z_{i+1}) / sigma_{i+1}^2
    8:    z_i = z_{i+1} - (G_{i+1} - G_i) (.) z0'' + (sigma_{i+1}^2 - sigma_i^2) Sbar Sbar^* eps
                + sqrt(sigma_{i+1}^2 - sigma_i^2) Sbar Sbar^* n
    9:    M times (corrector, Langevin):  g = Sbar Sbar^* (G_i (.) h(z_i, t_i) - z_i) / sigma_i^2,
   12:      eta = 2 (r ||n|| / ||g||)^2,
   13:      z_i = z_i + eta g + sqrt(2 eta) Sbar Sbar^* n
   16: output z_0

``drift`` (docs/akdiff.md "Choices"): ``subspace`` applies Sbar Sbar^* to the score terms of lines 7 and 11 as
printed; ``full`` applies it only to the injected noise (lines 8 and 13), so the part of the state outside the
coil subspace also moves toward G_i h instead of keeping what it was initialised with.

``output`` (not in the paper's text; docs/akdiff.md "Choices"): ``state`` returns line 16's z_0 (the paper);
``corrected`` returns z0'' of the last predictor step (line 6 at t_1: the PI model's solution next to the
network's projection h(z_1, t_1)), i.e. the reverse process's estimate of z(0) without the last step's noise
and Langevin moves (score_sde's final "noise removal" step plays the same role); ``projected`` returns that z0''
projected onto the coil subspace with the measured samples put back, M y + (1 - M) Sbar Sbar^* z0'' (eq. 11's loss
never sees the complement of h, so what the network writes there is unconstrained).

Division by Sbar Sbar^* followed by multiplication with it (lines 7-8, 11-13) is the projection onto its range;
for the projections (ESPIRiT / sos maps, identity) that is Sbar Sbar^* itself, which is what we apply; for the
SLR operator (not idempotent) applying the operator is the documented approximation.

Line 6 (``correction``):

* ``slr`` (paper): :func:`mrrecon.classical.slr.slr_correct` with the annihilating filters N of the ACS
  (AC-LORAKS calibration), warm-started CG. ``data_weight=None`` (default) solves the PI model's
  constrained form (M z = y exactly, "min ||H(z) N||^2 s.t. M z = y" searched near z0'); a number d gives the
  literal soft objective with (d/2) ||M z - y||^2 (paper: d = 1);
* ``dc`` (ablation "w/o SLR"): data consistency only: hard replacement (``hard_dc``, ``data_weight=None``), or
  argmin (d/2) ||M z - y||^2 + lam ||z - z0'||^2, the k-space sampling operator's proximal step
  ``KSpaceMask(M).prox_l2(z0', y, gamma = d / (2 lam))`` (closed form: soft DC with weight d / (d + 2 lam));
* ``none``: z0'' = z0' (no PI correction; for analysis).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from mrrecon.classical.kspace_patches import Neighbourhood, resolve_acs
from mrrecon.classical.slr import DEFAULT_ENERGY, DEFAULT_RADIUS, estimate_nullspace, slr_correct
from mrrecon.errors import ConfigError, ShapeError
from mrrecon.methods.akdiff.coil_subspace import SUBSPACES, estimate_subspace
from mrrecon.methods.akdiff.sde import complex_noise
from mrrecon.physics.coils import rss
from mrrecon.physics.consistency import hard_dc
from mrrecon.physics.fft import ifft2c
from mrrecon.physics.kspace import mask_as_grid, real_mask
from mrrecon.physics.operators import KSpaceMask

__all__ = ["CORRECTIONS", "DRIFTS", "OUTPUTS", "PCSampler", "SamplerSettings", "WEIGHTS_SETTINGS",
           "check_weights_settings", "settings_for"]

CORRECTIONS = ("slr", "dc", "none")
OUTPUTS = ("state", "corrected", "projected")
DRIFTS = ("subspace", "full")


@dataclass
class SamplerSettings:
    """Algorithm 1's inputs. Paper: N = 50, M = 1; r and lambda are not given (our defaults, docs/akdiff.md)."""

    steps: int = 50  # N predictor steps
    corrector_steps: int = 1  # M
    snr: float = 0.16  # r (score_sde's default snr for VE models)
    lam: float = 1.0  # lambda of line 6
    correction: str = "slr"  # slr | dc | none
    data_weight: float | None = None  # None: M z = y exactly; else d in (d/2)||M z - y||^2
    slr_iters: int = 10  # CG iterations of line 6 per step (warm-started at z0')
    kernel_radius: float = DEFAULT_RADIUS
    energy: float = DEFAULT_ENERGY
    subspace: str = "espirit"  # espirit | sos | slr | identity
    calib_size: int = 24  # ESPIRiT calibration region (searched for the largest fully sampled block)
    seed: int = 0
    output: str = "state"  # state (line 16: z_0, the paper) | corrected (z0'' of the last predictor step) | projected
    drift: str = "subspace"  # subspace (lines 7 and 11 projected, the paper) | full (only the noise projected)

    def __post_init__(self):
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")
        if self.subspace not in SUBSPACES:
            raise ConfigError(f"subspace must be one of {SUBSPACES}, got {self.subspace!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.drift not in DRIFTS:
            raise ConfigError(f"drift must be one of {DRIFTS}, got {self.drift!r}")
        if self.steps < 1 or self.corrector_steps < 0:
            raise ConfigError(f"need steps >= 1 and corrector_steps >= 0, got {self.steps}, {self.corrector_steps}")
        if self.snr <= 0 or self.lam < 0:
            raise ConfigError(f"need snr > 0 and lam >= 0, got {self.snr}, {self.lam}")


# The settings a model's config may carry in ``sampler`` (chosen for those weights on validation slices): every
# setting but ``data_weight``, whose None is itself a setting (M z = y exactly) and so cannot mean "not given".
WEIGHTS_SETTINGS = tuple(f.name for f in dataclasses.fields(SamplerSettings) if f.name != "data_weight")


def check_weights_settings(tuned: dict) -> None:
    """A model config's ``sampler`` entry: only :data:`WEIGHTS_SETTINGS`, each a valid value (checked when the
    config is built, so a bad config.json fails at load, not at the first reconstruction)."""
    unknown = set(tuned) - set(WEIGHTS_SETTINGS)
    if unknown:
        raise ConfigError(f"the model config's sampler entry has unknown setting(s) {sorted(unknown)}; "
                          f"allowed: {list(WEIGHTS_SETTINGS)}")
    SamplerSettings(**tuned)


def settings_for(model, **overrides) -> SamplerSettings:
    """Algorithm 1's settings for ``model``: the class defaults, then the model config's ``sampler`` entry (the
    settings chosen for those weights, docs/akdiff.md), then ``overrides`` (the method's options)."""
    tuned = getattr(getattr(model, "config", None), "sampler", None) or {}
    return SamplerSettings(**{**tuned, **overrides})


class PCSampler:
    """Algorithm 1 with a trained :class:`~mrrecon.methods.akdiff.model.AKDiffusionModel`; without
    ``settings``, those of :func:`settings_for` (the weights' own, then ``overrides``)."""

    def __init__(self, model, settings: SamplerSettings | None = None, **overrides):
        self.model = model
        self.settings = settings if settings is not None else settings_for(model, **overrides)
        self.last_nfe = 0

    # -- line 6 ------------------------------------------------------------------------------------------------
    def correction_fn(self, y: torch.Tensor, mask: torch.Tensor):
        """The map z0' -> z0'' of line 6 for measured k-space y (1, C, H, W)."""
        s = self.settings
        m = real_mask(mask_as_grid(mask, y).unsqueeze(1), y)
        if s.correction == "none":
            return lambda z: z
        if s.correction == "dc":
            if s.data_weight is None:
                return lambda z: hard_dc(z, y, m)
            # argmin (d/2)||Mz - y||^2 + lam ||z - z'||^2 = argmin (gamma/2)||Mz - y||^2 + 1/2 ||z - z'||^2
            # with gamma = d / (2 lam) (lam = 0: data only), per sample
            op = KSpaceMask(m)
            gamma = 0.5 * s.data_weight / s.lam if s.lam > 0 else math.inf
            return lambda z: op.prox_l2(z, y, gamma)
        nb = Neighbourhood.disc(s.kernel_radius)
        ns = estimate_nullspace(resolve_acs(y, mask_as_grid(mask, y), None, nb), nb, energy=s.energy)
        op = ns.operator(tuple(y.shape[-2:]), "zero", y.device)
        return lambda z: slr_correct(z, y, m, op, lam=s.lam, iters=s.slr_iters, data_weight=s.data_weight)

    # -- Algorithm 1 ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Algorithm 1 on undersampled k-space y (C, H, W) or (1, C, H, W) in the model's SDE units -> z_0."""
        s, model = self.settings, self.model
        squeeze = y.ndim == 3
        y = y.unsqueeze(0) if squeeze else y
        if y.ndim != 4 or y.shape[0] != 1 or not torch.is_complex(y):
            raise ShapeError(f"PC sampling takes one complex slice (C, H, W); got {tuple(y.shape)} {y.dtype}")
        y = y.to(torch.complex64)
        device = y.device
        m = real_mask(mask_as_grid(mask, y).unsqueeze(1), y)
        y = y * m
        gen = torch.Generator(device=device).manual_seed(int(s.seed))
        proj = estimate_subspace(s.subspace, y, mask, calib_size=s.calib_size, kernel_radius=s.kernel_radius)
        correct = self.correction_fn(y, mask)
        t, sigma = model.sde.discretisation(s.steps)
        big_g = model.sde.attenuation(t, tuple(y.shape[-2:]), device)  # (N + 1, 1, H, W)
        var = (sigma ** 2).tolist()
        nfe = 0

        def noise():
            return complex_noise(y.shape, generator=gen, device=device)

        # h of lines 5 and 10: a network that reads the coil subspace gets the same Sbar Sbar^* (model.py)
        h_of = functools.partial(model, project=proj) if getattr(model, "reads_subspace", False) else model
        # what Sbar Sbar^* applies to besides the noise: the score terms of lines 7 and 11 too (the paper), or not
        # (``drift: full``: the complement of the state also relaxes toward G_i h; docs/akdiff.md)
        proj_drift = proj if s.drift == "subspace" else (lambda v: v)
        z = big_g[s.steps] * y + float(sigma[s.steps]) * proj(noise())  # line 2
        for i in range(s.steps - 1, -1, -1):
            n = noise()  # line 4
            h = h_of(z, t[i + 1])  # line 5
            nfe += 1
            h_corr = correct(h)  # line 6
            if i == 0 and s.output != "state":  # z0'' at t_1: no last noise / Langevin step
                self.last_nfe = nfe
                if s.output == "projected":  # the complement of h_corr dropped, the measured samples kept
                    h_corr = hard_dc(proj(h_corr), y, m)
                return h_corr[0] if squeeze else h_corr
            score_step = proj_drift(big_g[i + 1] * h - z) * ((var[i + 1] - var[i]) / var[i + 1])  # line 7 (x step)
            z = (z - (big_g[i + 1] - big_g[i]) * h_corr + score_step
                 + (var[i + 1] - var[i]) ** 0.5 * proj(n))  # line 8
            for _ in range(s.corrector_steps):  # lines 9-14
                n = noise()
                h = h_of(z, t[i])
                nfe += 1
                g = proj_drift(big_g[i] * h - z) / var[i]  # line 11 (times Sbar Sbar^*)
                g_norm = float(torch.linalg.vector_norm(g))
                if not g_norm > 0:  # h(z_i) = z_i exactly (e.g. an untrained residual at t = 0): no step
                    continue
                eta = 2 * (s.snr * float(torch.linalg.vector_norm(n)) / g_norm) ** 2  # line 12
                z = z + eta * g + (2 * eta) ** 0.5 * proj(n)  # line 13
        self.last_nfe = nfe
        return z[0] if squeeze else z

    def reconstruct_kspace(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Undersampled k-space (C, H, W) in the library's units -> the sampled full k-space z_0, same units.

        The model's units (``model.kspace_scale``: the same helper as in training, from the measured samples
        only) are applied before Algorithm 1 and undone after it."""
        units = float(self.model.kspace_scale(kspace, mask).reshape(-1)[0])
        return self.sample(kspace * units, mask) / units

    def reconstruct_image(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(C, H, W) undersampled k-space -> (H, W) RSS magnitude of the sampled k-space (Sec. IV.C)."""
        return rss(ifft2c(self.reconstruct_kspace(kspace, mask)), dim=-3).float()
