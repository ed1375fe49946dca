"""Image-quality metrics: PSNR, SSIM and NMSE, fastMRI convention by default.

All metrics are computed in float64 with torch, on the device of the input (CPU or CUDA), and accept
torch tensors or numpy arrays. Mixed inputs are fine: both move to the target's device (or to the
prediction's, if only the prediction is a tensor).

Inputs
    ``(H, W)`` (one slice) or ``(..., H, W)``: every leading dimension is flattened into a slice axis,
    so ``(S, H, W)`` is a volume of S slices and ``(B, 1, H, W)`` a batch of B slices. The "volume" whose
    statistics the fastMRI convention uses is everything passed in one call.
    Complex inputs are reduced to their magnitude ``|x|`` first: metrics always compare magnitude images,
    as the fastMRI leaderboard does (its targets are RSS / ESC magnitudes).

Conventions (``METRIC_CONVENTIONS``; pick one by name with ``convention=``)
    ``"fastmri"`` (default; fastMRI ``fastmri/evaluate.py``, Zbontar et al. 2018, arXiv:1811.08839):
        data_range R = max of the target *volume* (max only, not max - min);
        PSNR = 10 log10(R^2 / MSE) with the MSE over the whole volume;
        SSIM per slice with R, averaged over slices;
        NMSE = ||t - p||^2 / ||t||^2 over the whole volume.
    ``"per-slice"``: R_s = max of target slice s; PSNR and SSIM computed per slice with R_s and averaged.
    ``"minmax"``: R_s = max - min of target slice s; per-slice PSNR and SSIM as above.
    NMSE has no data range and is the same volume-level quantity in every convention.

SSIM (Wang et al. 2004, IEEE TIP 13(4):600-612) is the scikit-image ``structural_similarity`` variant
used by fastMRI: 7x7 uniform window, sample covariance (N/(N-1) correction), K1 = 0.01, K2 = 0.03,
C1 = (K1 R)^2, C2 = (K2 R)^2, mean of the SSIM map over the interior that is at least (win-1)/2 pixels
from every edge. scikit-image filters the whole image with a 'reflect'-padded uniform filter and then
crops that border; every kept pixel's window lies entirely inside the image, so a padding-free ("valid")
box filter gives the identical numbers. Note scikit-image computes in the input dtype (float32 for
fastMRI's float32 targets); we always use float64. On float32 input the two differ by ~1e-8 in SSIM
(4.5e-9 measured on four 320x320 fastMRI slices); on float64 input they agree to ~1e-15.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrrecon.errors import ConfigError, DataError, ShapeError

__all__ = [
    "METRIC_CONVENTIONS",
    "MetricAccumulator",
    "MetricConvention",
    "compute_metrics",
    "data_range_for",
    "nmse",
    "psnr",
    "ssim",
]

ArrayLike = Any  # torch.Tensor | np.ndarray (or anything np.asarray accepts)


@dataclass(frozen=True)
class MetricConvention:
    """How the data range is chosen and how PSNR is aggregated.

    ``data_range``: ``"volume_max"`` (one R for the volume), ``"slice_max"`` or ``"slice_minmax"`` (one
    R per slice). ``psnr_per_slice``: average per-slice PSNRs instead of one PSNR from the volume MSE.
    """

    name: str
    data_range: str
    psnr_per_slice: bool
    description: str


METRIC_CONVENTIONS: dict[str, MetricConvention] = {
    "fastmri": MetricConvention(
        "fastmri",
        "volume_max",
        False,
        "fastMRI: R = max of the target volume; PSNR from the volume MSE; SSIM per slice with R, averaged",
    ),
    "per-slice": MetricConvention(
        "per-slice",
        "slice_max",
        True,
        "R = max of each target slice; PSNR and SSIM per slice, averaged over slices",
    ),
    "minmax": MetricConvention(
        "minmax",
        "slice_minmax",
        True,
        "R = max - min of each target slice; PSNR and SSIM per slice, averaged over slices",
    ),
}


def _get_convention(convention: str | MetricConvention) -> MetricConvention:
    if isinstance(convention, MetricConvention):
        return convention
    try:
        return METRIC_CONVENTIONS[convention]
    except KeyError:
        raise ConfigError(
            f"unknown metric convention {convention!r}; choose one of {sorted(METRIC_CONVENTIONS)}"
        ) from None


# --------------------------------------------------------------------------------------------------
# input handling


def _to_tensor(x: ArrayLike, device: torch.device | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    if device is not None:
        t = t.to(device)
    return t


def _magnitude64(t: torch.Tensor) -> torch.Tensor:
    if t.is_complex():
        return t.to(torch.complex128).abs()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.to(torch.float64)


def _prepare(target: ArrayLike, pred: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 magnitude tensors of shape (S, H, W) on one device; checks shapes and NaN.

    The device is the target's if it is a tensor, else the prediction's; the other input is moved there.
    """
    device = next((x.device for x in (target, pred) if isinstance(x, torch.Tensor)), None)
    t = _to_tensor(target, device)
    p = _to_tensor(pred, device)
    if tuple(t.shape) != tuple(p.shape):
        raise ShapeError(f"target shape {tuple(t.shape)} != pred shape {tuple(p.shape)}")
    if t.ndim < 2:
        raise ShapeError(f"metrics need images of shape (H, W) or (..., H, W); got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ShapeError(f"empty input of shape {tuple(t.shape)}")
    t = _magnitude64(t).reshape(-1, t.shape[-2], t.shape[-1])
    p = _magnitude64(p).reshape(-1, p.shape[-2], p.shape[-1])
    for name, x in (("target", t), ("pred", p)):
        if not bool(torch.isfinite(x).all()):
            n_bad = int((~torch.isfinite(x)).sum())
            raise DataError(f"{name} contains {n_bad} NaN/inf value(s); metrics are undefined")
    return t, p


def _check_range(r: torch.Tensor) -> None:
    if not bool((r > 0).all()):
        bad = torch.nonzero(~(r > 0)).flatten().tolist()
        raise DataError(
            f"data_range must be > 0 but is {r.flatten().tolist()[:8]} (slices {bad[:8]}): "
            "a target with no dynamic range (e.g. all zeros) has no defined PSNR/SSIM"
        )


def _resolve_range(
    t: torch.Tensor, data_range: float | ArrayLike | None, conv: MetricConvention
) -> tuple[torch.Tensor, bool]:
    """Data range per slice, shape (S,), and whether it is one value for the whole volume."""
    n_slices = t.shape[0]
    if data_range is not None:
        r = _to_tensor(data_range, t.device).to(torch.float64).flatten()
        if r.numel() == 1:
            r, scalar = r.expand(n_slices), True
        elif r.numel() == n_slices:
            scalar = False
        else:
            raise ShapeError(f"data_range has {r.numel()} values; expected 1 or one per slice ({n_slices})")
    elif conv.data_range == "volume_max":
        r, scalar = t.max().expand(n_slices), True
    elif conv.data_range == "slice_max":
        r, scalar = t.amax(dim=(-2, -1)), False
    elif conv.data_range == "slice_minmax":
        r, scalar = t.amax(dim=(-2, -1)) - t.amin(dim=(-2, -1)), False
    else:  # a user-made MetricConvention with a typo
        raise ValueError(f"unknown data_range rule {conv.data_range!r} in convention {conv.name!r}")
    _check_range(r)
    return r, scalar


def data_range_for(target: ArrayLike, convention: str | MetricConvention = "fastmri") -> torch.Tensor:
    """The per-slice data range, shape (S,), that ``convention`` uses for ``target`` (magnitude)."""
    t, _ = _prepare(target, target)
    return _resolve_range(t, None, _get_convention(convention))[0]


# --------------------------------------------------------------------------------------------------
# the metrics, on prepared (S, H, W) float64 tensors


def _psnr(t: torch.Tensor, p: torch.Tensor, r: torch.Tensor, per_slice: bool) -> float:
    # PSNR = 10 log10(R^2 / MSE); MSE = 0 gives +inf (identical images).
    if per_slice:
        mse = ((t - p) ** 2).mean(dim=(-2, -1))
        values = [_psnr_value(float(ri), float(mi)) for ri, mi in zip(r.tolist(), mse.tolist(), strict=True)]
        return float(np.mean(values))
    mse = float(((t - p) ** 2).mean())
    return _psnr_value(float(r[0]), mse)


def _psnr_value(r: float, mse: float) -> float:
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(r * r / mse)


def _ssim(t: torch.Tensor, p: torch.Tensor, r: torch.Tensor, win_size: int, k1: float, k2: float) -> float:
    """Mean SSIM over slices, skimage ``structural_similarity`` (uniform window, sample covariance)."""
    if win_size < 2 or win_size % 2 != 1:
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size}")
    h, w = t.shape[-2:]
    if h < win_size or w < win_size:
        raise ShapeError(f"SSIM window {win_size}x{win_size} does not fit images of size {h}x{w}")
    x = t.unsqueeze(1)  # (S, 1, H, W)
    y = p.unsqueeze(1)
    # One pooling call for the five local moments; 'valid' box filter = skimage's reflect filter + crop.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = F.avg_pool2d(stack, win_size, stride=1).unbind(dim=1)
    n = win_size * win_size
    cov_norm = n / (n - 1)  # sample (unbiased) covariance, as skimage's default
    var_x = cov_norm * (m_xx - mu_x * mu_x)
    var_y = cov_norm * (m_yy - mu_y * mu_y)
    cov_xy = cov_norm * (m_xy - mu_x * mu_y)
    rr = r.view(-1, 1, 1)
    c1 = (k1 * rr) ** 2
    c2 = (k2 * rr) ** 2
    # Wang et al. 2004, eq. (13).
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean(dim=(-2, -1)).mean())


