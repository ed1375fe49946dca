"""Structured low-rank (SLR) k-space reconstruction: AC-LORAKS with the C-matrix (SAKE-style) lifting, and the
SLR projection / correction that AK-Diffusion calls (Algorithm 1, line 6).

Model (Haldar, "Low-rank modeling of local k-space neighborhoods (LORAKS)", IEEE TMI 33:668, 2014; Shin et
al., SAKE, MRM 72:959, 2014; Jacob, Mani & Ye, IEEE SPM 37:54, 2020): the lifting H(z) of multi-coil k-space
(rows = disc neighbourhoods of radius R across all coils, see :mod:`mrrecon.classical.kspace_patches`) has low
rank because coil sensitivities are smooth and the object has limited support. Its right null space N holds
annihilating filters: H(z) N ~ 0.

* :func:`estimate_nullspace` -- AC-LORAKS calibration (Haldar, ISBI 2015): SVD of the lifted ACS,
  ``H(acs) = U S V^H``; rank r by the rule below; N = V[:, r:].
* Rank rule (default): the smallest r whose leading singular values hold a fraction ``energy`` of the ACS
  lifting's energy, sum_{i<=r} s_i^2 >= energy * sum_i s_i^2 (``energy`` = :data:`DEFAULT_ENERGY`), capped at
  C*P - 1; ``rank=<int>`` fixes r instead. The default was chosen on the shared real multi-coil brains
  (docs/classical-kspace.md).
* :func:`loraks` -- AC-LORAKS: argmin_z ||H0(z) N||_F^2 subject to M z = y (measured samples fixed), a
  linear least-squares problem over the unmeasured samples solved by CG; H0^*(H0(.) N N^H) is applied
  with FFTs as a per-pixel C x C matrix in the (zero-padded) image domain, as in Haldar's fast AC-LORAKS.
* :func:`slr_correct` -- AK-Diffusion line 6:
  argmin_z (d/2)||M z - y||^2 + s ||H0(z) N||_F^2 + lam ||z - z'||^2 (paper: d = 1, s = 1), or with
  ``data_weight=None`` the hard-constrained form (M z = y exactly: the paper's PI model "min ||H(z) N||^2
  s.t. M z = y" searched near z').
* :func:`slr_project` -- Cadzow-style projection: lift, truncate to rank r, adjoint-lift with averaging
  (optionally re-imposing the measured samples), for the "SLR operator" variant of AK-Diffusion.
* :meth:`Nullspace.subspace_projection` -- z - H0^*(H0(z) N N^H) / P, the Hermitian operator with eigenvalues
  in [0, 1] that passes the k-space consistent with the calibrated coil subspace (the SLR alternative to
  S S^* in AK-Diffusion's Table IV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import torch

from mrrecon.classical.kspace_patches import (
    AnnihilationOperator,
    Neighbourhood,
    calibration_gram,
    lift,
    lift_adjoint,
    lift_counts,
    resolve_acs,
    solve_unmeasured,
)
from mrrecon.core.reconstructor import MULTI_COIL, KSpaceReconstructor, MethodInfo, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.physics.consistency import conjugate_gradient, hard_dc
from mrrecon.physics.kspace import as_batch, mask_as_grid, real_mask

__all__ = [
    "DEFAULT_ENERGY",
    "DEFAULT_ITERS",
    "DEFAULT_RADIUS",
    "DEFAULT_REG",
    "Loraks",
    "Nullspace",
    "choose_rank",
    "estimate_nullspace",
    "hankel_rank",
    "hankel_singular_values",
    "loraks",
    "slr_correct",
    "slr_project",
]

# Defaults chosen on the shared multi-coil brains (docs/classical-kspace.md).
DEFAULT_RADIUS = 2  # LORAKS neighbourhood radius R (P = 13 points)
DEFAULT_ENERGY = 0.999  # rank rule: fraction of the ACS lifting's energy kept in the signal subspace
DEFAULT_ITERS = 30
DEFAULT_TOL = 1e-6
DEFAULT_REG = 0.1


def _neighbourhood(radius: float | Neighbourhood) -> Neighbourhood:
    return radius if isinstance(radius, Neighbourhood) else Neighbourhood.disc(radius)


def _gram_eig(z: torch.Tensor, nb: Neighbourhood) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values (descending, (B, n)) and right singular vectors ((B, n, n), columns) of the lifting."""
    evals, evecs = torch.linalg.eigh(calibration_gram(z, nb))  # ascending
    return evals.flip(-1).clamp_min(0).sqrt(), evecs.flip(-1)


