"""Generator of MRControlNet (LDPM Sec. II.B.2): a frozen latent denoiser U-Net and a trainable ControlNet.

* :class:`LatentDenoiser` -- diffusers' ``UNet2DConditionModel`` (Stable Diffusion's denoiser) built from a
  config dict, eps-prediction on scaled VAE latents, T = 1000 steps of the scaled-linear schedule
  (beta 0.00085 -> 0.012). The text condition is the *empty prompt*: a fixed context tensor
  ``empty_context`` (1, tokens, cross_attention_dim). For Stable Diffusion 2.1-base it is the OpenCLIP text
  encoder's output for "" (1, 77, 1024), which the user supplies as a safetensors file (key ``embedding``)
  next to the U-Net weights (:meth:`LatentDenoiser.from_diffusers`); for the small in-project denoiser it is a
  learned (1, 1, 64) token trained with the U-Net and then frozen with it (the empty prompt is likewise a
  constant of the frozen text encoder).
* :class:`IRControlNet` -- a trainable copy of the denoiser's time embedding, input convolution, down-sampling
  blocks and middle block (ControlNet, Zhang et al. 2023). IRControlNet input (DiffBIR, Lin et al. 2023): the
  condition latent ``c_latent = E(c)`` is concatenated with ``z_t`` along channels, so the copied input
  convolution gets ``condition_channels`` extra input channels whose weights start at zero. Every down-block
  residual and the middle-block output pass through a 1x1 convolution initialised to zero and are added to
  the frozen U-Net's skip connections / middle output (``control_scale`` times), so at initialisation
  the controlled denoiser equals the frozen one exactly.
* eps_theta(z_t, p, t, c_latent) = U-Net(z_t, t, p; + ControlNet(z_t ++ c_latent, t, p)); loss eq. 7.
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
from mrrecon.diffusion.schedules import NoiseSchedule
from mrrecon.errors import DataError

__all__ = ["ControlledDenoiser", "DenoiserConfig", "IRControlNet", "IRControlNetConfig", "LatentDenoiser",
           "SD21_UNET"]

# Stable Diffusion 2.1-base's U-Net (diffusers config of stabilityai/stable-diffusion-2-1-base/unet).
SD21_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True, "norm_num_groups": 32,
}
_UNET_KEYS = {"sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types",
              "block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
              "use_linear_projection", "norm_num_groups", "mid_block_type", "flip_sin_to_cos", "freq_shift",
              "act_fn", "norm_eps", "downsample_padding", "mid_block_scale_factor", "upcast_attention",
              "transformer_layers_per_block", "num_attention_heads", "only_cross_attention", "dual_cross_attention",
              "resnet_time_scale_shift", "time_embedding_type", "class_embed_type", "center_input_sample"}


def _build_unet(cfg: dict[str, Any]):
    from diffusers import UNet2DConditionModel

    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in _UNET_KEYS}
    return UNet2DConditionModel(**kwargs)


@dataclass
class DenoiserConfig:
    """``unet``: UNet2DConditionModel kwargs (default Stable Diffusion 2.1-base); ``context_tokens``: length
    of the empty-prompt context; the noise schedule (SD: scaled linear, T = 1000)."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SD21_UNET))
    context_tokens: int = 77
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.scaled_linear(self.num_train_timesteps, self.beta_start, self.beta_end)


