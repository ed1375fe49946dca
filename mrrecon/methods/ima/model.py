"""IMA: Information-coupled MRI Acceleration (Zheng, Yao, Shen, Li, Jiang, AAAI 2025), the network.

Paper -> code (equation numbers of the paper; see docs/ima.md for every choice the paper leaves open):

* embeddings (Problem Analysis): Z (and X^(0) = G^(0) = Z) = ``embed_z`` of the zero-filled complex image,
  C real channels = C/2 complex channels; Y = ``embed_y`` of the fully sampled reference, c < C channels;
  Y-tilde^(0) = ``embed_y_tilde`` of [reference, zero-filled] (``tilde_channels`` = r - c, default C - c).
  ``embed_z`` and ``decode`` are complex-linear circular convolutions without bias, i.e. Fourier multipliers:
  F(embed(x)) = H . F(x), so the embedded measurement K^(0) = F Z agrees with the embedded truth on the
  measured samples and eq. 19's replacement is exact data consistency in feature space.
* T stages (``IMAStage``): eq. 15 X update, eqs. 16-19 DCM (``dcm.py``; ``dcm_mode``: eq. 18 weighted by a
  learned hold weight per stage (default) or literal, the dilated region frozen), eq. 20 Y-tilde update with
  CSCA (eq. 21, ``csca.py``), eq. 22 G update;
* output: X_out = ``decode``(X^(T)) (C/2 -> 1 complex channel), then (``output_dc``) the measured k-space
  samples are put back exactly, and the magnitude is returned;
* loss, eq. 25: L(X_out, X_GT) + gamma L1(X^(T), A(Y) + B(Y-tilde^(T))), the second term in feature space
  (where the mapping eq. 5 is defined), with the last stage's A and B.

Input: single-coil k-space (the paper's setting: IXI / fastMRI single-coil); a multi-coil sample is a clear
DataError. ``use_reference=False`` (``ima-single``) runs the identical network with the reference image
replaced by zeros, so it learns without the second contrast at the same size and cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.core.pretrained import PretrainedModel
from mrrecon.data.sample import Batch
from mrrecon.errors import ConfigError, DataError
from mrrecon.methods.ima.dcm import DCM_KERNELS, DCM_MODES, dcm_schedule
from mrrecon.methods.ima.stage import IMAStage, conv_block
from mrrecon.nn.unet import channels_to_complex, complex_to_channels
from mrrecon.physics.consistency import hard_dc
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import full_mask

__all__ = ["ComplexConv", "IMAConfig", "IMAModel", "legacy_config"]


@dataclass
class IMAConfig:
    """Paper settings: T = 12, delta = 3, ratio = 0.9, gamma = 0.5, kernel 1 (widths: docs/ima.md)."""

    stages: int = 12  # T
    channels: int = 16  # C: real channels of X, Z, G (C/2 complex feature images); even
    ref_channels: int = 8  # c < C: channels of the reference embedding Y
    tilde_channels: int | None = None  # channels of Y-tilde (r - c); None: C - c
    attn_channels: int = 8  # d: Q/K/V channels of CSCA
    attn_heads: int = 1
    csca: bool = True  # False: ima-no-csca (pixel-level coupling)
    dcm: bool = True  # False: ima-no-dcm (M^(t) = M^(0) at every stage)
    dcm_kernel: int = 1  # Fig. 4 kernels 1 | 2 | 3 (dcm.py)
    dcm_delta: float = 3.0  # delta, eq. 16
    dcm_ratio: float = 0.9  # ratio, eq. 17
    # eq. 18: "weighted" (hold weight omega^(t) learned per stage) | "literal" (dilated region frozen, as printed)
    dcm_mode: str = "weighted"
    dcm_hold_init: float = 0.5  # omega^(t) at initialisation (weighted mode), in (0, 1)
    use_reference: bool = True  # False: ima-single (reference replaced by zeros)
    gamma: float = 0.5  # eq. 25
    output_dc: bool = True  # restore the measured samples in the decoded image
    mu_init: float = 1.0
    alpha_init: float = 0.5
    lambda1_init: float = 0.1
    beta_init: float = 0.5
    lambda2_init: float = 0.1


# Fields added after checkpoints existed; a config that has every other field but none of these was written by
# save_pretrained before them (e.g. the shipped weights/ima*-small): it gets the reading it was trained with.
_ADDED_FIELDS = ("dcm_mode", "dcm_hold_init")
_LEGACY = {"dcm_mode": "literal"}


def legacy_config(config):
    """A complete config dict written before ``dcm_mode`` existed gets ``dcm_mode: literal`` (what that code
    did); anything else (partial dicts, YAML params, configs with ``dcm_mode``) is returned unchanged."""
    if isinstance(config, dict) and "dcm_mode" not in config:
        before = {f.name for f in dataclasses.fields(IMAConfig)} - set(_ADDED_FIELDS)
        if before <= set(config):
            return {**_LEGACY, **config}
    return config


class ComplexConv(nn.Module):
    """Complex-linear circular k x k convolution without bias on complex (B, Cin, H, W) -> (B, Cout, H, W).

    A Fourier multiplier (F(conv(x)) = H . F(x)), so masks commute with it. ``identity=True`` starts output
    channel 0 as a copy of input channel 0 plus small weights elsewhere."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, identity: bool = True):
        super().__init__()
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight_re = nn.Parameter(torch.randn(shape) * 0.05 / kernel_size)
        self.weight_im = nn.Parameter(torch.randn(shape) * 0.05 / kernel_size)
        if identity:
            with torch.no_grad():
                self.weight_re[0].zero_()
                self.weight_im[0].zero_()
                self.weight_re[0, 0, kernel_size // 2, kernel_size // 2] = 1.0
        self.pad = kernel_size // 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        p = self.pad
        re = F.pad(z.real, (p, p, p, p), mode="circular")
        im = F.pad(z.imag, (p, p, p, p), mode="circular")
        out_re = F.conv2d(re, self.weight_re) - F.conv2d(im, self.weight_im)
        out_im = F.conv2d(re, self.weight_im) + F.conv2d(im, self.weight_re)
        return torch.complex(out_re.float(), out_im.float())  # float32 under autocast too


class IMAModel(PretrainedModel):
    """IMA unfolding network: (B, 1, H, W) single-coil k-space + (B, H, W) reference -> (B, H, W) magnitude."""

    model_type = "ima"
    config_class = IMAConfig

    def __init__(self, config: IMAConfig | dict | None = None):
        super().__init__(legacy_config(config))
        c = self.config
        tilde = c.tilde_channels if c.tilde_channels is not None else c.channels - c.ref_channels
        if c.stages < 1 or c.channels < 2 or c.channels % 2:
            raise ConfigError(f"ima needs stages >= 1 and an even channels >= 2; got {c.stages}, {c.channels}")
        if not 0 < c.ref_channels < c.channels or tilde < 1:
            raise ConfigError(f"ima needs 0 < ref_channels (c={c.ref_channels}) < channels (C={c.channels}) and "
                              f"tilde_channels >= 1 (got {tilde})")
        if c.dcm_kernel not in DCM_KERNELS:
            raise ConfigError(f"dcm_kernel must be one of {sorted(DCM_KERNELS)}; got {c.dcm_kernel}")
        if c.dcm_mode not in DCM_MODES:
            raise ConfigError(f"dcm_mode must be one of {list(DCM_MODES)}; got {c.dcm_mode!r}")
        if not 0.0 < c.dcm_hold_init < 1.0:
            raise ConfigError(f"dcm_hold_init must be in (0, 1); got {c.dcm_hold_init}")
        self.tilde = tilde
        self.embed_z = ComplexConv(1, c.channels // 2)
        self.embed_y = conv_block(1, c.ref_channels)
        self.embed_y_tilde = conv_block(3, tilde)
        init = {"mu": c.mu_init, "alpha": c.alpha_init, "lambda1": c.lambda1_init, "beta": c.beta_init,
                "lambda2": c.lambda2_init}
        hold = c.dcm_hold_init if c.dcm and c.dcm_mode == "weighted" else None  # None: literal eq. 18 or no DCM
        self.stages = nn.ModuleList([
            IMAStage(c.channels, c.ref_channels, tilde, attn_channels=c.attn_channels, attn_heads=c.attn_heads,
                     csca=c.csca, init=init, dcm_hold=hold) for _ in range(c.stages)])
        self.decode = ComplexConv(c.channels // 2, 1)

    @classmethod
    def from_config(cls, config):
        return cls(legacy_config(config))

    def dcm_holds(self) -> list[float] | None:
        """The hold weight omega^(t) of eq. 18 per stage (weighted DCM), None for literal DCM or no DCM."""
        with torch.no_grad():
            holds = [stage.dcm_hold() for stage in self.stages]
        return None if any(h is None for h in holds) else [float(h) for h in holds]

    def stage_masks(self, mask: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """M^(0) as (B, 1, H, W) float and the DCM mask of every stage (eqs. 16-17)."""
        c = self.config
        mask0 = full_mask(mask, shape)
        return mask0, dcm_schedule(mask0, c.stages, kernel=c.dcm_kernel, delta=c.dcm_delta, ratio=c.dcm_ratio,
                                   enabled=c.dcm)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor | None,
                return_all: bool = False):
        """kspace (B, 1, H, W) complex, zeros where not measured; mask broadcastable to it; reference (B, H, W)
        real (max-normalised) or None for ``use_reference=False``. Returns the (B, H, W) magnitude, or with
        ``return_all`` a dict with ``image``, ``features`` X^(T), ``mapping`` A(Y) + B(Y-tilde^(T)),
        ``complex`` (B, H, W) and the per-stage ``masks``."""
        if kspace.ndim != 4 or kspace.shape[1] != 1:
            raise DataError(f"ima reconstructs single-coil k-space (B, 1, H, W), as in the paper; got "
                            f"{tuple(kspace.shape)} (multi-coil data: combine the coils first)")
        b, _, h, w = kspace.shape
        if self.config.use_reference:
            if reference is None:
                raise DataError("ima needs the fully sampled reference contrast (paired data: "
                                "--target-contrast/--reference-contrast); ima-single runs without it")
            ref = reference.abs().to(torch.float32)
            # max-normalised per slice (the datasets already deliver max 1; this guards other callers)
            ref = ref / ref.flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny).view(-1, 1, 1)
        else:
            ref = torch.zeros(b, h, w, device=kspace.device)
        if tuple(ref.shape[-2:]) != (h, w):
            raise DataError(f"reference {tuple(ref.shape)} does not match the k-space {(h, w)}")
        ref = ref.reshape(b, 1, h, w)
        zero_filled = ifft2c(kspace)  # (B, 1, H, W)
        z = self.embed_z(zero_filled)  # Z, complex (B, C/2, H, W)
        k_z = fft2c(z)  # K^(0) = F Z
        mask0, masks = self.stage_masks(mask, (h, w))
        y = self.embed_y(ref)  # Y
        yt = self.embed_y_tilde(torch.cat([ref, zero_filled.real, zero_filled.imag], dim=1))  # Y-tilde^(0)
        x = g = complex_to_channels(z)  # X^(0) = G^(0) = Z
        mapped = None
        for stage, mask_t in zip(self.stages, masks, strict=True):
            x, g, yt, mapped = stage(x, g, yt, y, k_z, mask0, mask_t)
        out = self.decode(channels_to_complex(x))  # X_out, (B, 1, H, W) complex
        if self.config.output_dc:
            out = ifft2c(hard_dc(fft2c(out), kspace, mask0.to(torch.bool)))
        image = out[:, 0].abs()
        if not return_all:
            return image
        return {"image": image, "complex": out[:, 0], "features": x, "mapping": mapped, "masks": masks}

    def predict(self, batch: Batch) -> torch.Tensor:
        return self(batch.kspace, batch.mask, batch.reference)

    def training_loss(self, batch: Batch, loss_fn) -> dict[str, torch.Tensor]:
        """Eq. 25: loss_fn(X_out, X_GT) (L1 in the paper) + gamma L1(X^(T), A(Y) + B(Y-tilde^(T)))."""
        if batch.target is None:
            raise DataError("training needs samples with a fully sampled target")
        out = self(batch.kspace, batch.mask, batch.reference, return_all=True)
        image_loss = loss_fn(out["image"], batch.target.abs().to(out["image"].dtype))
        mapping_loss = F.l1_loss(out["features"], out["mapping"])
        return {"loss": image_loss + self.config.gamma * mapping_loss, "loss_image": image_loss.detach(),
                "loss_mapping": mapping_loss.detach()}
