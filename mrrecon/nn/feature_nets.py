"""Pretrained-network feature extractors for perceptual metrics, written in plain torch (no torchvision).

Nothing here downloads anything. The networks only become meaningful with weights the user already has;
their ``state_dict`` key names follow the common public checkpoints so those can be converted once:

``VGG16Features``
    The convolutional part of torchvision's ``vgg16`` (Simonyan & Zisserman 2015, configuration D): keys
    ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}``. ``forward`` takes ImageNet-normalised
    RGB ``(B, 3, H, W)`` (``(x - mean) / std`` with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225),
    x in [0, 1]; ``imagenet_normalise``) and returns the five feature maps relu1_2, relu2_2, relu3_3,
    relu4_3, relu5_3 with 64, 128, 256, 512, 512 channels at strides 1, 2, 4, 8, 16. H, W >= 16.
``AlexNetFeatures``
    The convolutional part of torchvision's ``alexnet`` (Krizhevsky et al. 2012, one-tower variant): keys
    ``features.{0,3,6,8,10}.{weight,bias}``; same input convention; returns relu1..relu5 (the stages LPIPS
    uses) with 64, 192, 384, 256, 256 channels. H, W >= 31.
``InceptionFID``
    InceptionV3 as used for FID (Heusel et al. 2017): the TensorFlow ``inception-2015-12-05`` graph as ported
    by pytorch-fid (``pt_inception-2015-12-05-*.pth``). Key names are torchvision's ``Inception3`` without the
    auxiliary classifier (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ...,
    ``fc.weight`` with 1008 classes). Its blocks differ from torchvision's: the average pools inside
    Mixed_5b-5d, 6b-6e and 7b ignore the zero padding (``count_include_pad=False``) and the pool branch of
    Mixed_7c is a 3x3 *max* pool. ``forward`` takes RGB in [0, 1] ``(B, 3, H, W)``, resizes bilinearly to
    299x299, maps to [-1, 1] and returns the 2048-d pool3 features ``(B, 2048)``.

Loaders (``load_vgg16_features``, ``load_alexnet_features``, ``load_inception_fid``) read ``.safetensors``
files only (no pickle, no code execution), match keys strictly (BatchNorm ``num_batches_tracked`` counters may
be present or absent) and raise :class:`mrrecon.errors.DataError` naming the file on any mismatch. The
returned networks are in eval mode with ``requires_grad`` False.

Converting checkpoints you already have (the library itself never reads ``.pth``)::

    python -m mrrecon.nn.feature_nets convert vgg16-397923af.pth vgg16.safetensors --keep-prefix features. \\
        --check vgg16
    python -m mrrecon.nn.feature_nets convert alexnet-owt-7be5be79.pth alexnet.safetensors \\
        --keep-prefix features. --check alexnet
    python -m mrrecon.nn.feature_nets convert pt_inception-2015-12-05-6726825d.pth inception_fid.safetensors \\
        --check inception_fid
    python -m mrrecon.nn.feature_nets convert lpips/weights/v0.1/alex.pth lpips_alex.safetensors --check lpips_alex

``convert`` reads the ``.pth`` with ``torch.load(..., weights_only=True)``, which only unpickles tensors and
plain containers (no code execution); ``--check`` loads the written file with the matching loader.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.errors import DataError, ShapeError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AlexNetFeatures",
    "InceptionFID",
    "LPIPSLinear",
    "VGG16Features",
    "imagenet_normalise",
    "load_alexnet_features",
    "load_inception_fid",
    "load_lpips_linear",
    "load_safetensors_strict",
    "load_vgg16_features",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] ``(B, 3, H, W)`` -> ImageNet-normalised ``(x - mean) / std``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_input(x: torch.Tensor, name: str, min_size: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ShapeError(f"{name} expects (B, 3, H, W) RGB input, got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ShapeError(f"{name} needs images of at least {min_size}x{min_size} pixels, got {tuple(x.shape[-2:])}")


# ---------------------------------------------------------------------------------------------------------
# VGG16 and AlexNet (torchvision ``features.{i}`` layout)
# ---------------------------------------------------------------------------------------------------------
def _sequential_features(layout: Sequence) -> nn.Sequential:
    """An ``nn.Sequential`` whose indices match torchvision's: ("conv", in, out, kernel, stride, padding),
    "relu" or ("pool", kernel, stride)."""
    layers: list[nn.Module] = []
    for item in layout:
        if item == "relu":
            layers.append(nn.ReLU(inplace=False))  # not in-place: the stage outputs are kept
        elif item[0] == "conv":
            _, cin, cout, k, s, p = item
            layers.append(nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p))
        else:
            layers.append(nn.MaxPool2d(kernel_size=item[1], stride=item[2]))
    return nn.Sequential(*layers)


class _StagedFeatures(nn.Module):
    """``features`` split into stages at ``ends`` (exclusive indices); forward returns every stage's output."""

    ends: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    min_size: int = 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, type(self).__name__, self.min_size)
        outs, start = [], 0
        for end in self.ends:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
            start = end
        return outs