class LatentDenoiser(PretrainedModel):
    """eps_theta(z_t, t, p) with p the empty prompt; (B, 4, h, w) -> (B, 4, h, w)."""

    model_type = "ldpm-denoiser"
    config_class = DenoiserConfig

    def __init__(self, config: DenoiserConfig | dict | None = None):
        super().__init__(config)
        self.unet = _build_unet(self.config.unet)
        dim = int(self.unet.config.cross_attention_dim)
        self.empty_context = nn.Parameter(0.02 * torch.randn(1, self.config.context_tokens, dim,
                                                             generator=torch.Generator().manual_seed(0)))

    def context(self, batch: int) -> torch.Tensor:
        return self.empty_context.expand(batch, -1, -1)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, *, down_residuals: tuple | None = None,
                mid_residual: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(z_t.shape[0])
        return self.unet(z_t, t, encoder_hidden_states=self.context(z_t.shape[0]),
                         down_block_additional_residuals=down_residuals,
                         mid_block_additional_residual=mid_residual).sample

    def diffusion_loss(self, z0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Unconditional eps-prediction loss on clean latents z0 (eq. 7 without the control)."""
        return eps_loss(lambda zt, t: self(zt, t), z0, self.config.schedule(), generator)

    @classmethod
    def from_diffusers(cls, unet_folder: str | Path, empty_prompt: str | Path) -> LatentDenoiser:
        """Stable Diffusion's U-Net from a local diffusers folder (``config.json`` +
        ``diffusion_pytorch_model.safetensors``) and the empty-prompt embedding (safetensors, key ``embedding``,
        shape (1, 77, 1024) for SD 2.1: the text encoder's output for the prompt "")."""
        folder = Path(unet_folder)
        cfg_path, w_path = folder / "config.json", folder / "diffusion_pytorch_model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise DataError("not a diffusers UNet2DConditionModel folder (needs config.json and "
                            "diffusion_pytorch_model.safetensors)", folder)
        unet_cfg = {k: v for k, v in json.loads(cfg_path.read_text()).items() if k in _UNET_KEYS}
        emb = load_file(str(empty_prompt)).get("embedding")
        if emb is None or emb.ndim != 3:
            raise DataError("empty-prompt file needs a tensor 'embedding' of shape (1, tokens, dim)", empty_prompt)
        model = cls(DenoiserConfig(unet=unet_cfg, context_tokens=int(emb.shape[1])))
        try:
            model.unet.load_state_dict(load_file(str(w_path)), strict=True)
        except RuntimeError as exc:
            raise DataError(f"weights do not match config.json: {exc}", w_path) from exc
        with torch.no_grad():
            model.empty_context.copy_(emb[:1])
        return model


def eps_loss(eps_fn, z0: torch.Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """E_{t, eps} ||eps - eps_theta(z_t, t)||^2 with z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps (eqs. 6-7)."""
    b = z0.shape[0]
    t = torch.randint(0, schedule.num_timesteps, (b,), generator=generator).to(z0.device)
    noise = torch.randn(z0.shape, generator=generator).to(z0)
    z_t = schedule.q_sample(z0, t, noise)
    return F.mse_loss(eps_fn(z_t, t), noise)


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


@dataclass
class IRControlNetConfig:
    """``unet``: the denoiser's UNet kwargs (the control copies its encoder); ``condition_channels``: channels
    of c_latent (the VAE's latent channels)."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SD21_UNET))
    condition_channels: int = 4
    control_scale: float = 1.0


class IRControlNet(PretrainedModel):
    """Trainable copy of the denoiser's encoder with IRControlNet input and zero convolutions.

    ``forward(z_t, t, c_latent, context)`` -> (down residuals tuple, middle residual), shaped like the frozen
    U-Net's skip connections.
    """

    model_type = "ldpm-controlnet"
    config_class = IRControlNetConfig

    def __init__(self, config: IRControlNetConfig | dict | None = None):
        super().__init__(config)
        unet = _build_unet(self.config.unet)
        ucfg = unet.config
        self.latent_channels = int(ucfg.in_channels)
        self.time_proj, self.time_embedding = unet.time_proj, unet.time_embedding
        old = unet.conv_in
        self.conv_in = nn.Conv2d(old.in_channels + self.config.condition_channels, old.out_channels,
                                 old.kernel_size, padding=old.padding)
        self.down_blocks, self.mid_block = unet.down_blocks, unet.mid_block
        chans = [ucfg.block_out_channels[0]]
        for i, ch in enumerate(ucfg.block_out_channels):
            chans += [ch] * ucfg.layers_per_block + ([ch] if i < len(ucfg.block_out_channels) - 1 else [])
        self.zero_convs = nn.ModuleList([_zero_conv(c) for c in chans])
        self.mid_zero_conv = _zero_conv(ucfg.block_out_channels[-1])
        self._init_extra_channels()
        del unet

    def _init_extra_channels(self) -> None:
        with torch.no_grad():
            self.conv_in.weight[:, self.latent_channels:].zero_()  # IRControlNet: extra input channels start at 0

    @classmethod
    def from_denoiser(cls, denoiser: LatentDenoiser, condition_channels: int = 4, control_scale: float = 1.0
                      ) -> IRControlNet:
        """Copy the denoiser's encoder weights (the ControlNet initialisation); extra channels and output
        convolutions are zero."""
        net = cls(IRControlNetConfig(unet=dict(denoiser.config.unet), condition_channels=condition_channels,
                                     control_scale=control_scale))
        u = denoiser.unet
        with torch.no_grad():
            net.time_embedding.load_state_dict(u.time_embedding.state_dict())
            net.down_blocks.load_state_dict(u.down_blocks.state_dict())
            net.mid_block.load_state_dict(u.mid_block.state_dict())
            net.conv_in.weight.zero_()
            net.conv_in.weight[:, :net.latent_channels].copy_(u.conv_in.weight)
            net.conv_in.bias.copy_(u.conv_in.bias)
        return net

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c_latent: torch.Tensor, context: torch.Tensor):
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(z_t.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(z_t.dtype))
        h = self.conv_in(torch.cat([z_t, c_latent.to(z_t.dtype)], dim=1))  # IRControlNet input
        residuals = [h]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            residuals.extend(res)
        h = self.mid_block(h, emb, encoder_hidden_states=context)
        s = self.config.control_scale
        down = tuple(s * zc(r) for zc, r in zip(self.zero_convs, residuals, strict=True))
        return down, s * self.mid_zero_conv(h)


class ControlledDenoiser(nn.Module):
    """eps_theta(z_t, p, t, c_latent): frozen denoiser + ControlNet (or the denoiser alone if control is None)."""

    def __init__(self, denoiser: LatentDenoiser, control: IRControlNet | None):
        super().__init__()
        self.denoiser, self.control = denoiser, control

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c_latent: torch.Tensor | None) -> torch.Tensor:
        if self.control is None or c_latent is None:
            return self.denoiser(z_t, t)
        down, mid = self.control(z_t, t, c_latent, self.denoiser.context(z_t.shape[0]))
        return self.denoiser(z_t, t, down_residuals=down, mid_residual=mid)
