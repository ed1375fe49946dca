"""Reusable network blocks: the fastMRI U-Net, its normalised complex wrapper, training losses."""

from mrrecon.nn.losses import LOSSES, make_loss, ssim_loss
from mrrecon.nn.unet import ConvBlock, NormUnet, TransposeConvBlock, Unet, channels_to_complex, complex_to_channels

__all__ = ["LOSSES", "ConvBlock", "NormUnet", "TransposeConvBlock", "Unet", "channels_to_complex",
           "complex_to_channels", "make_loss", "ssim_loss"]
