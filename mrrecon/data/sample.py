"""The Sample: one slice of undersampled k-space with everything a reconstructor may use."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mrrecon.errors import DataError, ShapeError


@dataclass
class SampleMeta:
    """Where a sample came from and how it was made. ``scale`` undoes the normalisation:
    physical image = reconstructed image * scale."""

    file: str | None = None
    slice: int | None = None
    mask_type: str | None = None
    acceleration: float | None = None  # nominal
    effective_acceleration: float | None = None  # 1 / sampled fraction
    center_fraction: float | None = None
    seed: int | None = None
    scale: float = 1.0
    contrast: str | None = None
    reference_contrast: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """One slice.

    kspace:    (C, H, W) complex64, undersampled, zeros where not measured (C = 1 for single-coil).
    mask:      broadcastable to kspace: (1, H, W) or (1, 1, W); bool or float {0, 1}.
    target:    (H, W) fully sampled reference image (magnitude float or complex), optional.
    coil_maps: (C, H, W) complex sensitivities, optional.
    reference: (H, W) image of another contrast of the same slice (multi-contrast methods), optional.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor | None = None
    coil_maps: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    meta: SampleMeta = field(default_factory=SampleMeta)

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[-3])

    @property
    def is_multicoil(self) -> bool:
        return self.num_coils > 1

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.kspace.shape[-2]), int(self.kspace.shape[-1])

    def to(self, device: torch.device | str) -> Sample:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, kspace=move(self.kspace), mask=move(self.mask), target=move(self.target),
                       coil_maps=move(self.coil_maps), reference=move(self.reference))

    def validate(self) -> Sample:
        """Check types, shapes and finiteness; raise a DataError naming the file otherwise."""
        f = self.meta.file
        k = self.kspace
        if not isinstance(k, torch.Tensor) or not torch.is_complex(k):
            raise DataError("k-space must be a complex torch tensor", f)
        if k.ndim != 3:
            raise ShapeError(f"k-space must be (coils, H, W); got shape {tuple(k.shape)}", f)
        if not torch.isfinite(torch.view_as_real(k)).all():
            raise DataError("k-space contains NaN or inf values", f)
        m = self.mask
        fits = m.ndim == 3 and m.shape[0] == 1 and all(
            ms in (1, ks) for ms, ks in zip(m.shape[-2:], k.shape[-2:], strict=True))
        if not fits:
            raise ShapeError(f"mask shape {tuple(m.shape)} does not fit k-space shape {tuple(k.shape)} "
                             "(expected (1, H, W) or (1, 1, W))", f)
        for name in ("target", "reference"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape[-2:]) != self.shape:
                raise ShapeError(f"{name} shape {tuple(t.shape)} does not match k-space {self.shape}", f)
        if self.coil_maps is not None and tuple(self.coil_maps.shape) != tuple(k.shape):
            raise ShapeError(f"coil maps shape {tuple(self.coil_maps.shape)} does not match k-space "
                             f"{tuple(k.shape)}", f)
        return self
