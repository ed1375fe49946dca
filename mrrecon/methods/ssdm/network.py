"""The SSDM-MRI residual U-Net (Liu et al., Sec. III.B) with a three-layer MLP noise-level embedding.

Layer budget of the paper (reproduced exactly by every width; ``tests/test_ssdm.py`` counts them):
52 3x3 convolutions, 3 max-poolings (2x2), 3 transposed convolutions (2x2), 51 batch norms, 77 ReLUs,
3 concatenations, 25 residual connections and 6 self-attention operations. The paper lists the counts
but not the wiring; this is the wiring that meets every count:

* input: one 3x3 conv + BN (no activation) -> ``C`` channels;                       (1 conv, 1 BN)
* encoder: 3 modules at ``C, 2C, 4C`` channels, each 3 residual blocks, then a 2x2 max-pool;
* bottleneck at ``8C`` (lowest resolution): 7 residual blocks with a self-attention after each of the first
  6 ("self-attention only at the lowest resolution");
* decoder: 3 modules, each a 2x2 transposed conv (halving channels), concatenation with the encoder
  feature of the same scale, 3 residual blocks;
* output: one 3x3 conv -> ``out_channels``.                                              (1 conv)

A residual block is conv3x3-BN-ReLU-conv3x3-BN-ReLU, plus its input, then ReLU (2 convs, 2 BN, 3 ReLU,
1 residual connection): 25 blocks = 50 convs, 50 BN, 75 ReLU; with the input/output convs 52 convs and 51
BN; the noise MLP (Linear-ReLU-Linear-ReLU-Linear) holds the remaining 2 ReLUs = 77. Where a block changes
the channel count (first block of a module) the residual path is parameter-free (``match_channels``: zero
channels appended when widening, channel groups summed when narrowing after a concatenation), so no
1x1 convolution is added to the paper's list. The noise-level embedding enters every block as a per-channel
shift after its first BN (Palette's additive ``FeatureWiseAffine``, the paper's ref. [45]).

Shapes: ``forward(x, gamma_bar)``: x (B, in_channels, H, W) with H, W divisible by 8; gamma_bar (B,) in
[0, 1] -> (B, out_channels, H, W). Fully convolutional (+ global attention), so any size divisible by 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.nn.attention import SelfAttention2d
from mrrecon.nn.embeddings import sinusoidal_embedding
from mrrecon.nn.unet import channels_to_complex, complex_to_channels

__all__ = ["NoiseLevelMLP", "ResidualBlock", "SSDMUNet", "from_channels", "match_channels", "to_channels"]


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Parameter-free residual path between channel counts: pad with zero channels, or sum channel groups."""
    c = x.shape[1]
    if c == channels:
        return x
    if c < channels:
        return F.pad(x, (0, 0, 0, 0, 0, channels - c))
    if c % channels:
        raise ShapeError(f"cannot fold {c} channels into {channels}")
    return x.reshape(x.shape[0], c // channels, channels, *x.shape[2:]).sum(dim=1)


class NoiseLevelMLP(nn.Module):
    """gamma_bar_t (B,) -> (B, dim): sinusoidal features of 1000 * gamma_bar, then a three-layer MLP with ReLUs
    (Sec. III.B: "encoded using a simple three-layer multi-layer perceptron")."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, gamma_bar: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(gamma_bar * 1000.0, self.dim))


class ResidualBlock(nn.Module):
    """x -> ReLU(match(x) + ReLU(BN(conv(ReLU(BN(conv(x)) + shift(emb)))))), 3x3 convs (B, Cin, H, W) ->
    (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int):
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU()
        self.act_out = nn.ReLU()
        self.noise_shift = nn.Linear(emb_dim, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.conv1(x)) + self.noise_shift(emb)[:, :, None, None]
        h = self.act1(h)
        h = self.act2(self.bn2(self.conv2(h)))
        return self.act_out(match_channels(x, self.out_channels) + h)  # residual connection


class SSDMUNet(nn.Module):
    """The residual U-Net N_theta(x_cond, x_t, gamma_bar_t) of SSDM-MRI (see the module docstring)."""

    levels = 3  # encoder/decoder modules ("each consisting of three modules")
    blocks_per_module = 3
    attention_ops = 6

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, emb_dim: int | None = None,
                 attention_heads: int = 1, attention_norm: str = "group"):
        super().__init__()
        if width < 1:
            raise ConfigError(f"ssdm network width must be positive, got {width}")
        emb_dim = emb_dim or 4 * width
        self.embed = NoiseLevelMLP(emb_dim)
        chans = [width * 2 ** i for i in range(self.levels + 1)]  # C, 2C, 4C, 8C (bottleneck)
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn_in = nn.BatchNorm2d(width)
        self.encoder = nn.ModuleList()
        prev = width
        for c in chans[:-1]:
            self.encoder.append(nn.ModuleList([ResidualBlock(prev if i == 0 else c, c, emb_dim)
                                               for i in range(self.blocks_per_module)]))
            prev = c
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(self.levels)])
        c_low = chans[-1]
        self.bottleneck = nn.ModuleList([ResidualBlock(prev if i == 0 else c_low, c_low, emb_dim)
                                         for i in range(self.attention_ops + 1)])
        self.attention = nn.ModuleList([SelfAttention2d(c_low, heads=attention_heads, norm=attention_norm)
                                        for _ in range(self.attention_ops)])
        self.upsamples = nn.ModuleList()
        self.decoder = nn.ModuleList()
        prev = c_low
        for c in reversed(chans[:-1]):
            self.upsamples.append(nn.ConvTranspose2d(prev, c, 2, stride=2))
            self.decoder.append(nn.ModuleList([ResidualBlock(2 * c if i == 0 else c, c, emb_dim)
                                               for i in range(self.blocks_per_module)]))
            prev = c
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, gamma_bar: torch.Tensor) -> torch.Tensor:
        factor = 2 ** self.levels
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ShapeError(f"SSDM network input {tuple(x.shape[-2:])} must be divisible by {factor}; pad it first")
        emb = self.embed(gamma_bar.reshape(-1).to(x.dtype).expand(x.shape[0]))
        h = self.bn_in(self.conv_in(x))
        skips = []
        for blocks, pool in zip(self.encoder, self.pools, strict=True):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = pool(h)
        for i, block in enumerate(self.bottleneck):
            h = block(h, emb)
            if i < len(self.attention):
                h = self.attention[i](h)
        for up, blocks, skip in zip(self.upsamples, self.decoder, reversed(skips), strict=True):
            h = torch.cat([up(h), skip], dim=1)  # concatenation with the encoder feature
            for block in blocks:
                h = block(h, emb)
        return self.conv_out(h)


def to_channels(x: torch.Tensor, complex_data: bool) -> torch.Tensor:
    """(B, H, W) image -> (B, 1, H, W) real part (magnitude instance) or (B, 2, H, W) [real, imag]."""
    if complex_data:
        xc = x if torch.is_complex(x) else torch.complex(x, torch.zeros_like(x))
        return complex_to_channels(xc.unsqueeze(1))
    return (x.real if torch.is_complex(x) else x).unsqueeze(1)


def from_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1 | 2, H, W) channels -> (B, H, W) complex64 image."""
    if x.shape[1] == 2:
        return channels_to_complex(x)[:, 0]
    return torch.complex(x[:, 0].float(), torch.zeros_like(x[:, 0].float()))
