"""Local k-space neighbourhoods and their structured (block-Hankel) lifting, shared by GRAPPA, SPIRiT and LORAKS.

Notation (one implementation for all three methods):

* A *neighbourhood* is a set of P offsets ``o_p = (dy_p, dx_p)`` around a centre inside a ``kh x kw`` box:
  the full box (GRAPPA, SPIRiT) or a disc of radius R (LORAKS, Haldar IEEE TMI 33:668, 2014).
* The *lifting* ``H(z)`` of multi-coil k-space ``z`` (C, H, W) is the matrix whose rows are the neighbourhoods
  of every anchor at which the box fits inside the grid ("valid" positions), all coils side by side:
  row n = ``[z_c(n + o_p)]`` with column index ``c * P + p`` (coil-major). This is the C-matrix of LORAKS,
  the block-Hankel matrix of SAKE (Shin et al., MRM 72:959, 2014) and the calibration matrix of
  GRAPPA/SPIRiT/ESPIRiT when applied to the ACS.
* A vector ``f`` of length C*P is a multi-coil *filter*: ``(H(z) f)(n) = sum_{c,p} z_c(n + o_p) f[c, p]`` is a
  convolution of k-space. A set of filters F (C*P x n) defines the quadratic penalty ``||H0(z) F||_F^2``
  where ``H0`` lifts the zero-padded k-space (every anchor whose box overlaps the grid). SPIRiT's
  ``||(G - I) z||^2`` is this penalty with one filter per coil (the calibrated kernel with -1 at the
  centre); AC-LORAKS's ``||H(z) N||_F^2`` is it with the null-space basis N.
* :class:`AnnihilationOperator` applies the normal operator ``H0^*(H0(z) F F^H)`` of that penalty with FFTs:
  a k-space convolution is a per-pixel C x C matrix in the image domain,
  ``Q(x)_{c c'} = sum_{p, p'} conj(F F^H)[(c,p),(c',p')] exp(2 pi i (o_p - o_p') . x / N)``,
  Hermitian positive semi-definite at every pixel. With ``boundary="zero"`` the grid is zero-padded by
  ``k - 1`` samples per axis first, so the circular FFT convolution equals the linear one exactly
  (Haldar's fast AC-LORAKS implementation uses the same FFT trick).

Only the patch / Hankel lifting lives here; the general k-space helpers (``as_batch``, ``mask_as_grid``,
``find_acs_region``, ``acs_block``) are ``mrrecon.physics.kspace``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.physics.consistency import conjugate_gradient
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import acs_block, find_acs_region

__all__ = [
    "AnnihilationOperator",
    "Neighbourhood",
    "calibration_gram",
    "lift",
    "lift_adjoint",
    "largest_eigenvalue",
    "lift_counts",
    "resolve_acs",
    "ridge_solve",
    "solve_unmeasured",
    "tikhonov_lambda",
]


# ----------------------------------------------------------------------------------------------------------
# Neighbourhoods
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbourhood:
    """P offsets inside a ``kh x kw`` box; the centre is box position ``(kh // 2, kw // 2)``.

    ``footprint`` is a tuple of rows of bools (hashable); use :meth:`box` or :meth:`disc` to build one."""

    footprint: tuple[tuple[bool, ...], ...]

    @classmethod
    def box(cls, kh: int, kw: int | None = None) -> Neighbourhood:
        """The full ``kh x kw`` rectangle (GRAPPA/SPIRiT kernels)."""
        kw = kh if kw is None else kw
        if kh < 1 or kw < 1:
            raise ConfigError(f"kernel size must be positive, got {kh} x {kw}")
        return cls(tuple(tuple(True for _ in range(kw)) for _ in range(kh)))

    @classmethod
    def disc(cls, radius: float) -> Neighbourhood:
        """All integer offsets with dy^2 + dx^2 <= R^2 (LORAKS neighbourhood; R = 3 gives P = 29)."""
        if radius < 1:
            raise ConfigError(f"neighbourhood radius must be >= 1, got {radius}")
        r = int(math.floor(radius))
        return cls(tuple(tuple(dy * dy + dx * dx <= radius * radius for dx in range(-r, r + 1))
                         for dy in range(-r, r + 1)))

    @property
    def size(self) -> tuple[int, int]:
        return len(self.footprint), len(self.footprint[0])

    @property
    def centre(self) -> tuple[int, int]:
        kh, kw = self.size
        return kh // 2, kw // 2

    @cached_property
    def positions(self) -> tuple[tuple[int, int], ...]:
        """Box positions (row, col) of the P members, row-major."""
        return tuple((i, j) for i, row in enumerate(self.footprint) for j, v in enumerate(row) if v)

    @property
    def num_points(self) -> int:
        return len(self.positions)

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """Offsets (dy, dx) from the centre, in the order of :attr:`positions`."""
        ci, cj = self.centre
        return tuple((i - ci, j - cj) for i, j in self.positions)

    @property
    def centre_index(self) -> int:
        """Index p of offset (0, 0); raises if the centre is not a member."""
        try:
            return self.offsets.index((0, 0))
        except ValueError:
            raise ConfigError("this neighbourhood does not contain its centre point") from None

    def flat_box_index(self, device=None) -> torch.Tensor:
        """(P,) indices of the members in the flattened ``kh * kw`` box."""
        kw = self.size[1]
        return torch.tensor([i * kw + j for i, j in self.positions], dtype=torch.long, device=device)


# ----------------------------------------------------------------------------------------------------------
# Calibration block of a kernel
# ----------------------------------------------------------------------------------------------------------


def resolve_acs(kspace: torch.Tensor, mask: torch.Tensor, acs: tuple[int, int] | tuple[slice, slice] | None,
                nb: Neighbourhood) -> torch.Tensor:
    """ACS block of batched k-space: detected from the mask (``acs=None``), a centred ``(h, w)`` size, or an
    explicit (row slice, column slice). Checks that the kernel fits in it."""
    h, w = kspace.shape[-2:]
    if acs is None:
        region = find_acs_region(mask, (h, w))
    elif isinstance(acs[0], slice):
        region = acs  # type: ignore[assignment]
    else:
        ah, aw = int(acs[0]), int(acs[1])
        r0, c0 = h // 2 - ah // 2, w // 2 - aw // 2
        region = (slice(max(r0, 0), min(r0 + ah, h)), slice(max(c0, 0), min(c0 + aw, w)))
    block = acs_block(kspace, region)
    kh, kw = nb.size
    if block.shape[-2] < kh or block.shape[-1] < kw:
        raise ConfigError(f"the calibration region ({block.shape[-2]} x {block.shape[-1]}) is smaller than the "
                          f"kernel ({kh} x {kw}); use a smaller kernel or a mask with a larger ACS")
    return block


# ----------------------------------------------------------------------------------------------------------
# Lifting and its adjoint
# ----------------------------------------------------------------------------------------------------------


def lift(z: torch.Tensor, nb: Neighbourhood) -> torch.Tensor:
    """Valid block-Hankel lifting: (B, C, H, W) -> (B, (H - kh + 1) * (W - kw + 1), C * P), columns c * P + p."""
    kh, kw = nb.size
    b, c, h, w = z.shape
    if h < kh or w < kw:
        raise ShapeError(f"k-space {h} x {w} is smaller than the neighbourhood box {kh} x {kw}")
    win = z.unfold(-2, kh, 1).unfold(-2, kw, 1)  # (B, C, Ho, Wo, kh, kw), a view
    ho, wo = h - kh + 1, w - kw + 1
    win = win.reshape(b, c, ho * wo, kh * kw)
    if nb.num_points != kh * kw:
        win = win.index_select(-1, nb.flat_box_index(z.device))
    return win.permute(0, 2, 1, 3).reshape(b, ho * wo, c * nb.num_points)


def lift_adjoint(rows: torch.Tensor, nb: Neighbourhood, shape: tuple[int, int], num_coils: int) -> torch.Tensor:
    """Adjoint of :func:`lift`: scatter-add every row back to its neighbourhood. -> (B, C, H, W)."""
    kh, kw = nb.size
    h, w = shape
    ho, wo = h - kh + 1, w - kw + 1
    b = rows.shape[0]
    p_count = nb.num_points
    r = rows.reshape(b, ho, wo, num_coils, p_count).permute(0, 3, 4, 1, 2)  # (B, C, P, Ho, Wo)
    out = rows.new_zeros(b, num_coils, h, w)
    for p, (i, j) in enumerate(nb.positions):
        out[:, :, i:i + ho, j:j + wo] += r[:, :, p]
    return out


def lift_counts(nb: Neighbourhood, shape: tuple[int, int], device=None) -> torch.Tensor:
    """How many lifted entries each k-space point contributes to: (H, W) float (P inside, fewer at edges)."""
    kh, kw = nb.size
    h, w = shape
    ho, wo = h - kh + 1, w - kw + 1
    out = torch.zeros(h, w, device=device)
    for i, j in nb.positions:
        out[i:i + ho, j:j + wo] += 1
    return out


def calibration_gram(acs: torch.Tensor, nb: Neighbourhood) -> torch.Tensor:
    """Gram matrix A^H A of the lifted calibration data, (B, C*P, C*P) complex128 (for stable solves)."""
    a = lift(acs.to(torch.complex128), nb)
    return a.mH @ a


def largest_eigenvalue(gram: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """lambda_max of Hermitian PSD matrices (..., n, n) by power iteration (a few % accuracy suffices for a
    regularisation scale; k-space Gram matrices have a dominant first eigenvalue, so it converges fast)."""
    v = torch.ones(*gram.shape[:-1], 1, dtype=gram.dtype, device=gram.device)
    for _ in range(iters):
        v = gram @ v
        v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(torch.finfo(v.real.dtype).tiny)
    return (v.mH @ gram @ v).real[..., 0, 0].clamp_min(0)


def ridge_solve(gram: torch.Tensor, rhs: torch.Tensor, lam_abs: torch.Tensor | float,
                overwrite: bool = False) -> torch.Tensor:
    """Solve (G + lam_abs I) X = R for Hermitian PSD G (..., n, n), R (..., n, m); lam_abs broadcast over the
    leading dims. Cholesky (G + lam I is positive definite for lam > 0), least squares where it fails.
    ``overwrite=True`` adds lam to G's diagonal in place (G is then consumed)."""
    a = gram if overwrite else gram.clone()
    lam_abs = torch.as_tensor(lam_abs, dtype=gram.real.dtype, device=gram.device)
    a.diagonal(dim1=-2, dim2=-1).add_(lam_abs.unsqueeze(-1))
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info == 0).all()):  # two triangular solves (faster than cholesky_solve for small batched systems)
        half = torch.linalg.solve_triangular(chol, rhs, upper=False)
        return torch.linalg.solve_triangular(chol.mH, half, upper=True)
    return torch.linalg.lstsq(a, rhs).solution