def _nmse(t: torch.Tensor, p: torch.Tensor) -> float:
    denom = float((t * t).sum())
    if denom == 0.0:
        raise DataError("target is all zeros; NMSE = ||t - p||^2 / ||t||^2 is undefined")
    return float(((t - p) ** 2).sum()) / denom


# --------------------------------------------------------------------------------------------------
# public API


def psnr(
    target: ArrayLike,
    pred: ArrayLike,
    data_range: float | ArrayLike | None = None,
    *,
    convention: str | MetricConvention = "fastmri",
) -> float:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB; +inf for identical images.

    By default (fastMRI) R is the max of the whole target volume and the MSE is taken over the whole
    volume. ``data_range`` overrides the convention's R: one number keeps the convention's aggregation;
    one value per slice implies per-slice PSNRs, averaged.
    """
    conv = _get_convention(convention)
    t, p = _prepare(target, pred)
    r, scalar = _resolve_range(t, data_range, conv)
    return _psnr(t, p, r, per_slice=conv.psnr_per_slice or not scalar)


def ssim(
    target: ArrayLike,
    pred: ArrayLike,
    data_range: float | ArrayLike | None = None,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
    *,
    convention: str | MetricConvention = "fastmri",
) -> float:
    """Structural similarity, per slice with a ``win_size`` uniform window, averaged over slices.

    Equals ``skimage.metrics.structural_similarity(t_s, p_s, data_range=R, win_size=7)`` averaged over
    slices s; by default (fastMRI) R is the max of the whole target volume.
    """
    conv = _get_convention(convention)
    t, p = _prepare(target, pred)
    r, _ = _resolve_range(t, data_range, conv)
    return _ssim(t, p, r, win_size, k1, k2)


def nmse(target: ArrayLike, pred: ArrayLike) -> float:
    """Normalised MSE ``||target - pred||^2 / ||target||^2`` over the whole volume."""
    t, p = _prepare(target, pred)
    return _nmse(t, p)


def compute_metrics(
    target: ArrayLike,
    pred: ArrayLike,
    convention: str | MetricConvention = "fastmri",
    *,
    data_range: float | ArrayLike | None = None,
) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` for one volume (or slice) under a named convention."""
    conv = _get_convention(convention)
    t, p = _prepare(target, pred)
    r, scalar = _resolve_range(t, data_range, conv)
    return {
        "psnr": _psnr(t, p, r, per_slice=conv.psnr_per_slice or not scalar),
        "ssim": _ssim(t, p, r, 7, 0.01, 0.03),
        "nmse": _nmse(t, p),
    }


