"""Centred, orthonormal 2-D FFTs over the last two dimensions: the one FFT of mrrecon.

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``: k-space has DC at index (H//2, W//2), the
same convention as fastMRI, BART and sigpy. Both transforms are unitary, so ``ifft2c(fft2c(x)) == x`` and
``||fft2c(x)|| == ||x||``.

For even sizes the shifts are replaced by a checkerboard modulation: with N even,
``fftshift(fft(ifftshift(x)))[k] = (-1)^(N/2) (-1)^k fft((-1)^n x)[k]``, so one elementwise multiply
before and one (in place) after the FFT do the work of four strided copies. Odd dimensions fall back
to the exact shift form along that dimension, so every size is exact.
"""

from __future__ import annotations

from functools import lru_cache

import torch

_DIMS = (-2, -1)


@lru_cache(maxsize=32)
def _checkerboards(h: int, w: int, device: torch.device, dtype: torch.dtype):
    """Pre- and post-modulation patterns for even (h, w): (-1)^(i+j), and that times (-1)^(h/2+w/2)."""
    i = torch.arange(h, device=device).view(h, 1)
    j = torch.arange(w, device=device).view(1, w)
    pre = (1 - 2 * ((i + j) % 2)).to(dtype)
    sign = -1 if ((h // 2 + w // 2) % 2) else 1
    return pre, pre * sign


def checkerboard(h: int, w: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                 ) -> torch.Tensor:
    """The even-size modulation P = (-1)^(i+j): fft2c(x) = s P fft2(P x) and ifft2c(k) = s P ifft2(P k) with
    s = (-1)^(h/2 + w/2), so P ifft2(M fft2(P x)) = ifft2c(M fft2c(x)) (used by fused normal operators)."""
    return _checkerboards(h, w, torch.device(device), dtype)[0]


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    if not torch.is_complex(x):
        x = x.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128)
    return x


def _centred(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    x = _as_complex(x)
    h, w = x.shape[-2], x.shape[-1]
    transform = torch.fft.ifft2 if inverse else torch.fft.fft2
    if h % 2 == 0 and w % 2 == 0:
        real = torch.float64 if x.dtype == torch.complex128 else torch.float32
        pre, post = _checkerboards(h, w, x.device, real)
        return transform(x * pre, dim=_DIMS, norm="ortho").mul_(post)
    # Exact shift form for any odd size (rare in MRI; correctness over speed).
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = transform(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims (image -> k-space)."""
    return _centred(x, inverse=False)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT over the last two dims (k-space -> image)."""
    return _centred(k, inverse=True)


def fft1c(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred orthonormal 1-D FFT along ``dim`` (e.g. the readout of 3-D data)."""
    x = torch.fft.ifftshift(_as_complex(x), dim=dim)
    return torch.fft.fftshift(torch.fft.fft(x, dim=dim, norm="ortho"), dim=dim)


def ifft1c(k: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred orthonormal 1-D inverse FFT along ``dim``."""
    k = torch.fft.ifftshift(_as_complex(k), dim=dim)
    return torch.fft.fftshift(torch.fft.ifft(k, dim=dim, norm="ortho"), dim=dim)