def tikhonov_lambda(gram: torch.Tensor, lam: float) -> torch.Tensor:
    """Absolute Tikhonov weight lam * sigma_max(A)^2 = lam * lambda_max(A^H A), per batch element: (B,)."""
    return lam * largest_eigenvalue(gram)


# ----------------------------------------------------------------------------------------------------------
# Normal operator of a k-space annihilation penalty, applied in the image domain
# ----------------------------------------------------------------------------------------------------------


def _next_even_smooth(n: int) -> int:
    """Smallest even m >= n whose prime factors are 2, 3, 5 (fast FFT size)."""
    m = n + (n % 2)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


class AnnihilationOperator:
    """``z -> H0^*(H0(z) F F^H)``, the normal operator (half gradient) of ``||H0(z) F||_F^2``.

    filters: (C*P, n) or (B, C*P, n) complex, column j a multi-coil filter in the lifting's column order
        (zero columns are allowed and contribute nothing).
    shape:   (H, W) of the k-space it acts on.
    boundary: "zero" (default) lifts zero-padded k-space, i.e. every anchor whose box overlaps the grid; the
        FFT grid is padded to H + kh - 1, W + kw - 1 (rounded up to a fast even size) so the circular
        convolution is exactly the linear one. "periodic" wraps k-space around (no padding; slightly cheaper).

    The operator is a per-pixel C x C Hermitian PSD matrix ``Q(x)`` in the image domain of the padded grid
    (``pixel_matrices``, (B, Hp, Wp, C, C)); applying it costs C inverse FFTs, one C x C matrix-vector product per
    pixel and C forward FFTs.
    """

    def __init__(self, filters: torch.Tensor, nb: Neighbourhood, shape: tuple[int, int], num_coils: int,
                 boundary: str = "zero", dtype: torch.dtype = torch.complex64):
        if boundary not in ("zero", "periodic"):
            raise ConfigError(f"boundary must be 'zero' or 'periodic', got {boundary!r}")
        if filters.ndim == 2:
            filters = filters.unsqueeze(0)
        c, p = num_coils, nb.num_points
        if filters.shape[-2] != c * p:
            raise ShapeError(f"filters have {filters.shape[-2]} rows; expected C * P = {c} * {p}")
        self.nb, self.shape, self.num_coils, self.boundary = nb, tuple(shape), c, boundary
        kh, kw = nb.size
        h, w = self.shape
        if boundary == "zero":
            self.grid = (_next_even_smooth(h + kh - 1), _next_even_smooth(w + kw - 1))
        else:
            self.grid = (h, w)
        # (B, Hp, Wp, C, C): pixel-major so that applying it is one batched matmul
        self.pixel_matrices = self._pixel_matrices(filters.to(torch.complex128), dtype)

    def _pixel_matrices(self, f: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        nb, c = self.nb, self.num_coils
        p = nb.num_points
        kh, kw = nb.size
        hp, wp = self.grid
        b = f.shape[0]
        # A = conj(F F^H), reshaped (B, C, P, C, P) -> (B, C, C, P, P)
        a = (f @ f.mH).conj().reshape(b, c, p, c, p).permute(0, 1, 3, 2, 4).reshape(b, c, c, p * p)
        off = torch.tensor(nb.offsets, dtype=torch.long, device=f.device)  # (P, 2)
        diff = off[:, None, :] - off[None, :, :]  # o_p - o_p', (P, P, 2)
        dh, dw = 2 * kh - 1, 2 * kw - 1
        lin = ((diff[..., 0] + kh - 1) * dw + (diff[..., 1] + kw - 1)).reshape(-1)
        kernel = torch.zeros(b, c, c, dh * dw, dtype=f.dtype, device=f.device)
        kernel.index_add_(-1, lin, a)
        # Q is Hermitian (K_{c'c}(d) = conj K_{cc'}(-d)): transform the pairs c <= c' only, mirror the rest
        iu, ju = torch.triu_indices(c, c, device=f.device)
        kernel = kernel.reshape(b, c, c, dh, dw)[:, iu, ju].to(dtype)  # (B, T, dh, dw)
        # embed with offset d at index (Hp // 2 + d_y, Wp // 2 + d_x); Q = sqrt(Hp Wp) * ifft2c(K)
        grid = torch.zeros(b, len(iu), hp, wp, dtype=dtype, device=f.device)
        r0, c0 = hp // 2 - (kh - 1), wp // 2 - (kw - 1)
        rows = (torch.arange(dh, device=f.device) + r0) % hp
        cols = (torch.arange(dw, device=f.device) + c0) % wp
        grid[..., rows[:, None], cols[None, :]] = kernel
        upper = (ifft2c(grid) * math.sqrt(hp * wp)).permute(0, 2, 3, 1)  # (B, Hp, Wp, T)
        q = torch.empty(b, hp, wp, c, c, dtype=dtype, device=f.device)
        q[..., iu, ju] = upper
        q[..., ju, iu] = upper.conj()  # the diagonal is real in exact arithmetic; conj keeps it Hermitian
        diag = torch.arange(c, device=f.device)
        q[..., diag, diag] = q[..., diag, diag].real.to(dtype)
        return q

    def _pad(self, z: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        hp, wp = self.grid
        if (hp, wp) == (h, w):
            return z
        t, l_ = (hp - h) // 2, (wp - w) // 2
        return F.pad(z, (l_, wp - w - l_, t, hp - h - t))

    def _crop(self, z: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        hp, wp = self.grid
        if (hp, wp) == (h, w):
            return z
        t, l_ = (hp - h) // 2, (wp - w) // 2
        return z[..., t:t + h, l_:l_ + w]

    def normal(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        q = self.pixel_matrices
        if q.device != z.device or q.dtype != z.dtype:
            q = q.to(device=z.device, dtype=z.dtype)
        img = ifft2c(self._pad(z))  # (B, C, Hp, Wp)
        out = (q @ img.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
        return self._crop(fft2c(out))

    __call__ = normal

    def penalty(self, z: torch.Tensor) -> torch.Tensor:
        """||H0(z) F||_F^2 = <z, normal(z)> per batch element, (B,) real."""
        return (z.conj() * self.normal(z)).flatten(1).sum(1).real


# ----------------------------------------------------------------------------------------------------------
# Least squares over the unmeasured samples only (measured ones fixed exactly)
# ----------------------------------------------------------------------------------------------------------


def solve_unmeasured(normal, y: torch.Tensor, known: torch.Tensor, *, iters: int, tol: float = 1e-6,
                     x0: torch.Tensor | None = None, lam: float = 0.0, prior: torch.Tensor | None = None):
    """argmin_x <y + U x, Q (y + U x)> + lam ||U x - U prior||^2 over the unmeasured samples x, by CG.

    ``normal`` applies the Hermitian PSD Q; ``known`` is the real {0, 1} sampling mask broadcast to y; y must
    be zero where not measured. U embeds the unmeasured samples, so the system is
    (U^H Q U + lam I) x = -U^H Q y + lam U^H prior, and the result y + U x keeps every measured sample.
    (SPIRiT: Q = (G - I)^H (G - I); AC-LORAKS: Q = H^*(H(.) N N^H).)"""
    u = 1 - known

    def restricted(x):
        return normal(x * u) * u

    rhs = -normal(y) * u
    if lam and prior is not None:
        rhs = rhs + lam * prior * u
    start = None if x0 is None else (x0 * u).to(y.dtype)
    x = conjugate_gradient(restricted, rhs, x0=start, lam=lam, max_iter=iters, tol=tol).x
    return y + x * u
