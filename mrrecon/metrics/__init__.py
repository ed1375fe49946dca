"""Image-quality metrics (PSNR, SSIM, NMSE), fastMRI convention by default; see ``image``."""

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
