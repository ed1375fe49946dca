"""Spatial self-attention over the pixels of a feature map (residual), shared by the diffusion U-Nets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import ConfigError

__all__ = ["SelfAttention2d"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(32, channels) if channels % min(32, channels) == 0 else 1, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown attention norm {kind!r} (group, batch or none)")


class SelfAttention2d(nn.Module):
    """x + proj(softmax(Q K^T / sqrt(d)) V) with Q, K, V 1x1 convolutions of norm(x); ``heads`` split channels.

    (B, C, H, W) -> (B, C, H, W). The output projection starts at zero, so a fresh block is the identity.
    """

    def __init__(self, channels: int, heads: int = 1, norm: str = "group"):
        super().__init__()
        if channels % heads:
            raise ConfigError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = _norm(norm, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, HW, d) for scaled_dot_product_attention
        # contiguous (B, heads, HW, d): the CPU kernel is ~2.5x slower on the transposed views
        out = F.scaled_dot_product_attention(q.transpose(-1, -2).contiguous(), k.transpose(-1, -2).contiguous(),
                                             v.transpose(-1, -2).contiguous())
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
