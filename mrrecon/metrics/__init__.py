"""Image-quality metrics (PSNR, SSIM, NMSE), fastMRI convention by default; see ``image``. Perceptual metrics
(LPIPS, rFID, KID) from local feature-network weights: see ``perceptual``."""

from mrrecon.metrics.image import (
    METRIC_CONVENTIONS,
    MetricAccumulator,
    MetricConvention,
    compute_metrics,
    data_range_for,
    nmse,
    psnr,
    ssim,
)
from mrrecon.metrics.perceptual import LPIPS, PerceptualMetrics, fid_from_features, kid_from_features

__all__ = [
    "LPIPS",
    "PerceptualMetrics",
    "fid_from_features",
    "kid_from_features",
    "METRIC_CONVENTIONS",
    "MetricAccumulator",
    "MetricConvention",
    "compute_metrics",
    "data_range_for",
    "nmse",
    "psnr",
    "ssim",
]
