"""Training losses on magnitude images ``(B, H, W)`` (or ``(B, 1, H, W)``).

* ``l1``: mean absolute error (the fastMRI U-Net baseline, Zbontar et al. 2018).
* ``mse``: mean squared error.
* ``ssim``: 1 - SSIM (E2E-VarNet, Sriram et al. 2020). SSIM is the fastMRI / scikit-image variant that
  ``mrrecon.metrics.ssim`` computes (7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03), here
  differentiable and in the input precision; the data range is the max of each target slice unless given.
* ``ssim_l1``: 0.84 (1 - SSIM) + 0.16 L1, the mix of Zhao et al., "Loss Functions for Image Restoration
  with Neural Networks", IEEE TCI 3(1), 2017 (they mix MS-SSIM; we use single-scale SSIM).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mrrecon.errors import ConfigError

__all__ = ["LOSSES", "make_loss", "ssim_loss"]

SSIM_L1_ALPHA = 0.84  # Zhao et al. 2017, Sec. III


def _as_b1hw(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 2:
        return x[None, None]
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    raise ConfigError(f"losses take (B, H, W) or (B, 1, H, W) images; got {tuple(x.shape)}")


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float | None = None,
              win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean over the batch of 1 - SSIM(target_b, pred_b) (Wang et al. 2004, eq. 13)."""
    x, y = _as_b1hw(target), _as_b1hw(pred)
    if data_range is None:
        r = x.detach().amax(dim=(1, 2, 3))
    else:
        r = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).flatten().expand(x.shape[0])
    r = r.clamp_min(torch.finfo(x.dtype).tiny).view(-1, 1, 1, 1)
    moments = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), win_size, stride=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = moments.unbind(dim=1)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    var_x = cov_norm * (m_xx - mu_x * mu_x)
    var_y = cov_norm * (m_yy - mu_y * mu_y)
    cov_xy = cov_norm * (m_xy - mu_x * mu_y)
    c1, c2 = (k1 * r[:, 0]) ** 2, (k2 * r[:, 0]) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return 1 - ssim_map.mean()


def _l1(pred, target):
    return F.l1_loss(pred, target)


def _mse(pred, target):
    return F.mse_loss(pred, target)


def _ssim_l1(pred, target):
    return SSIM_L1_ALPHA * ssim_loss(pred, target) + (1 - SSIM_L1_ALPHA) * F.l1_loss(pred, target)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": _l1, "mse": _mse, "ssim": ssim_loss, "ssim_l1": _ssim_l1,
}


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function ``loss(pred, target) -> scalar`` registered as ``name``."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