class VGG16Features(_StagedFeatures):
    """torchvision ``vgg16().features``; forward -> [relu1_2, relu2_2, relu3_3, relu4_3, relu5_3].

    Shapes for input ``(B, 3, H, W)``: ``(B, 64, H, W)``, ``(B, 128, H/2, W/2)``, ``(B, 256, H/4, W/4)``,
    ``(B, 512, H/8, W/8)``, ``(B, 512, H/16, W/16)`` (floor division). The final max pool (index 30) is kept so
    the layout is torchvision's, but it is never evaluated.
    """

    ends = (4, 9, 16, 23, 30)
    channels = (64, 128, 256, 512, 512)
    min_size = 16

    def __init__(self):
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        layout: list = []
        cin = 3
        for v in cfg:
            if v == "M":
                layout.append(("pool", 2, 2))
            else:
                layout += [("conv", cin, v, 3, 1, 1), "relu"]
                cin = v
        self.features = _sequential_features(layout)


class AlexNetFeatures(_StagedFeatures):
    """torchvision ``alexnet().features``; forward -> [relu1, relu2, relu3, relu4, relu5] (LPIPS's stages).

    Channels 64, 192, 384, 256, 256; spatial size after conv1 (11x11, stride 4, pad 2) is
    ``(H - 7) // 4 + 1``, then halved (3x3 max pool, stride 2) before relu2 and relu3.
    """

    ends = (2, 5, 8, 10, 12)
    channels = (64, 192, 384, 256, 256)
    min_size = 31

    def __init__(self):
        super().__init__()
        self.features = _sequential_features([
            ("conv", 3, 64, 11, 4, 2), "relu", ("pool", 3, 2),
            ("conv", 64, 192, 5, 1, 2), "relu", ("pool", 3, 2),
            ("conv", 192, 384, 3, 1, 1), "relu",
            ("conv", 384, 256, 3, 1, 1), "relu",
            ("conv", 256, 256, 3, 1, 1), "relu", ("pool", 3, 2),
        ])


class LPIPSLinear(nn.Module):
    """The learned per-stage 1x1 weights of LPIPS (Zhang et al. 2018, eq. 1), lpips-package key names.

    ``lin{k}.model.1.weight`` has shape ``(1, C_k, 1, 1)`` (``model.0`` is the dropout the package trains
    with; it has no parameters and is an identity in eval mode). The weights must be non-negative.
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = tuple(channels)
        for k, c in enumerate(self.channels):
            setattr(self, f"lin{k}", nn.Module())
            lin = getattr(self, f"lin{k}")
            lin.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, kernel_size=1, bias=False))

    def weight(self, k: int) -> torch.Tensor:
        """Stage k's channel weights ``(C_k,)``."""
        return getattr(self, f"lin{k}").model[1].weight.view(-1)


