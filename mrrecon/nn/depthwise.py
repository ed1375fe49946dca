"""Dilated depthwise 2-D convolution computed on polyphase components: the same layer as
``nn.Conv2d(C, C, k, padding=d (k - 1) / 2, dilation=d, groups=C)``, faster on the CPU.

On the CPU, PyTorch's dilated depthwise convolution takes a slow path: at 18 x 128 x 128 on one thread, its
forward and backward cost 3-7x those of the same convolution without dilation, and in bf16 autocast it was most
of IMA's training step (benchmarks/results/depthwise_conv.json). A "same"-padded convolution with dilation d is
exactly the undilated convolution applied to each of the d^2 polyphase components x[..., a::d, b::d] (with
padding (k - 1) / 2): output pixel (a + d m, b + d n) only sees input pixels of its own component, and a tap
falls outside the image exactly when it falls outside the component. So the input is rearranged into d^2
sub-images along the batch axis, convolved without dilation and interleaved back; the rearrangement follows the
input's memory layout (NCHW for a contiguous input, NHWC for a channels_last one, which stays channels_last).

:class:`DepthwiseConv2d` subclasses ``nn.Conv2d``: the parameters (``weight`` (C, 1, k, k), ``bias`` (C,)) and
their names are those of the grouped convolution, so checkpoints written with either load into the other. Any
other case (no dilation, a size not divisible by d, other padding) is the plain grouped convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthwiseConv2d"]


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels)``."""

    def __init__(self, channels: int, kernel_size: int, padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__(channels, channels, kernel_size, stride=1, padding=padding, dilation=dilation,
                         groups=channels, bias=bias)

    def _polyphase(self, x: torch.Tensor) -> bool:
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        same = self.padding == (dh * (kh - 1) // 2, dw * (kw - 1) // 2) and kh % 2 == 1 and kw % 2 == 1
        return (dh > 1 or dw > 1) and same and x.shape[-2] % dh == 0 and x.shape[-1] % dw == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._polyphase(x):
            return super().forward(x)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return self.polyphase_nhwc(x)
        return self.polyphase_nchw(x)

    def polyphase_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """The polyphase form rearranged in (B, C, H, W) order (for a contiguous input)."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        b, c, h, w = x.shape
        # (B, C, H, W) -> (B dh dw, C, H / dh, W / dw): component (a, b') holds x[..., a::dh, b'::dw]
        sub = x.reshape(b, c, h // dh, dh, w // dw, dw).permute(0, 3, 5, 1, 2, 4).reshape(b * dh * dw, c, h // dh,
                                                                                       w // dw)
        out = F.conv2d(sub, self.weight, self.bias, padding=((kh - 1) // 2, (kw - 1) // 2), groups=c)
        return out.reshape(b, dh, dw, c, h // dh, w // dw).permute(0, 3, 4, 1, 5, 2).reshape(b, c, h, w)

    def polyphase_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The polyphase form rearranged in (B, H, W, C) order (for a channels_last input): every copy moves runs
        of C values, and the components and the result stay channels_last. At 18 x 128 x 128 on one thread its
        forward + backward is about 3x faster than ``polyphase_nchw`` on the same channels_last input
        (benchmarks/depthwise_conv.py)."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        b, c, h, w = x.shape
        sub = (x.permute(0, 2, 3, 1).reshape(b, h // dh, dh, w // dw, dw, c).permute(0, 2, 4, 1, 3, 5)
               .reshape(b * dh * dw, h // dh, w // dw, c).permute(0, 3, 1, 2))
        out = F.conv2d(sub, self.weight, self.bias, padding=((kh - 1) // 2, (kw - 1) // 2), groups=c)
        return (out.permute(0, 2, 3, 1).reshape(b, dh, dw, h // dh, w // dw, c).permute(0, 3, 1, 4, 2, 5)
                .reshape(b, h, w, c).permute(0, 3, 1, 2))
