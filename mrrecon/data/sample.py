"""The Sample (one slice of undersampled k-space with everything a reconstructor may use) and the Batch
(Samples stacked for a network)."""

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


@dataclass
class Batch:
    """Stacked Samples: kspace (B, C, H, W); mask (B, 1, 1, W) or (B, 1, H, W); target/reference (B, H, W);
    coil_maps (B, C, H, W); ``scale`` (B,) float32 from the metas (physical image = image * scale)."""

    kspace: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor | None = None
    coil_maps: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    meta: list[SampleMeta] = field(default_factory=list)

    @property
    def scale(self) -> torch.Tensor:
        return torch.tensor([m.scale for m in self.meta], dtype=torch.float32, device=self.kspace.device)

    def __len__(self) -> int:
        return int(self.kspace.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, kspace=move(self.kspace), mask=move(self.mask), target=move(self.target),
                       coil_maps=move(self.coil_maps), reference=move(self.reference))

    def sample(self, i: int) -> Sample:
        pick = lambda t: None if t is None else t[i]  # noqa: E731
        return Sample(kspace=self.kspace[i], mask=self.mask[i], target=pick(self.target),
                      coil_maps=pick(self.coil_maps), reference=pick(self.reference), meta=self.meta[i])


def _stack_optional(samples: list[Sample], name: str) -> torch.Tensor | None:
    values = [getattr(s, name) for s in samples]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [s.meta.file for s, v in zip(samples, values, strict=True) if v is None][:3]
        raise DataError(f"cannot batch: some samples have no {name} (e.g. {missing})")
    return torch.stack(values)


def collate_samples(samples: list[Sample]) -> Batch:
    """Stack Samples into a :class:`Batch` (use as ``DataLoader(..., collate_fn=collate_samples)``).

    All samples must share (C, H, W); masks of mixed forms are expanded to (1, H, W).
    """
    if not samples:
        raise DataError("cannot batch an empty list of samples")
    shapes = {tuple(s.kspace.shape) for s in samples}
    if len(shapes) > 1:
        raise ShapeError(f"cannot batch k-space of different shapes {sorted(shapes)}; use crop=(h, w) or "
                         "batch_size=1")
    masks = [s.mask for s in samples]
    if len({tuple(m.shape) for m in masks}) > 1:
        H, W = samples[0].shape
        masks = [m.expand(1, H, W) for m in masks]
    if len({m.dtype for m in masks}) > 1:
        masks = [m.to(torch.float32) for m in masks]
    return Batch(kspace=torch.stack([s.kspace for s in samples]), mask=torch.stack(masks),
                 target=_stack_optional(samples, "target"), coil_maps=_stack_optional(samples, "coil_maps"),
                 reference=_stack_optional(samples, "reference"), meta=[s.meta for s in samples])
