"""Dilation-contraction masking (DCM), IMA eqs. 16-19.

The sampling mask M^(0) is dilated from stage to stage (eq. 16)

    M^(t+1) = 1  where  phi(M^(t)) >= delta  or  M^(0) = 1,     0 elsewhere,

with ``phi`` a fixed "diffusion" kernel (a 2-D correlation of the binary mask) and ``delta`` a confidence
threshold, until the known fraction n_1 / N exceeds ``ratio`` or the stage index passes the middle of the
unfolding (eq. 17). The contraction then replays the dilated masks in reverse order, so the last stage uses
M^(0) again ("inversely symmetric", Fig. 2). With T stages the peak is at most stage ``(T - 1) // 2``, which
makes the schedule symmetric and end on M^(0) (the paper's ``t > T/2`` would need T + 1 stages to return;
see docs/ima.md). Every sample of a batch gets its own schedule (its own mask and termination step).

Eqs. 18-19 (per stage, in the k-space of the C-channel features), two readings (``dcm_mode``, docs/ima.md):

* ``literal``: inside the current dilated mask the previous estimate is kept, outside it the new one is taken
  (eq. 18 as printed: a masked replacement, ``hard_dc``), so the dilated region is frozen for the stage;
* ``weighted`` (the default): eq. 18 as the proximal step of a penalty (rho/2) ||M^(t) (K - K^(t-1))||^2 on
  leaving the previous estimate inside the dilated mask, the form eq. 15 gives the measured samples:
  K-hat = K_temp + omega^(t) M^(t) (K^(t-1) - K_temp) with a learned hold weight omega^(t) = rho/(1 + rho) in
  (0, 1) per stage (``soft_dc``); omega -> 1 is the literal reading, omega -> 0 no DCM.

Then the originally measured samples are restored from the embedded measurement K^(0) = F Z (eq. 19, a masked
replacement in both readings). The masks come from ``mrrecon.physics.kspace.full_mask``.

Kernels (``dcm_kernel``): Fig. 4 of the paper shows three kernels graphically only; their numbers are not in
the text, so we use three kernels that differ the way the figure describes (shape and speed of diffusion):

1. 3 x 3 box (all ones): a pixel becomes known when >= delta of its 3 x 3 neighbourhood is known;
2. 5 x 5 box (all ones): the same rule over a wider window: faster, blockier growth;
3. 3 x 3 binomial [[1, 2, 1], [2, 4, 2], [1, 2, 1]]: edge neighbours count twice corners, so fronts grow
   along smooth (edge-connected) boundaries first: rounder shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mrrecon.errors import ConfigError
from mrrecon.physics.consistency import hard_dc, soft_dc

__all__ = ["DCM_KERNELS", "DCM_MODES", "apply_dcm", "dcm_kernel", "dcm_schedule", "dilate", "dilation_sequence"]

DCM_KERNELS = {
    1: [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    2: [[1.0] * 5 for _ in range(5)],
    3: [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]],
}
# readings of eq. 18 (docs/ima.md): the dilated region frozen (as printed) or weighted by a learned hold weight
DCM_MODES = ("literal", "weighted")


def dcm_kernel(kind: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The diffusion kernel phi of eq. 16 as a (1, 1, k, k) float32 tensor."""
    if kind not in DCM_KERNELS:
        raise ConfigError(f"dcm_kernel must be one of {sorted(DCM_KERNELS)}; got {kind!r}")
    return torch.tensor(DCM_KERNELS[kind], dtype=torch.float32, device=device)[None, None]


def dilate(mask: torch.Tensor, mask0: torch.Tensor, kernel: torch.Tensor, delta: float) -> torch.Tensor:
    """One dilation step, eq. 16: (B, 1, H, W) {0, 1} masks -> the next mask (zero padding outside k-space)."""
    k = kernel.to(mask.device)
    phi = F.conv2d(mask, k, padding=k.shape[-1] // 2)
    return ((phi >= delta - 1e-6) | (mask0 >= 1)).to(mask.dtype)


def dilation_sequence(mask0: torch.Tensor, stages: int, *, kernel: int = 1, delta: float = 3.0,
                      ratio: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks M^(0..P) of the dilation phase and each sample's number of dilation steps.

    mask0: (B, 1, H, W) {0, 1}. Returns ``(seq, steps)``: seq (P + 1, B, 1, H, W) where P = (stages - 1) // 2
    is the longest possible dilation, and steps (B,) long with each sample's dilation count k_b <= P; for
    j > k_b, ``seq[j, b] == seq[k_b, b]`` (dilation stopped, eq. 17: known fraction > ratio or stage limit).
    """
    phi = dcm_kernel(kernel, mask0.device)
    n = mask0[0].numel()
    peak = max((int(stages) - 1) // 2, 0)
    seq = [mask0]
    steps = torch.zeros(mask0.shape[0], dtype=torch.long, device=mask0.device)
    current = mask0
    for _ in range(peak):
        done = current.flatten(1).sum(1) / n > ratio  # eq. 17
        nxt = dilate(current, mask0, phi, delta)
        current = torch.where(done.view(-1, 1, 1, 1), current, nxt)
        steps = steps + (~done).long()
        seq.append(current)
    return torch.stack(seq), steps


def dcm_schedule(mask0: torch.Tensor, stages: int, *, kernel: int = 1, delta: float = 3.0,
                 ratio: float = 0.9, enabled: bool = True) -> list[torch.Tensor]:
    """The mask M^(t) of every stage t = 0..stages-1: dilation to each sample's peak k_b, then the
    symmetric contraction M^(k_b - 1), ..., M^(0), then M^(0) for any remaining stages.

    ``enabled=False`` (the ``ima-no-dcm`` ablation) gives M^(0) at every stage."""
    if not enabled:
        return [mask0] * int(stages)
    seq, steps = dilation_sequence(mask0, stages, kernel=kernel, delta=delta, ratio=ratio)
    batch = torch.arange(mask0.shape[0], device=mask0.device)
    masks = []
    for t in range(int(stages)):
        # dilation index t up to the peak k_b, then back down: 2 k_b - t, never below 0
        idx = torch.where(t <= steps, torch.full_like(steps, t), (2 * steps - t).clamp_min(0))
        masks.append(seq[idx, batch])
    return masks


def apply_dcm(k_temp: torch.Tensor, k_prev: torch.Tensor, k0: torch.Tensor, mask_t: torch.Tensor,
              mask0: torch.Tensor, hold: torch.Tensor | float | None = None) -> torch.Tensor:
    """Eqs. 18-19 in k-space: returns F X^(t+1).

    k_temp = F X_temp^(t) (the stage's new estimate), k_prev = F X^(t) (the previous one), k0 = F Z (the
    embedded measurement); masks (B, 1, H, W) {0, 1} broadcast over the feature channels. ``hold`` None: the
    literal eq. 18 (the previous estimate replaces the new one inside M^(t)); a weight omega in [0, 1]: the
    weighted reading, K-hat = K_temp + omega M^(t) (K_prev - K_temp).
    """
    if hold is None:
        k_hat = hard_dc(k_temp, k_prev, mask_t)  # eq. 18 (F X-hat^(t)): the previous estimate inside M^(t)
    else:
        k_hat = soft_dc(k_temp, k_prev, mask_t, hold)  # eq. 18 weighted: a step omega toward it inside M^(t)
    return hard_dc(k_hat, k0, mask0)  # eq. 19: the measured samples of K^(0) restored
