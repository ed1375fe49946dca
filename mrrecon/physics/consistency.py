"""Data consistency, one implementation used by every method.

- ``hard_dc``: replace measured k-space samples (SSDM eq. 4, LDPM eq. 3, IMA eq. 19, AK-Diffusion's DC
  correction): k = (1 - M) k_pred + M y.
- ``soft_dc``: blend at measured locations, k = (1 - M) k_pred + M ((1 - w) k_pred + w y) = k - w M (k - y)
  (E2E-VarNet's learned DC). With w = ``weight_from_lambda(lam)`` = lam / (1 + lam) this is the noise-aware DC
  of Schlemper et al. (k + lam y) / (1 + lam), the closed-form ``prox_l2`` of the k-space-diagonal operators;
  w = 0.5 is the 50/50 blend of the SSDM reference code.
- ``dc_image``: the same in the image domain, single-coil or multi-coil through coil maps (per-coil DC, then
  coil combination; SSDM Sec. III.C, LDPM's DC).
- ``data_fidelity`` and ``data_fidelity_grad``: ||A x - y||^2 and its gradient 2 A^H (A x - y), for
  gradient guidance (LDPM eqs. 10-11 use autograd through the decoder with ``data_fidelity``; IMA's eq. 15 is
  a gradient step with ``data_fidelity_grad``).
- ``conjugate_gradient``: batched CG for (N + lam I) x = b with a Hermitian positive (semi-)definite N, the
  package's one CG (CG-SENSE, TV, SPIRiT, LORAKS, the SLR correction, and the operators' ``A_dagger`` and
  ``prox_l2``, the CG-based proximal DC step argmin_x (gamma/2) ||A x - y||^2 + 1/2 ||x - z||^2).

Operators (``mrrecon.physics.operators``) import this module, not the other way round: the functions here
take any object with ``A`` / ``A_adjoint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import real_mask

if TYPE_CHECKING:
    from mrrecon.physics.operators import LinearOperator


def hard_dc(k_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace predicted k-space by the measurements where sampled: (1 - M) k_pred + M y."""
    m = real_mask(mask, k_pred)
    return k_pred * (1 - m) + y * m


def soft_dc(k_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """Move measured samples a fraction ``weight`` in [0, 1] toward y (1 = hard DC, 0 = none)."""
    m = real_mask(mask, k_pred) * weight
    return k_pred * (1 - m) + y * m


def weight_from_lambda(lam: float) -> float:
    """Noise-aware DC weight lam / (1 + lam), for k = (k_pred + lam y) / (1 + lam) at sampled points
    (lam = inf gives 1: hard DC)."""
    return 1.0 if math.isinf(lam) else lam / (1.0 + lam)


def dc_image(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor | None = None,
    weight: float = 1.0,
) -> torch.Tensor:
    """Data consistency for an image estimate ``x`` (B, H, W) against k-space ``y`` (B, C, H, W).

    Single-coil (maps None): F^-1 DC(F x). Multi-coil: coil images S x -> per-coil DC in k-space -> combine
    with sum_c conj(S_c) x_c / sum_c |S_c|^2 (SSDM Sec. III.C)."""
    dc = hard_dc if weight == 1.0 else lambda k, yy, m: soft_dc(k, yy, m, weight)
    if maps is None:
        return ifft2c(dc(fft2c(x.unsqueeze(-3)), y, mask)).squeeze(-3)
    coil_images = ifft2c(dc(fft2c(maps * x.unsqueeze(-3)), y, mask))
    norm = (maps.abs() ** 2).sum(dim=-3).clamp_min(1e-12)
    return (maps.conj() * coil_images).sum(dim=-3) / norm


def data_fidelity(x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    """||A x - y||_2^2 per batch element (differentiable; LDPM's k-space guidance delta, eq. 10).

    Squares of the real and imaginary parts (no |r| = sqrt, whose gradient is undefined at r = 0). With y
    non-zero off the mask the value gains the constant ||(1 - M) y||^2; the gradient does not change."""
    r = op.A(x) - y
    return (r.real ** 2 + r.imag ** 2).flatten(1).sum(dim=1)


def data_fidelity_grad(x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    """Gradient of ||A x - y||^2 w.r.t. the real and imaginary parts of x, as a complex tensor: 2 A^H (A x - y)."""
    return 2 * op.A_adjoint(op.A(x) - y)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched <a, b> = sum conj(a) b over all but the batch dim; returns real part (Hermitian systems)."""
    return (a.conj() * b).flatten(1).sum(dim=1).real


def batch_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


@dataclass
class CGResult:
    x: torch.Tensor
    iterations: int
    residual_norm: torch.Tensor  # per batch element, relative to ||b||


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    lam: float = 0.0,
    max_iter: int = 10,
    tol: float = 1e-6,
) -> CGResult:
    """Solve (N + lam I) x = b for every batch element at once (dim 0 is the batch).

    Each element has its own step sizes; elements that have converged (relative residual < tol) stop
    changing. Stops early when all have converged."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()

    def system(v):
        return normal(v) + lam * v if lam else normal(v)

    r = b - system(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = batch_dot(r, r)
    b_norm = batch_dot(b, b).sqrt().clamp_min(torch.finfo(rs.dtype).tiny)
    it = 0
    for it in range(1, max_iter + 1):
        active = rs.sqrt() / b_norm > tol
        if not active.any():
            it -= 1
            break
        ap = system(p)
        denom = batch_dot(p, ap)
        alpha = torch.where(active & (denom > 0), rs / denom.clamp_min(torch.finfo(rs.dtype).tiny), 0.0)
        x = x + batch_view(alpha, x) * p
        r = r - batch_view(alpha, r) * ap
        rs_new = batch_dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(torch.finfo(rs.dtype).tiny), 0.0)
        p = r + batch_view(beta, p) * p
        rs = torch.where(active, rs_new, rs)
    return CGResult(x=x, iterations=it, residual_norm=rs.sqrt() / b_norm)
