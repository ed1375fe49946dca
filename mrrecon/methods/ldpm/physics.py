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

Single-coil data that carry an object phase (complex images such as the shared mGRE brains, or a coil
image) are not a real magnitude's k-space: a hard DC that puts measured, phased samples beside the unmeasured
samples of a real estimate mixes two different objects. ``single_coil_phase="acs"`` treats them as the C = 1
case of the multi-coil path: one phase-carrying map ``S = exp(i angle(x_lr))`` from the calibration block, so that
``S x`` of the magnitude estimate carries the low-resolution phase (the phase constraint of partial-Fourier
reconstruction). ``"none"`` keeps the paper's real-image model ``k_u = M F x``. ``"auto"`` (the default) takes
the map for the samples whose calibration image is not one real image up to a constant phase (its phase spread
``1 - |sum x_lr^2| / sum |x_lr|^2`` above 0.05; a real magnitude's k-space gives at most 0.002, the shared mGRE
brains 0.75-0.86) and keeps the paper's model for the others, so magnitude data run exactly as before. The paper
is silent (its fastMRI protocol makes every sample a real magnitude); docs/ldpm.md has the measured choice.

Physics calls: the forward model is ``Measurement.op`` (``sense_or_single_coil``: ``SingleCoilCartesian`` or
``SenseOperator``), delta is ``data_fidelity(x, k_u, op)``, DC is ``dc_image``; the maps come from the k-space
inside the calibration block (``mrrecon.physics.kspace.acs_lowpass``, the largest fully sampled rectangle
around the centre; only the centre sample without one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.physics.coils import rss, sos_maps
from mrrecon.physics.consistency import data_fidelity, dc_image
from mrrecon.physics.fft import ifft2c
from mrrecon.physics.kspace import acs_lowpass, batch_mask
from mrrecon.physics.operators import LinearOperator, sense_or_single_coil

__all__ = ["PHASE_SPREAD_AUTO", "SINGLE_COIL_PHASE", "Measurement", "check_single_coil_phase", "phase_spread"]

SINGLE_COIL_PHASE = ("auto", "none", "acs")
PHASE_SPREAD_AUTO = 0.05  # single_coil_phase=auto: the phase spread above which a sample gets a phase map


def check_single_coil_phase(value: str) -> None:
    """A ConfigError unless ``value`` is one of SINGLE_COIL_PHASE (the reconstructor checks it before loading)."""
    if value not in SINGLE_COIL_PHASE:
        raise ConfigError(f"single_coil_phase must be one of {SINGLE_COIL_PHASE}; got {value!r}")


def phase_spread(images: torch.Tensor) -> torch.Tensor:
    """1 - |sum x^2| / sum |x|^2 per image of (B, ..., H, W) complex: 0 for a real image times any constant phase,
    up to 1 for a phase spread over all directions."""
    x = images.flatten(1)
    return 1 - (x * x).sum(dim=1).abs() / (x.abs() ** 2).sum(dim=1).clamp_min(torch.finfo(torch.float32).tiny)


@dataclass
class Measurement:
    """Undersampled k-space of a batch. kspace (B, C, H, W) complex; mask broadcastable (B, 1, 1|H, W);
    maps (B, C, H, W) complex phase-carrying sensitivities (None for single-coil)."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None = None

    @classmethod
    def from_kspace(cls, kspace: torch.Tensor, mask: torch.Tensor, single_coil_phase: str = "auto") -> Measurement:
        """``single_coil_phase``: ``none`` (single-coil k-space is a real image's, the paper's model), ``acs`` (one
        phase map from the calibration block, as the multi-coil maps) or ``auto`` (``acs`` for the samples that
        carry a phase); see the module docstring."""
        if kspace.ndim != 4 or not torch.is_complex(kspace):
            raise ShapeError(f"LDPM expects complex k-space (B, C, H, W); got {tuple(kspace.shape)} {kspace.dtype}")
        check_single_coil_phase(single_coil_phase)
        mask = batch_mask(mask, kspace.device)
        multi_coil = kspace.shape[1] > 1
        if not multi_coil and single_coil_phase == "none":
            return cls(kspace, mask, None)
        low = ifft2c(acs_lowpass(kspace, mask, rule="largest"))  # the calibration image(s)
        maps = None
        if multi_coil:
            maps = sos_maps(low, phase_reference=None)
        else:
            # phase spread >= 0 (up to rounding), so acs's threshold of -1 takes every sample
            phased = phase_spread(low) > (PHASE_SPREAD_AUTO if single_coil_phase == "auto" else -1.0)
            if bool(phased.any()):  # a map of ones is the paper's single-coil DC for the others
                # unit magnitude everywhere (a phase, not a sensitivity: x_lr / |x_lr| would vanish where the
                # calibration image does, and the combine's 1 / |S|^2 would amplify whatever the estimate has there)
                unit = torch.polar(torch.ones_like(low.real), low.angle())
                maps = torch.where(phased.view(-1, 1, 1, 1), unit, torch.ones_like(low))
        return cls(kspace, mask, maps)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.kspace.shape[-2]), int(self.kspace.shape[-1])

    def zero_filled(self) -> torch.Tensor:
        """x_u = |F^-1 k_u| (RSS over coils): (B, H, W) float."""
        return rss(ifft2c(self.kspace), dim=-3).float()

    @property
    def op(self) -> LinearOperator:
        """The forward model A = M F (single-coil) or M F S (SENSE with the phase-carrying maps)."""
        return sense_or_single_coil(self.mask, self.maps)

    def dc_complex(self, x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """F^-1{F(x)(1 - M) + k_u M} (SENSE-combined with maps): (B, H, W) -> (B, H, W) complex64. ``weight`` < 1:
        soft DC, measured samples moved that fraction toward k_u (``dc_image``)."""
        return dc_image(x.to(torch.complex64), self.kspace, self.mask, self.maps, weight=weight)

    def dc(self, x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """DC[x, k_u, M] = |F^-1{F(x)(1 - M) + k_u M}| (eq. 3, eq. 9); (B, H, W) real -> (B, H, W) real."""
        return self.dc_complex(x, weight).abs().to(x.dtype)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """delta = ||(F(x) - k_u) M||_2^2 = ||A x - k_u||^2 per sample (eq. 10; k_u is zero off the mask);
        differentiable in x; (B,) float."""
        return data_fidelity(x.to(torch.complex64), self.kspace, self.op)
