"""Image-domain classical reconstructions with a SENSE forward model: CG-SENSE, L1-wavelet (FISTA), TV (ADMM).

All three solve, for the image ``x`` (B, H, W) complex, with ``A = M F S`` (mask, centred orthonormal FFT, coil
maps; ``A = M F`` for single-coil data without maps, see :mod:`mrrecon.physics.operators`):

* ``cg-sense``:   min_x 1/2 ||A x - y||^2 + lam/2 ||x||^2, i.e. (A^H A + lam I) x = A^H y by conjugate gradients
  (Pruessmann et al., MRM 46:638, 2001). Same objective as ``bart pics -l2 -r lam``.
* ``l1-wavelet``: min_x 1/2 ||A x - y||^2 + lam ||Psi_d x||_1 with Psi an orthonormal 2-D DWT
  (:mod:`mrrecon.classical.wavelets`, db2 by default) and Psi_d its detail bands (the coarsest approximation band is
  not penalised); complex coefficients are soft-thresholded on their modulus (Lustig et al., MRM 58:1182, 2007).
  Solved by FISTA (Beck & Teboulle, SIAM J Imaging Sci 2:183, 2009) with step 1/L, L = the largest eigenvalue of
  A^H A from a power iteration. Images whose size is not a multiple of 2^levels are reconstructed on a grid
  padded (bottom/right) to the next multiple; the padding pixels are free variables seen only by the regulariser
  (so the proximal step is exact), and the result is cropped.
* ``tv``:         min_x 1/2 ||A x - y||^2 + lam sum_r sqrt(|D_h x|^2 + |D_v x|^2) (isotropic TV, periodic forward
  differences), by ADMM (Boyd et al., Found Trends Mach Learn 3:1, 2011) with the splitting z = D x:
  x <- (A^H A + rho D^H D)^-1 (A^H y + rho D^H (z - u))   [CG, warm-started, ``cg_iters`` iterations]
  z <- shrink(D x + u, lam / rho)   [group soft-threshold over the two directions]
  u <- u + D x - z.

Scaling. lam is only meaningful relative to the data scale. By default (``scaling="bart"``) k-space is divided by
the scale BART's ``pics`` estimates for Cartesian data (:func:`bart_scale`), the image is reconstructed and
multiplied back. ``l1-wavelet:lam=l`` therefore minimises exactly the objective of ``bart pics -l1 -r l`` (up to
the wavelet; docs/classical.md), on the same data and maps.

The solvers are batched: k-space ``(B, C, H, W)``, mask broadcastable to it, maps ``(B, C, H, W)`` or None.
They run on the input's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated

import torch

from mrrecon.classical.wavelets import WaveletTransform, dwt2, idwt2
from mrrecon.core.reconstructor import MethodInfo, Reconstructor, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError, DataError
from mrrecon.physics.consistency import batch_dot, batch_view, conjugate_gradient
from mrrecon.physics.kspace import batch_mask
from mrrecon.physics.operators import sense_or_single_coil

__all__ = [
    "CGSense",
    "L1Wavelet",
    "SenseProblem",
    "SolverTrace",
    "TotalVariation",
    "bart_scale",
    "cg_sense",
    "finite_difference",
    "finite_difference_adjoint",
    "l1_wavelet",
    "l1_wavelet_objective",
    "power_iteration",
    "prepare_problem",
    "soft_threshold",
    "total_variation",
]

# Defaults, chosen on the shared real multi-coil brains (benchmarks/classical.py --sweep; docs/classical.md).
CG_SENSE_DEFAULTS = {"lam": 1e-2, "iters": 10, "tol": 1e-5}
L1_WAVELET_DEFAULTS = {"lam": 5e-3, "iters": 30, "wavelet": "db2", "levels": 4}
TV_DEFAULTS = {"lam": 5e-3, "iters": 20, "rho": 0.5, "cg_iters": 5}
MAPS_CHOICES = ("auto", "given", "espirit")
SCALING_CHOICES = ("bart", "none")


# ---------------------------------------------------------------------------------------------------------
# Data scaling (BART's rule) and the problem set-up shared by our methods and the peers
# ---------------------------------------------------------------------------------------------------------


def _bart_calibration_box(sampled: torch.Tensor, energy: torch.Tensor, max_size: int = 32) -> tuple[int, int, int, int]:
    """BART's calibration region for scaling (misc/mri.c ``extract_calib2`` + ``calib_geom``), 2-D case.

    ``sampled`` (H, W) bool, ``energy`` (H, W) sum over coils of |k|^2. Returns (row0, col0, rows, cols)."""
    h, w = sampled.shape
    # extract_calib2: full readout, the central min(32, W) phase-encode columns.
    tw = min(max_size, w)
    c_off = (w - tw) // 2
    tmp = sampled[:, c_off:c_off + tw]
    size = [1, 1]
    dims = [h, tw]
    stop = [False, False]
    # calib_geom: grow both sides alternately from the centre while the block stays fully sampled.
    while not (stop[0] and stop[1]):
        for i in range(2):
            if size[i] == dims[i] or size[i] >= max_size:
                stop[i] = True
            if stop[i]:
                continue
            size[i] += 1
            r0, c0 = (dims[0] - size[0]) // 2, (dims[1] - size[1]) // 2
            if not bool(tmp[r0:r0 + size[0], c0:c0 + size[1]].all()):
                size[i] -= 1
                stop[i] = True
    rows, cols = size
    c0 = c_off + (tw - cols) // 2
    # calib_readout_pos: slide along the readout to the position of maximum energy (first maximum).
    col_energy = energy[:, c0:c0 + cols].sum(dim=1)
    window = torch.nn.functional.conv1d(col_energy.double().view(1, 1, -1), torch.ones(1, 1, rows, dtype=torch.float64))
    r0 = int(torch.argmax(window.view(-1)))
    return r0, c0, rows, cols


def bart_scale(kspace: torch.Tensor) -> torch.Tensor:
    """The data scale ``bart pics`` divides Cartesian k-space by (BART's ``estimate_scaling``), per batch element.

    Calibration block as BART finds it (largest fully sampled centred block of at most 32 x 32, moved along the
    readout to maximum energy), its low-resolution RSS image (unitary inverse FFT of the block) divided by
    sqrt(H W / (h w)), and of its pixel magnitudes: the 90th percentile p90 if max - p90 < 2 (p90 - median), else
    the max (misc/mri.c, sense/optcom.c, BART v0.8). ``kspace`` (C, H, W) or (B, C, H, W); returns (B,) float."""
    k = kspace if kspace.ndim == 4 else kspace.unsqueeze(0)
    scales = []
    for item in k:
        energy = (item.abs() ** 2).sum(dim=0)
        r0, c0, rows, cols = _bart_calibration_box(energy > 0, energy)
        block = item[:, r0:r0 + rows, c0:c0 + cols]
        img = torch.fft.ifft2(block, norm="ortho")
        mag = torch.linalg.vector_norm(img, dim=0).flatten().double()
        mag = mag / math.sqrt((k.shape[-2] / rows) * (k.shape[-1] / cols))
        v, _ = torch.sort(mag)
        n = v.numel()
        median, p90, vmax = float(v[n // 2]), float(v[int(math.trunc(n * 0.9))]), float(v[n - 1])
        scale = p90 if (vmax - p90) < 2 * (p90 - median) else vmax
        scales.append(scale if scale > 0 else 1.0)
    return torch.tensor(scales, dtype=torch.float64, device=kspace.device)


@dataclass
class SenseProblem:
    """One batch of a SENSE problem in normalised units: ``kspace / scale`` (B, C, H, W), its mask, maps or None
    (single-coil Cartesian), and ``scale`` (B,) to multiply reconstructions by."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None
    scale: torch.Tensor
    extra: dict = field(default_factory=dict)

    def unscale(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale.to(image.real.dtype).view(-1, *([1] * (image.ndim - 1)))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def prepare_problem(sample: Sample, *, maps: str = "auto", calib: int = 24, scaling: str = "bart",
                    device: torch.device | str = "cpu") -> SenseProblem:
    """The sample as a batch-of-one SENSE problem: coil maps resolved, k-space scaled.

    maps: "given" (the sample's ``coil_maps``; error if it has none), "espirit" (estimated from the sample's
    calibration region with :func:`mrrecon.physics.coils.espirit_maps`, ``calib_size=calib``), "auto" (given if
    present, else ESPIRiT; single-coil data without maps use the plain Cartesian model)."""
    _check_choice("maps", maps, MAPS_CHOICES)
    _check_choice("scaling", scaling, SCALING_CHOICES)
    device = torch.device(device)
    sample.validate()  # shapes, mask vs k-space, NaN/inf: a DataError naming the file
    k = sample.kspace.to(device=device, dtype=torch.complex64).unsqueeze(0)
    mask = sample.mask.to(device).unsqueeze(0)
    coil_maps = None
    source = "none"
    if maps == "given" or (maps == "auto" and sample.coil_maps is not None):
        if sample.coil_maps is None:
            raise ConfigError("maps='given' but the sample has no coil_maps (use maps='espirit' or 'auto')")
        coil_maps = sample.coil_maps.to(device=device, dtype=torch.complex64).unsqueeze(0)
        source = "given"
    elif maps == "espirit" or (maps == "auto" and sample.num_coils > 1):
        from mrrecon.physics.coils import espirit_maps

        coil_maps = espirit_maps(k, calib_size=calib)
        source = "espirit"
    if coil_maps is not None and coil_maps.shape != k.shape:
        raise DataError(f"coil maps shape {tuple(coil_maps.shape[1:])} does not match k-space "
                        f"{tuple(k.shape[1:])}", sample.meta.file)
    scale = bart_scale(k) if scaling == "bart" else torch.ones(1, dtype=torch.float64, device=device)
    k = k / scale.to(torch.float32).view(-1, 1, 1, 1)
    return SenseProblem(kspace=k, mask=mask, maps=coil_maps, scale=scale, extra={"maps": source})


# ---------------------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def power_iteration(normal: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, iters: int = 15,
                    tol: float = 1e-3) -> torch.Tensor:
    """Largest eigenvalue of a Hermitian PSD operator per batch element (power method from ``x0``).

    Returns the Rayleigh quotient of the last iterate, a lower bound that approaches the eigenvalue; stops early
    when it changes by less than ``tol`` (relative) for every element."""
    tiny = torch.finfo(torch.float32).tiny
    v = x0
    if not bool((batch_dot(v, v) > 0).all()):
        v = v + torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(0)).to(v.device)
    v = v / batch_view(batch_dot(v, v).sqrt().clamp_min(tiny), v)
    lam = torch.zeros(v.shape[0], dtype=v.real.dtype, device=v.device)
    for _ in range(max(1, iters)):
        w = normal(v)
        new = batch_dot(v, w)
        v = w / batch_view(batch_dot(w, w).sqrt().clamp_min(tiny), w)
        done = bool(((new - lam).abs() <= tol * new.abs()).all())
        lam = new
        if done:
            break
    return lam.clamp_min(tiny)


