"""``unet``: the fastMRI image-domain U-Net baseline (Zbontar et al., arXiv:1811.08839, 2018, Sec. 6.2).

Magnitude in, magnitude out: the input is the zero-filled image (|ifft2c(y)| single-coil, the RSS over
coils multi-coil), instance-normalised (minus its mean, divided by its standard deviation, clamped to
[-6, 6] as in the fastMRI reference transforms), passed through the U-Net (``mrrecon.nn.Unet``), and the
normalisation is undone, so the network predicts the fully sampled magnitude (the RSS / ESC target) in
the input's units. The model is therefore equivariant to the input's intensity scale.

``dc: hard`` (not in the paper; off by default) makes the output consistent with the measured k-space: the
magnitude takes the smooth phase of the low-resolution image, multi-coil data go through Walsh maps of the same
k-space centre, the measured samples replace the estimate's (per coil), and the magnitude of the recombined image
is returned (``mrrecon.physics.lowres.magnitude_dc``; the same path as SSDM-MRI's magnitude instance). The
network still predicts everything; only the measured samples are put back. ``unet:dc=hard`` switches it on for
any checkpoint at reconstruction time (docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from mrrecon.core.pretrained import LearnedReconstructor, PretrainedModel, from_pretrained
from mrrecon.core.reconstructor import MethodInfo, register
from mrrecon.data.sample import Batch
from mrrecon.errors import ConfigError
from mrrecon.nn.unet import Unet
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c
from mrrecon.physics.lowres import magnitude_dc

DEFAULT_WEIGHTS = "unet-small"


@dataclass
class UnetConfig:
    """fastMRI defaults (``fastmri/pl_modules/unet_module.py``): 32 channels, 4 poolings, no dropout."""

    chans: int = 32
    num_pool_layers: int = 4
    drop_prob: float = 0.0
    clamp: float = 6.0  # |normalised input| limit of the fastMRI transforms; 0 disables
    dc: str = "none"  # "none": the paper's output; "hard": the measured samples put back (module docstring)
    dc_window: int = 24  # k-space centre (samples) for the phase and, multi-coil, the Walsh maps of the DC


DC_MODES = ("none", "hard")


def _check_dc(value: str) -> str:
    if value not in DC_MODES:
        raise ConfigError(f"unet dc must be one of {list(DC_MODES)}; got {value!r}")
    return value


def zero_filled_magnitude(kspace: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) undersampled k-space -> (B, H, W) zero-filled magnitude (RSS over coils; |x| if C = 1)."""
    return rss(ifft2c(kspace), dim=-3)


class UnetModel(PretrainedModel):
    """Image-domain U-Net on instance-normalised zero-filled magnitudes."""

    model_type = "unet"
    config_class = UnetConfig

    def __init__(self, config: UnetConfig | dict | None = None):
        super().__init__(config)
        c = self.config
        self.unet = Unet(in_chans=1, out_chans=1, chans=c.chans, num_pool_layers=c.num_pool_layers,
                         drop_prob=c.drop_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, H, W) magnitude -> (B, H, W) magnitude, same units."""
        mean = image.mean(dim=(-2, -1), keepdim=True)
        std = image.std(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(image.dtype).eps)
        x = (image - mean) / std
        if self.config.clamp > 0:
            x = x.clamp(-self.config.clamp, self.config.clamp)
        out = self.unet(x.unsqueeze(1)).squeeze(1).float()
        return out * std + mean

    def predict(self, batch: Batch) -> torch.Tensor:
        out = self(zero_filled_magnitude(batch.kspace))
        if _check_dc(self.config.dc) == "hard":
            out = magnitude_dc(out, batch.kspace, batch.mask, size=self.config.dc_window).abs()
        return out


def _build(checkpoint: str | None = None, device: str | torch.device = "cpu",
           dc: Annotated[str | None, "none (paper) or hard: the measured k-space samples put back into the "
                                     "output (default: the checkpoint's)"] = None) -> LearnedReconstructor:
    model = from_pretrained(checkpoint or DEFAULT_WEIGHTS, device=device, expected_type="unet")
    if dc is not None:
        model.config.dc = _check_dc(dc)
    return LearnedReconstructor(model, "unet", device, nfe=1)


register(MethodInfo(
    name="unet",
    factory=_build,
    description="fastMRI image-domain U-Net: zero-filled magnitude in, magnitude out (instance-normalised).",
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    nfe=1,
    paper="Zbontar et al., fastMRI: An Open Dataset and Benchmarks for Accelerated MRI, arXiv:1811.08839 (2018)",
))