# ---------------------------------------------------------------------------------------------------------
# InceptionV3, FID variant
# ---------------------------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that ignores the zero padding (TensorFlow's, used by the FID graph)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """Mixed_6b-6e: factorised 7x7 branches -> 768 channels."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: expanded filter bank -> 2048 channels. ``pool="avg"`` (7b, padding-excluding average) or
    ``"max"`` (7c: the FID graph's max pool in the pool branch)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _avg_pool_tf(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class InceptionFID(nn.Module):
    """InceptionV3 (FID variant) -> pool3 features ``(B, 2048)`` from RGB ``(B, 3, H, W)`` in [0, 1].

    ``fc`` (2048 -> 1008 classes) is part of the checkpoint layout and available as ``logits()``, but FID and
    KID use only the pool3 features.
    """

    feature_dim = 2048
    input_size = 299

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "InceptionFID", 1)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = 2 * x - 1  # [0, 1] -> [-1, 1], the range the ported TF graph expects
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # pool3

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1008-way classifier on top of pool3 (not used by the metrics)."""
        return self.fc(self.forward(x))


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)  # BatchNorm counters: not weights, absent from some exports


def load_safetensors_strict(module: nn.Module, path: str | Path, what: str) -> nn.Module:
    """Load ``path`` (a .safetensors file) into ``module`` with a strict key and shape match.

    Returns the module in eval mode with every parameter frozen. Raises DataError naming the file when it
    is missing, unreadable, not safetensors, or its keys/shapes differ from the network's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise DataError(f"{what} weights must be a .safetensors file (convert a .pth with "
                        f"`python -m mrrecon.nn.feature_nets convert IN.pth OUT.safetensors`)", path)
    if not path.is_file():
        raise DataError(f"{what} weights file not found", path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"unreadable safetensors file ({what}): {exc}", path) from exc
    expected = module.state_dict()
    required = {k for k in expected if not k.endswith(_OPTIONAL_SUFFIXES)}
    missing = sorted(required - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.endswith(_OPTIONAL_SUFFIXES))
    if missing or unexpected:
        raise DataError(f"keys do not match the {what} layout: {len(missing)} missing {missing[:4]}, "
                        f"{len(unexpected)} unexpected {unexpected[:4]}", path)
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})" for k in sorted(required)
             if state[k].shape != expected[k].shape]
    if wrong:
        raise DataError(f"tensor shapes do not match the {what} layout: {wrong[:3]}", path)
    bad = [k for k in sorted(required) if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        raise DataError(f"non-finite values in {bad[:3]}", path)
    state = {k: v for k, v in state.items() if k in expected}
    for k in expected:  # keep the module's own counters where the file has none
        if k not in state:
            state[k] = expected[k]
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_vgg16_features(path: str | Path) -> VGG16Features:
    """``VGG16Features`` from a .safetensors file with torchvision's ``features.*`` keys (eval, frozen)."""
    return load_safetensors_strict(VGG16Features(), path, "VGG16 features")


def load_alexnet_features(path: str | Path) -> AlexNetFeatures:
    """``AlexNetFeatures`` from a .safetensors file with torchvision's ``features.*`` keys (eval, frozen)."""
    return load_safetensors_strict(AlexNetFeatures(), path, "AlexNet features")


def load_inception_fid(path: str | Path) -> InceptionFID:
    """``InceptionFID`` from a .safetensors file with pytorch-fid's Inception key names (eval, frozen)."""
    return load_safetensors_strict(InceptionFID(), path, "FID InceptionV3")


def load_lpips_linear(path: str | Path, net: str) -> LPIPSLinear:
    """The LPIPS linear layers for ``net`` ("vgg" or "alex") from a .safetensors file (``lin{k}.model.1.weight``).

    Raises DataError naming the file if a weight is negative (LPIPS weights are trained clamped at >= 0).
    """
    channels = {"vgg": VGG16Features.channels, "alex": AlexNetFeatures.channels}
    if net not in channels:
        raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
    lin = load_safetensors_strict(LPIPSLinear(channels[net]), path, f"LPIPS-{net} linear layers")
    if any(bool((lin.weight(k) < 0).any()) for k in range(len(lin.channels))):
        raise DataError("LPIPS linear weights must be non-negative", path)
    return lin


LOADERS: dict[str, Callable[[Path], nn.Module]] = {
    "vgg16": load_vgg16_features,
    "alexnet": load_alexnet_features,
    "inception_fid": load_inception_fid,
    "lpips_vgg": lambda p: load_lpips_linear(p, "vgg"),
    "lpips_alex": lambda p: load_lpips_linear(p, "alex"),
}


# ---------------------------------------------------------------------------------------------------------
# Converter: python -m mrrecon.nn.feature_nets convert IN.pth OUT.safetensors
# ---------------------------------------------------------------------------------------------------------
def _tensor_dict(obj, source: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint (a dict of tensors, or one under 'state_dict'/'model')."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "net"):
            if key in obj:
                return _tensor_dict(obj[key], source)
    raise DataError("no state dict of tensors found (expected a dict of tensors, or one under 'state_dict')", source)


def convert_checkpoint(src: str | Path, dst: str | Path, keep_prefixes: Sequence[str] = (),
                       check: str | None = None) -> dict[str, torch.Tensor]:
    """Convert a ``.pth`` state dict to ``.safetensors``; returns the tensors written.

    ``torch.load(..., weights_only=True)`` refuses anything but tensors and plain containers, so no code runs.
    ``keep_prefixes`` keeps only keys starting with one of them (e.g. ``features.`` drops torchvision's
    ``classifier.*``); ``check`` (a key of ``LOADERS``) loads the result with that loader.
    """
    from mrrecon.utils.io import save_state_dict

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise DataError("the output must end in .safetensors", dst)
    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError("checkpoint not found", src) from exc
    except Exception as exc:  # noqa: BLE001 -- any unpickling refusal is reported with the file name
        raise DataError(f"cannot read as a weights-only torch checkpoint: {exc}", src) from exc
    state = _tensor_dict(obj, src)
    if keep_prefixes:
        state = {k: v for k, v in state.items() if k.startswith(tuple(keep_prefixes))}
        if not state:
            raise DataError(f"no keys start with {list(keep_prefixes)}", src)
    save_state_dict(state, dst, metadata={"format": "pt", "converted_from": src.name})
    if check is not None:
        LOADERS[check](dst)
    return state


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrrecon.nn.feature_nets",
                                     description="Convert .pth feature-network weights to .safetensors.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="IN.pth -> OUT.safetensors (torch.load with weights_only=True)")
    conv.add_argument("src", type=Path)
    conv.add_argument("dst", type=Path)
    conv.add_argument("--keep-prefix", action="append", default=[],
                      help="keep only keys with this prefix (repeatable), e.g. 'features.'")
    conv.add_argument("--check", choices=sorted(LOADERS), default=None,
                      help="load the written file with this network's loader to verify it")
    args = parser.parse_args(argv)
    try:
        state = convert_checkpoint(args.src, args.dst, args.keep_prefix, args.check)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.dst}: {len(state)} tensors, {n:,} values" + (f"; loads as {args.check}" if args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
