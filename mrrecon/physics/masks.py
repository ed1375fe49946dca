"""Seeded k-space sampling masks (Cartesian 1-D and 2-D patterns) for retrospective undersampling.

Conventions (see docs/masks.md for the table of kinds, defaults and their sources):

* k-space is centred: DC sits at index ``(H // 2, W // 2)`` (fastMRI / ``fft2c`` convention). H is the
  readout (frequency-encode) axis, W the phase-encode axis; 1-D masks select columns along W.
* A mask is a ``torch.bool`` tensor: ``(1, 1, W)`` for 1-D Cartesian kinds, ``(1, H, W)`` for 2-D kinds.
  Both broadcast against k-space ``(C, H, W)``; :meth:`MaskResult.expand` gives the full ``(1, H, W)``.
* ``acceleration`` is the *nominal* R that was requested; ``effective_acceleration`` is measured on the
  mask: ``H * W / (number of sampled k-space points)`` (for a 1-D mask equivalently ``W / sampled columns``).
* Every random choice comes from ``np.random.default_rng(seed)``; with a ``torch.Generator`` instead, one
  integer seed is drawn from it first. The seed actually used is stored in ``MaskResult.seed`` so a mask
  made with ``seed=None`` can still be regenerated.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrrecon.errors import ConfigError, ShapeError

__all__ = [
    "MASK_KINDS",
    "MaskResult",
    "acs_only",
    "effective_acceleration",
    "equispaced1d",
    "gaussian1d",
    "gaussian2d",
    "make_mask",
    "poisson2d",
    "radial2d",
    "random1d",
    "uniform1d",
]

# Golden angle for radial spokes through the centre (angles taken modulo 180 degrees):
# 180 deg * (sqrt(5) - 1) / 2 = 111.246 deg  (Winkelmann et al., IEEE TMI 26(1):68-76, 2007).
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0

# Score-MRI (Chung & Ye, MedIA 2022) reference mask code, also used by SSDM-MRI:
# 1-D Gaussian std = W * 15/128 columns; 2-D Gaussian covariance = size * (size * 1.5/128) per axis,
# i.e. std = size * sqrt(1.5/128) = 0.108 * size.
SCOREMRI_STD_1D = 15.0 / 128.0
SCOREMRI_STD_2D = math.sqrt(1.5 / 128.0)


# ----------------------------------------------------------------------------------------------
# Result type
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MaskResult:
    """A sampling mask and how it was made.

    mask:                   bool, (1, 1, W) for 1-D Cartesian kinds, (1, H, W) for 2-D kinds.
    kind:                   name in MASK_KINDS.
    acceleration:           nominal R (the requested value; for ``acs_only`` without a request, the
                            value derived from the box).
    effective_acceleration: H*W / number of sampled points of the full H x W grid.
    center_fraction:        fully sampled centre as a fraction of W: the fastMRI center_fraction used
                            (random1d, equispaced1d: num_low = round(W * cf)); ACS lines / W (uniform1d,
                            gaussian1d); box width / W (gaussian2d, poisson2d, acs_only); None (radial2d).
    seed:                   the integer seed actually used (None for deterministic kinds).
    params:                 resolved options (ACS size, spacing, std, radius scale, spokes, ...),
                            plain Python values.
    """

    mask: torch.Tensor
    kind: str
    acceleration: float
    effective_acceleration: float
    center_fraction: float | None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_1d(self) -> bool:
        """True for column masks of shape (1, 1, W)."""
        return bool(self.params.get("one_dimensional", self.mask.shape[-2] == 1))

    @property
    def sampled_fraction(self) -> float:
        """Fraction of the H x W grid that is sampled (1 / effective acceleration)."""
        return 1.0 / self.effective_acceleration

    def expand(self, shape: Sequence[int]) -> torch.Tensor:
        """The mask broadcast to (1, H, W) bool, H and W taken from the last two entries of ``shape``.

        Raises ShapeError if the mask does not fit that k-space shape. Returns a new tensor.
        """
        if len(shape) < 2:
            raise ShapeError(f"expand needs a shape ending in (H, W); got {tuple(shape)}")
        h, w = int(shape[-2]), int(shape[-1])
        mh, mw = int(self.mask.shape[-2]), int(self.mask.shape[-1])
        if mw != w or (not self.is_1d and mh != h):
            raise ShapeError(f"{self.kind} mask of shape {tuple(self.mask.shape)} does not fit k-space "
                             f"of shape (..., {h}, {w})")
        return self.mask.reshape(1, mh, mw).expand(1, h, w).clone()


def effective_acceleration(mask: torch.Tensor | np.ndarray) -> float:
    """1 / sampled fraction of a mask. A mask whose second-to-last dim is 1 counts as 1-D (columns)."""
    m = torch.as_tensor(mask)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    total = int(m.shape[-1]) * int(m.shape[-2])
    sampled = int((m.reshape(-1, m.shape[-2], m.shape[-1])[0] != 0).sum())
    if sampled == 0:
        raise ConfigError("mask samples no k-space point; its acceleration is undefined")
    return total / sampled


# ----------------------------------------------------------------------------------------------
# Validation and shared helpers
# ----------------------------------------------------------------------------------------------
def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
        ok = all(int(s) == s for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"mask shape must be two positive integers (H, W); got {shape!r}") from None
    if not ok or h < 1 or w < 1:
        raise ConfigError(f"mask shape must be two positive integers (H, W); got {shape!r}")
    return h, w


def _check_acceleration(acceleration: Any) -> float:
    try:
        r = float(acceleration)
    except (TypeError, ValueError):
        raise ConfigError(f"acceleration must be a number >= 1; got {acceleration!r}") from None
    if not math.isfinite(r) or r < 1.0:
        raise ConfigError(f"acceleration must be a finite number >= 1; got {acceleration!r}")
    return r


def _check_fraction(center_fraction: Any) -> float | None:
    if center_fraction is None:
        return None
    try:
        cf = float(center_fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"center_fraction must be a number in [0, 1]; got {center_fraction!r}") from None
    if not (0.0 <= cf <= 1.0):
        raise ConfigError(f"center_fraction must be in [0, 1]; got {center_fraction!r}")
    return cf


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (low <= value <= high):
        raise ConfigError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


def _check_box(name: str, value: Any, h: int, w: int) -> tuple[int, int]:
    """An int (square) or (h, w) pair of box sides, each within the grid."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        bh, bw = value
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an int or an (h, w) pair; got {value!r}") from None
    return _check_int(f"{name}[0]", bh, 0, h), _check_int(f"{name}[1]", bw, 0, w)


