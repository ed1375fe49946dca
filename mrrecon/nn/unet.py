"""The fastMRI image-domain U-Net and its normalised complex wrapper (the regulariser of E2E-VarNet).

``Unet`` follows the baseline of Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated
MRI", arXiv:1811.08839 (2018), Sec. 6.2, itself after Ronneberger et al. (MICCAI 2015):

* encoder: ``num_pool_layers`` blocks of two (3x3 conv, no bias -> instance norm -> LeakyReLU(0.2) ->
  dropout) with channel counts ``chans, 2 chans, 4 chans, ...``, each followed by 2x2 average pooling;
* bottleneck: one such block doubling the channels once more;
* decoder: per level a 2x2 transposed conv (stride 2, no bias) -> instance norm -> LeakyReLU(0.2) halving the
  channels, concatenation with the encoder feature map of that level, and a two-conv block;
* a final 1x1 convolution to ``out_chans``.

Odd sizes are handled without cropping: when an upsampled map is one pixel short of its skip connection it
is reflect-padded on the right / bottom (as the fastMRI reference does).

``NormUnet`` (Sriram et al., "End-to-End Variational Networks for Accelerated MRI Reconstruction", MICCAI
2020) maps complex images ``(B, H, W)`` to complex images: real and imaginary parts become two channels,
each is normalised by its own mean and standard deviation over the image, the U-Net runs on the input
padded to a multiple of ``2**num_pool_layers``, and the normalisation is undone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "NormUnet", "TransposeConvBlock", "Unet", "complex_to_channels", "channels_to_complex"]


class ConvBlock(nn.Module):
    """Two (3x3 conv -> instance norm -> LeakyReLU(0.2) -> 2-D dropout) layers."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in in (in_chans, out_chans):
            layers += [nn.Conv2d(c_in, out_chans, kernel_size=3, padding=1, bias=False),
                       nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(drop_prob)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x upsampling: 2x2 transposed conv (stride 2) -> instance norm -> LeakyReLU(0.2)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.layers = nn.Sequential(nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
                                    nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Unet(nn.Module):
    """fastMRI U-Net: ``(B, in_chans, H, W) -> (B, out_chans, H, W)`` for any H, W >= 1."""

    def __init__(self, in_chans: int = 1, out_chans: int = 1, chans: int = 32, num_pool_layers: int = 4,
                 drop_prob: float = 0.0):
        super().__init__()
        if min(in_chans, out_chans, chans, num_pool_layers) < 1:
            raise ValueError("in_chans, out_chans, chans and num_pool_layers must be >= 1")
        self.in_chans, self.out_chans = in_chans, out_chans
        self.chans, self.num_pool_layers, self.drop_prob = chans, num_pool_layers, drop_prob
        widths = [chans * 2**i for i in range(num_pool_layers)]  # encoder widths, top to bottom
        self.down = nn.ModuleList([ConvBlock(in_chans, widths[0], drop_prob)] +
                                  [ConvBlock(w, 2 * w, drop_prob) for w in widths[:-1]])
        self.bottleneck = ConvBlock(widths[-1], 2 * widths[-1], drop_prob)
        self.up_transpose = nn.ModuleList([TransposeConvBlock(2 * w, w) for w in reversed(widths)])
        self.up_conv = nn.ModuleList([ConvBlock(2 * w, w, drop_prob) for w in reversed(widths)])
        self.head = nn.Conv2d(widths[0], out_chans, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2, padding=0)
        x = self.bottleneck(x)
        for up, conv in zip(self.up_transpose, self.up_conv, strict=True):
            skip = skips.pop()
            x = up(x)
            pad_w, pad_h = skip.shape[-1] - x.shape[-1], skip.shape[-2] - x.shape[-2]
            if pad_w or pad_h:  # odd size at this level: the pooled map lost one row / column
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")
            x = conv(torch.cat([x, skip], dim=1))
        return self.head(x)


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, C, H, W)`` -> real ``(B, 2C, H, W)`` with channels (re_0..re_C-1, im_0..im_C-1)."""
    return torch.cat([x.real, x.imag], dim=1)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`complex_to_channels` (computed in float32 whatever the input precision)."""
    x = x.float()
    c = x.shape[1] // 2
    return torch.complex(x[:, :c], x[:, c:])


class NormUnet(nn.Module):
    """Complex ``(B, H, W)`` or ``(B, C, H, W)`` -> same shape, through a real U-Net with 2C channels.

    Normalisation (Sriram et al. 2020): the real parts (and, separately, the imaginary parts) of each batch
    element are shifted by their mean and divided by their standard deviation; the U-Net output is scaled
    back. The U-Net sees the input zero-padded symmetrically to a multiple of ``2**num_pool_layers``.

    ``residual=True`` makes the module a correction term: the output is ``U(norm(x)) * std`` (the mean is
    not added back) and the U-Net's last 1x1 convolution starts at zero, so an untrained module outputs 0.
    """

    def __init__(self, chans: int, num_pool_layers: int, in_chans: int = 1, drop_prob: float = 0.0,
                 eps: float = 1e-6, residual: bool = False):
        super().__init__()
        self.in_chans = in_chans
        self.unet = Unet(2 * in_chans, 2 * in_chans, chans, num_pool_layers, drop_prob)
        self.multiple = 2**num_pool_layers
        self.eps = eps
        self.residual = residual
        if residual:
            nn.init.zeros_(self.unet.head.weight)
            nn.init.zeros_(self.unet.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.ndim == 3
        if squeeze:
            x = x.unsqueeze(1)
        b, c, h, w = x.shape
        z = complex_to_channels(x).reshape(b, 2, c * h * w)
        mean = z.mean(dim=2, keepdim=True)
        std = z.std(dim=2, keepdim=True) + self.eps
        z = ((z - mean) / std).reshape(b, 2 * c, h, w)
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        pads = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]
        z = self.unet(F.pad(z, pads))
        z = z[..., pads[2]:pads[2] + h, pads[0]:pads[0] + w].float()
        z = z.reshape(b, 2, c * h * w) * std
        if not self.residual:
            z = z + mean
        out = channels_to_complex(z.reshape(b, 2 * c, h, w))
        return out.squeeze(1) if squeeze else out
