"""Swin transformer blocks and the SwinIR restoration network.

* Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021:
  multi-head self-attention inside non-overlapping ``window x window`` windows with a learned relative
  position bias (W-MSA), and the same with the windows shifted by ``window // 2`` (SW-MSA, the cyclic shift
  plus an attention mask so that tokens only attend to tokens that were neighbours before the roll).
* Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021: shallow 3x3 convolution,
  deep features from residual Swin transformer blocks (RSTB = several Swin layers + 3x3 convolution + skip),
  a 3x3 convolution after the body with a long skip, and a reconstruction convolution; for restoration tasks
  at unchanged resolution (denoising, artefact removal) the output is the input plus the predicted residual.

Token tensors are (B, H, W, C) inside the blocks; the network takes and returns (B, C, H, W) images. Inputs
whose sides are not multiples of the window are reflect-padded and cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import ConfigError

__all__ = ["RSTB", "SwinIR", "SwinTransformerBlock", "WindowAttention", "window_partition", "window_reverse"]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/window * W/window, window * window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention within a window, with a learned relative position bias.

    Input (nW * B, N = window^2, C); ``mask`` (nW, N, N) of 0 / -inf-like values for shifted windows.
    """

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"Swin attention: dim {dim} is not divisible by heads {heads}")
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2) in [0, 2w-2]
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (bw, heads, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)  # (heads, N, N)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:  # windows are ordered image by image: (B, nW, heads, N, N) + (nW, 1, N, N)
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1)).view(bw, self.heads, n, n)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def _shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) additive mask: -100 between tokens of different regions of the cyclically shifted map."""
    img = torch.zeros(1, h, w, 1, device=device)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = window_partition(img, window).squeeze(-1)  # (nW, N)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


class SwinTransformerBlock(nn.Module):
    """x + W-MSA(LN(x)) then x + MLP(LN(x)); with ``shift > 0`` the windows are shifted (SW-MSA).

    (B, H, W, C) -> (B, H, W, C); H and W must be multiples of ``window``.
    """

    def __init__(self, dim: int, heads: int, window: int = 8, shift: int = 0, mlp_ratio: float = 2.0):
        super().__init__()
        if not 0 <= shift < window:
            raise ConfigError(f"Swin shift {shift} must be in [0, window={window})")
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        if self.shift == 0:
            return None
        key = (h, w, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = _shift_mask(h, w, self.window, self.shift, device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self._mask(h, w, x.device))
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin Transformer Block: ``depth`` Swin layers (alternating W-MSA / SW-MSA), a 3x3 conv, skip.

    (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, dim: int, depth: int, heads: int, window: int = 8, mlp_ratio: float = 2.0):
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, heads, window, shift=0 if i % 2 == 0 else window // 2, mlp_ratio=mlp_ratio)
            for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for blk in self.blocks:
            y = blk(y)
        y = self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + y


class SwinIR(nn.Module):
    """SwinIR for same-resolution restoration: (B, in_chans, H, W) -> (B, out_chans, H, W).

    out = x + conv_last(F0 + conv_after_body(LN(RSTBs(F0)))), F0 = conv_first(x) (the residual output needs
    ``in_chans == out_chans``).
    """

    def __init__(self, in_chans: int = 1, out_chans: int = 1, embed_dim: int = 60,
                 depths: tuple[int, ...] = (6, 6, 6, 6), heads: tuple[int, ...] = (6, 6, 6, 6), window: int = 8,
                 mlp_ratio: float = 2.0):
        super().__init__()
        if len(depths) != len(heads):
            raise ConfigError(f"SwinIR: depths {depths} and heads {heads} must have the same length")
        if in_chans != out_chans:
            raise ConfigError("SwinIR restoration output is a residual: in_chans must equal out_chans")
        self.window = window
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
        self.layers = nn.ModuleList([RSTB(embed_dim, d, h, window, mlp_ratio) for d, h in zip(depths, heads,
                                                                                                   strict=True)])
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.conv_last = nn.Conv2d(embed_dim, out_chans, 3, padding=1)
        nn.init.zeros_(self.conv_last.weight)  # starts as the identity (out = x): training only adds repairs
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.window, (-w) % self.window
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        f0 = self.conv_first(xp)
        y = f0.permute(0, 2, 3, 1)
        for layer in self.layers:
            y = layer(y)
        y = self.norm(y).permute(0, 3, 1, 2)
        y = self.conv_after_body(y) + f0
        out = xp + self.conv_last(y)
        return out[..., :h, :w]
