"""Run reconstructors over volumes of samples and score them (fastMRI convention, per volume).

The demo and the benchmark share this: every method sees the identical Sample; metrics are computed
per volume (PSNR/SSIM data range = max of the target volume) on magnitudes in physical units."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mrrecon.data.fastmri import center_crop, clamp_crop_size
from mrrecon.data.sample import Sample
from mrrecon.methods.base import Reconstructor
from mrrecon.metrics.image import compute_metrics


@dataclass
class VolumeResult:
    method: str
    file: str
    mask: str
    accel: float
    effective_accel: float
    n_slices: int
    psnr: float = float("nan")
    ssim: float = float("nan")
    nmse: float = float("nan")
    seconds_per_slice: float = float("nan")
    error: str | None = None
    images: list[np.ndarray] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("images")
        return d


def reconstruct_volume(method: Reconstructor, samples: Sequence[Sample]) -> tuple[list[torch.Tensor], float]:
    """Reconstruct every slice; returns the images (physical units) and seconds per slice."""
    images, elapsed = [], 0.0
    for s in samples:
        t0 = time.perf_counter()
        img = method.reconstruct(s)
        elapsed += time.perf_counter() - t0
        images.append(img.detach().abs().float().cpu() * s.meta.scale)
    return images, elapsed / max(len(samples), 1)


def score_volume(method_name: str, method: Reconstructor, samples: Sequence[Sample], keep_images: bool = False
                 ) -> VolumeResult:
    """Reconstruct and score one volume; a failing method is recorded, not raised."""
    m = samples[0].meta
    res = VolumeResult(method=method_name, file=m.file or "", mask=m.mask_type or "", accel=m.acceleration or 0.0,
                       effective_accel=m.effective_acceleration or 0.0, n_slices=len(samples))
    try:
        images, res.seconds_per_slice = reconstruct_volume(method, samples)
        target = torch.stack([s.target.abs().float().cpu() * s.meta.scale for s in samples])
        pred = torch.stack(images)
        # fastMRI convention: score inside the reconstruction size (e.g. 320x320 of 640x368 k-space).
        recon_size = m.extra.get("recon_size")
        if recon_size is not None:
            crop = clamp_crop_size(tuple(target.shape[-2:]), tuple(recon_size))
            target, pred = center_crop(target, crop), center_crop(pred, crop)
            images = list(pred)
        metrics = compute_metrics(target, pred)
        res.psnr, res.ssim, res.nmse = (float(metrics[k]) for k in ("psnr", "ssim", "nmse"))
        if keep_images:
            res.images = [p.numpy() for p in images]
    except Exception as exc:  # noqa: BLE001 -- recorded and reported, the run goes on
        res.error = f"{type(exc).__name__}: {exc}"
        res.images = []
        traceback.print_exc()
    return res


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof=1, as fastMRI reports); NaN with fewer than two values."""
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def summarise(results: Iterable[VolumeResult]) -> list[dict]:
    """Mean +- std per (method, mask, accel) over volumes that succeeded."""
    groups: dict[tuple, list[VolumeResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.mask, r.accel), []).append(r)
    rows = []
    for (method, mask, accel), rs in groups.items():
        ok = [r for r in rs if r.error is None]

        def col(key: str, ok=ok) -> np.ndarray:
            return np.array([getattr(r, key) for r in ok], dtype=float)

        rows.append({
            "method": method, "mask": mask, "accel": accel,
            "effective_accel": float(np.mean([r.effective_accel for r in rs])),
            "n": len(ok), "failed": len(rs) - len(ok),
            "psnr_mean": float(col("psnr").mean()) if ok else float("nan"),
            "psnr_std": _std(col("psnr")),
            "ssim_mean": float(col("ssim").mean()) if ok else float("nan"),
            "ssim_std": _std(col("ssim")),
            "nmse_mean": float(col("nmse").mean()) if ok else float("nan"),
            "seconds_mean": float(col("seconds_per_slice").mean()) if ok else float("nan"),
        })
    return rows
