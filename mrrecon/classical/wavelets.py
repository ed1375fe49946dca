"""Orthonormal 2-D discrete wavelet transforms (Daubechies family, periodic boundary), batched torch.

Filters. :func:`daubechies_lowpass` builds the extremal-phase Daubechies low-pass filter with ``order``
vanishing moments (length ``2 * order``; ``order = 1`` is Haar) by spectral factorisation (Daubechies, *Ten
Lectures on Wavelets*, SIAM 1992, Sec. 6.1): ``|m0(w)|^2 = cos^(2N)(w/2) P(sin^2(w/2))`` with
``P(y) = sum_{k<N} C(N-1+k, k) y^k``; every root ``y_i`` of ``P`` gives the root inside the unit circle of
``z^2 - (2 - 4 y_i) z + 1`` and the filter is ``(1 + z^-1)^N prod_i (1 - z_i z^-1)``, scaled to sum sqrt(2).
The high-pass filter is the quadrature mirror ``g[j] = (-1)^j h[L-1-j]``.
Names: ``"haar"`` (= ``"db1"``), ``"db2"`` (BART's ``dau2``, 4 taps) ... ``"db10"``; mrrecon's default is ``"db4"``
(8 taps, sigpy's default). Note the two naming conventions: BART's "Daubechies-2" is db2, not db4.

Transform. One level along an axis of even length ``n`` is ``lo[k] = sum_j h[j] x[(2k + j) mod n]``,
``hi[k] = sum_j g[j] x[(2k + j) mod n]`` (periodic extension). Because ``h`` and its even shifts are orthonormal and
``g`` is its mirror, this ``n x n`` map is orthogonal for every even ``n`` (also when ``n`` is shorter than the
filter: the periodised filter keeps the property), so the inverse is the adjoint (transposed convolution).
A 2-D level transforms rows and then columns; levels recurse on the low-low band (Mallat's pyramid). The
coefficients are stored in one tensor of the input's shape, in the usual pyramid layout: after ``levels``
levels the coarsest approximation band is the top-left ``(H / 2^levels, W / 2^levels)`` block, and the detail
bands of level ``l`` fill the rest of the top-left ``(H / 2^(l-1), W / 2^(l-1))`` block.

:func:`dwt2` / :func:`idwt2` need ``H`` and ``W`` divisible by ``2^levels``. :class:`WaveletTransform` takes any size:
it zero-pads (bottom and right) to the next multiple of ``2^levels`` before the transform and crops after the
inverse. Its analysis operator ``W = D P`` (D orthogonal, P zero-padding) then satisfies ``W^H W = I`` (perfect
reconstruction, an isometry), while ``W W^H`` is the projection onto coefficients of images that vanish in the
padding. Solvers that need the exact proximal operator of ``||W x||_1`` work on the padded grid directly
(:meth:`WaveletTransform.pad` / :meth:`WaveletTransform.crop`), where ``D`` is square and orthogonal.

Complex inputs are transformed as two real images (the filters are real). Runs on the input's device and dtype
(float32/complex64, float64/complex128).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from mrrecon.errors import ConfigError, ShapeError

__all__ = [
    "WAVELET_NAMES",
    "WaveletTransform",
    "approximation_shape",
    "daubechies_lowpass",
    "detail_mask",
    "dwt2",
    "idwt2",
    "wavelet_filters",
]

_MAX_ORDER = 10
WAVELET_NAMES = ("haar",) + tuple(f"db{n}" for n in range(1, _MAX_ORDER + 1))


@cache
def daubechies_lowpass(order: int) -> tuple[float, ...]:
    """Extremal-phase Daubechies low-pass filter with ``order`` vanishing moments (``2 * order`` taps, sum sqrt 2).

    Computed by spectral factorisation in float64 (module docstring); accurate to ~1e-14 for order <= 10."""
    if not 1 <= order <= _MAX_ORDER:
        raise ConfigError(f"Daubechies order must be in [1, {_MAX_ORDER}], got {order}")
    n = order
    zeros = [-1.0] * n
    if n > 1:
        p_ascending = [math.comb(n - 1 + k, k) for k in range(n)]
        for y in np.roots(p_ascending[::-1]):
            b = 2.0 - 4.0 * y
            disc = np.sqrt(b * b - 4.0 + 0j)
            z1, z2 = (b + disc) / 2.0, (b - disc) / 2.0
            zeros.append(z1 if abs(z1) < 1.0 else z2)
    h = np.real(np.poly(np.asarray(zeros, dtype=np.complex128)))
    h = h / h.sum() * math.sqrt(2.0)
    return tuple(float(v) for v in h)


def _order(name: str) -> int:
    key = name.lower()
    if key == "haar":
        return 1
    if key.startswith("db") and key[2:].isdigit() and 1 <= int(key[2:]) <= _MAX_ORDER:
        return int(key[2:])
    raise ConfigError(f"unknown wavelet {name!r}; choose one of {', '.join(WAVELET_NAMES)}")


def wavelet_filters(name: str = "db4") -> tuple[torch.Tensor, torch.Tensor]:
    """(low-pass h, high-pass g) analysis filters of a named wavelet, float64; ``g[j] = (-1)^j h[L-1-j]``."""
    h = torch.tensor(daubechies_lowpass(_order(name)), dtype=torch.float64)
    sign = torch.ones_like(h)
    sign[1::2] = -1.0
    g = sign * h.flip(0)
    return h, g


@lru_cache(maxsize=64)
def _kernels(name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """conv2d weights: analysis (2, 1, L, 1) rows / (2, 1, 1, L) columns, [h; g] (correlation form), and
    synthesis (2, 2, p, 1) rows / (2, 2, 1, p) columns, p = L / 2 (polyphase form of the transposed filter bank)."""
    h, g = wavelet_filters(name)
    bank = torch.stack([h, g])  # (2, L): [band, tap]
    taps = bank.shape[1]
    p = taps // 2
    # Synthesis: x[2m + r] = sum_q sum_band c_band[m - q] f_band[2q + r]; as a correlation over c padded in front
    # by p - 1 samples, tap j <-> q = p - 1 - j, so weight[r, band, j] = f_band[2 (p - 1 - j) + r].
    syn = torch.empty(2, 2, p, dtype=torch.float64)
    for r in range(2):
        for j in range(p):
            syn[r, :, j] = bank[:, 2 * (p - 1 - j) + r]
    conv = lambda t: t.to(device=device, dtype=dtype).contiguous()  # noqa: E731
    return (conv(bank[:, None, :, None]), conv(bank[:, None, None, :]),
            conv(syn[:, :, :, None]), conv(syn[:, :, None, :]))


def _real_dtype(x: torch.Tensor) -> torch.dtype:
    if x.dtype in (torch.complex128, torch.float64):
        return torch.float64
    return torch.float32


# ---------------------------------------------------------------------------------------------------------
# One level along one axis, on real tensors (N, 1, H, W)
# ---------------------------------------------------------------------------------------------------------


def _analysis_rows(x: torch.Tensor, k_rows: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, h, w) with [lo; hi] stacked along H (periodic extension)."""
    n, _, h, w = x.shape
    ext = k_rows.shape[2] - 2
    if ext:
        x = torch.cat([x, _wrap_back(x, ext, 2)], dim=2)
    out = F.conv2d(x, k_rows, stride=(2, 1))  # (N, 2, h/2, w)
    return out.reshape(n, 1, h, w)