def soft_threshold(c: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Complex (or real) soft-thresholding: c * max(1 - t / |c|, 0), the prox of t |.|."""
    mag = c.abs()
    factor = (1 - t / mag.clamp_min(torch.finfo(mag.dtype).tiny)).clamp_min(0)
    return c * factor


def finite_difference(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences (B, H, W) -> (B, 2, H, W): [x(i+1, j) - x(i, j), x(i, j+1) - x(i, j)]."""
    return torch.stack([torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x], dim=-3)


def finite_difference_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`finite_difference`: (B, 2, H, W) -> (B, H, W)."""
    gh, gw = g.select(-3, 0), g.select(-3, 1)
    return (torch.roll(gh, 1, dims=-2) - gh) + (torch.roll(gw, 1, dims=-1) - gw)


# ---------------------------------------------------------------------------------------------------------
# Solvers (batched)
# ---------------------------------------------------------------------------------------------------------


def _setup(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None):
    if kspace.ndim == 3:
        kspace = kspace.unsqueeze(0)
    if maps is not None and maps.ndim == 3:
        maps = maps.unsqueeze(0)
    mask = batch_mask(mask)
    if maps is None and kspace.shape[-3] != 1:
        raise ConfigError(f"multi-coil k-space ({kspace.shape[-3]} coils) needs coil maps")
    op = sense_or_single_coil(mask, maps)
    return kspace, op, op.normal


def cg_sense(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None = None, *, lam: float = 0.0,
             iters: int = 10, tol: float = 1e-5, x0: torch.Tensor | None = None) -> torch.Tensor:
    """Solve (A^H A + lam I) x = A^H y by CG: the operator's ``A_dagger`` (mrrecon.physics.operators); (B, H, W)."""
    kspace, op, _ = _setup(kspace, mask, maps)
    return op.A_dagger(kspace, max_iter=iters, tol=tol, lam=lam, x0=x0)


@dataclass
class SolverTrace:
    """Per-iteration diagnostics of an iterative solver (only filled when requested)."""

    objective: list[torch.Tensor] = field(default_factory=list)
    lipschitz: torch.Tensor | None = None


def l1_wavelet(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None = None, *, lam: float = 5e-3,
               iters: int = 30, wavelet: str = "db2", levels: int = 4, cycle_spin: bool = True, seed: int = 0,
               power_iters: int = 15, lipschitz: torch.Tensor | float | None = None,
               trace: SolverTrace | None = None) -> torch.Tensor:
    """FISTA for min_x 1/2 ||A x - y||^2 + lam ||Psi_d x||_1 (module docstring); returns x (B, H, W).

    ``cycle_spin``: every iteration shifts the (padded) image circularly by a random (seeded) offset in
    [0, 2^levels) along each axis before the wavelet transform and back after the inverse, as BART's ``pics`` does
    by default (random cycle spinning, Figueiredo & Nowak, IEEE TIP 12:906, 2003). Each shifted transform is still
    orthonormal, so every proximal step is exact, but the penalty then changes from one iteration to the next
    (on average it approximates the shift-invariant wavelet penalty); ``cycle_spin=False`` gives plain FISTA on
    the fixed objective. ``lipschitz`` overrides the power-iteration estimate of ||A^H A||; ``trace`` (a
    SolverTrace) receives the (unshifted) objective after every iteration (one extra forward operator each)."""
    if lam < 0 or iters < 0:
        raise ConfigError(f"l1-wavelet: lam and iters must be >= 0 (got lam={lam}, iters={iters})")
    kspace, op, normal = _setup(kspace, mask, maps)
    h, w = kspace.shape[-2:]
    psi = WaveletTransform((h, w), wavelet, levels)
    b = op.A_adjoint(kspace)
    if lipschitz is None:
        lip = power_iteration(normal, b, iters=power_iters)
    else:
        lip = torch.as_tensor(lipschitz, dtype=b.real.dtype, device=b.device).expand(b.shape[0]).clone()
    step = batch_view(1.0 / lip, b)  # (B, 1, 1)
    keep = psi.detail_mask(b.device)
    thresh = torch.where(keep, step * lam, torch.zeros((), dtype=step.dtype, device=b.device))  # (B, Hp, Wp)
    if trace is not None:
        trace.lipschitz = lip

    def objective(xp: torch.Tensor) -> torch.Tensor:
        r = op.A(psi.crop(xp)) - kspace
        reg = (dwt2(xp, psi.wavelet, psi.levels).abs() * keep).flatten(1).sum(1)
        return 0.5 * (r.abs() ** 2).flatten(1).sum(1) + lam * reg

    x = torch.zeros(b.shape[0], *psi.padded_shape, dtype=b.dtype, device=b.device)
    b_pad = psi.pad(b)
    z = x
    t = 1.0
    gen = torch.Generator().manual_seed(int(seed))
    period = 1 << psi.levels
    for _ in range(iters):
        grad = psi.pad(normal(psi.crop(z))) - b_pad  # gradient of the data term (zero on the padding)
        v = z - step * grad
        shift = tuple(int(s) for s in torch.randint(period, (2,), generator=gen)) if cycle_spin else (0, 0)
        if shift != (0, 0):
            v = torch.roll(v, shift, dims=(-2, -1))
        x_new = idwt2(soft_threshold(dwt2(v, psi.wavelet, psi.levels), thresh), psi.wavelet, psi.levels)
        if shift != (0, 0):
            x_new = torch.roll(x_new, (-shift[0], -shift[1]), dims=(-2, -1))
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if trace is not None:
            trace.objective.append(objective(x))
    return psi.crop(x)


def l1_wavelet_objective(x: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None,
                         lam: float, wavelet: str = "db2", levels: int = 4) -> torch.Tensor:
    """1/2 ||A x - y||^2 + lam ||Psi_d x||_1 per batch element (x zero-padded for the wavelet if needed)."""
    kspace, op, _ = _setup(kspace, mask, maps)
    psi = WaveletTransform(tuple(x.shape[-2:]), wavelet, levels)
    r = op.A(x) - kspace
    reg = (psi.forward(x).abs() * psi.detail_mask(x.device)).flatten(1).sum(1)
    return 0.5 * (r.abs() ** 2).flatten(1).sum(1) + lam * reg


def _group_norm(g: torch.Tensor) -> torch.Tensor:
    """sqrt(sum over the direction dim (-3) of |g|^2), keepdim (faster than vector_norm over a size-2 dim)."""
    sq = torch.view_as_real(g).square().sum(-1) if g.is_complex() else g.square()
    return sq.sum(dim=-3, keepdim=True).sqrt()


def total_variation(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None = None, *,
                    lam: float = 5e-3, iters: int = 20, rho: float = 0.5, cg_iters: int = 5, cg_tol: float = 1e-3,
                    relaxation: float = 1.6, trace: SolverTrace | None = None) -> torch.Tensor:
    """ADMM for min_x 1/2 ||A x - y||^2 + lam ||D x||_{2,1} (isotropic TV; module docstring); x (B, H, W).

    The x-update runs at most ``cg_iters`` CG iterations from the previous x, stopping at relative residual
    ``cg_tol``; ``relaxation`` is the over-relaxation alpha of Boyd et al. Sec. 3.4.3 (D x is replaced by
    alpha D x + (1 - alpha) z in the z- and u-updates). The defaults (cg_tol 1e-3, alpha 1.6) are BART's."""
    if lam < 0 or iters < 0 or rho <= 0 or cg_iters < 1 or not 0 < relaxation < 2:
        raise ConfigError(f"tv: need lam >= 0, iters >= 0, rho > 0, cg_iters >= 1, 0 < relaxation < 2 (got {lam}, "
                          f"{iters}, {rho}, {cg_iters}, {relaxation})")
    kspace, op, normal = _setup(kspace, mask, maps)
    b = op.A_adjoint(kspace)

    def system(v):
        return normal(v) + rho * finite_difference_adjoint(finite_difference(v))

    x = conjugate_gradient(normal, b, lam=0.0, max_iter=cg_iters, tol=1e-6).x  # least-squares start
    z = finite_difference(x)
    u = torch.zeros_like(z)
    for _ in range(iters):
        rhs = b + rho * finite_difference_adjoint(z - u)
        x = conjugate_gradient(system, rhs, x0=x, max_iter=cg_iters, tol=cg_tol).x
        dx = finite_difference(x)
        v = (relaxation * dx + (1 - relaxation) * z if relaxation != 1 else dx) + u
        mag = _group_norm(v)
        z = v * (1 - (lam / rho) / mag.clamp_min(torch.finfo(mag.dtype).tiny)).clamp_min(0)
        u = v - z
        if trace is not None:
            r = op.A(x) - kspace
            tv = _group_norm(dx).flatten(1).sum(1)
            trace.objective.append(0.5 * (r.abs() ** 2).flatten(1).sum(1) + lam * tv)
    return x


# ---------------------------------------------------------------------------------------------------------
# Reconstructors
# ---------------------------------------------------------------------------------------------------------


# The options every SENSE-type method takes (here and in the peers), with their help.
Maps = Annotated[str, "coil maps: auto (given if present, else ESPIRiT) | given | espirit"]
Calib = Annotated[int, "ESPIRiT calibration size"]
Scaling = Annotated[str, "k-space scaling before the solve: bart (BART pics' automatic scale) | none"]


class _SenseReconstructor(Reconstructor):
    """Shared plumbing: resolve maps, scale, solve, unscale; ``reconstruct`` returns |x| (H, W) float32."""

    name = "sense"

    def __init__(self, *, maps: Maps = "auto", calib: Calib = 24, scaling: Scaling = "bart",
                 device: str | torch.device = "cpu"):
        self.maps = _check_choice("maps", maps, MAPS_CHOICES)
        self.scaling = _check_choice("scaling", scaling, SCALING_CHOICES)
        self.calib = int(calib)
        self.device = torch.device(device)
        self.last_info: dict = {}

    def solve(self, problem: SenseProblem) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        """The complex image (H, W) in the sample's units (phase relative to the coil maps used)."""
        problem = prepare_problem(sample, maps=self.maps, calib=self.calib, scaling=self.scaling, device=self.device)
        x = self.solve(problem)
        self.last_info = {"maps": problem.extra["maps"], "scale": float(problem.scale[0])}
        return problem.unscale(x)[0]

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        return self.reconstruct_complex(sample).abs().float()


class CGSense(_SenseReconstructor):
    """CG-SENSE with Tikhonov regularisation lam (see module docstring)."""

    name = "cg-sense"

    def __init__(self, lam: Annotated[float, "Tikhonov weight"] = CG_SENSE_DEFAULTS["lam"],
                 iters: Annotated[int, "max CG iterations"] = CG_SENSE_DEFAULTS["iters"],
                 tol: Annotated[float, "relative residual tolerance"] = CG_SENSE_DEFAULTS["tol"], **common):
        super().__init__(**common)
        if lam < 0 or iters < 1:
            raise ConfigError(f"cg-sense: need lam >= 0 and iters >= 1 (got lam={lam}, iters={iters})")
        self.lam, self.iters, self.tol = float(lam), int(iters), float(tol)

    def solve(self, problem):
        return cg_sense(problem.kspace, problem.mask, problem.maps, lam=self.lam, iters=self.iters, tol=self.tol)


class L1Wavelet(_SenseReconstructor):
    """SENSE + L1 on an orthonormal wavelet's detail bands, FISTA (see module docstring)."""

    name = "l1-wavelet"

    def __init__(self, lam: Annotated[float, "L1 weight"] = L1_WAVELET_DEFAULTS["lam"],
                 iters: Annotated[int, "FISTA iterations"] = L1_WAVELET_DEFAULTS["iters"],
                 wavelet: Annotated[str, "haar | db1..db10"] = L1_WAVELET_DEFAULTS["wavelet"],
                 levels: Annotated[int, "decomposition levels"] = L1_WAVELET_DEFAULTS["levels"],
                 cycle_spin: Annotated[bool, "random circular shift of the wavelet each iteration, as BART"] = True,
                 seed: Annotated[int, "seed of the cycle-spinning shifts"] = 0,
                 power_iters: Annotated[int, "power iterations for the step size"] = 15, **common):
        super().__init__(**common)
        WaveletTransform((2, 2), wavelet, 0)  # validate the wavelet name early
        self.cycle_spin, self.seed = bool(cycle_spin), int(seed)
        if lam < 0 or iters < 0 or levels < 0:
            raise ConfigError(f"l1-wavelet: lam, iters, levels must be >= 0 (got {lam}, {iters}, {levels})")
        self.lam, self.iters, self.wavelet, self.levels = float(lam), int(iters), wavelet, int(levels)
        self.power_iters = int(power_iters)

    def solve(self, problem):
        return l1_wavelet(problem.kspace, problem.mask, problem.maps, lam=self.lam, iters=self.iters,
                          wavelet=self.wavelet, levels=self.levels, cycle_spin=self.cycle_spin, seed=self.seed,
                          power_iters=self.power_iters)


class TotalVariation(_SenseReconstructor):
    """SENSE + isotropic TV, ADMM with CG inner solves (see module docstring)."""

    name = "tv"

    def __init__(self, lam: Annotated[float, "TV weight"] = TV_DEFAULTS["lam"],
                 iters: Annotated[int, "ADMM iterations"] = TV_DEFAULTS["iters"],
                 rho: Annotated[float, "ADMM penalty"] = TV_DEFAULTS["rho"],
                 cg_iters: Annotated[int, "CG iterations per ADMM step"] = TV_DEFAULTS["cg_iters"], **common):
        super().__init__(**common)
        if lam < 0 or iters < 0 or rho <= 0 or cg_iters < 1:
            raise ConfigError(f"tv: need lam >= 0, iters >= 0, rho > 0, cg_iters >= 1 "
                              f"(got {lam}, {iters}, {rho}, {cg_iters})")
        self.lam, self.iters, self.rho, self.cg_iters = float(lam), int(iters), float(rho), int(cg_iters)

    def solve(self, problem):
        return total_variation(problem.kspace, problem.mask, problem.maps, lam=self.lam, iters=self.iters,
                               rho=self.rho, cg_iters=self.cg_iters)


register(MethodInfo(
    name="cg-sense",
    factory=CGSense,
    description="CG-SENSE: (A^H A + lam I) x = A^H y by conjugate gradients, ESPIRiT or given maps.",
))

register(MethodInfo(
    name="l1-wavelet",
    factory=L1Wavelet,
    description="SENSE + L1 on orthonormal wavelet detail bands (db2), FISTA with step 1/L.",
))

register(MethodInfo(
    name="tv",
    factory=TotalVariation,
    description="SENSE + isotropic total variation, ADMM with CG inner solves.",
))
