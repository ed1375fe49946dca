"""Perceptual metrics: LPIPS, FID (rFID) and KID, computed only from local feature-network weights.

Nothing is downloaded. The networks (``mrrecon.nn.feature_nets``) need weights the user supplies as
``.safetensors`` files in one folder (``mrrecon benchmark --feature-weights DIR``):

================================  =========================================================================
``alexnet.safetensors``           torchvision ``alexnet`` ``features.*`` (LPIPS-alex backbone)
``lpips_alex.safetensors``        lpips package ``weights/v0.1/alex.pth`` (``lin{k}.model.1.weight``)
``vgg16.safetensors``             torchvision ``vgg16`` ``features.*`` (LPIPS-vgg backbone)
``lpips_vgg.safetensors``         lpips package ``weights/v0.1/vgg.pth``
``inception_fid.safetensors``     pytorch-fid ``pt_inception-2015-12-05-6726825d.pth`` (rFID and KID)
================================  =========================================================================

Any subset works: LPIPS needs a backbone and its linear layers (AlexNet preferred, as the lpips package's
default, else VGG; ``lpips_net=`` forces one), FID and KID need the Inception file. Metrics whose files are
missing are skipped with the reason (``PerceptualMetrics.skipped``). ``.pth`` files are converted once with
``python -m mrrecon.nn.feature_nets convert`` (see there).

Image convention (MR magnitude -> network input)
    A magnitude slice ``x`` (physical units) is divided by the data range ``R`` of its *target* (the max of
    the target volume, the fastMRI convention the other metrics use), replicated to 3 channels, and mapped
    to [-1, 1] for LPIPS (``2 x / R - 1``) or kept in [0, 1] for Inception (which maps to [-1, 1] itself
    after resizing to 299x299). Reconstruction and target use the same ``R``; values are not clipped
    (an overshoot above the target's maximum is part of the error).

LPIPS (Zhang et al., CVPR 2018, eq. 1)
    d(x, y) = sum_l mean_hw || w_l * (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|) ||^2 over the backbone stages l:
    features unit-normalised along channels, squared difference, learned non-negative channel weights
    w_l (a 1x1 conv), spatial mean, sum over stages. Inputs pass LPIPS's scaling layer
    ``(x - shift) / scale`` (shift = 2 mean - 1, scale = 2 std: ImageNet normalisation written for [-1, 1]).
FID (Heusel et al., NeurIPS 2017)
    || mu_1 - mu_2 ||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}) between Gaussian fits (mean, covariance with
    ddof = 1) of the 2048-d Inception pool3 features. tr (S_1 S_2)^{1/2} = || A^T B ||_* (nuclear norm) for
    any factors S_1 = A A^T, S_2 = B B^T: the eigenvalues of S_1 S_2 are the squared singular values of
    A^T B, so the trace is real by construction (no imaginary parts to discard) and, with the centred
    feature matrices as factors, costs an (n_1 x n_2) SVD when there are fewer images than dimensions.
    ``frechet_distance(..., method="sqrtm")`` is the scipy.linalg.sqrtm route (pytorch-fid's), kept for
    cross-checks: it drops imaginary parts below 1e-3 and raises above.
    rFID = FID between the reconstructions and their own targets.
KID (Binkowski et al., ICLR 2018)
    Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 on the same features,
    averaged over ``num_subsets`` = 100 random subsets of ``subset_size`` = min(1000, n_1, n_2) images
    drawn without replacement from each set; mean and std over the subsets are reported. With fewer than
    1000 images every subset is the whole set (reordered), so the std is 0.

Few images: FID and KID are *set* metrics. With n images below the feature dimension 2048 the covariance
has rank n - 1, FID is biased upwards and not comparable across different n; KID is unbiased but noisy.
Always report n beside them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.nn.feature_nets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AlexNetFeatures,
    InceptionFID,
    LPIPSLinear,
    VGG16Features,
    load_alexnet_features,
    load_inception_fid,
    load_lpips_linear,
    load_vgg16_features,
)

__all__ = [
    "FEATURE_WEIGHT_FILES",
    "LPIPS",
    "PerceptualMetrics",
    "fid_from_features",
    "frechet_distance",
    "gaussian_fit",
    "kid_from_features",
    "magnitude_to_rgb",
    "mmd2_unbiased",
    "polynomial_kernel",
    "summarise_perceptual",
]

# Expected file names in a --feature-weights folder.
FEATURE_WEIGHT_FILES = {
    "alexnet": "alexnet.safetensors",
    "lpips_alex": "lpips_alex.safetensors",
    "vgg16": "vgg16.safetensors",
    "lpips_vgg": "lpips_vgg.safetensors",
    "inception_fid": "inception_fid.safetensors",
}
LPIPS_FILES = {"alex": ("alexnet", "lpips_alex"), "vgg": ("vgg16", "lpips_vgg")}


# ---------------------------------------------------------------------------------------------------------
# Image convention
# ---------------------------------------------------------------------------------------------------------
def magnitude_to_rgb(images: torch.Tensor | np.ndarray, data_range: float) -> torch.Tensor:
    """Magnitude slices ``(H, W)`` or ``(S, H, W)`` -> float32 RGB ``(S, 3, H, W)`` = ``|x| / data_range``.

    Complex input is reduced to its magnitude. The result is in [0, 1] where the image is within the
    target's range (no clipping).
    """
    x = torch.as_tensor(images)
    if x.is_complex():
        x = x.abs()
    x = x.float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ShapeError(f"expected magnitude slices (H, W) or (S, H, W), got {tuple(x.shape)}")
    if not (math.isfinite(data_range) and data_range > 0):
        raise DataError(f"data range must be a positive finite number, got {data_range}")
    return (x / float(data_range))[:, None].expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------------------
class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al. 2018) over a staged backbone.

    ``forward(x, y)`` takes RGB ``(B, 3, H, W)`` in [-1, 1] and returns the distance per image ``(B,)``.
    ``backbone`` is a ``VGG16Features`` or ``AlexNetFeatures`` (ImageNet-normalised input), ``linear`` the
    matching ``LPIPSLinear``.
    """

    eps = 1e-10  # added to the channel norm, as the reference implementation does

    def __init__(self, backbone: VGG16Features | AlexNetFeatures, linear: LPIPSLinear):
        super().__init__()
        if tuple(backbone.channels) != tuple(linear.channels):
            raise ConfigError(f"LPIPS linear layers for channels {linear.channels} do not fit the backbone's "
                              f"{backbone.channels}")
        self.backbone = backbone
        self.linear = linear
        # Scaling layer: [-1, 1] -> ImageNet-normalised (shift = 2 mean - 1, scale = 2 std).
        self.register_buffer("shift", torch.tensor([2 * m - 1 for m in IMAGENET_MEAN]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([2 * s for s in IMAGENET_STD]).view(1, 3, 1, 1),
                             persistent=False)

    def _unit(self, f: torch.Tensor) -> torch.Tensor:
        return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps)  # unit-normalise channels

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ShapeError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        fx = self.backbone((x - self.shift) / self.scale)
        fy = self.backbone((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            diff = (self._unit(a) - self._unit(b)).pow(2)  # (B, C_k, h, w)
            weighted = (diff * self.linear.weight(k).view(1, -1, 1, 1)).sum(dim=1)  # 1x1 linear layer, eq. 1
            total = total + weighted.mean(dim=(-2, -1))  # spatial mean, summed over stages
        return total


# ---------------------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------------------
def _as_features(f, name: str) -> np.ndarray:
    a = np.asarray(f, dtype=np.float64)
    if a.ndim != 2:
        raise ShapeError(f"{name}: expected features (N, D), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: non-finite feature values")
    return a


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (ddof = 1) of features ``(N, D)``, float64."""
    f = _as_features(features, "features")
    if f.shape[0] < 2:
        raise DataError(f"a covariance needs at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """A factor A with A A^T = sigma (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eigh") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr (sigma1 sigma2)^{1/2}``.

    ``method="eigh"``: tr (S1 S2)^{1/2} = nuclear norm of A^T B with A A^T = S1, B B^T = S2 (eigen
    factors); real and exact for any PSD pair. ``method="sqrtm"``: scipy.linalg.sqrtm of S1 S2 (adds 1e-6 I
    to both if the product is singular enough to give non-finite values; imaginary parts below 1e-3 are
    dropped, larger ones raise).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ShapeError(f"mismatched Gaussian parameters: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    if method == "eigh":
        cross = float(np.linalg.svd(_psd_factor(s1).T @ _psd_factor(s2), compute_uv=False).sum())
    elif method == "sqrtm":
        from scipy import linalg

        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError(f"sqrtm: imaginary component {np.max(np.abs(covmean.imag)):.3g} too large")
            covmean = covmean.real
        cross = float(np.trace(covmean))
    else:
        raise ConfigError(f"unknown Fréchet distance method {method!r} (use 'eigh' or 'sqrtm')")
    return mean_term + float(np.trace(s1) + np.trace(s2)) - 2.0 * cross


def fid_from_features(features1, features2) -> float:
    """FID between two feature sets ``(N1, D)``, ``(N2, D)`` (Gaussian fits with ddof = 1).

    Uses the centred, scaled feature matrices as the covariance factors when they are smaller than D (an
    N1 x N2 SVD), otherwise eigen factors of the D x D covariances; both give tr (S1 S2)^{1/2} exactly.
    """
    f1, f2 = _as_features(features1, "features1"), _as_features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ShapeError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    if min(n1, n2) < 2:
        raise DataError(f"FID needs at least 2 images per set, got {n1} and {n2}")
    if max(n1, n2) > d:
        mu1, s1 = gaussian_fit(f1)
        mu2, s2 = gaussian_fit(f2)
        return frechet_distance(mu1, s1, mu2, s2)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a = (f1 - mu1).T / math.sqrt(n1 - 1)  # (D, N1), A A^T = S1
    b = (f2 - mu2).T / math.sqrt(n2 - 1)
    cross = float(np.linalg.svd(a.T @ b, compute_uv=False).sum())
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(a * a) + np.sum(b * b) - 2.0 * cross)


# ---------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------
def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for rows of x ``(N, D)`` and y ``(M, D)`` -> ``(N, M)``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (the U-statistic of Gretton et al. 2012, as in Binkowski et al. 2018) with the cubic
    polynomial kernel: mean of k(x_i, x_j) over i != j + the same for y - 2 mean of k(x_i, y_j) over all pairs."""
    m, n = x.shape[0], y.shape[0]
    if min(m, n) < 2:
        raise DataError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


_KID_PRECOMPUTE_MAX = 4096  # up to this many images per set the full kernel matrices (<= 128 MB each) are kept


def kid_from_features(features1, features2, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
                      ) -> tuple[float, float, int]:
    """KID: (mean, std, subset size used) of the unbiased MMD^2 over random subsets (without replacement)."""
    f1, f2 = _as_features(features1, "features1"), _as_features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ShapeError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise DataError(f"KID needs at least 2 images per set, got {f1.shape[0]} and {f2.shape[0]}")
    rng = np.random.default_rng(seed)
    n1, n2 = f1.shape[0], f2.shape[0]
    subsets = [(rng.choice(n1, m, replace=False), rng.choice(n2, m, replace=False)) for _ in range(num_subsets)]
    if max(n1, n2) <= _KID_PRECOMPUTE_MAX:  # kernels of all pairs once; subsets index into them
        kxx, kyy, kxy = polynomial_kernel(f1, f1), polynomial_kernel(f2, f2), polynomial_kernel(f1, f2)
        vals = [_mmd2_from_kernels(kxx[np.ix_(i, i)], kyy[np.ix_(j, j)], kxy[np.ix_(i, j)]) for i, j in subsets]
    else:
        vals = [mmd2_unbiased(f1[i], f2[j]) for i, j in subsets]
    vals = np.asarray(vals)
    return float(vals.mean()), float(vals.std()), m


# ---------------------------------------------------------------------------------------------------------
# The benchmark-facing object
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PerceptualMetrics:
    """Loaded perceptual networks and which metrics they make available.

    Build with :meth:`from_folder`. ``available`` lists "lpips", "fid" (rFID) and "kid" where possible;
    ``skipped`` maps every other one to the reason. ``batch_size`` bounds the slices per network call.
    """

    lpips_model: LPIPS | None = None
    lpips_net: str | None = None
    inception: InceptionFID | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    folder: str | None = None
    files: dict[str, list[str]] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 8
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    _target_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _set_cache: dict[tuple, dict] = field(default_factory=dict, repr=False)

    @property
    def available(self) -> list[str]:
        out = ["lpips"] if self.lpips_model is not None else []
        return out + (["fid", "kid"] if self.inception is not None else [])

    @classmethod
    def from_folder(cls, folder: str | Path | None, device: str = "cpu", lpips_net: str = "auto",
                    **kw: Any) -> PerceptualMetrics:
        """Load what ``folder`` holds (file names in ``FEATURE_WEIGHT_FILES``); a missing folder or file skips
        the metrics that need it, with the reason. A file that is present but wrong raises DataError."""
        if lpips_net not in ("auto", "alex", "vgg"):
            raise ConfigError(f"lpips_net must be 'auto', 'alex' or 'vgg', got {lpips_net!r}")
        pm = cls(device=str(device), folder=None if folder is None else str(folder), **kw)
        if folder is None:
            reason = "no --feature-weights folder given (they need local network weights; see docs/metrics.md)"
            pm.skipped = {"lpips": reason, "fid": reason, "kid": reason}
            return pm
        folder = Path(folder)
        if not folder.is_dir():
            reason = f"--feature-weights folder {folder} not found"
            pm.skipped = {"lpips": reason, "fid": reason, "kid": reason}
            return pm
        nets = ("alex", "vgg") if lpips_net == "auto" else (lpips_net,)
        for net in nets:
            backbone_key, lin_key = LPIPS_FILES[net]
            paths = [folder / FEATURE_WEIGHT_FILES[backbone_key], folder / FEATURE_WEIGHT_FILES[lin_key]]
            if all(p.is_file() for p in paths):
                loader = load_alexnet_features if net == "alex" else load_vgg16_features
                pm.lpips_model = LPIPS(loader(paths[0]), load_lpips_linear(paths[1], net)).to(device).eval()
                pm.lpips_net = net
                pm.files["lpips"] = [p.name for p in paths]
                break
        if pm.lpips_model is None:
            wanted = " or ".join(" + ".join(FEATURE_WEIGHT_FILES[k] for k in LPIPS_FILES[n]) for n in nets)
            pm.skipped["lpips"] = f"no {wanted} in {folder}"
        inc = folder / FEATURE_WEIGHT_FILES["inception_fid"]
        if inc.is_file():
            pm.inception = load_inception_fid(inc).to(device)
            pm.files["fid"] = pm.files["kid"] = [inc.name]
        else:
            pm.skipped["fid"] = pm.skipped["kid"] = f"no {inc.name} in {folder}"
        return pm

    # -- reporting ----------------------------------------------------------------------------------------
    _NAMES = {"lpips": "LPIPS", "fid": "rFID", "kid": "KID"}

    def _skipped_parts(self) -> list[str]:
        """"METRICS: reason" per distinct reason, e.g. "rFID, KID: no inception_fid.safetensors in DIR"."""
        by_reason: dict[str, list[str]] = {}
        for m, why in self.skipped.items():
            by_reason.setdefault(why, []).append(self._NAMES[m])
        return [f"{', '.join(ms)}: {why}" for why, ms in by_reason.items()]

    def describe(self) -> str:
        """One log line: what is computed and what is skipped, with the reason."""
        parts = []
        if self.available:
            got = ", ".join(self._NAMES[m] + (f" ({self.lpips_net})" if m == "lpips" else "") for m in self.available)
            parts.append(f"perceptual metrics: {got} from {self.folder}")
        parts += [f"perceptual metrics skipped: {p}" for p in self._skipped_parts()]
        return "; ".join(parts)

    def info(self) -> dict:
        """The ``perceptual`` block of results.json."""
        skipped = self.skipped_reason()
        return {"available": self.available, "skipped": skipped, "skipped_metrics": dict(self.skipped),
                "lpips_net": self.lpips_net, "files": self.files,
                "image_convention": "magnitude / max of the target volume, replicated to RGB; LPIPS input "
                                    "2x-1, Inception input [0, 1] resized to 299x299; not clipped",
                "kid": {"num_subsets": self.kid_subsets, "max_subset_size": self.kid_subset_size,
                        "kernel": "(x.y/d + 1)^3", "seed": self.seed}}

    def skipped_reason(self) -> str | None:
        """Which metrics are skipped and why, in one line; None when all are computed."""
        return "; ".join(self._skipped_parts()) or None

    # -- per volume ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def lpips(self, target, pred, data_range: float) -> list[float]:
        """LPIPS per slice between magnitude ``target`` and ``pred`` ``(S, H, W)``, both scaled by ``data_range``."""
        if self.lpips_model is None:
            raise ConfigError("LPIPS is not available: " + self.skipped.get("lpips", ""))
        t, p = magnitude_to_rgb(target, data_range), magnitude_to_rgb(pred, data_range)
        if t.shape != p.shape:
            raise ShapeError(f"target {tuple(t.shape)} and prediction {tuple(p.shape)} differ in shape")
        out = []
        for i in range(0, t.shape[0], self.batch_size):
            a = (2 * t[i:i + self.batch_size] - 1).to(self.device)
            b = (2 * p[i:i + self.batch_size] - 1).to(self.device)
            out += self.lpips_model(b, a).double().cpu().tolist()
        return out

    @torch.no_grad()
    def inception_features(self, images, data_range: float) -> np.ndarray:
        """Inception pool3 features ``(S, 2048)`` float64 of magnitude slices ``(S, H, W)``."""
        if self.inception is None:
            raise ConfigError("FID/KID are not available: " + self.skipped.get("fid", ""))
        x = magnitude_to_rgb(images, data_range)
        feats = [self.inception(x[i:i + self.batch_size].to(self.device)).double().cpu()
                 for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(feats).numpy()

    def _target_features(self, target: torch.Tensor, data_range: float) -> np.ndarray:
        """Per-slice features of targets, cached by content (the same targets recur for every method)."""
        out = []
        for sl in torch.as_tensor(target).float().cpu():
            key = hashlib.sha1(sl.numpy().tobytes() + np.float64(data_range).tobytes()).hexdigest()
            if key not in self._target_cache:
                self._target_cache[key] = self.inception_features(sl[None], data_range)[0]
            out.append(self._target_cache[key])
        return np.stack(out)

    def score_volume(self, target, pred, data_range: float) -> dict:
        """``{"lpips": per-slice list or None, "features": {"pred": (S, 2048), "target": (S, 2048)} or None}``."""
        out: dict[str, Any] = {"lpips": None, "features": None}
        if self.lpips_model is not None:
            out["lpips"] = self.lpips(target, pred, data_range)
        if self.inception is not None:
            out["features"] = {"pred": self.inception_features(pred, data_range),
                               "target": self._target_features(target, data_range)}
        return out

    # -- per set ------------------------------------------------------------------------------------------
    def set_metrics(self, pred_features: np.ndarray, target_features: np.ndarray) -> dict:
        """rFID and KID between reconstruction and target features of one method x mask x accel."""
        n = int(pred_features.shape[0])
        if n < 2:
            return {"fid": None, "kid_mean": None, "kid_std": None, "kid_subset_size": None, "fid_n": n}
        mean, std, m = kid_from_features(pred_features, target_features, self.kid_subsets, self.kid_subset_size,
                                         self.seed)
        return {"fid": fid_from_features(pred_features, target_features), "kid_mean": mean, "kid_std": std,
                "kid_subset_size": m, "fid_n": n}


def summarise_perceptual(rows: list[dict], volumes: Iterable[Any], metrics: PerceptualMetrics | None) -> list[dict]:
    """Add ``lpips_mean``/``lpips_std`` (over slices), ``fid`` (rFID), ``kid_mean``, ``kid_std``,
    ``kid_subset_size`` and ``fid_n`` (images per set) to summary rows, in place; groups as in
    ``mrrecon.core.runner.summarise`` (data kind x method x mask x accel). ``volumes`` are VolumeResults."""
    if metrics is None or not metrics.available:
        return rows
    groups: dict[tuple, list[Any]] = {}
    for v in volumes:
        if v.error is None:
            groups.setdefault((v.data, v.method, v.mask, v.accel), []).append(v)
    for row in rows:
        key = (row["data"], row["method"], row["mask"], row["accel"])
        vols = groups.get(key, [])
        if "lpips" in metrics.available:
            vals = np.array([s.lpips for v in vols for s in v.slices if s.lpips is not None], dtype=float)
            row["lpips_mean"] = float(vals.mean()) if vals.size else None
            row["lpips_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        if "fid" in metrics.available:
            with_feats = [v for v in vols if getattr(v, "features", None) is not None]
            cache_key = (key, tuple((v.file, v.n_slices) for v in with_feats))
            if cache_key not in metrics._set_cache:
                if with_feats:
                    pred = np.concatenate([v.features["pred"] for v in with_feats])
                    target = np.concatenate([v.features["target"] for v in with_feats])
                    metrics._set_cache[cache_key] = metrics.set_metrics(pred, target)
                else:
                    metrics._set_cache[cache_key] = metrics.set_metrics(np.zeros((0, 1)), np.zeros((0, 1)))
            row.update(metrics._set_cache[cache_key])
    return rows
