"""Cross-sequence converging attention (CSCA), IMA eq. 21 and Fig. 2 (right).

CSCA(Y, G) replaces the pixel-wise coupling term ``YA - G`` of eq. 13 in the Y-tilde update (eq. 20).

1. Multi-scale extraction: from the reference embedding Y (c channels) and from G (C channels) a 1 x 1 conv
   gives Q, K, V (d channels each); two depthwise 3 x 3 convs (dilation 1 and 2) give each at two scales.
   Q_1, V_1 (from Y) and Q_2, V_2 (from G) are the sums of the two scales; the keys keep both scales as two
   halves along the token axis, K_i = [K_i' ; K_i''] with N = H W tokens each.
2. Eq. 21: with Q_cat = [Q_1 ; Q_2] (the queries concatenated along the token axis, 2N tokens), one product
   per key gives self- and cross-attention at once:

       Q_cat^T K_1 = Q_1^T K_1' + Q_2^T K_1''     (Y-Y self-attention + G-Y cross-attention)
       Q_cat^T K_2 = Q_1^T K_2' + Q_2^T K_2''     (Y-G cross-attention + G-G self-attention)

   The products contract over tokens, so each attention map is d x d (per head): channel ("transposed")
   attention, linear in the number of pixels, global in extent: the paper's "lightweight module and
   long-range information". Q and K are L2-normalised over their tokens and scaled by a learned temperature
   before the softmax (the usual practice for channel attention; the paper omits these details).
3. out_i = softmax(Q_cat^T K_i) V_i; the two outputs are concatenated and a 1 x 1 conv projects them to the
   channels of Y-tilde, where eq. 20 adds them.

``PixelCoupling`` is the ``ima-no-csca`` ablation: a 1 x 1 conv of [Y, G] to the same channels, i.e. the
pixel-level ``YA - G`` of eq. 13 with A and the identity learned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import ConfigError
from mrrecon.nn.depthwise import DepthwiseConv2d

__all__ = ["CSCA", "MultiScaleQKV", "PixelCoupling"]


class MultiScaleQKV(nn.Module):
    """(B, in, H, W) -> q (B, d, N), k (B, d, 2N) (two scales along tokens), v (B, d, N)."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.qkv = nn.Conv2d(in_channels, 3 * dim, 1)
        self.scale1 = DepthwiseConv2d(3 * dim, 3, padding=1)
        self.scale2 = DepthwiseConv2d(3 * dim, 3, padding=2, dilation=2)  # polyphase: the fast CPU path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.qkv(x)
        s1, s2 = self.scale1(f).flatten(2), self.scale2(f).flatten(2)
        q1, k1, v1 = s1.chunk(3, dim=1)
        q2, k2, v2 = s2.chunk(3, dim=1)
        return q1 + q2, torch.cat([k1, k2], dim=-1), v1 + v2


class CSCA(nn.Module):
    """CSCA(Y, G): (B, c, H, W), (B, C, H, W) -> (B, out, H, W)."""

    def __init__(self, ref_channels: int, g_channels: int, out_channels: int, dim: int = 16, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"CSCA: attention channels {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.from_y = MultiScaleQKV(ref_channels, dim)
        self.from_g = MultiScaleQKV(g_channels, dim)
        self.temperature = nn.Parameter(torch.ones(2, heads, 1, 1))
        self.proj = nn.Conv2d(2 * dim, out_channels, 1)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, d, n = t.shape
        return t.reshape(b, self.heads, d // self.heads, n)

    def attention_maps(self, y: torch.Tensor, g: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The two (B, heads, d/h, d/h) attention maps of eq. 21 and the values they weight."""
        q1, k1, v1 = self.from_y(y)
        q2, k2, v2 = self.from_g(g)
        q_cat = F.normalize(self._split(torch.cat([q1, q2], dim=-1)), dim=-1)  # (B, h, d/h, 2N)
        maps = []
        for i, k in enumerate((k1, k2)):
            k = F.normalize(self._split(k), dim=-1)  # halves K_i', K_i'' along tokens
            maps.append((q_cat @ k.transpose(-2, -1) * self.temperature[i]).softmax(dim=-1))  # eq. 21
        return maps, [self._split(v1), self._split(v2)]

    def forward(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        b, _, h, w = g.shape
        maps, values = self.attention_maps(y, g)
        out = torch.cat([(a @ v).reshape(b, -1, h, w) for a, v in zip(maps, values, strict=True)], dim=1)
        return self.proj(out)


class PixelCoupling(nn.Module):
    """The ``ima-no-csca`` coupling: a 1 x 1 conv of [Y, G] (eq. 13's pixel-level YA - G)."""

    def __init__(self, ref_channels: int, g_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(ref_channels + g_channels, out_channels, 1)

    def forward(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([y, g], dim=1))
