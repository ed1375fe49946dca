"""SPIRiT: iterative self-consistent parallel imaging (Lustig & Pauly, MRM 64:457, 2010), CG with exact data
consistency.

Calibration (Lustig & Pauly eq. 2, their calibSPIRiT): for every target coil c, a kernel g_c over the
``k x k`` window of *all* coils, excluding only the window centre of coil c itself, fitted on the ACS lifting
A (rows = ACS windows, columns c' * P + p) by Tikhonov-regularised least squares

    g_c = argmin ||A_{S_c} g - A_{t_c}||^2 + lam_abs ||g||^2,   lam_abs = lam * sigma_max(A)^2.

With w_c = g_c placed in a C*P vector and -1 at t_c, the SPIRiT residual is a k-space convolution
(G z - z)_c = H(z) w_c, so ||(G - I) z||^2 = ||H0(z) W||_F^2 with W = [w_1 ... w_C]: the same annihilation
penalty machinery as LORAKS (:class:`~mrrecon.classical.kspace_patches.AnnihilationOperator`).

Reconstruction (Lustig & Pauly eq. 5, the constrained form): z = y + U x with y the measured samples and U
the embedding of the unmeasured ones, x = argmin ||(G - I)(y + U x)||^2, solved by CG on the normal equations

    U^H (G - I)^H (G - I) U x = - U^H (G - I)^H (G - I) y,

so the measured samples are kept exactly. (G - I)^H (G - I) is applied in the image domain as a per-pixel
C x C Hermitian PSD matrix (C inverse FFTs, C^2 multiplies per pixel, C forward FFTs per CG iteration):
much faster than the k-space convolution for any kernel size (a 7 x 7 kernel would cost 2 * 49 C^2
multiply-adds per sample in k-space). The grid is zero-padded by k - 1 so the FFT convolution is exactly the
linear one (``boundary="periodic"`` wraps instead, as Lustig's image-domain code does).
"""

from __future__ import annotations

from typing import Annotated

import torch

from mrrecon.classical.kspace_patches import (
    AnnihilationOperator,
    Neighbourhood,
    calibration_gram,
    resolve_acs,
    ridge_solve,
    solve_unmeasured,
    tikhonov_lambda,
)
from mrrecon.core.reconstructor import MULTI_COIL, KSpaceReconstructor, MethodInfo, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.physics.kspace import as_batch, mask_as_grid

__all__ = [
    "DEFAULT_ITERS", "DEFAULT_KERNEL", "DEFAULT_LAM", "DEFAULT_REG", "DEFAULT_TOL",
    "Spirit", "spirit", "spirit_filters", "spirit_operator",
]

# Defaults chosen on the shared multi-coil brains (docs/classical-kspace.md).
DEFAULT_KERNEL = 5
DEFAULT_LAM = 1e-3
DEFAULT_ITERS = 20
DEFAULT_TOL = 1e-6
DEFAULT_REG = 0.03


def spirit_filters(acs: torch.Tensor, kernel_size: int = DEFAULT_KERNEL, lam: float = DEFAULT_LAM) -> torch.Tensor:
    """Calibrate SPIRiT kernels from ACS k-space (B, C, h, w) or (C, h, w).

    Returns W (B, C*P, C): column c is the filter of coil c (the kernel g_c with -1 at the window centre
    of coil c), in the lifting's column order, so that (G z - z)_c = H(z) W[:, c]."""
    acs, _ = as_batch(acs)
    if kernel_size % 2 == 0:
        raise ConfigError(f"SPIRiT kernel size must be odd, got {kernel_size}")
    nb = Neighbourhood.box(kernel_size)
    b, c = acs.shape[:2]
    p = nb.num_points
    n = c * p
    gram = calibration_gram(acs, nb)  # (B, n, n) complex128
    lam_abs = tikhonov_lambda(gram, lam)
    targets = torch.arange(c, device=acs.device) * p + nb.centre_index  # (C,)
    allcols = torch.arange(n, device=acs.device)
    src = torch.stack([allcols[allcols != t] for t in targets.tolist()])  # (C, n - 1)
    g_sub = gram[:, src[:, :, None], src[:, None, :]]  # (B, C, n-1, n-1)
    rhs = gram[:, src, targets[:, None]]  # (B, C, n-1)
    k = ridge_solve(g_sub, rhs.unsqueeze(-1), lam_abs.view(b, 1), overwrite=True).squeeze(-1)  # (B, C, n-1)
    w = torch.zeros(b, c, n, dtype=gram.dtype, device=gram.device)
    w.scatter_(2, src.unsqueeze(0).expand(b, -1, -1), k)
    w[:, torch.arange(c), targets] = -1.0
    return w.transpose(1, 2)  # (B, n, C)


