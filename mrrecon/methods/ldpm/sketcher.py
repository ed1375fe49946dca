"""Sketcher module (SkM, LDPM Sec. II.A): a SwinIR repair model R followed by data consistency (eq. 2-3).

c = phi_1(x_u, M) = DC[R(x_u), k_u, M] = F^-1{F[R(x_u)](I - M) + k_u M}

R maps the zero-filled magnitude x_u (B, H, W), in the sample's normalised units (peak of x_u = 1 at
inference), to an alias-free magnitude of the same size. It is trained alone (L1 to the fully sampled
magnitude, random 96x96 crops with flips, lr 1e-4, batch 8: Sec. III.A.2); DC is applied afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mrrecon.core.pretrained import PretrainedModel
from mrrecon.data.sample import Batch
from mrrecon.methods.ldpm.physics import Measurement
from mrrecon.nn.swin import SwinIR
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c

__all__ = ["SketcherConfig", "SketcherModel"]


@dataclass
class SketcherConfig:
    """SwinIR size. The paper does not give R's size; SwinIR's own defaults for artefact removal are
    embed_dim 180, six RSTBs of depth 6, 6 heads, window 8 (``configs/ldpm-paper.yaml``)."""

    embed_dim: int = 180
    depths: list[int] = field(default_factory=lambda: [6, 6, 6, 6, 6, 6])
    heads: list[int] = field(default_factory=lambda: [6, 6, 6, 6, 6, 6])
    window: int = 8
    mlp_ratio: float = 2.0


class SketcherModel(PretrainedModel):
    """R (SwinIR) + DC. ``repair(x_u)`` is R alone; ``sketch(meas)`` is eq. 3."""

    model_type = "ldpm-sketcher"
    config_class = SketcherConfig

    def __init__(self, config: SketcherConfig | dict | None = None):
        super().__init__(config)
        c = self.config
        self.swinir = SwinIR(1, 1, embed_dim=c.embed_dim, depths=tuple(c.depths), heads=tuple(c.heads),
                             window=c.window, mlp_ratio=c.mlp_ratio)

    def after_warm_start(self, copied: set[str]) -> None:
        """Grown from a shallower SwinIR (``model.init_from``): each RSTB with no copied tensor gets a zero output
        convolution, so it is the identity (x + conv(...) = x) and the grown R starts as the one it grew from."""
        for i, rstb in enumerate(self.swinir.layers):
            if not any(name.startswith(f"swinir.layers.{i}.") for name in copied):
                torch.nn.init.zeros_(rstb.conv.weight)
                torch.nn.init.zeros_(rstb.conv.bias)

    def repair(self, x_u: torch.Tensor) -> torch.Tensor:
        """R(x_u): (B, H, W) -> (B, H, W)."""
        return self.swinir(x_u.unsqueeze(1).float()).squeeze(1)

    def sketch(self, meas: Measurement) -> torch.Tensor:
        """c = DC[R(x_u), k_u, M] (eq. 3): (B, H, W) magnitude."""
        return meas.dc(self.repair(meas.zero_filled()))

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.sketch(Measurement.from_kspace(batch.kspace, batch.mask))

    def training_loss(self, batch: Batch, loss_fn=None) -> dict[str, torch.Tensor]:
        """L1 between R(x_u) and the fully sampled magnitude (the DC step has no parameters)."""
        x_u = rss(ifft2c(batch.kspace), dim=-3).float()
        pred = self.repair(x_u).float()  # the loss in float32 under mixed precision
        return {"loss": (pred - batch.target.abs().float()).abs().mean()}
