"""Forward operators of Cartesian MRI, all with one contract: ``A(x)``, ``A_adjoint(y)``, ``normal(x)``.

Shapes (batch first; DESIGN.md): image ``(B, H, W)`` complex, coil images / k-space ``(B, C, H, W)`` complex,
mask broadcastable to k-space (``(B, 1, H, W)`` or ``(B, 1, 1, W)``, bool or float {0, 1}).
The mask is applied once in ``A`` and once in ``A_adjoint``; since M is a real 0/1 diagonal, M^H M = M, so
``normal(x) = A^H A x`` applies it once. Every operator is tested for adjointness <Ax, y> = <x, A^H y>.
"""

from __future__ import annotations

import torch

from mrrecon.physics.fft import checkerboard, fft2c, ifft2c


def real_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A real {0,1} mask on the data's device, in the real dtype matching ``like``."""
    real = torch.float64 if like.dtype == torch.complex128 else torch.float32
    return mask.to(device=like.device, dtype=real)


class LinearOperator:
    """Base class: subclasses define ``A`` and ``A_adjoint``; ``normal`` defaults to A^H A."""

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (A is the name used in every paper)
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.A_adjoint(self.A(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)


class MaskedFourier(LinearOperator):
    """Per-channel undersampled Fourier transform: ``(B, C, H, W)`` images -> ``(B, C, H, W)`` k-space.

    Single-coil Cartesian MRI is C = 1; with C coil images this is the k-space model of per-coil methods
    (SPIRiT, GRAPPA-style DC, SSDM's per-coil DC)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def A(self, x):  # noqa: N802
        return fft2c(x) * real_mask(self.mask, x)

    def A_adjoint(self, y):  # noqa: N802
        return ifft2c(y * real_mask(self.mask, y))

    def normal(self, x):
        return ifft2c(fft2c(x) * real_mask(self.mask, x))


class SingleCoilCartesian(LinearOperator):
    """Single-coil Cartesian MRI: image ``(B, H, W)`` -> k-space ``(B, 1, H, W)``, y = M F x."""

    def __init__(self, mask: torch.Tensor):
        self._op = MaskedFourier(mask)
        self.mask = mask

    def A(self, x):  # noqa: N802
        return self._op.A(x.unsqueeze(-3))

    def A_adjoint(self, y):  # noqa: N802
        return self._op.A_adjoint(y).squeeze(-3)

    def normal(self, x):
        return self._op.normal(x.unsqueeze(-3)).squeeze(-3)


class SenseOperator(LinearOperator):
    """Multi-coil SENSE: image ``(B, H, W)`` -> k-space ``(B, C, H, W)``, y_c = M F (S_c x).

    A^H y = sum_c conj(S_c) F^H (M y_c)."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor):
        if maps.ndim == 3:
            maps = maps.unsqueeze(0)
        self.maps = maps
        self.mask = mask

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> coil images S x."""
        return self.maps * x.unsqueeze(-3)

    def combine(self, coil_images: torch.Tensor) -> torch.Tensor:
        """Coil images -> image, sum_c conj(S_c) x_c (the adjoint of ``expand``)."""
        return (self.maps.conj() * coil_images).sum(dim=-3)

    def A(self, x):  # noqa: N802
        return fft2c(self.expand(x)) * real_mask(self.mask, x)

    def A_adjoint(self, y):  # noqa: N802
        return self.combine(ifft2c(y * real_mask(self.mask, y)))

    def normal(self, x):
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            return self.combine(ifft2c(fft2c(self.expand(x)) * real_mask(self.mask, x)))
        # Even grid: fft2c's checkerboard P folded into the maps, F^H M F = P ifft2(M fft2(P .)), so one call
        # costs two FFTs, one mask multiply and the two map products (no shifts, no extra modulations).
        pm, pm_conj, m = self._fused(x)
        k = torch.fft.fft2(pm * x.unsqueeze(-3), norm="ortho")
        k.mul_(m)
        coil = torch.fft.ifft2(k, norm="ortho")
        coil.mul_(pm_conj)
        return coil.sum(dim=-3)

    def _fused(self, x: torch.Tensor):
        key = (x.dtype, x.device)
        if getattr(self, "_fused_key", None) != key:
            real = torch.float64 if x.dtype == torch.complex128 else torch.float32
            pm = self.maps.to(device=x.device, dtype=x.dtype) * checkerboard(*x.shape[-2:], x.device, real)
            self._fused_cache = (pm, pm.conj().resolve_conj(), real_mask(self.mask, x))
            self._fused_key = key
        return self._fused_cache


class KSpaceMask(LinearOperator):
    """Sampling of multi-coil k-space itself (k-space methods such as AK-Diffusion, SPIRiT, LORAKS):
    ``(B, C, H, W)`` k-space -> masked k-space. Self-adjoint projection."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def A(self, z):  # noqa: N802
        return z * real_mask(self.mask, z)

    def A_adjoint(self, y):  # noqa: N802
        return y * real_mask(self.mask, y)

    def normal(self, z):
        return self.A(z)


def sense_or_single_coil(mask: torch.Tensor, maps: torch.Tensor | None = None) -> LinearOperator:
    """The image-domain forward model of a sample: SENSE with maps, plain Cartesian without."""
    return SingleCoilCartesian(mask) if maps is None else SenseOperator(maps, mask)