def _analysis_cols(x: torch.Tensor, k_cols: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, h, w) with [lo | hi] side by side along W."""
    n, _, h, w = x.shape
    ext = k_cols.shape[3] - 2
    if ext:
        x = torch.cat([x, _wrap_back(x, ext, 3)], dim=3)
    out = F.conv2d(x, k_cols, stride=(1, 2))  # (N, 2, h, w/2)
    return out.permute(0, 2, 1, 3).reshape(n, 1, h, w)


def _synthesis_rows(c: torch.Tensor, s_rows: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_analysis_rows` (its transpose), (N, 1, h, w) -> (N, 1, h, w)."""
    n, _, h, w = c.shape
    half, front = h // 2, s_rows.shape[2] - 1
    c = c.reshape(n, 2, half, w)
    if front:
        c = torch.cat([_wrap_front(c, front, 2), c], dim=2)
    out = F.conv2d(c, s_rows)  # (N, 2 [phase r], h/2, w)
    return out.permute(0, 2, 1, 3).reshape(n, 1, h, w)


def _synthesis_cols(c: torch.Tensor, s_cols: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_analysis_cols`, (N, 1, h, w) -> (N, 1, h, w)."""
    n, _, h, w = c.shape
    half, front = w // 2, s_cols.shape[3] - 1
    c = c.reshape(n, h, 2, half).permute(0, 2, 1, 3)  # (N, 2 [band], h, w/2)
    if front:
        c = torch.cat([_wrap_front(c, front, 3), c], dim=3)
    out = F.conv2d(c, s_cols)  # (N, 2 [phase r], h, w/2)
    return out.permute(0, 2, 3, 1).reshape(n, 1, h, w)


def _wrap_back(x: torch.Tensor, count: int, dim: int) -> torch.Tensor:
    """The first ``count`` samples of the periodic sequence along ``dim`` (repeating it if it is shorter)."""
    size = x.shape[dim]
    reps = -(-count // size)
    full = torch.cat([x] * reps, dim=dim) if reps > 1 else x
    return full.narrow(dim, 0, count)


def _wrap_front(c: torch.Tensor, front: int, dim: int) -> torch.Tensor:
    """The last ``front`` samples of the periodic sequence along ``dim`` (repeating it if it is shorter)."""
    size = c.shape[dim]
    reps = -(-front // size)
    full = torch.cat([c] * reps, dim=dim) if reps > 1 else c
    return full.narrow(dim, full.shape[dim] - front, front)


# ---------------------------------------------------------------------------------------------------------
# Multi-level 2-D transforms
# ---------------------------------------------------------------------------------------------------------


def _check_levels(shape: tuple[int, int], levels: int) -> None:
    if levels < 0:
        raise ConfigError(f"wavelet levels must be >= 0, got {levels}")
    h, w = shape
    q = 1 << levels
    if h % q or w % q:
        raise ShapeError(f"dwt2 needs H and W divisible by 2^levels = {q}; got {h}x{w} "
                         "(use WaveletTransform, which pads)")


def _to_real_batch(x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """(..., H, W) real or complex -> (N, 1, H, W) real, plus what is needed to undo it."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    if x.is_complex():
        r = torch.view_as_real(x.reshape(-1, h, w)).permute(0, 3, 1, 2)  # (M, 2, H, W)
        return r.reshape(-1, 1, h, w), (lead, True)
    return x.reshape(-1, 1, h, w), (lead, False)


def _from_real_batch(r: torch.Tensor, info: tuple) -> torch.Tensor:
    lead, was_complex = info
    h, w = r.shape[-2:]
    if was_complex:
        r = r.reshape(-1, 2, h, w).permute(0, 2, 3, 1).contiguous()
        return torch.view_as_complex(r).reshape(*lead, h, w)
    return r.reshape(*lead, h, w)


def dwt2(x: torch.Tensor, wavelet: str = "db4", levels: int = 4) -> torch.Tensor:
    """Orthonormal multi-level 2-D DWT over the last two dims, pyramid layout, same shape as ``x``."""
    h, w = x.shape[-2:]
    _check_levels((h, w), levels)
    r, info = _to_real_batch(x)
    k_rows, k_cols, _, _ = _kernels(wavelet.lower(), _real_dtype(x), x.device)
    out = r.clone() if levels else r
    for lev in range(levels):
        hh, ww = h >> lev, w >> lev
        block = out[..., :hh, :ww]
        block = _analysis_cols(_analysis_rows(block, k_rows), k_cols)
        out[..., :hh, :ww] = block
    return _from_real_batch(out, info)


def idwt2(c: torch.Tensor, wavelet: str = "db4", levels: int = 4) -> torch.Tensor:
    """Inverse (= adjoint) of :func:`dwt2`."""
    h, w = c.shape[-2:]
    _check_levels((h, w), levels)
    r, info = _to_real_batch(c)
    _, _, s_rows, s_cols = _kernels(wavelet.lower(), _real_dtype(c), c.device)
    out = r.clone() if levels else r
    for lev in reversed(range(levels)):
        hh, ww = h >> lev, w >> lev
        block = out[..., :hh, :ww]
        block = _synthesis_rows(_synthesis_cols(block, s_cols), s_rows)
        out[..., :hh, :ww] = block
    return _from_real_batch(out, info)


def approximation_shape(shape: tuple[int, int], levels: int) -> tuple[int, int]:
    """Size of the coarsest approximation (low-low) band of a (padded) ``shape``."""
    return shape[0] >> levels, shape[1] >> levels


def detail_mask(shape: tuple[int, int], levels: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (H, W): True on detail coefficients, False on the coarsest approximation band (pyramid layout)."""
    mask = torch.ones(shape, dtype=torch.bool, device=device)
    ah, aw = approximation_shape(shape, levels)
    if levels:
        mask[:ah, :aw] = False
    return mask


class WaveletTransform:
    """Orthonormal 2-D DWT for any image size: zero-pad to a multiple of ``2^levels`` (bottom/right), transform.

    ``forward`` (analysis W) maps ``(..., H, W)`` to coefficients ``(..., Hp, Wp)``; ``adjoint`` (= left inverse)
    maps back and crops, so ``adjoint(forward(x)) == x`` and ``<W x, c> == <x, W^H c>``."""

    def __init__(self, shape: tuple[int, int], wavelet: str = "db4", levels: int = 4):
        _order(wavelet)  # validates the name
        if levels < 0:
            raise ConfigError(f"wavelet levels must be >= 0, got {levels}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.wavelet = wavelet.lower()
        self.levels = int(levels)
        q = 1 << self.levels
        self.padded_shape = (-(-self.shape[0] // q) * q, -(-self.shape[1] // q) * q)

    @property
    def needs_padding(self) -> bool:
        return self.padded_shape != self.shape

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad (..., H, W) to (..., Hp, Wp) at the bottom and right."""
        if not self.needs_padding:
            return x
        ph, pw = self.padded_shape[0] - self.shape[0], self.padded_shape[1] - self.shape[1]
        return F.pad(x, (0, pw, 0, ph))

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """(..., Hp, Wp) -> (..., H, W): the top-left block (the adjoint of ``pad``)."""
        if not self.needs_padding:
            return x
        return x[..., : self.shape[0], : self.shape[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dwt2(self.pad(x), self.wavelet, self.levels)

    def adjoint(self, c: torch.Tensor) -> torch.Tensor:
        return self.crop(idwt2(c, self.wavelet, self.levels))

    def detail_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        return detail_mask(self.padded_shape, self.levels, device)

    __call__ = forward
