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
from functools import lru_cache
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


def _poisson_radius(rho: np.ndarray, scale: float, min_radius: float = 1.0) -> np.ndarray:
    """Minimum distance (pixels) around a sample at normalised radius rho: r = min_radius + scale * rho."""
    return min_radius + scale * rho


@lru_cache(maxsize=4096)
def _disc_offsets(k2: int) -> tuple[np.ndarray, np.ndarray]:
    """All integer offsets (dy, dx) with dy^2 + dx^2 <= k2."""
    m = math.isqrt(k2)
    dy, dx = np.mgrid[-m:m + 1, -m:m + 1]
    inside = dy * dy + dx * dx <= k2
    return dy[inside].astype(np.int64), dx[inside].astype(np.int64)


def _poisson_disc(h: int, w: int, radius: np.ndarray, order: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Variable-radius Poisson-disc dart throwing on the k-space lattice.

    ``fixed`` (flat indices, e.g. the calibration box) is accepted first; then candidates are visited in
    the random ``order`` (flat indices) and accepted when no earlier sample p lies closer than radius[p].
    The lattice serves as Bridson's background grid (one sample per cell, constant-time neighbourhood
    test through a "blocked" map that each accepted sample stamps with its disc), and visiting every
    candidate once makes the result maximal. Candidates already blocked are skipped in vectorised chunks,
    so the Python loop only runs over survivors.
    """
    # Integer offsets with d^2 < r^2 are exactly those with d^2 <= ceil(r^2) - 1. Radii beyond the grid
    # diagonal all block the whole grid, so they are clipped there (bounds memory and time).
    radius = np.minimum(radius, math.hypot(h, w) + 1.0)
    k2 = (np.ceil(radius.ravel() ** 2) - 1).astype(np.int64)
    pad = math.isqrt(int(k2.max())) + 1
    row = w + 2 * pad
    blocked = np.zeros((h + 2 * pad) * row, dtype=bool)
    flat = np.arange(h * w)
    padded = (flat // w + pad) * row + flat % w + pad
    footprints: dict[int, np.ndarray] = {}

    def footprint(k: int) -> np.ndarray:
        if k not in footprints:
            dy, dx = _disc_offsets(k) if k <= 4096 else _disc_offsets.__wrapped__(k)
            footprints[k] = dy * row + dx
        return footprints[k]

    accepted = np.zeros(h * w, dtype=bool)
    accepted[fixed] = True
    for k in np.unique(k2[fixed]).tolist():
        sel = padded[fixed[k2[fixed] == k]]
        blocked[(sel[:, None] + footprint(k)[None, :]).ravel()] = True
    p_order, k_order = padded[order], k2[order]
    chosen: list[int] = []
    chunk = 256
    for start in range(0, order.size, chunk):
        stop = start + chunk
        live = ~blocked[p_order[start:stop]]
        if not live.any():
            continue
        for idx, p, k in zip(order[start:stop][live].tolist(), p_order[start:stop][live].tolist(),
                             k_order[start:stop][live].tolist(), strict=True):
            if blocked[p]:
                continue
            chosen.append(idx)
            blocked[p + footprint(k)] = True
    accepted[np.asarray(chosen, dtype=np.int64)] = True
    return accepted.reshape(h, w)


def poisson2d(shape: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
              seed: int | None = None, generator: torch.Generator | None = None,
              acs_size: int | tuple[int, int] | None = None, crop_corner: bool = True,
              min_radius: float = 1.0, tol: float = 0.01, max_iter: int = 40, device: Any = None) -> MaskResult:
    """Variable-density Poisson-disc sampling with a fully sampled calibration box.

    Minimum distance around a sample r(rho) = min_radius + s * rho pixels, rho the normalised radius of
    ``_poisson_distance`` (0 on the calibration box, 1 on the edge of the inscribed ellipse); with the
    default min_radius = 1 this is the density law of sigpy.mri.poisson, whose masks Score-MRI/SSDM-MRI
    use for "Poisson 2D". On the lattice any r > 1 excludes the 4 nearest neighbours, which caps the
    density at 0.364 outside the box; min_radius < 1 grows a fully sampled core where r <= 1 (stronger
    variable density, and R below about 3.3 becomes reachable). The radius
    scale s is searched (bracketing, then Illinois regula falsi) until H W / #samples is within ``tol``
    (relative, default 1 %) of R; within 5 % is accepted after ``max_iter`` evaluations, otherwise a
    ConfigError is raised. ``crop_corner=True`` (sigpy's default) leaves the corners outside the
    ellipse rho < 1 unsampled. Calibration box: ``acs_size`` (int or (h, w)), else round(cf H) x round(cf W),
    else 24 x 24 at 320 (min(24, round(0.075 n)) per axis).
    """
    h, w = _check_shape(shape)
    r = _check_acceleration(acceleration)
    cf = _check_fraction(center_fraction)
    if not (isinstance(min_radius, (int, float)) and min_radius > 0):
        raise ConfigError(f"poisson2d: min_radius must be a positive number of pixels; got {min_radius!r}")
    if not (0 < tol <= 0.05):
        raise ConfigError(f"poisson2d: tol must be in (0, 0.05]; got {tol!r}")
    rng, used_seed = _make_rng(seed, generator)
    box = _resolve_acs_box("poisson2d", h, w, acs_size, cf)
    target = h * w / r
    calib = _box_mask(h, w, box)
    if r == 1.0:
        return _finish("poisson2d", np.ones((h, w), dtype=bool), r, box[1] / w, used_seed,
                       {"acs_size": list(box), "radius_scale": 0.0, "min_radius": float(min_radius),
                        "crop_corner": False}, device)
    if calib.sum() > target:
        raise ConfigError(f"poisson2d: the {box[0]}x{box[1]} calibration box alone exceeds H*W/R = "
                          f"{target:.0f} points for {h}x{w} at R={r:g}")
    rho = _poisson_distance(h, w, box)
    allowed = (rho < 1.0) | calib if crop_corner else np.ones((h, w), dtype=bool)
    if allowed.sum() < target * (1 - 0.05):
        raise ConfigError(f"poisson2d: R={r:g} is below what crop_corner allows "
                          f"({h * w / allowed.sum():.2f}); pass crop_corner=False")
    fixed = np.flatnonzero(calib)
    order = rng.permutation(np.flatnonzero(allowed & ~calib))

    def count(scale: float) -> tuple[int, np.ndarray]:
        m = _poisson_disc(h, w, _poisson_radius(rho, scale, min_radius), order, fixed)
        return int(m.sum()), m

    def err(n: int) -> float:
        return math.log(n / target)

    best: tuple[float, float, np.ndarray | None] = (math.inf, 0.0, None)  # (|relative error|, s, mask)
    evaluations = 0

    def evaluate(scale: float) -> float:
        nonlocal best, evaluations
        n, m = count(scale)
        evaluations += 1
        rel = abs(n / target - 1)
        if rel < best[0]:
            best = (rel, scale, m)
        return err(n)

    # Start from a packing model: a maximal disc packing with exclusion distance r holds about
    # 0.87 * min(0.3641, 0.697 / r^2) points per pixel (0.697 / r^2: continuum random sequential
    # adsorption, jamming coverage 0.547; 0.3641: the lattice nearest-neighbour limit; 0.87: fitted
    # on this lattice, within 10 % for r in [1, 10]). It only seeds the search.
    rho_cand = rho.ravel()[order]

    def model_err(scale: float) -> float:
        rad = _poisson_radius(rho_cand, scale, min_radius)
        dens = np.where(rad <= 1.0, 1.0, np.minimum(0.3641, 0.697 / rad**2))
        return math.log((fixed.size + 0.87 * dens.sum()) / target)

    lo, hi = 1e-3, 2.0 * math.hypot(h, w)
    for _ in range(24):  # geometric bisection: ~1e-5 relative precision, far below the model's error
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if model_err(mid) > 0 else (lo, mid)
    s_guess = hi
    # Bracket around the guess (the count decreases with s; s = 0 samples every allowed point) ...
    s_cap = 2.0 * math.hypot(h, w)  # beyond this every radius exceeds the grid: the count cannot drop
    f_guess = evaluate(s_guess)
    if f_guess > 0:
        s_lo, f_lo, s_hi = s_guess, f_guess, s_guess * 1.1
        f_hi = evaluate(s_hi)
        while f_hi > 0 and best[0] > tol and evaluations < max_iter and s_hi < s_cap:
            s_lo, f_lo = s_hi, f_hi
            s_hi *= 1.5
            f_hi = evaluate(s_hi)
    else:
        s_hi, f_hi, s_lo = s_guess, f_guess, s_guess / 1.1
        f_lo = evaluate(s_lo)
        while f_lo < 0 and best[0] > tol and evaluations < max_iter and s_lo > 1e-6:
            s_hi, f_hi = s_lo, f_lo
            s_lo /= 1.5
            f_lo = evaluate(s_lo)
        if f_lo < 0:
            s_lo = 0.0
            f_lo = err(int(allowed.sum())) if min_radius <= 1 else evaluate(0.0)
    # ... then Illinois regula falsi on log(count / target).
    side = 0
    while best[0] > tol and evaluations < max_iter and s_hi - s_lo > 1e-9:
        s = s_hi - f_hi * (s_hi - s_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (s_lo + s_hi)
        if not (s_lo < s < s_hi):
            s = 0.5 * (s_lo + s_hi)
        f = evaluate(s)
        if f > 0:  # too many samples: the answer is above s
            s_lo, f_lo = s, f
            if side == -1:
                f_hi /= 2  # Illinois step keeps the stale end from stalling the search
            side = -1
        else:
            s_hi, f_hi = s, f
            if side == 1:
                f_lo /= 2
            side = 1
    rel, scale, mask = best
    if mask is None or rel > 0.05:
        best_r = h * w / mask.sum() if mask is not None else float("nan")
        # With any radius > 1 the lattice excludes at least the 4 nearest neighbours; random sequential
        # adsorption with nearest-neighbour exclusion jams at coverage 0.3641 (Evans, Rev. Mod. Phys. 1993),
        # which bounds the sampled density from above for every s > 0.
        lowest = h * w / (fixed.size + (0.3641 if min_radius >= 1 else 1.0) * order.size)
        why = (f"accelerations below about {lowest:.1f} are out of reach of this density law here; try a "
               "larger acs_size, min_radius < 1, crop_corner=False or another kind" if r < 1.05 * lowest else
               "the grid is too small for the sample count to get closer; try another size or kind")
        raise ConfigError(f"poisson2d: could not reach R={r:g} within 5 % on {h}x{w} "
                          f"(closest {best_r:.2f}): {why}")
    return _finish("poisson2d", mask, r, box[1] / w, used_seed,
                   {"acs_size": list(box), "radius_scale": float(scale), "min_radius": float(min_radius),
                    "crop_corner": bool(crop_corner),
                    "evaluations": evaluations}, device)


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
