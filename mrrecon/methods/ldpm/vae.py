"""MR-VAE (LDPM Sec. II.B.1): Stable Diffusion's KL autoencoder adapted to MR magnitude images.

The network is diffusers' ``AutoencoderKL`` (the Stable Diffusion architecture: ResNet down/up blocks with a
self-attention middle block, a diagonal-Gaussian posterior with ``latent_channels`` = 4 and 8x down-sampling
for four blocks), built from a config (never from the hub). Images enter as ``2 x - 1`` (the SD range for
x in [0, 1]; our magnitudes are normalised so the zero-filled peak is 1) repeated to ``image_channels``
(3 for SD weights); decoded channels are averaged. Latents are multiplied by ``scaling_factor`` (SD: 0.18215;
small config: 1 / std of the training latents, measured after training).

Training loss (eq. 5 of the conference paper + the extended paper's adversarial term)::

    L_vae = mu ||x_vae - x||_1 + nu ||VGG(x_vae) - VGG(x)||_1 + omega KL(N(u, s^2) || N(0, 1)) + lambda_adv L_G

with mu = 1, nu = 0.01, omega = 1e-8 and a patch discriminator (pix2pix / taming "NLayer" design, hinge loss).
The L1 and perceptual terms are per-pixel means, the KL is summed over latent elements and averaged over the
batch (as in Stable Diffusion's autoencoder loss). The perceptual network is VGG16 from a local safetensors
file (:func:`mrrecon.nn.feature_nets.load_vgg16_features`) when given; otherwise the documented substitute
:class:`PyramidLoss` (L1 over a 5-level Laplacian pyramid: multi-scale structure, no learned weights). The
training log records which one was used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from mrrecon.core.pretrained import PretrainedModel
from mrrecon.errors import ConfigError, DataError

__all__ = ["MRVAE", "MRVAEConfig", "PatchDiscriminator", "PyramidLoss", "VGGPerceptualLoss", "make_perceptual",
           "vae_loss_terms"]


@dataclass
class MRVAEConfig:
    """AutoencoderKL hyper-parameters (defaults: Stable Diffusion 2.1-base's VAE)."""

    block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512])
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    image_channels: int = 3
    scaling_factor: float = 0.18215
    sample_size: int = 512

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