def _make_rng(seed: Any, generator: torch.Generator | None) -> tuple[np.random.Generator, int]:
    """numpy Generator plus the integer seed it was made from (drawn when none was given)."""
    if seed is not None and generator is not None:
        raise ConfigError("give either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    elif seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(2))
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    return np.random.default_rng(int(seed)), int(seed)


def _centre_slice(n: int, block: int) -> slice:
    """fastMRI placement of a centred block of ``block`` indices in ``n``: always contains n // 2."""
    pad = (n - block + 1) // 2
    return slice(pad, pad + block)


def _fastmri_center_fraction(r: float) -> float:
    # fastMRI challenge pairs: 4x -> 0.08, 8x -> 0.04 (Zbontar et al. 2018, arXiv:1811.08839).
    return 0.08 if r <= 4 else 0.04


def _scoremri_center_fraction(r: float) -> float:
    # Score-MRI reference code: 4x -> 0.08, 6x/8x -> 0.04, 10x/12x/15x -> 0.02. With W = 320 this gives
    # int(320 * 0.04) = 12 ACS lines at 8x and int(320 * 0.02) = 6 at 12x, the SSDM-MRI paper's numbers.
    return 0.08 if r <= 4 else (0.04 if r <= 8 else 0.02)


def _default_acs(n: int) -> int:
    """Default calibration size along an axis of n points: 24 lines at n = 320 (7.5 %), never more than 24."""
    return max(1, min(24, round(0.075 * n)))


def _weighted_choice(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn without replacement, successively with probability ∝ weights.

    Efraimidis & Spirakis (Inf. Process. Lett. 97(5), 2006): with keys E_i / w_i, E_i ~ Exp(1), the k
    smallest keys are a successive weighted sample without replacement. O(n), no Python loop.
    Indices with zero weight are never chosen; asking for more than there are is an error.
    """
    weights = np.asarray(weights, dtype=np.float64).ravel()
    positive = weights > 0
    if k > int(positive.sum()):
        raise ConfigError(f"cannot draw {k} distinct points from {int(positive.sum())} with positive weight")
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.full(weights.shape, np.inf)
    keys[positive] = rng.standard_exponential(int(positive.sum())) / weights[positive]
    return np.argpartition(keys, k - 1)[:k]


def _warn_if_off(kind: str, result: MaskResult, reason: str) -> MaskResult:
    rel = result.effective_acceleration / result.acceleration - 1
    if abs(rel) > 0.05:
        warnings.warn(f"{kind}: effective acceleration {result.effective_acceleration:.2f} is {rel:+.0%} off the "
                      f"nominal {result.acceleration:g} ({reason})", stacklevel=3)
    return result


def _finish(kind: str, mask: np.ndarray, acceleration: float, center_fraction: float | None,
            seed: int | None, params: dict[str, Any], device: Any) -> MaskResult:
    """Wrap a numpy mask ((W,) for 1-D, (H, W) for 2-D) into a MaskResult."""
    one_d = mask.ndim == 1
    sampled = int(mask.sum())
    if sampled == 0:
        raise ConfigError(f"{kind}: the mask samples no k-space point; check acceleration and options")
    grid = mask.shape[-1] if one_d else mask.size
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).reshape(1, 1 if one_d else mask.shape[0], -1)
    if device is not None:
        t = t.to(device)
    params = {"one_dimensional": one_d, **params}
    return MaskResult(mask=t, kind=kind, acceleration=float(acceleration),
                      effective_acceleration=grid / sampled, center_fraction=center_fraction,
                      seed=seed, params=params)


# ----------------------------------------------------------------------------------------------
# 1-D Cartesian kinds (columns along W)
# ----------------------------------------------------------------------------------------------
def random1d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
             seed: int | None = None, generator: torch.Generator | None = None, exact: bool = False,
             device: Any = None) -> MaskResult:
    """fastMRI ``RandomMaskFunc``: a fully sampled centre plus random columns.

    num_low = round(W * center_fraction) centre columns; every other column is sampled independently
    with p = (W / R - num_low) / (W - num_low), so the *expected* number of columns is W / R.
    ``exact=True`` instead picks exactly round(W / R) - num_low outer columns uniformly without
    replacement. Default center_fraction: 0.08 for R <= 4, else 0.04 (fastMRI's 4x / 8x pairs).
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    cf = _fastmri_center_fraction(r) if cf is None else cf
    rng, used_seed = _make_rng(seed, generator)
    num_low = round(w * cf)
    centre = _centre_slice(w, num_low)
    mask = np.zeros(w, dtype=bool)
    if exact:
        n_outer = round(w / r) - num_low
        if n_outer < 0:
            raise ConfigError(f"random1d: {num_low} centre columns (center_fraction={cf}) exceed the "
                              f"budget of round(W/R) = {round(w / r)} columns for W={w}, R={r:g}")
        outer = np.setdiff1d(np.arange(w), np.arange(w)[centre])
        mask[rng.choice(outer, size=n_outer, replace=False)] = True
    else:
        prob = (w / r - num_low) / (w - num_low) if w > num_low else 0.0
        if prob < 0:
            raise ConfigError(f"random1d: {num_low} centre columns (center_fraction={cf}) exceed W/R = "
                              f"{w / r:.1f} columns for W={w}, R={r:g}; lower center_fraction")
        mask = rng.random(w) < prob
    mask[centre] = True
    return _finish("random1d", mask, r, cf, used_seed,
                   {"num_low_frequencies": num_low, "exact": bool(exact)}, device)


def equispaced1d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 variant: str = "fraction", offset: int | None = None, device: Any = None) -> MaskResult:
    """fastMRI equispaced mask: a fully sampled centre plus equally spaced columns from a random offset.

    variant="fraction" (default): fastMRI ``EquispacedMaskFractionFunc`` (= the original
        ``EquispacedMaskFunc`` of fastMRI <= 0.1): the spacing is adjusted to
        a = R (num_low - W) / (num_low R - W) so that num_low + (W - num_low) / a = W / R, i.e. the total
        rate matches 1/R; columns round(offset + k a), offset uniform in [0, round(a)).
    variant="equispaced": fastMRI >= 0.2 ``EquiSpacedMaskFunc``: every R-th column (integer R) from a
        random offset in [0, R) plus the centre; the effective acceleration is then below R.
    Default center_fraction: 0.08 for R <= 4, else 0.04. ``offset`` fixes the offset instead of drawing it.
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    cf = _fastmri_center_fraction(r) if cf is None else cf
    rng, used_seed = _make_rng(seed, generator)
    num_low = round(w * cf)
    mask = np.zeros(w, dtype=bool)
    if variant == "fraction":
        if num_low * r >= w:
            raise ConfigError(f"equispaced1d: {num_low} centre columns (center_fraction={cf}) leave no room "
                              f"for outer columns at R={r:g}, W={w}; lower center_fraction")
        spacing = r * (num_low - w) / (num_low * r - w)
        high = max(1, round(spacing))
        off = int(rng.integers(0, high)) if offset is None else _check_int("offset", offset, 0, high - 1)
        # fastMRI takes arange(offset, W - 1, spacing): the last column is never an outer line.
        cols = np.around(np.arange(off, w - 1, spacing)).astype(np.int64)
        mask[cols] = True
    elif variant == "equispaced":
        if abs(r - round(r)) > 1e-9:
            raise ConfigError(f"equispaced1d variant='equispaced' needs an integer acceleration; got {r:g}")
        spacing = int(round(r))
        off = int(rng.integers(0, spacing)) if offset is None else _check_int("offset", offset, 0, spacing - 1)
        mask[off::spacing] = True
    else:
        raise ConfigError(f"equispaced1d: variant must be 'fraction' or 'equispaced'; got {variant!r}")
    mask[_centre_slice(w, num_low)] = True
    return _finish("equispaced1d", mask, r, cf, used_seed,
                   {"num_low_frequencies": num_low, "variant": variant, "spacing": float(spacing),
                    "offset": off}, device)


def _resolve_acs_lines(kind: str, w: int, budget: int, acs_lines: Any, center_fraction: float | None,
                       default: int, truncate: bool = False) -> int:
    """ACS line count from acs_lines > center_fraction > default (a default is clipped to the budget)."""
    if acs_lines is not None:
        n = _check_int("acs_lines", acs_lines, 0, w)
    elif center_fraction is not None:
        n = int(w * center_fraction) if truncate else round(w * center_fraction)
    else:
        return min(default, budget)
    if n > budget:
        raise ConfigError(f"{kind}: {n} ACS lines exceed the budget of {budget} columns (W={w}); "
                          "lower acs_lines/center_fraction or the acceleration")
    return n


def uniform1d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
              seed: int | None = None, generator: torch.Generator | None = None,
              acs_lines: int | None = None, spacing: int | str = "auto", device: Any = None) -> MaskResult:
    """Regular (GRAPPA-style) undersampling: columns W//2 + k*s for all integers k, plus an ACS block.

    This is the "uniform" pattern of AK-Diffusion ("uniform 6x"). The lattice always contains the centre
    column W//2. ACS block: ``acs_lines`` if given, else round(W * center_fraction), else 24 lines at
    W = 320 (min(24, round(0.075 W))), centred as in fastMRI.
    spacing="auto" (default): the integer spacing s whose total (lattice plus ACS) is closest to W/R, so
        the effective acceleration matches the nominal one (the acquisition convention where R counts
        the ACS lines).
    spacing="nominal": s = round(R), ACS on top (the GRAPPA convention where R is the outer spacing;
        effective acceleration below R). An int fixes s.
    Deterministic: the seed is not used.
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    budget = max(1, round(w / r))
    n_acs = _resolve_acs_lines("uniform1d", w, budget if spacing == "auto" else w, acs_lines, cf,
                               _default_acs(w))
    c = w // 2
    block = _centre_slice(w, n_acs)
    if spacing == "auto":
        s_all = np.arange(1, w + 1)
        lattice = c // s_all + (w - 1 - c) // s_all + 1
        inside = ((c - block.start) // s_all + (block.stop - 1 - c) // s_all + 1) if n_acs > 0 else 0
        total = n_acs + lattice - inside
        # closest to the target; ties go to the sparser lattice
        s = int(s_all[np.lexsort((-s_all, np.abs(total - w / r)))[0]])
    elif spacing == "nominal":
        s = max(1, round(r))
    else:
        s = _check_int("spacing", spacing, 1, w)
    mask = np.zeros(w, dtype=bool)
    mask[c % s::s] = True
    mask[block] = True
    result = _finish("uniform1d", mask, r, n_acs / w, None,
                     {"acs_lines": n_acs, "spacing": s, "spacing_rule": str(spacing)}, device)
    return _warn_if_off("uniform1d", result, "closest integer spacing") if spacing == "auto" else result


def gaussian1d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
               seed: int | None = None, generator: torch.Generator | None = None, mode: str = "exact",
               std: float = SCOREMRI_STD_1D, acs_lines: int | None = None, device: Any = None) -> MaskResult:
    """Variable-density 1-D Gaussian columns plus ACS lines (Score-MRI / SSDM-MRI "1D Gaussian").

    Column weights exp(-(k - W//2)^2 / (2 sigma^2)), sigma = std * W (default 15/128 as in Score-MRI).
    ACS: ``acs_lines`` if given, else int(W * center_fraction) centred columns, with the Score-MRI default
    center_fraction 0.08 (R <= 4), 0.04 (R <= 8), 0.02 (R > 8): 12 lines at 8x and 6 at 12x for W = 320.

    mode="exact" (default): exactly round(W / R) columns in total, ACS included; the remaining columns
        are drawn without replacement with probability ∝ the Gaussian weights.
    mode="reference": the Score-MRI/SSDM-MRI code: int(1.2 * (W // R)) Gaussian draws with replacement,
        truncated to integers and clipped, then the ACS lines on top. Duplicates and the extra ACS lines
        make the effective acceleration lower than nominal (about 6.7x at nominal 8x on W = 320).
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    if not (isinstance(std, (int, float)) and std > 0):
        raise ConfigError(f"gaussian1d: std must be a positive fraction of W; got {std!r}")
    rng, used_seed = _make_rng(seed, generator)
    default_acs = int(w * _scoremri_center_fraction(r))
    sigma = std * w
    c = w // 2
    mask = np.zeros(w, dtype=bool)
    if mode == "exact":
        budget = max(1, round(w / r))
        n_acs = _resolve_acs_lines("gaussian1d", w, budget, acs_lines, cf, default_acs, truncate=True)
        mask[_centre_slice(w, n_acs)] = True
        weights = np.exp(-0.5 * ((np.arange(w) - c) / sigma) ** 2)
        weights = np.maximum(weights, 1e-300)  # far tails stay drawable however narrow sigma is
        weights[mask] = 0.0
        mask[_weighted_choice(rng, weights, budget - n_acs)] = True
    elif mode == "reference":
        n_acs = _resolve_acs_lines("gaussian1d", w, w, acs_lines, cf, default_acs, truncate=True)
        n_draws = int((w // r) * 1.2)
        cols = np.clip(rng.normal(loc=c, scale=sigma, size=n_draws).astype(np.int64), 0, w - 1)
        mask[cols] = True
        mask[_centre_slice(w, n_acs)] = True
    else:
        raise ConfigError(f"gaussian1d: mode must be 'exact' or 'reference'; got {mode!r}")
    return _finish("gaussian1d", mask, r, n_acs / w, used_seed,
                   {"mode": mode, "acs_lines": n_acs, "std_fraction": float(std), "sigma_columns": sigma},
                   device)


# ----------------------------------------------------------------------------------------------
# 2-D kinds
# ----------------------------------------------------------------------------------------------
def _resolve_acs_box(kind: str, h: int, w: int, acs_size: Any, center_fraction: float | None) -> tuple[int, int]:
    if acs_size is not None:
        return _check_box("acs_size", acs_size, h, w)
    if center_fraction is not None:
        return round(h * center_fraction), round(w * center_fraction)
    return _default_acs(h), _default_acs(w)


def _box_mask(h: int, w: int, box: tuple[int, int]) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[_centre_slice(h, box[0]), _centre_slice(w, box[1])] = True
    return m


def gaussian2d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
               seed: int | None = None, generator: torch.Generator | None = None, mode: str = "exact",
               std: float = SCOREMRI_STD_2D, acs_size: int | tuple[int, int] | None = None,
               device: Any = None) -> MaskResult:
    """2-D variable-density Gaussian points (Score-MRI / SSDM-MRI "Gaussian 2D").

    Weights exp(-(ky^2 / (2 sy^2) + kx^2 / (2 sx^2))) with sy = std * H, sx = std * W about (H//2, W//2);
    default std = sqrt(1.5/128) = 0.108 from the Score-MRI code (covariance size * size * 1.5/128).
    mode="exact" (default): a fully sampled calibration box (``acs_size`` int or (h, w); else
        round(cf * H) x round(cf * W) for a given center_fraction; else 24 x 24 at 320, min(24, 0.075 n)
        per axis) plus points drawn without replacement ∝ the weights, round(H W / R) points in total.
    mode="reference": the Score-MRI code: H W // R draws with replacement, truncated to integers and
        clipped, no calibration box; duplicates make the effective acceleration higher than nominal.
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    if not (isinstance(std, (int, float)) and std > 0):
        raise ConfigError(f"gaussian2d: std must be a positive fraction of the axis length; got {std!r}")
    rng, used_seed = _make_rng(seed, generator)
    cy, cx = h // 2, w // 2
    if mode == "exact":
        budget = max(1, round(h * w / r))
        box = _resolve_acs_box("gaussian2d", h, w, acs_size, cf)
        mask = _box_mask(h, w, box)
        n_box = int(mask.sum())
        if n_box > budget:
            raise ConfigError(f"gaussian2d: the {box[0]}x{box[1]} calibration box exceeds the budget of "
                              f"{budget} points for {h}x{w} at R={r:g}")
        gy = np.exp(-0.5 * ((np.arange(h) - cy) / (std * h)) ** 2)
        gx = np.exp(-0.5 * ((np.arange(w) - cx) / (std * w)) ** 2)
        weights = np.maximum(np.outer(gy, gx), 1e-300)
        weights[mask] = 0.0
        mask.ravel()[_weighted_choice(rng, weights, budget - n_box)] = True
    elif mode == "reference":
        box = (0, 0)
        mask = np.zeros((h, w), dtype=bool)
        n_draws = int(h * w // r)
        ys = np.clip((cy + std * h * rng.standard_normal(n_draws)).astype(np.int64), 0, h - 1)
        xs = np.clip((cx + std * w * rng.standard_normal(n_draws)).astype(np.int64), 0, w - 1)
        mask[ys, xs] = True
    else:
        raise ConfigError(f"gaussian2d: mode must be 'exact' or 'reference'; got {mode!r}")
    return _finish("gaussian2d", mask, r, box[1] / w, used_seed,
                   {"mode": mode, "acs_size": list(box), "std_fraction": float(std)}, device)


def _poisson_distance(h: int, w: int, box: tuple[int, int]) -> np.ndarray:
    """Normalised k-space radius rho used by poisson2d (sigpy.mri.poisson convention).

    Per axis, the distance from the centre beyond the calibration half-size, divided by its maximum, so
    rho = 0 on the calibration box and rho = 1 on the edge of the inscribed ellipse.
    """
    def axis(n: int, b: int) -> np.ndarray:
        d = np.maximum(np.abs(np.arange(n) - n // 2) - b / 2, 0.0)
        return d / d.max() if d.max() > 0 else d

    y, x = axis(h, box[0]), axis(w, box[1])
    return np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)


# Continuous-coordinate Poisson-disc sampler behind poisson2d.
# Background grid (Bridson, SIGGRAPH sketches 2007): a cell is _PD_CELL times the smallest radius over it on
# each side, so its diagonal is at most that radius and a cell holding a sample lies inside the sample's disc:
# one sample per cell, and a cell with a sample is finished. Each cell is split into _PD_SUB x _PD_SUB
# sub-cells that record where darts may still land. Cells are dealt at random into _PD_BATCHES batches that
# throw in turn, so simultaneous darts are sparse and the order is random; a regular (checkerboard) schedule
# would be faster but imprints the grid's axes on the pattern (nearest neighbours 1.9x likelier along the axes).
_PD_CELL = 1.0 / math.sqrt(2.0)
_PD_SUB = 2
_PD_BATCHES = 4
# Samples per unit area of a finished pattern with constant radius r: 0.573 / r^2 (measured on 160 x 160 for
# r = 0.3 ... 3; random sequential dart throwing would jam at 0.70 / r^2, coverage 0.547 of discs of diameter
# r, Hinrichsen, Feder & Jossang, J. Stat. Phys. 44, 1986). Only used to guess the first slope of the search.
_PD_DENSITY = 0.573
# sigpy.mri.poisson's radius is 1 + slope * rho pixels on the *integer* grid (candidates are checked against
# truncated positions). 0.8 continuous pixels gives the same ring profiles: within 0.03 of sigpy at 4x, 8x and
# 15x on 320 x 320 (docs/masks.md).
_PD_MIN_RADIUS = 0.8


@dataclass(frozen=True, eq=False)
class _PoissonGeometry:
    """Grid, calibration box and normalised radius of a poisson2d problem, in continuous pixel coordinates.

    A point (y, x) in [-0.5, H - 0.5) x [-0.5, W - 0.5) rounds to the pixel floor((y, x) + 0.5). ``allowed``
    marks the pixels a sample may round to (outside the box; inside the ellipse rho < 1 with crop_corner).
    """

    h: int
    w: int
    box: tuple[int, int]
    allowed: np.ndarray

    def axis(self, which: int) -> tuple[int, float, float]:
        """(centre index, calibration half-size, largest pixel distance beyond it) of axis 0 (H) or 1 (W)."""
        n, b = (self.h, self.box[0]) if which == 0 else (self.w, self.box[1])
        c = n // 2
        return c, b / 2, max(c - b / 2, n - 1 - c - b / 2, 0.0)

    def axis_rho(self, t: np.ndarray, which: int) -> np.ndarray:
        """Per-axis normalised distance beyond the box (the terms of ``_poisson_distance``) at coordinates t."""
        c, half, dmax = self.axis(which)
        t = np.asarray(t, dtype=np.float64)
        return np.maximum(np.abs(t - c) - half, 0.0) / dmax if dmax > 0 else np.zeros_like(t)

    def rho(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.hypot(self.axis_rho(y, 0), self.axis_rho(x, 1))

    def box_d2(self, y: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        """Squared distance from (y, x) to the nearest calibration pixel; None without a box."""
        if self.box[0] == 0 or self.box[1] == 0:
            return None
        sy, sx = _centre_slice(self.h, self.box[0]), _centre_slice(self.w, self.box[1])
        ny = np.clip(np.floor(y + 0.5), sy.start, sy.stop - 1)
        nx = np.clip(np.floor(x + 0.5), sx.start, sx.stop - 1)
        return (y - ny) ** 2 + (x - nx) ** 2


def _pd_axis_edges(n: int, centre: int, half_box: float, dmax: float, width0: float, slope: float) -> np.ndarray:
    """Cell edges along one axis from -0.5 to n - 0.5, marching out from the centre index.

    A cell is width0 * (1 + slope * rho) wide with rho taken at its edge nearer the centre, the smallest rho
    over the cell (this axis' term alone bounds rho from below, so the cell is never wider than allowed).
    """
    sides = []
    for step in (1.0, -1.0):
        t, side = float(centre), []
        while -0.5 < t < n - 0.5:
            rho = max(abs(t - centre) - half_box, 0.0) / dmax if dmax > 0 else 0.0
            t += step * width0 * (1.0 + slope * rho)
            side.append(t)
        sides.append(side)
    edges = np.array(sides[1][::-1] + [float(centre)] + sides[0])
    edges[0], edges[-1] = -0.5, n - 0.5
    return edges


def _pd_windows(edges_y: np.ndarray, edges_x: np.ndarray, qy: np.ndarray, qx: np.ndarray,
                reach: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell meeting the square [qy +- reach] x [qx +- reach], one entry per (query, cell).

    Returns (query index, cell row, cell column), expanded with np.repeat (no Python loop).
    """
    last_y, last_x = edges_y.size - 2, edges_x.size - 2
    y0 = np.clip(np.searchsorted(edges_y, qy - reach, "right") - 1, 0, last_y)
    y1 = np.clip(np.searchsorted(edges_y, qy + reach, "right") - 1, 0, last_y)
    x0 = np.clip(np.searchsorted(edges_x, qx - reach, "right") - 1, 0, last_x)
    x1 = np.clip(np.searchsorted(edges_x, qx + reach, "right") - 1, 0, last_x)
    rows = y1 - y0 + 1
    query_of_row = np.repeat(np.arange(qy.size), rows)  # one entry per (query, row) ...
    row = y0[query_of_row] + np.arange(query_of_row.size) - np.repeat(np.cumsum(rows) - rows, rows)
    cols = (x1 - x0 + 1)[query_of_row]  # ... then one per (query, row, column)
    query = np.repeat(query_of_row, cols)
    col = np.repeat(x0[query_of_row], cols) + np.arange(query.size) - np.repeat(np.cumsum(cols) - cols, cols)
    return query, np.repeat(row, cols), col


def _greedy_independent(alive: np.ndarray, later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """Greedy maximal independent set of the alive vertices in a given order, computed in parallel rounds.

    Each edge is a (later, earlier) pair in that order. A round accepts every undecided vertex with no
    undecided earlier neighbour and drops the neighbours of those accepted; the result equals the sequential
    greedy one (Blelloch, Fineman & Shun, SPAA 2012), in O(log^2 n) rounds with high probability.
    """
    undecided = alive.copy()
    accepted = np.zeros_like(alive)
    while undecided.any():
        blocked = np.zeros_like(alive)
        blocked[later] = True
        new = undecided & ~blocked
        accepted |= new
        undecided &= ~new
        undecided[later[new[earlier]]] = False
        keep = undecided[later] & undecided[earlier]
        later, earlier = later[keep], earlier[keep]
    return accepted


def _poisson_points(geo: _PoissonGeometry, min_radius: float, slope: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Variable-radius Poisson-disc points in continuous coordinates (pixels), with the box as fixed samples.

    Radius r(p) = min_radius * (1 + slope * rho(p)). Any two samples satisfy d(p, q) >= max(r(p), r(q)), and
    a sample is at least r(p) from every calibration pixel. Darts are thrown into the background grid (see
    _PD_CELL), one per live cell of a batch, uniformly in a random free sub-cell; a dart is kept if it rounds
    to an allowed pixel and is far enough from the samples so far, and simultaneous darts are thinned to a
    greedy independent set in random order. A rejected dart strikes its sub-cell, a new sample strikes every
    sub-cell whose centre lies within its radius, and a cell stops when it holds a sample or has no free
    sub-cell: the pattern is maximal up to voids smaller than a sub-cell (a few tenths of the radius).
    """
    (cy, hy, dy), (cx, hx, dx) = geo.axis(0), geo.axis(1)
    edges_y = _pd_axis_edges(geo.h, cy, hy, dy, _PD_CELL * min_radius, slope)
    edges_x = _pd_axis_edges(geo.w, cx, hx, dx, _PD_CELL * min_radius, slope)
    ncy, ncx = edges_y.size - 1, edges_x.size - 1
    k = _PD_SUB
    frac = (np.arange(k) + 0.5) / k
    sub_y = edges_y[:-1, None] + frac * np.diff(edges_y)[:, None]  # sub-cell centres: (ncy, k) and (ncx, k)
    sub_x = edges_x[:-1, None] + frac * np.diff(edges_x)[:, None]

    def radius(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return min_radius * (1.0 + slope * geo.rho(y, x))

    def pixel(t: np.ndarray) -> np.ndarray:
        return np.floor(t + 0.5).astype(np.int64)

    # free[cell row, cell col, sub row, sub col]: the sub-cell centre rounds to an allowed pixel and lies
    # outside the discs (radius min_radius) of the calibration pixels
    free = geo.allowed[pixel(sub_y)[:, None, :, None], pixel(sub_x)[None, :, None, :]]
    if geo.box[0] and geo.box[1]:
        sy, sx = _centre_slice(geo.h, geo.box[0]), _centre_slice(geo.w, geo.box[1])
        gy = np.abs(sub_y - np.clip(np.floor(sub_y + 0.5), sy.start, sy.stop - 1))
        gx = np.abs(sub_x - np.clip(np.floor(sub_x + 0.5), sx.start, sx.stop - 1))
        rows = np.flatnonzero((gy < min_radius).any(axis=1))
        cols = np.flatnonzero((gx < min_radius).any(axis=1))
        near = gy[rows][:, None, :, None] ** 2 + gx[cols][None, :, None, :] ** 2 < min_radius ** 2
        free[np.ix_(rows, cols)] &= ~near
    free = free.reshape(ncy * ncx, k * k)
    live = free.any(axis=1)
    batch_of_cell = rng.integers(0, _PD_BATCHES, ncy * ncx)
    by_batch = np.argsort(batch_of_cell, kind="stable")
    batches = np.split(by_batch, np.searchsorted(batch_of_cell[by_batch], np.arange(1, _PD_BATCHES)))
    sample_of_cell = np.full(ncy * ncx, -1, dtype=np.int64)
    dart_of_cell = np.full(ncy * ncx, -1, dtype=np.int64)
    py, px, pr = np.empty(ncy * ncx), np.empty(ncy * ncx), np.empty(ncy * ncx)
    n_pts = 0
    # r changes by at most `lip` per pixel, so a sample p with d(p, q) < r(p) has d(p, q) < r(q) / (1 - lip)
    lip = min_radius * slope * max(1.0 / dy if dy > 0 else 0.0, 1.0 / dx if dx > 0 else 0.0)
    corner_y, corner_x = np.meshgrid([-0.5, geo.h - 0.5], [-0.5, geo.w - 0.5])
    r_max = float(radius(corner_y, corner_x).max())

    def reach(r: np.ndarray) -> np.ndarray:
        return np.minimum(r / (1.0 - lip), r_max) if lip < 0.5 else np.full_like(r, r_max)

    idle, b = 0, -1
    while idle < _PD_BATCHES:  # stop after a full round of batches without a live cell
        b = (b + 1) % _PD_BATCHES
        cells = batches[b]
        cells = cells[live[cells]]
        has_free = free[cells].any(axis=1)
        live[cells[~has_free]] = False
        cells = batches[b] = cells[has_free]
        if cells.size == 0:
            idle += 1
            continue
        idle, n = 0, cells.size
        # one dart per cell, uniform in one of its free sub-cells chosen at random
        keys = rng.random((n, k * k))
        keys[~free[cells]] = -1.0
        sub = keys.argmax(axis=1)
        iy, ix = np.divmod(cells, ncx)
        ky, kx = np.divmod(sub, k)
        qy = edges_y[iy] + (ky + rng.random(n)) * (edges_y[iy + 1] - edges_y[iy]) / k
        qx = edges_x[ix] + (kx + rng.random(n)) * (edges_x[ix + 1] - edges_x[ix]) / k
        qr = radius(qy, qx)
        ok = geo.allowed[pixel(qy), pixel(qx)]
        box_d2 = geo.box_d2(qy, qx)
        if box_d2 is not None:
            ok &= box_d2 >= qr ** 2
        # against the samples so far
        idx = np.flatnonzero(ok)
        who, wy, wx = _pd_windows(edges_y, edges_x, qy[idx], qx[idx], reach(qr[idx]))
        who, wcell = idx[who], wy * ncx + wx
        nb = sample_of_cell[wcell]
        hit = nb >= 0
        o, p = who[hit], nb[hit]
        close = (py[p] - qy[o]) ** 2 + (px[p] - qx[o]) ** 2 < np.maximum(pr[p], qr[o]) ** 2
        ok[o[close]] = False
        # against each other: a greedy independent set in a random order
        dart_of_cell[cells[ok]] = np.flatnonzero(ok)
        sel = ok[who]
        o, c = who[sel], dart_of_cell[wcell[sel]]
        dart_of_cell[cells] = -1
        sel = c >= 0
        o, c = o[sel], c[sel]
        rank = rng.permutation(n)
        sel = (rank[c] < rank[o]) & ((qy[c] - qy[o]) ** 2 + (qx[c] - qx[o]) ** 2 < np.maximum(qr[c], qr[o]) ** 2)
        accepted = _greedy_independent(ok, o[sel], c[sel])
        # rejected darts strike their sub-cell; accepted darts become samples and finish their cell
        rejected = ~ok
        free[cells[rejected], sub[rejected]] = False
        a = np.flatnonzero(accepted)
        if a.size == 0:
            continue
        new = slice(n_pts, n_pts + a.size)
        py[new], px[new], pr[new] = qy[a], qx[a], qr[a]
        sample_of_cell[cells[a]] = np.arange(n_pts, n_pts + a.size)
        live[cells[a]] = False
        n_pts += a.size
        # strike the sub-cells (of live cells) whose centre lies within a new sample's radius
        ny_, nx_, nr_ = qy[a], qx[a], qr[a]
        who, wy, wx = _pd_windows(edges_y, edges_x, ny_, nx_, nr_)
        wcell = wy * ncx + wx
        sel = live[wcell]
        who, wy, wx, wcell = who[sel], wy[sel], wx[sel], wcell[sel]
        d2 = ((sub_y[wy] - ny_[who, None]) ** 2)[:, :, None] + ((sub_x[wx] - nx_[who, None]) ** 2)[:, None, :]
        covered = (d2 < (nr_[who] ** 2)[:, None, None]).reshape(-1, k * k)
        free.reshape(-1)[(wcell[:, None] * (k * k) + np.arange(k * k))[covered]] = False
    return py[:n_pts], px[:n_pts]


def poisson2d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
              seed: int | None = None, generator: torch.Generator | None = None,
              acs_size: int | tuple[int, int] | None = None, crop_corner: bool = True,
              min_radius: float = _PD_MIN_RADIUS, tol: float = 0.01, max_iter: int = 40,
              device: Any = None) -> MaskResult:
    """Variable-density Poisson-disc sampling with a fully sampled calibration box (sigpy.mri.poisson's law).

    Samples are placed in continuous k-space coordinates with no sample closer to another than the larger of
    their radii r = min_radius * (1 + slope * rho) pixels (rho: ``_poisson_distance``, 0 on the calibration
    box, 1 on the edge of the inscribed ellipse), then rounded to the nearest grid point (samples that meet
    merge), and the calibration box is added fully sampled. This is the law of ``sigpy.mri.poisson`` (used
    for Score-MRI/SSDM-MRI "Poisson 2D"): the slope is searched until H W / #samples is within ``tol``
    (relative, default 1 %) of R, so the variable density sharpens as R grows; min_radius = 0.8 (continuous
    pixels) reproduces sigpy's ring profiles (docs/masks.md). After ``max_iter`` evaluations a mask within
    5 % is accepted, otherwise a ConfigError is raised. ``crop_corner=True`` (sigpy's default) leaves the
    corners rho >= 1 unsampled. Calibration box: ``acs_size`` (int or (h, w)), else round(cf H) x round(cf W),
    else 24 x 24 at 320 (min(24, round(0.075 n)) per axis).
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    if isinstance(min_radius, bool) or not isinstance(min_radius, (int, float)) or not (
            math.isfinite(min_radius) and min_radius > 0):
        raise ConfigError(f"poisson2d: min_radius must be a positive number of pixels; got {min_radius!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 < tol <= 0.05):
        raise ConfigError(f"poisson2d: tol must be in (0, 0.05]; got {tol!r}")
    max_iter = _check_int("max_iter", max_iter, 1, 1000)
    _, used_seed = _make_rng(seed, generator)
    box = _resolve_acs_box("poisson2d", h, w, acs_size, cf)
    min_radius = float(min_radius)
    target = h * w / r
    calib = _box_mask(h, w, box)
    if r == 1.0:
        return _finish("poisson2d", np.ones((h, w), dtype=bool), r, box[1] / w, used_seed,
                       {"acs_size": list(box), "min_radius": min_radius, "slope": 0.0, "crop_corner": False},
                       device)
    if calib.sum() > target:
        raise ConfigError(f"poisson2d: the {box[0]}x{box[1]} calibration box alone exceeds H*W/R = "
                          f"{target:.0f} points for {h}x{w} at R={r:g}")
    rho = _poisson_distance(h, w, box)
    allowed = ((rho < 1.0) if crop_corner else np.ones((h, w), dtype=bool)) & ~calib
    if allowed.sum() + calib.sum() < target * (1 - 0.05):
        raise ConfigError(f"poisson2d: R={r:g} is below what crop_corner allows "
                          f"({h * w / (allowed.sum() + calib.sum()):.2f}); pass crop_corner=False")
    geo = _PoissonGeometry(h, w, box, allowed)
    n_box = int(calib.sum())

    def sample(slope: float) -> np.ndarray:
        # a fresh generator from the seed for every slope: the mask is a function of (seed, slope)
        py, px = _poisson_points(geo, min_radius, slope, np.random.default_rng(used_seed))
        mask = calib.copy()
        mask[np.floor(py + 0.5).astype(np.int64), np.floor(px + 0.5).astype(np.int64)] = True
        return mask

    # Density model for the search: a finished pattern of radius r holds _PD_DENSITY / r^2 samples per pixel,
    # and rounding saturates the sampled fraction smoothly at 1: f = D / (1 + D^4)^(1/4) (fits the measured
    # fraction within 0.03 for r = 0.5 ... 8). `gain` rescales it to the counts measured so far.
    hist, bin_edges = np.histogram(rho[allowed], bins=256)
    rho_bins = 0.5 * (bin_edges[:-1] + bin_edges[1:])

    def model(slope: float) -> float:
        dens = _PD_DENSITY / (min_radius * (1.0 + slope * rho_bins)) ** 2
        return float((hist * dens / (1.0 + dens ** 4) ** 0.25).sum())

    s_cap = 2.0 * math.hypot(h, w) / min_radius  # every radius off the box exceeds the grid diagonal

    def model_slope(gain: float) -> float:
        want = (target - n_box) / gain
        if model(0.0) <= want:
            return 0.0
        lo, hi = 0.0, s_cap
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if model(mid) > want else (lo, mid)
        return 0.5 * (lo + hi)

    best: tuple[float, float, np.ndarray | None] = (math.inf, 0.0, None)  # (|R_eff / R - 1|, slope, mask)
    s_lo, s_hi = -1.0, math.inf  # slopes known to give too many / too few samples
    counts: dict[float, int] = {}
    slope, gain = model_slope(1.0), 1.0
    for _ in range(max_iter):
        mask = sample(slope)
        n = int(mask.sum())
        counts[slope] = n
        rel = abs(h * w / n / r - 1.0)
        if rel < best[0]:
            best = (rel, slope, mask)
        if rel <= tol:
            break
        if n > target:
            s_lo = slope
        else:
            s_hi = slope
            if slope == 0.0:
                break  # the densest pattern is not dense enough
        gain = max(n - n_box, 1) / max(model(slope), 1e-9)
        nxt = model_slope(gain)
        if not (s_lo < nxt < s_hi) or nxt == slope:
            if s_lo >= 0 and math.isfinite(s_hi):  # secant on log(count) inside the bracket, else bisection
                f_lo, f_hi = math.log(counts[s_lo] / target), math.log(counts[s_hi] / target)
                nxt = s_lo + (s_hi - s_lo) * f_lo / (f_lo - f_hi)
                if not (s_lo + 0.1 * (s_hi - s_lo) < nxt < s_hi - 0.1 * (s_hi - s_lo)):
                    nxt = 0.5 * (s_lo + s_hi)
            elif s_lo >= 0:
                nxt = min(2.0 * s_lo + 0.1, s_cap)
            else:
                nxt = 0.0 if s_hi < 0.05 else 0.5 * s_hi
        if nxt == slope:
            break
        slope = nxt
    rel, slope, mask = best
    if mask is None or rel > 0.05:
        densest = counts.get(0.0)
        if densest is not None and densest < target:
            why = (f"the densest pattern (slope 0) only reaches R={h * w / densest:.2f}; lower min_radius "
                   f"(now {min_radius:g}), pass crop_corner=False or use another kind")
        else:
            why = "the grid is too small for the sample count to get closer; try another size or kind"
        best_r = h * w / mask.sum() if mask is not None else float("nan")
        raise ConfigError(f"poisson2d: could not reach R={r:g} within 5 % on {h}x{w} "
                          f"(closest {best_r:.2f}): {why}")
    return _finish("poisson2d", mask, r, box[1] / w, used_seed,
                   {"acs_size": list(box), "min_radius": min_radius, "slope": float(slope),
                    "max_radius": min_radius * (1.0 + float(slope)), "crop_corner": bool(crop_corner),
                    "evaluations": len(counts)}, device)


def _radial_mask(h: int, w: int, angles: np.ndarray) -> np.ndarray:
    """Nearest-grid rasterisation of full lines through (H//2, W//2) at the given angles (radians).

    Points c + t (sin a, cos a), t in steps of 0.5 px over the whole grid, rounded with np.rint, which is
    odd-symmetric, so every spoke is point-symmetric about the centre wherever its mirror is on the grid.
    """
    cy, cx = h // 2, w // 2
    reach = math.hypot(h, w) / 2 + 1
    t = np.arange(-math.ceil(2 * reach), math.ceil(2 * reach) + 1) * 0.5
    ys = cy + np.rint(np.outer(np.sin(angles), t)).astype(np.int64)
    xs = cx + np.rint(np.outer(np.cos(angles), t)).astype(np.int64)
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    mask = np.zeros((h, w), dtype=bool)
    mask[ys[keep], xs[keep]] = True
    return mask


def radial2d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
             seed: int | None = None, generator: torch.Generator | None = None, angles: str = "golden",
             rotation: float | None = None, n_spokes: int | None = None, device: Any = None) -> MaskResult:
    """Radial spokes through the k-space centre on the Cartesian grid (IMA's "radial" mask).

    Spoke k has angle rotation + k * da with da = pi / n (angles="uniform") or the golden angle
    111.25 deg (angles="golden", Winkelmann et al. 2007); each spoke is a full line through
    (H//2, W//2) to the grid edges, rasterised to the nearest grid points. The number of spokes is the
    n (found by doubling then bisection) whose sampled fraction is closest to 1/R; ``n_spokes`` fixes it.
    ``rotation`` (radians) defaults to a random angle in [0, pi) drawn from the seed. center_fraction
    is not used (the centre is always densely sampled).
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    _check_fraction(center_fraction)
    if angles not in ("golden", "uniform"):
        raise ConfigError(f"radial2d: angles must be 'golden' or 'uniform'; got {angles!r}")
    rng, used_seed = _make_rng(seed, generator)
    rot = float(rng.uniform(0.0, math.pi)) if rotation is None else float(rotation)
    target = h * w / r

    def spokes(n: int) -> np.ndarray:
        step = GOLDEN_ANGLE if angles == "golden" else math.pi / n
        return _radial_mask(h, w, rot + step * np.arange(n))

    if n_spokes is not None:
        n = _check_int("n_spokes", n_spokes, 1, 100_000)
        mask = spokes(n)
    else:
        # Smallest n whose count reaches the target (monotone for golden angles: the spoke sets are
        # nested; nearly so for uniform angles), then the closer of n - 1 and n.
        lo, hi = 0, 1
        while spokes(hi).sum() < target and hi < 8 * (h + w):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if spokes(mid).sum() < target else (lo, mid)
        counts = (max(1, hi - 1), hi)
        candidates = [spokes(k) for k in counts]
        best = int(np.argmin([abs(int(m.sum()) - target) for m in candidates]))
        n, mask = counts[best], candidates[best]
    result = _finish("radial2d", mask, r, None, used_seed,
                     {"n_spokes": n, "angles": angles, "rotation": rot}, device)
    return _warn_if_off("radial2d", result, "closest number of spokes") if n_spokes is None else result


def acs_only(shape: tuple[int, int], acceleration: float | None = None, *, center_fraction: float | None = None,
             seed: int | None = None, generator: torch.Generator | None = None,
             size: int | tuple[int, int] | None = None, device: Any = None) -> MaskResult:
    """Only a fully sampled centred box (AK-Diffusion super-resolution: 128 x 128 of 320 x 320).

    Box: ``size`` (int or (h, w)), else round(cf H) x round(cf W) for a given center_fraction, else the box
    with the grid's aspect ratio and area H W / R (round(H / sqrt R) x round(W / sqrt R)).
    Nominal acceleration: the requested one when given, else H W / box area. Deterministic.
    """
    h, w = _check_shape(shape)
    cf = _check_fraction(center_fraction)
    r = None if acceleration is None else _check_acceleration(acceleration)
    if size is not None:
        box = _check_box("size", size, h, w)
    elif cf is not None:
        box = (round(h * cf), round(w * cf))
    elif r is not None:
        box = (max(1, round(h / math.sqrt(r))), max(1, round(w / math.sqrt(r))))
    else:
        raise ConfigError("acs_only needs an acceleration, a size or a center_fraction")
    if box[0] < 1 or box[1] < 1:
        raise ConfigError(f"acs_only: box {box} is empty")
    mask = _box_mask(h, w, box)
    nominal = r if r is not None else h * w / (box[0] * box[1])
    return _finish("acs_only", mask, nominal, box[1] / w, None, {"size": list(box)}, device)


# ----------------------------------------------------------------------------------------------
# Registry and dispatcher
# ----------------------------------------------------------------------------------------------
MASK_KINDS: dict[str, Callable[..., MaskResult]] = {
    "random1d": random1d,
    "equispaced1d": equispaced1d,
    "uniform1d": uniform1d,
    "gaussian1d": gaussian1d,
    "gaussian2d": gaussian2d,
    "poisson2d": poisson2d,
    "radial2d": radial2d,
    "acs_only": acs_only,
}


def make_mask(kind: str, shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
              seed: int | None = None, generator: torch.Generator | None = None, **options: Any) -> MaskResult:
    """Make a mask of the named kind; ``options`` go to that kind's function (see MASK_KINDS).

    Raises ConfigError for an unknown kind, an option the kind does not take, or invalid values.
    """
    if kind not in MASK_KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    fn = MASK_KINDS[kind]
    accepted = set(inspect.signature(fn).parameters) - {"shape", "acceleration"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"mask kind {kind!r} does not take option(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(accepted))}")
    if acceleration is None and kind != "acs_only":
        raise ConfigError(f"mask kind {kind!r} needs an acceleration")
    return fn(shape, acceleration, center_fraction=center_fraction, seed=seed, generator=generator, **options)
