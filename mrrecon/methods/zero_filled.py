"""Zero-filled reconstruction: A^H y without coil maps (magnitude for single-coil, RSS for multi-coil)."""

from __future__ import annotations

import torch

from mrrecon.core.reconstructor import MULTI_COIL, SINGLE_COIL, KSpaceReconstructor, MethodInfo, register
from mrrecon.data.sample import Sample
from mrrecon.physics.coils import coil_combine, rss
from mrrecon.physics.fft import ifft2c


class ZeroFilled(KSpaceReconstructor):
    name = "zero-filled"

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def reconstruct_kspace(self, sample: Sample) -> torch.Tensor:
        """The measured k-space itself (zeros where not sampled): the image is its RSS."""
        return sample.kspace.to(self.device)

    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        """Single-coil: the complex zero-filled image; multi-coil: coil-combined with the sample's maps if
        present, else an RSS magnitude (no phase available)."""
        k = sample.kspace.to(self.device)
        coil_images = ifft2c(k)
        if sample.coil_maps is not None:
            return coil_combine(coil_images, sample.coil_maps.to(self.device))
        if k.shape[-3] == 1:
            return coil_images[..., 0, :, :]
        return rss(coil_images).to(k.dtype)

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        coil_images = ifft2c(sample.kspace.to(self.device))
        return rss(coil_images).float()


register(MethodInfo(
    name="zero-filled",
    factory=ZeroFilled,
    description="Inverse FFT of the zero-filled k-space; magnitude (single-coil) or RSS (multi-coil).",
    hard_dc={SINGLE_COIL: "kspace", MULTI_COIL: "kspace"},  # the measured samples, nothing else
))