def spirit_operator(filters: torch.Tensor, shape: tuple[int, int], num_coils: int, kernel_size: int = DEFAULT_KERNEL,
                    boundary: str = "zero") -> AnnihilationOperator:
    """The operator z -> (G - I)^H (G - I) z on (B, C, H, W) k-space."""
    return AnnihilationOperator(filters, Neighbourhood.box(kernel_size), shape, num_coils, boundary=boundary)


def spirit(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    *,
    kernel_size: int = DEFAULT_KERNEL,
    lam: float = DEFAULT_LAM,
    iters: int = DEFAULT_ITERS,
    tol: float = DEFAULT_TOL,
    acs: tuple[int, int] | tuple[slice, slice] | None = None,
    calib: torch.Tensor | None = None,
    boundary: str = "zero",
    reg: float = DEFAULT_REG,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """CG-SPIRiT: (B, C, H, W) or (C, H, W) undersampled k-space -> full k-space, measured samples unchanged.

    ``acs``/``calib`` as in :func:`mrrecon.classical.grappa.grappa`. ``x0``: optional initial k-space (e.g.
    a GRAPPA result) for the unmeasured samples; default zeros. ``reg``: Tikhonov weight on the unmeasured
    samples, (U^H Q U + reg I) x = -U^H Q y (Q does not depend on the data scale, so neither does reg)."""
    z, squeeze = as_batch(kspace)
    b, c, h, w = z.shape
    nb = Neighbourhood.box(kernel_size)
    known = mask_as_grid(mask, z)
    acs_k = calib if calib is not None else resolve_acs(z, known, acs, nb)
    filters = spirit_filters(acs_k, kernel_size, lam)
    op = spirit_operator(filters, (h, w), c, kernel_size, boundary)
    m = known.unsqueeze(1).to(z.real.dtype)
    y = z * m
    out = solve_unmeasured(op.normal, y, m, iters=iters, tol=tol, x0=x0, lam=reg)
    return out.squeeze(0) if squeeze else out


class Spirit(KSpaceReconstructor):
    """Reconstructor: CG-SPIRiT k-space -> RSS magnitude."""

    name = "spirit"

    def __init__(self, kernel_size: Annotated[int, "odd kernel width k (k x k window, all coils)"] = DEFAULT_KERNEL,
                 lam: Annotated[float, "calibration Tikhonov weight relative to sigma_max(ACS lifting)^2"]
                 = DEFAULT_LAM,
                 iters: Annotated[int, "CG iterations"] = DEFAULT_ITERS,
                 tol: Annotated[float, "CG relative residual tolerance"] = DEFAULT_TOL,
                 reg: Annotated[float, "Tikhonov weight on the unmeasured samples in CG"] = DEFAULT_REG,
                 acs: Annotated[tuple[int, int] | None, "calibration region size [h, w] (default: detected from "
                                                       "the mask)"] = None,
                 boundary: Annotated[str, "zero (zero-padded k-space, exact linear convolution) | periodic"] = "zero",
                 device: str | torch.device = "cpu"):
        self.kernel_size, self.lam, self.iters, self.tol = int(kernel_size), float(lam), int(iters), float(tol)
        self.reg, self.acs, self.boundary = float(reg), acs, boundary
        self.device = torch.device(device)

    def reconstruct_kspace(self, sample: Sample) -> torch.Tensor:
        return spirit(sample.kspace.to(self.device), sample.mask.to(self.device), kernel_size=self.kernel_size,
                      lam=self.lam, iters=self.iters, tol=self.tol, reg=self.reg, acs=self.acs,
                      boundary=self.boundary)


register(MethodInfo(
    name="spirit",
    factory=Spirit,
    description="CG-SPIRiT (Lustig & Pauly 2010): ACS-calibrated kernel, CG with exact data consistency; RSS output.",
    multicoil_only=True,
    hard_dc={MULTI_COIL: "kspace"},  # CG over the unmeasured samples only
))