# ----------------------------------------------------------------------------------------------------------
# Rank, singular values
# ----------------------------------------------------------------------------------------------------------


def hankel_singular_values(z: torch.Tensor, kernel_radius: float | Neighbourhood = DEFAULT_RADIUS) -> torch.Tensor:
    """Singular values (descending) of the valid lifting of k-space (B, C, H, W) or (C, H, W): (B, C*P) or (C*P,)."""
    zb, squeeze = as_batch(z)
    s, _ = _gram_eig(zb, _neighbourhood(kernel_radius))
    return s[0] if squeeze else s


def hankel_rank(z: torch.Tensor, kernel_radius: float | Neighbourhood = DEFAULT_RADIUS, tol: float = 1e-3):
    """Numerical rank of the lifting: the number of singular values > tol * the largest. (B,) or int."""
    s = hankel_singular_values(z, kernel_radius)
    r = (s > tol * s[..., :1]).sum(-1)
    return int(r) if r.ndim == 0 else r


def choose_rank(singular_values: torch.Tensor, energy: float = DEFAULT_ENERGY) -> torch.Tensor:
    """Smallest r with sum_{i<=r} s_i^2 >= energy * sum_i s_i^2, capped at n - 1 (a non-empty null space). (B,)"""
    if not 0 < energy <= 1:
        raise ConfigError(f"energy must be in (0, 1], got {energy}")
    e = singular_values.to(torch.float64).square()
    frac = e.cumsum(-1) / e.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    r = (frac < energy - 1e-12).sum(-1) + 1
    return r.clamp(1, singular_values.shape[-1] - 1)


# ----------------------------------------------------------------------------------------------------------
# Null space
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Nullspace:
    """Annihilating filters of the lifting, estimated from calibration data.

    basis:           (B, C*P, n) orthonormal null-space vectors V[:, r:] (columns of zeros pad the elements whose
                     rank is larger than the smallest rank in the batch).
    singular_values: (B, C*P) singular values of the lifted calibration data, descending.
    rank:            (B,) the rank r used.
    neighbourhood, num_coils: the lifting."""

    basis: torch.Tensor
    singular_values: torch.Tensor
    rank: torch.Tensor
    neighbourhood: Neighbourhood
    num_coils: int
    _operators: dict = field(default_factory=dict, repr=False)

    def operator(self, shape: tuple[int, int], boundary: str = "zero", device=None) -> AnnihilationOperator:
        """The normal operator z -> H0^*(H0(z) N N^H) on (B, C, H, W) k-space (cached per shape and device)."""
        device = torch.device(device) if device is not None else self.basis.device
        key = (tuple(shape), boundary, str(device))
        if key not in self._operators:
            self._operators[key] = AnnihilationOperator(self.basis.to(device), self.neighbourhood, shape,
                                                        self.num_coils, boundary=boundary)
        return self._operators[key]

    def subspace_projection(self, z: torch.Tensor, boundary: str = "zero") -> torch.Tensor:
        """z - H0^*(H0(z) N N^H) / P: Hermitian, eigenvalues in [0, 1]; ~identity on calibration-consistent k-space."""
        zb, squeeze = as_batch(z)
        op = self.operator(zb.shape[-2:], boundary, zb.device)
        out = zb - op.normal(zb) / self.neighbourhood.num_points
        return out.squeeze(0) if squeeze else out


