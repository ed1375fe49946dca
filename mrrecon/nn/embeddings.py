"""Noise-level embeddings shared by the diffusion networks."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GaussianFourierFeatures", "sinusoidal_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps or noise levels (any real values) -> (B, dim) [cos | sin] features (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().reshape(-1, 1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of a scalar (NCSN++ / Song et al. 2021): [sin(2 pi w x), cos(2 pi w x)].

    ``w ~ N(0, scale^2)`` is a fixed buffer (saved with the model, never trained). Output (B, dim).
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x.float().reshape(-1, 1) * self.weight * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