class MetricAccumulator:
    """Collects per-volume metrics and reports their mean and standard deviation.

    Aggregation is over volumes (each volume counts once), as in fastMRI's evaluation. ``std`` uses the
    sample standard deviation (``ddof=1``, as fastMRI's runstats) and is NaN with fewer than two values.
    """

    def __init__(self, convention: str | MetricConvention = "fastmri"):
        self.convention = _get_convention(convention)
        self.per_item: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self.per_item)

    def add(self, metrics: Mapping[str, float], key: str | None = None) -> None:
        """Record already-computed metrics of one volume under ``key`` (default: running index)."""
        key = str(len(self.per_item)) if key is None else str(key)
        if key in self.per_item:
            raise ValueError(f"metrics for {key!r} were already recorded")
        self.per_item[key] = {name: float(v) for name, v in metrics.items()}

    def update(self, target: ArrayLike, pred: ArrayLike, key: str | None = None) -> dict[str, float]:
        """Compute metrics of one volume with this accumulator's convention, record and return them."""
        m = compute_metrics(target, pred, self.convention)
        self.add(m, key)
        return m

    def _values(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for metrics in self.per_item.values():
            for name, v in metrics.items():
                out.setdefault(name, []).append(v)
        return out

    def mean(self) -> dict[str, float]:
        return {name: float(np.mean(v)) for name, v in self._values().items()}

    def std(self, ddof: int = 1) -> dict[str, float]:
        return {name: float(np.std(v, ddof=ddof)) if len(v) > ddof else math.nan for name, v in self._values().items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean", "std", "n"}}``."""
        means, stds, values = self.mean(), self.std(), self._values()
        return {name: {"mean": means[name], "std": stds[name], "n": len(values[name])} for name in means}

    def extend(self, items: Iterable[tuple[str, Mapping[str, float]]]) -> None:
        for key, metrics in items:
            self.add(metrics, key)

    def __repr__(self) -> str:
        parts = [f"{n} = {s['mean']:.4g} +/- {s['std']:.2g}" for n, s in self.summary().items()]
        return f"MetricAccumulator({self.convention.name}, n={len(self)}: " + ", ".join(parts) + ")"
