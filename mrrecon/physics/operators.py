"""Forward operators of Cartesian MRI, all with one contract (the shape of deepinv's ``LinearPhysics``):

* ``A(x)``, ``A_adjoint(y)``, ``normal(x) = A^H A x`` (fused where that is faster: SENSE);
* ``A_dagger(y, max_iter, tol, lam, x0)``: the least-squares / Tikhonov solution (A^H A + lam I) x = A^H y by
  the package's one batched conjugate gradient (``mrrecon.physics.consistency.conjugate_gradient``);
* ``prox_l2(z, y, gamma)``: argmin_x (gamma / 2) ||A x - y||^2 + 1/2 ||x - z||^2, the proximal data-consistency
  step: a closed form (soft DC with weight gamma / (1 + gamma)) for the operators that are diagonal in k-space,
  CG through ``A_dagger`` otherwise (z + A_dagger(y - A z, lam = 1 / gamma));
* ``adjointness_test(x, y, generator)``: |<A x, y> - <x, A^H y>| / |<A x, y>| on random (or given) inputs.

Shapes (batch first; DESIGN.md): image ``(B, H, W)`` complex, coil images / k-space ``(B, C, H, W)`` complex,
mask broadcastable to k-space (``(B, 1, H, W)`` or ``(B, 1, 1, W)``, bool or float {0, 1}); the mask helpers
are ``mrrecon.physics.kspace``. The mask is applied once in ``A`` and once in ``A_adjoint``; since M is a real
0/1 diagonal, M^H M = M, so ``normal(x) = A^H A x`` applies it once.

``x_shape`` is the shape of ``A``'s input (batch included) where the operator knows it: SENSE from its maps, a
mask operator from a 2-D mask, otherwise from the ``x_shape=`` given to the constructor (needed for a 1-D mask,
which does not say H). ``adjointness_test()`` without ``x`` draws its input of that shape; its output shape is
that of ``A(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.physics.consistency import conjugate_gradient, soft_dc, weight_from_lambda
from mrrecon.physics.fft import checkerboard, fft2c, ifft2c
from mrrecon.physics.kspace import batch_mask, real_mask

__all__ = ["KSpaceMask", "LinearOperator", "MaskedFourier", "SenseOperator", "SingleCoilCartesian",
           "sense_or_single_coil"]


def _complex_randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randn(tuple(shape), dtype=torch.complex64, generator=generator, device=gen_device).to(device)


def _vdot(a: torch.Tensor, b: torch.Tensor) -> complex:
    """<a, b> = sum conj(a) b over every entry, accumulated in double precision."""
    return complex(torch.vdot(a.reshape(-1).to(torch.complex128), b.reshape(-1).to(torch.complex128)))


class LinearOperator:
    """Base class: subclasses define ``A`` and ``A_adjoint``; ``normal`` defaults to A^H A.

    ``x_shape``: the shape of ``A``'s input, batch first, or None where the operator does not know it."""

    x_shape: tuple[int, ...] | None = None

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (A is the name used in every paper)
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.A_adjoint(self.A(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    @property
    def device(self) -> torch.device:
        """Where the operator's own tensors (mask, maps) live; random test inputs are drawn there."""
        return torch.device("cpu")

    def A_dagger(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6, lam: float = 0.0,  # noqa: N802
                 x0: torch.Tensor | None = None) -> torch.Tensor:
        """Least-squares solution of A x = y: (A^H A + lam I) x = A^H y by batched CG, warm-started at ``x0``.

        With lam = 0 and no ``x0`` the CG iterates stay in the range of A^H, so they converge to the
        minimum-norm least-squares solution A^+ y (for an undersampled operator A^H A is singular); lam > 0
        gives the Tikhonov solution. ``tol`` is CG's relative residual ||r|| / ||A^H y||."""
        b = self.A_adjoint(y)
        return conjugate_gradient(self.normal, b, x0=x0, lam=lam, max_iter=max_iter, tol=tol).x

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float, max_iter: int = 50,
                tol: float = 1e-6) -> torch.Tensor:
        """argmin_x (gamma / 2) ||A x - y||^2 + 1/2 ||x - z||^2  (gamma in [0, inf]: 0 keeps z, inf = data only).

        Normal equations (A^H A + I / gamma) x = A^H y + z / gamma; with x = z + d this is
        (A^H A + I / gamma) d = A^H (y - A z), so the step is z + A_dagger(y - A z, lam=1/gamma) (CG from d = 0).
        Operators diagonal in k-space override it with the closed form."""
        gamma = _check_gamma(gamma)
        if gamma == 0:
            return z
        lam = 0.0 if math.isinf(gamma) else 1.0 / gamma
        return z + self.A_dagger(y - self.A(z), max_iter=max_iter, tol=tol, lam=lam)

    def adjointness_test(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> float:
        """Relative adjointness error |<A x, y> - <x, A^H y>| / (|<A x, y>| + tiny); about 1e-7 in complex64.

        ``x``: an input of A (default: complex Gaussian of shape ``x_shape``, drawn from ``generator``);
        ``y``: an input of A^H (default: complex Gaussian of the shape of ``A(x)``). Inner products are
        accumulated in double precision, so the result measures the operator, not the summation.
        Raises ShapeError when A^H y does not have x's shape (a silently broadcasting adjoint)."""
        if x is None:
            if self.x_shape is None:
                raise ConfigError(f"{type(self).__name__} does not know its input shape (a 1-D mask does not give "
                                  "H): pass x, or construct it with x_shape=")
            x = _complex_randn(self.x_shape, generator, self.device)
        ax = self.A(x)
        if y is None:
            y = _complex_randn(ax.shape, generator, ax.device)
        elif tuple(y.shape) != tuple(ax.shape):
            raise ShapeError(f"y has shape {tuple(y.shape)}; A(x) has {tuple(ax.shape)}")
        aty = self.A_adjoint(y)
        if tuple(aty.shape) != tuple(x.shape):
            raise ShapeError(f"{type(self).__name__}: A^H y has shape {tuple(aty.shape)}, x has {tuple(x.shape)}")
        lhs, rhs = _vdot(ax, y), _vdot(x, aty)
        return abs(lhs - rhs) / (abs(lhs) + torch.finfo(torch.float64).tiny)


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not gamma >= 0:  # also catches NaN
        raise ConfigError(f"prox_l2: gamma must be >= 0 (inf allowed); got {gamma}")
    return gamma


def _mask_x_shape(mask: torch.Tensor, x_shape: Sequence[int] | None, image: bool) -> tuple[int, ...] | None:
    """The input shape of a mask operator: given, or read from a 2-D mask ((B, 1|C, H, W) per-channel data, or
    (B, H, W) images when ``image``); None for a 1-D mask (H unknown)."""
    if x_shape is not None:
        return tuple(int(s) for s in x_shape)
    m = batch_mask(mask)
    if m.shape[-2] == 1:
        return None
    return (m.shape[0], *m.shape[-2:]) if image else tuple(m.shape)


class MaskedFourier(LinearOperator):
    """Per-channel undersampled Fourier transform: ``(B, C, H, W)`` images -> ``(B, C, H, W)`` k-space.

    Single-coil Cartesian MRI is C = 1 (``SingleCoilCartesian`` is this operator on (B, H, W) images); with C
    coil images it is the k-space model of per-coil methods. ``x_shape``: the input shape, needed only for
    ``adjointness_test()`` without an input when the mask is 1-D."""

    def __init__(self, mask: torch.Tensor, x_shape: Sequence[int] | None = None):
        self.mask = mask
        self.x_shape = _mask_x_shape(mask, x_shape, image=False)

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def A(self, x):  # noqa: N802
        return fft2c(x) * real_mask(self.mask, x)

    def A_adjoint(self, y):  # noqa: N802
        return ifft2c(y * real_mask(self.mask, y))

    def normal(self, x):
        return ifft2c(fft2c(x) * real_mask(self.mask, x))

    def prox_l2(self, z, y, gamma, max_iter=50, tol=1e-6):
        """Closed form: F^H soft_dc(F z, y, M, gamma / (1 + gamma)) (A^H A = F^H M F is diagonal in k-space)."""
        return ifft2c(soft_dc(fft2c(z), y, self.mask, weight_from_lambda(_check_gamma(gamma))))


class SingleCoilCartesian(LinearOperator):
    """Single-coil Cartesian MRI: image ``(B, H, W)`` -> k-space ``(B, 1, H, W)``, y = M F x."""

    def __init__(self, mask: torch.Tensor, x_shape: Sequence[int] | None = None):
        self._op = MaskedFourier(mask)
        self.mask = mask
        self.x_shape = _mask_x_shape(mask, x_shape, image=True)

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def A(self, x):  # noqa: N802
        return self._op.A(x.unsqueeze(-3))

    def A_adjoint(self, y):  # noqa: N802
        return self._op.A_adjoint(y).squeeze(-3)

    def normal(self, x):
        return self._op.normal(x.unsqueeze(-3)).squeeze(-3)

    def prox_l2(self, z, y, gamma, max_iter=50, tol=1e-6):
        """Closed form (see ``MaskedFourier.prox_l2``)."""
        return self._op.prox_l2(z.unsqueeze(-3), y, gamma).squeeze(-3)


class SenseOperator(LinearOperator):
    """Multi-coil SENSE: image ``(B, H, W)`` -> k-space ``(B, C, H, W)``, y_c = M F (S_c x).

    A^H y = sum_c conj(S_c) F^H (M y_c). ``mask=None`` is full sampling (M = I): then A A^H = F S S^H F^H is
    AK-Diffusion's coil-subspace projection Sbar Sbar^*. The input shape (B, H, W) comes from the maps."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor | None = None):
        if maps.ndim == 3:
            maps = maps.unsqueeze(0)
        if maps.ndim != 4:
            raise ShapeError(f"coil maps must be (C, H, W) or (B, C, H, W); got shape {tuple(maps.shape)}")
        self.maps = maps
        self.mask = mask
        self.x_shape = (maps.shape[0], *maps.shape[-2:])

    @property
    def device(self) -> torch.device:
        return self.maps.device

    def _masked(self, k: torch.Tensor) -> torch.Tensor:
        return k if self.mask is None else k * real_mask(self.mask, k)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> coil images S x."""
        return self.maps * x.unsqueeze(-3)

    def combine(self, coil_images: torch.Tensor) -> torch.Tensor:
        """Coil images -> image, sum_c conj(S_c) x_c (the adjoint of ``expand``)."""
        return (self.maps.conj() * coil_images).sum(dim=-3)

    def A(self, x):  # noqa: N802
        return self._masked(fft2c(self.expand(x)))

    def A_adjoint(self, y):  # noqa: N802
        return self.combine(ifft2c(self._masked(y)))

    def normal(self, x):
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            return self.combine(ifft2c(self._masked(fft2c(self.expand(x)))))
        # Even grid: fft2c's checkerboard P folded into the maps, F^H M F = P ifft2(M fft2(P .)), so one call
        # costs two FFTs, one mask multiply and the two map products (no shifts, no extra modulations).
        pm, pm_conj, m = self._fused(x)
        k = torch.fft.fft2(pm * x.unsqueeze(-3), norm="ortho")
        if m is not None:
            k.mul_(m)
        coil = torch.fft.ifft2(k, norm="ortho")
        coil.mul_(pm_conj)
        return coil.sum(dim=-3)

    def _fused(self, x: torch.Tensor):
        key = (x.dtype, x.device)
        if getattr(self, "_fused_key", None) != key:
            real = torch.float64 if x.dtype == torch.complex128 else torch.float32
            pm = self.maps.to(device=x.device, dtype=x.dtype) * checkerboard(*x.shape[-2:], x.device, real)
            m = None if self.mask is None else real_mask(self.mask, x)
            self._fused_cache = (pm, pm.conj().resolve_conj(), m)
            self._fused_key = key
        return self._fused_cache


class KSpaceMask(LinearOperator):
    """Sampling of multi-coil k-space itself (k-space methods such as AK-Diffusion, SPIRiT, LORAKS; IMA's
    feature k-space): ``(B, C, H, W)`` k-space -> masked k-space. Self-adjoint projection."""

    def __init__(self, mask: torch.Tensor, x_shape: Sequence[int] | None = None):
        self.mask = mask
        self.x_shape = _mask_x_shape(mask, x_shape, image=False)

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def A(self, z):  # noqa: N802
        return z * real_mask(self.mask, z)

    def A_adjoint(self, y):  # noqa: N802
        return y * real_mask(self.mask, y)

    def normal(self, z):
        return self.A(z)

    def prox_l2(self, z, y, gamma, max_iter=50, tol=1e-6):
        """Closed form: soft DC of z toward y with weight gamma / (1 + gamma) at the sampled points."""
        return soft_dc(z, y, self.mask, weight_from_lambda(_check_gamma(gamma)))


def sense_or_single_coil(mask: torch.Tensor, maps: torch.Tensor | None = None) -> LinearOperator:
    """The image-domain forward model of a sample: SENSE with maps, plain Cartesian without."""
    return SingleCoilCartesian(mask) if maps is None else SenseOperator(maps, mask)
