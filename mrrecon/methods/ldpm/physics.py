"""The measurement model LDPM works with: magnitude images, measured k-space ``k_u`` and mask ``M``.

The paper (Sec. III.A.1) reconstructs coil-combined magnitude images: fastMRI scans are reduced to RSS
magnitudes and undersampled as single-coil k-space ``k_u = M F x``. Then the DC operation (eq. 3, eq. 9) is
``DC(x) = F^-1{F(x)(1 - M) + k_u M}`` and the guidance loss (eq. 10) is ``||(F(x) - k_u) M||_2^2``.

Single-coil samples use exactly that. Multi-coil samples (the simulator, the shared 4/8-channel brains) are
handled with the SENSE generalisation of the same two operations, ``F -> F S`` with sensitivities ``S`` that
carry the object's phase (coil images of the zero-padded auto-calibration lines divided by their RSS,
``sos_maps(..., phase_reference=None)``), so that ``S x`` of a *real, non-negative* magnitude image ``x``
approximates the coil images: ``DC(x) = |sum_c conj(S_c) F^-1{F(S_c x)(1 - M) + k_c M}| / sum_c |S_c|^2``
(``mrrecon.physics.consistency.dc_image``) and ``delta(x) = sum_c ||(F(S_c x) - k_c) M||^2``. The DC output
is complex; its magnitude is the image the next stage sees (the paper's magnitude convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrrecon.classical.kspace_patches import find_acs_region
from mrrecon.errors import ConfigError, ShapeError
from mrrecon.physics.coils import rss, sos_maps
from mrrecon.physics.consistency import dc_image
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.operators import real_mask

__all__ = ["Measurement", "acs_lowpass"]


def acs_lowpass(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) k-space -> the same k-space kept only inside the fully sampled centre block (per sample).

    The block is the classical suite's calibration region (``find_acs_region``: the largest fully sampled
    rectangle around the centre); without one (centre not sampled) only the centre sample is kept."""
    out = torch.zeros_like(kspace)
    h, w = kspace.shape[-2:]
    for b in range(kspace.shape[0]):
        try:
            rows, cols = find_acs_region(mask[b if mask.shape[0] > 1 else 0], (h, w))
        except ConfigError:
            rows, cols = slice(h // 2, h // 2 + 1), slice(w // 2, w // 2 + 1)
        out[b, :, rows, cols] = kspace[b, :, rows, cols]
    return out


@dataclass
class Measurement:
    """Undersampled k-space of a batch. kspace (B, C, H, W) complex; mask broadcastable (B, 1, 1|H, W);
    maps (B, C, H, W) complex phase-carrying sensitivities (None for single-coil)."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None = None

    @classmethod
    def from_kspace(cls, kspace: torch.Tensor, mask: torch.Tensor) -> Measurement:
        if kspace.ndim != 4 or not torch.is_complex(kspace):
            raise ShapeError(f"LDPM expects complex k-space (B, C, H, W); got {tuple(kspace.shape)} {kspace.dtype}")
        mask = mask.to(kspace.device)
        if mask.ndim == 3:
            mask = mask.unsqueeze(0)
        maps = None
        if kspace.shape[1] > 1:
            maps = sos_maps(ifft2c(acs_lowpass(kspace, mask)), phase_reference=None)
        return cls(kspace, mask, maps)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.kspace.shape[-2]), int(self.kspace.shape[-1])

    def zero_filled(self) -> torch.Tensor:
        """x_u = |F^-1 k_u| (RSS over coils): (B, H, W) float."""
        return rss(ifft2c(self.kspace), dim=-3).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full (unmasked) k-space of a magnitude image: F(S x); (B, H, W) -> (B, C, H, W)."""
        xc = x.to(torch.complex64).unsqueeze(-3)
        return fft2c(xc if self.maps is None else self.maps * xc)

    def dc_complex(self, x: torch.Tensor) -> torch.Tensor:
        """F^-1{F(x)(1 - M) + k_u M} (SENSE-combined with maps): (B, H, W) -> (B, H, W) complex64."""
        return dc_image(x.to(torch.complex64), self.kspace, self.mask, self.maps)

    def dc(self, x: torch.Tensor) -> torch.Tensor:
        """DC[x, k_u, M] = |F^-1{F(x)(1 - M) + k_u M}| (eq. 3, eq. 9); (B, H, W) real -> (B, H, W) real."""
        return self.dc_complex(x).abs().to(x.dtype)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """delta = ||(F(x) - k_u) M||_2^2 per sample (eq. 10); differentiable in x; (B,) float."""
        r = (self.forward(x) - self.kspace) * real_mask(self.mask, self.kspace)
        return (r.real ** 2 + r.imag ** 2).sum(dim=(-3, -2, -1))