def estimate_nullspace(
    acs_kspace: torch.Tensor,
    kernel_radius: float | Neighbourhood = DEFAULT_RADIUS,
    rank: int | None = None,
    *,
    energy: float = DEFAULT_ENERGY,
) -> Nullspace:
    """AC-LORAKS calibration from fully sampled calibration k-space (B, C, h, w) or (C, h, w).

    ``rank``: fixed r, or None for the energy rule :func:`choose_rank` (documented default)."""
    acs, _ = as_batch(acs_kspace)
    nb = _neighbourhood(kernel_radius)
    kh, kw = nb.size
    if acs.shape[-2] < kh or acs.shape[-1] < kw:
        raise ConfigError(f"calibration data {tuple(acs.shape[-2:])} is smaller than the neighbourhood {kh} x {kw}")
    s, v = _gram_eig(acs, nb)
    n = s.shape[-1]
    if rank is None:
        r = choose_rank(s, energy)
    else:
        if not 1 <= int(rank) < n:
            raise ConfigError(f"rank must be in [1, {n - 1}] for C*P = {n}, got {rank}")
        r = torch.full((acs.shape[0],), int(rank), dtype=torch.long, device=acs.device)
    r = r.to(acs.device)
    r_min = int(r.min())
    cols = torch.arange(r_min, n, device=acs.device)
    keep = (cols[None, :] >= r[:, None]).to(v.dtype)  # zero the columns below each element's own rank
    basis = v[:, :, r_min:] * keep[:, None, :]
    return Nullspace(basis=basis.to(torch.complex64), singular_values=s.float(), rank=r, neighbourhood=nb,
                     num_coils=acs.shape[1])


# ----------------------------------------------------------------------------------------------------------
# Correction (AK-Diffusion line 6) and AC-LORAKS
# ----------------------------------------------------------------------------------------------------------


def slr_correct(
    z_prior: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    nullspace: Nullspace | AnnihilationOperator,
    lam: float = 1.0,
    iters: int = DEFAULT_ITERS,
    *,
    data_weight: float | None = 1.0,
    slr_weight: float = 1.0,
    tol: float = DEFAULT_TOL,
    boundary: str = "zero",
) -> torch.Tensor:
    """argmin_z (d/2) ||M z - y||^2 + s ||H0(z) N||_F^2 + lam ||z - z'||^2  (AK-Diffusion Alg. 1, line 6).

    z_prior (z'): (B, C, H, W) or (C, H, W), e.g. the score network's estimate; y: measured k-space (zeros
    elsewhere); d = ``data_weight`` (paper: 1), s = ``slr_weight`` (paper: 1). ``data_weight=None`` imposes
    M z = y exactly and minimises over the unmeasured samples only. Solved by CG (warm-started at z'):
    soft form (d/2 M + s Q + lam I) z = d/2 M y + lam z'; hard form as in :func:`solve_unmeasured`.
    ``nullspace`` may be a :class:`Nullspace` or a prebuilt operator (reuse it across sampler steps)."""
    zp, squeeze = as_batch(z_prior)
    yb, _ = as_batch(y)
    op = nullspace.operator(zp.shape[-2:], boundary, zp.device) if isinstance(nullspace, Nullspace) else nullspace
    m = real_mask(mask_as_grid(mask, zp).unsqueeze(1), zp)
    yb = yb.to(zp.dtype) * m
    if data_weight is None:
        out = solve_unmeasured(lambda v: slr_weight * op.normal(v), yb, m, iters=iters, tol=tol,
                               x0=zp, lam=lam, prior=zp)
    else:
        if data_weight < 0 or lam < 0 or slr_weight < 0:
            raise ConfigError("data_weight, slr_weight and lam must be >= 0")
        half_d = 0.5 * data_weight

        def normal(v):
            return half_d * m * v + slr_weight * op.normal(v)

        rhs = half_d * yb + lam * zp
        out = conjugate_gradient(normal, rhs, x0=zp, lam=lam, max_iter=iters, tol=tol).x
    return out.squeeze(0) if squeeze else out


def loraks(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    *,
    kernel_radius: float = DEFAULT_RADIUS,
    rank: int | None = None,
    energy: float = DEFAULT_ENERGY,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    acs: tuple[int, int] | tuple[slice, slice] | None = None,
    calib: torch.Tensor | None = None,
    boundary: str = "zero",
    reg: float = DEFAULT_REG,
) -> torch.Tensor:
    """AC-LORAKS (C-matrix): (B, C, H, W) or (C, H, W) undersampled k-space -> full k-space, M z = y exactly.

    ``reg``: Tikhonov weight on the unmeasured samples (Q = H0^*(H0(.) N N^H) has eigenvalues in [0, P])."""
    z, squeeze = as_batch(kspace)
    nb = _neighbourhood(kernel_radius)
    known = mask_as_grid(mask, z)
    acs_k = calib if calib is not None else resolve_acs(z, known, acs, nb)
    ns = estimate_nullspace(acs_k, nb, rank, energy=energy)
    m = known.unsqueeze(1).to(z.real.dtype)
    y = z * m
    out = solve_unmeasured(ns.operator(z.shape[-2:], boundary, z.device).normal, y, m, iters=iters, tol=tol, lam=reg)
    return out.squeeze(0) if squeeze else out