class MRVAE(PretrainedModel):
    """x (B, H, W) magnitude <-> z (B, latent_channels, H/d, W/d) scaled latent, d = ``downsample`` (SD: 4, 8;
    ldpm-small: 8, 4). H, W must be multiples of d."""

    model_type = "ldpm-vae"
    config_class = MRVAEConfig

    def __init__(self, config: MRVAEConfig | dict | None = None):
        super().__init__(config)
        from diffusers import AutoencoderKL

        c = self.config
        n = len(c.block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=c.image_channels, out_channels=c.image_channels,
            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
            latent_channels=c.latent_channels, norm_num_groups=c.norm_num_groups, sample_size=c.sample_size,
            scaling_factor=c.scaling_factor)

    # -- image <-> network range ----------------------------------------------------------------------
    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        return (2.0 * x.float() - 1.0).unsqueeze(1).expand(-1, self.config.image_channels, -1, -1)

    @staticmethod
    def from_network(y: torch.Tensor) -> torch.Tensor:
        return (y.mean(dim=1) + 1.0) / 2.0

    def _check(self, x: torch.Tensor) -> None:
        d = self.config.downsample
        if x.shape[-1] % d or x.shape[-2] % d:
            raise ConfigError(f"MR-VAE input {tuple(x.shape[-2:])} must be a multiple of {d} (pad first)")

    def posterior(self, x: torch.Tensor):
        self._check(x)
        return self.vae.encode(self.to_network(x)).latent_dist

    def encode(self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """E(x): the posterior mean (``sample=False``, used for conditions and DC) or a sample, scaled."""
        post = self.posterior(x)
        z = post.sample(generator=generator) if sample else post.mode()
        return z * self.config.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z): (B, latent_channels, h, w) scaled latent -> (B, d h, d w) magnitude."""
        return self.from_network(self.vae.decode(z / self.config.scaling_factor).sample)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # -- a Stable Diffusion VAE in diffusers format ----------------------------------------------------------
    @classmethod
    def from_diffusers(cls, folder: str | Path) -> MRVAE:
        """Load a diffusers-format AutoencoderKL folder (``config.json`` + ``diffusion_pytorch_model.safetensors``,
        e.g. ``stable-diffusion-2-1-base/vae``) from disk; safetensors only, nothing is downloaded."""
        folder = Path(folder)
        cfg_path, w_path = folder / "config.json", folder / "diffusion_pytorch_model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise DataError("not a diffusers AutoencoderKL folder (needs config.json and "
                            "diffusion_pytorch_model.safetensors)", folder)
        try:
            d: dict[str, Any] = json.loads(cfg_path.read_text())
        except ValueError as exc:
            raise DataError(f"unreadable JSON: {exc}", cfg_path) from exc
        if d.get("in_channels", 3) != d.get("out_channels", 3):
            raise DataError("in_channels and out_channels differ", cfg_path)
        model = cls(MRVAEConfig(
            block_out_channels=list(d.get("block_out_channels", [128, 256, 512, 512])),
            layers_per_block=int(d.get("layers_per_block", 2)), latent_channels=int(d.get("latent_channels", 4)),
            norm_num_groups=int(d.get("norm_num_groups", 32)), image_channels=int(d.get("in_channels", 3)),
            scaling_factor=float(d.get("scaling_factor", 0.18215)), sample_size=int(d.get("sample_size", 512))))
        state = load_file(str(w_path))
        try:
            model.vae.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise DataError(f"weights do not match config.json: {exc}", w_path) from exc
        return model


# -- discriminator and losses -------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017; the one Stable Diffusion's autoencoder uses): 4x4 convs,
    stride 2 ``layers`` times, LeakyReLU(0.2), BatchNorm; (B, C, H, W) -> (B, 1, H', W') logits."""

    def __init__(self, in_channels: int = 1, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            ch = out
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PyramidLoss(nn.Module):
    """Perceptual-loss substitute when no VGG weights are available: mean L1 between the Laplacian pyramids
    (``levels`` band-pass images, 2x average-pool down-sampling) of the two images. (B, H, W) inputs."""

    name = "laplacian-pyramid-l1 (substitute: no VGG weights given)"

    def __init__(self, levels: int = 5):
        super().__init__()
        self.levels = levels

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a, b = pred.unsqueeze(1), target.unsqueeze(1)
        total = pred.new_zeros(())
        for _ in range(self.levels - 1):
            if min(a.shape[-2:]) < 2:
                break
            da, db = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            ua = F.interpolate(da, size=a.shape[-2:], mode="bilinear", align_corners=False)
            ub = F.interpolate(db, size=b.shape[-2:], mode="bilinear", align_corners=False)
            total = total + ((a - ua) - (b - ub)).abs().mean()
            a, b = da, db
        return total + (a - b).abs().mean()


class VGGPerceptualLoss(nn.Module):
    """||VGG(x_vae) - VGG(x)||_1: mean L1 over the five ReLU stages of VGG16 (local safetensors weights),
    gray images repeated to RGB and ImageNet-normalised. (B, H, W) inputs in [0, ~1]."""

    def __init__(self, weights: str | Path):
        super().__init__()
        from mrrecon.nn.feature_nets import imagenet_normalise, load_vgg16_features

        self.features = load_vgg16_features(weights)
        self._norm = imagenet_normalise
        self.name = f"vgg16 ({Path(weights).name})"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.features(self._norm(pred.unsqueeze(1).expand(-1, 3, -1, -1)))
        ft = self.features(self._norm(target.unsqueeze(1).expand(-1, 3, -1, -1)))
        return sum((a - b).abs().mean() for a, b in zip(fp, ft, strict=True)) / len(fp)


def make_perceptual(vgg_weights: str | None) -> nn.Module:
    """VGG16 perceptual loss from a local file, else the :class:`PyramidLoss` substitute."""
    if vgg_weights:
        if not Path(vgg_weights).is_file():
            raise DataError("VGG16 weights file not found", vgg_weights)
        return VGGPerceptualLoss(vgg_weights)
    return PyramidLoss()


def vae_loss_terms(model: MRVAE, x: torch.Tensor, perceptual: nn.Module, *, generator: torch.Generator | None = None
                   ) -> dict[str, torch.Tensor]:
    """The reconstruction terms of eq. 5 for a batch x (B, H, W): l1, perceptual, kl, and x_vae (the sample
    decoded from the posterior, for the adversarial term). The terms are computed in float32 (the networks may
    run under mixed precision); the KL is diffusers' ``DiagonalGaussianDistribution.kl`` in float32."""
    post = model.posterior(x)
    z = post.sample(generator=generator)
    x_vae = model.from_network(model.vae.decode(z).sample).float()
    x = x.float()
    mean, logvar = post.mean.float(), post.logvar.float()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / x.shape[0]
    return {"l1": (x_vae - x).abs().mean(), "perceptual": perceptual(x_vae, x), "kl": kl, "x_vae": x_vae}
