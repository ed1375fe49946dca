"""An NCSN++-style score network in pure PyTorch (no compiled CUDA ops).

After Song et al., "Score-based generative modeling through stochastic differential equations" (ICLR 2021),
the ``ncsnpp`` model of ``score_sde_pytorch`` that AK-Diffusion (Cui et al., Sec. IV.B) and VE-diffusion use:

* noise-level conditioning: Gaussian Fourier features of ``log sigma`` (``GaussianFourierFeatures``, scale 16)
  followed by two dense layers (``nf -> 4 nf -> 4 nf``, SiLU);
* BigGAN residual blocks: GroupNorm -> SiLU -> (resample) -> conv3x3 -> + dense(temb) -> GroupNorm -> SiLU ->
  dropout -> conv3x3, a 1x1 skip when the shape changes, ``(x + h) / sqrt(2)`` (``skip_rescale``);
  down/up-sampling happens *inside* residual blocks (average pooling / nearest neighbour: the FIR-free
  variant, so no compiled upfirdn kernel is needed);
* self-attention at the chosen levels (``attn_levels``; the original puts it at 16x16) and in the middle;
* progressive input ``"residual"``: the input pyramid (average pooled) is injected at every level with a
  conv3x3 and added with ``1/sqrt(2)`` (``progressive_input='residual'`` in score_sde);
* output: GroupNorm -> SiLU -> conv3x3 whose weights start at zero (``init_scale`` = 0 in score_sde's
  last layer), so a fresh network outputs 0.

Shapes: ``forward(x, log_sigma)``: x (B, in_ch, H, W) float, log_sigma (B,) -> (B, out_ch, H, W). H and W
must be divisible by ``2 ** (len(ch_mult) - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.nn.attention import SelfAttention2d
from mrrecon.nn.embeddings import GaussianFourierFeatures

__all__ = ["NCSNpp", "ResnetBlockBigGAN"]


def _group_norm(channels: int) -> nn.GroupNorm:
    # score_sde: GroupNorm(num_groups=min(channels // 4, 32))
    return nn.GroupNorm(max(1, min(channels // 4, 32)), channels, eps=1e-6)


def _conv3x3(cin: int, cout: int, init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    if init_scale == 0:
        nn.init.zeros_(conv.weight)
    else:
        nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
        conv.weight.data.mul_(init_scale)
    nn.init.zeros_(conv.bias)
    return conv


class ResnetBlockBigGAN(nn.Module):
    """BigGAN residual block with time embedding and optional up/down-sampling (score_sde ``ResnetBlockBigGANpp``)."""

    def __init__(self, cin: int, cout: int, temb_dim: int, *, up: bool = False, down: bool = False,
                 dropout: float = 0.0, skip_rescale: bool = True):
        super().__init__()
        if up and down:
            raise ConfigError("a block cannot both up- and down-sample")
        self.up, self.down, self.skip_rescale = up, down, skip_rescale
        self.norm0 = _group_norm(cin)
        self.conv0 = _conv3x3(cin, cout)
        self.dense = nn.Linear(temb_dim, cout)
        nn.init.zeros_(self.dense.bias)
        self.norm1 = _group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _conv3x3(cout, cout, init_scale=0.0)  # the residual branch starts at zero
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or up or down) else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        h = self._resample(h)
        x = self._resample(x)
        h = self.conv0(h) + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        out = x + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class NCSNpp(nn.Module):
    """NCSN++-style U-Net conditioned on the noise level (see module docstring).

    nf: base width; ch_mult: width multiplier per level (level i works at resolution H / 2^i);
    num_res_blocks: residual blocks per level; attn_levels: levels with self-attention;
    progressive_input: "residual" or "none"; fourier_scale: scale of the Fourier features of log sigma."""

    def __init__(self, in_ch: int = 2, out_ch: int = 2, nf: int = 128, ch_mult: Sequence[int] = (1, 2, 2, 2),
                 num_res_blocks: int = 4, attn_levels: Sequence[int] = (3,), dropout: float = 0.0,
                 fourier_scale: float = 16.0, skip_rescale: bool = True, progressive_input: str = "residual"):
        super().__init__()
        if progressive_input not in ("residual", "none"):
            raise ConfigError(f"progressive_input must be 'residual' or 'none', got {progressive_input!r}")
        if nf % 2 or nf < 4:
            raise ConfigError(f"nf must be an even number >= 4, got {nf}")
        self.num_levels = len(ch_mult)
        self.progressive_input = progressive_input
        self.attn_levels = {int(a) for a in attn_levels}
        temb_dim = 4 * nf
        self.fourier = GaussianFourierFeatures(nf, scale=fourier_scale)
        self.temb = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        block = dict(temb_dim=temb_dim, dropout=dropout, skip_rescale=skip_rescale)

        self.conv_in = _conv3x3(in_ch, nf)
        self.down_blocks = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        self.pyramid = nn.ModuleList()
        chans = [nf]
        cur = nf
        for level, mult in enumerate(ch_mult):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlockBigGAN(cur, nf * mult, **block))
                cur = nf * mult
                attns.append(SelfAttention2d(cur) if level in self.attn_levels else nn.Identity())
                chans.append(cur)
            self.down_blocks.append(blocks)
            self.down_attn.append(attns)
            if level != self.num_levels - 1:
                self.downsample.append(ResnetBlockBigGAN(cur, cur, down=True, **block))
                self.pyramid.append(_conv3x3(in_ch, cur) if progressive_input == "residual" else nn.Identity())
                chans.append(cur)

        self.mid = nn.ModuleList([ResnetBlockBigGAN(cur, cur, **block), ResnetBlockBigGAN(cur, cur, **block)])
        self.mid_attn = SelfAttention2d(cur)

        self.up_blocks = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlockBigGAN(cur + chans.pop(), nf * ch_mult[level], **block))
                cur = nf * ch_mult[level]
                attns.append(SelfAttention2d(cur) if level in self.attn_levels else nn.Identity())
            self.up_blocks.append(blocks)
            self.up_attn.append(attns)
            if level != 0:
                self.upsample.append(ResnetBlockBigGAN(cur, cur, up=True, **block))
        self.norm_out = _group_norm(cur)
        self.conv_out = _conv3x3(cur, out_ch, init_scale=0.0)

    def forward(self, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.num_levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ShapeError(f"NCSNpp: H, W = {tuple(x.shape[-2:])} must be divisible by {factor}")
        log_sigma = log_sigma.reshape(-1).to(x.dtype).expand(x.shape[0]) if log_sigma.numel() == 1 else log_sigma
        temb = self.temb(self.fourier(log_sigma.reshape(-1)))
        inp = x
        h = self.conv_in(x)
        skips = [h]
        for level in range(self.num_levels):
            for blk, attn in zip(self.down_blocks[level], self.down_attn[level], strict=True):
                h = attn(blk(h, temb))
                skips.append(h)
            if level != self.num_levels - 1:
                h = self.downsample[level](h, temb)
                if self.progressive_input == "residual":
                    inp = F.avg_pool2d(inp, 2)
                    h = (h + self.pyramid[level](inp)) / math.sqrt(2.0)
                skips.append(h)
        h = self.mid[0](h, temb)
        h = self.mid_attn(h)
        h = self.mid[1](h, temb)
        for i, level in enumerate(reversed(range(self.num_levels))):
            for blk, attn in zip(self.up_blocks[i], self.up_attn[i], strict=True):
                h = attn(blk(torch.cat([h, skips.pop()], dim=1), temb))
            if level != 0:
                h = self.upsample[i](h, temb)
        return self.conv_out(F.silu(self.norm_out(h)))