# ----------------------------------------------------------------------------------------------------------
# Cadzow projection
# ----------------------------------------------------------------------------------------------------------


def slr_project(
    z: torch.Tensor,
    rank: int,
    *,
    kernel_radius: float | Neighbourhood = DEFAULT_RADIUS,
    iters: int = 1,
    y: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cadzow-style SLR projection of k-space (B, C, H, W) or (C, H, W), ``iters`` times:
    lift (valid), truncate the SVD to rank r, adjoint-lift with averaging (each sample gets the mean of its
    copies), then, if ``y`` and ``mask`` are given, put the measured samples back (hard DC)."""
    zb, squeeze = as_batch(z)
    nb = _neighbourhood(kernel_radius)
    shape = tuple(zb.shape[-2:])
    c = zb.shape[1]
    n = c * nb.num_points
    if not 1 <= rank <= n:
        raise ConfigError(f"rank must be in [1, {n}], got {rank}")
    if (y is None) != (mask is None):
        raise ConfigError("give both y and mask to keep the measured samples, or neither")
    counts = lift_counts(nb, shape, zb.device).clamp_min(1)
    out = zb
    for _ in range(iters):
        a = lift(out.to(torch.complex128), nb)
        _, v = torch.linalg.eigh(a.mH @ a)
        vr = v[..., n - rank:]  # leading right singular vectors
        a = (a @ vr) @ vr.mH
        out = (lift_adjoint(a, nb, shape, c) / counts).to(zb.dtype)
        if y is not None:
            out = hard_dc(out, as_batch(y)[0].to(out.dtype), mask_as_grid(mask, out).unsqueeze(1))
    return out.squeeze(0) if squeeze else out


# ----------------------------------------------------------------------------------------------------------
# Reconstructor
# ----------------------------------------------------------------------------------------------------------


class Loraks(KSpaceReconstructor):
    """Reconstructor: AC-LORAKS k-space -> RSS magnitude."""

    name = "loraks"

    def __init__(self, kernel_radius: Annotated[float, "LORAKS neighbourhood radius R"] = DEFAULT_RADIUS,
                 rank: Annotated[int | None, "fixed rank r of the lifting (default: energy rule)"] = None,
                 energy: Annotated[float, "rank rule: fraction of the ACS lifting's energy in the signal subspace"]
                 = DEFAULT_ENERGY,
                 iters: Annotated[int, "CG iterations"] = DEFAULT_ITERS,
                 tol: Annotated[float, "CG relative residual tolerance"] = DEFAULT_TOL,
                 reg: Annotated[float, "Tikhonov weight on the unmeasured samples in CG"] = DEFAULT_REG,
                 acs: Annotated[tuple[int, int] | None, "calibration region size [h, w] (default: detected from "
                                                       "the mask)"] = None,
                 boundary: Annotated[str, "zero (zero-padded k-space) | periodic"] = "zero",
                 device: str | torch.device = "cpu"):
        self.kernel_radius, self.rank, self.energy = float(kernel_radius), rank, float(energy)
        self.iters, self.tol, self.reg, self.acs, self.boundary = int(iters), float(tol), float(reg), acs, boundary
        self.device = torch.device(device)

    def reconstruct_kspace(self, sample: Sample) -> torch.Tensor:
        return loraks(sample.kspace.to(self.device), sample.mask.to(self.device), kernel_radius=self.kernel_radius,
                      rank=self.rank, energy=self.energy, iters=self.iters, tol=self.tol, reg=self.reg,
                      acs=self.acs, boundary=self.boundary)


register(MethodInfo(
    name="loraks",
    factory=Loraks,
    description="AC-LORAKS (C-matrix, SAKE-style Hankel lifting): null space from the ACS, CG with M z = y; RSS.",
    multicoil_only=True,
    hard_dc={MULTI_COIL: "kspace"},  # CG with M z = y
))
