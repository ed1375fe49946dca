"""Every registered method on tiny inputs: tiny seeded models, fast options, two deterministic samples.

Used by ``tests/test_pinned_outputs.py`` and ``tests/fixtures/make_pinned_outputs.py``. Every import of
mrrecon internals is here, at the top, so that when modules move only this file changes (the registry and the
Reconstructor protocol come from the public ``mrrecon.methods``, which re-exports them wherever they live).

The samples are built with plain torch / numpy (own centred FFT, own masks), not with mrrecon's physics or
mask code, so that a change there shows up as a changed reconstruction, not as a changed input:

* ``single``: 32 x 32 single-coil k-space, 2-D (1, H, W) mask (random points + 8 x 8 centre box);
* ``multi``: 32 x 32, 4 coils with smooth analytic sensitivities (given as ``coil_maps``), 1-D (1, 1, W) mask
  (12 centre columns + 3 random columns);

both with seeded complex Gaussian noise on the measured samples, as in real data: without noise the empty
background makes coil-map estimates (e.g. LDPM's RSS-normalised maps) divide by near-zero values and amplify
rounding differences far beyond the tolerance;
* ``reference``: a second contrast of the same phantom, attached for methods that need one (IMA).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.methods import Reconstructor, available, load
from mrrecon.methods.akdiff.model import AKDiffusionModel
from mrrecon.methods.ima.model import IMAModel
from mrrecon.methods.ldpm.generator import IRControlNet, LatentDenoiser
from mrrecon.methods.ldpm.sketcher import SketcherModel
from mrrecon.methods.ldpm.vae import MRVAE
from mrrecon.methods.ssdm.model import SSDMModel
from mrrecon.methods.unet import UnetModel
from mrrecon.methods.varnet import VarNetModel

__all__ = ["EXCLUDED", "KINDS", "SIZE", "TinyMethod", "key", "make_sample", "reconstruct", "registered_names",
           "sample_arrays", "tiny_methods", "weights_fingerprint"]

SIZE = 32
COILS = 4
KINDS = ("single", "multi")
SEED = 0
NOISE = 2e-3  # k-space noise std relative to the largest k-space magnitude

# Registered methods that are not pinned, with the reason.
EXCLUDED = {
    "bart-pics": "external program (the BART binary): not mrrecon code, not installed everywhere",
    "sigpy-l1wavelet": "external library (SigPy's solver): not mrrecon code",
}


# --------------------------------------------------------------------------------------------------
# Samples (plain torch / numpy)
# --------------------------------------------------------------------------------------------------
def _fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims (the fastMRI convention), written out here."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims)


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-1, 1, n, dtype=torch.float64)
    return torch.meshgrid(axis, axis, indexing="ij")


def _ellipse(yy, xx, cy, cx, ry, rx) -> torch.Tensor:
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).double()


def _phantom(n: int, weights: tuple[float, float, float, float]) -> torch.Tensor:
    """(n, n) real head-like phantom: skull, brain with texture, two lesions; ``weights`` set the contrast."""
    yy, xx = _grid(n)
    skull, brain = _ellipse(yy, xx, 0, 0, 0.9, 0.75), _ellipse(yy, xx, 0, 0, 0.8, 0.65)
    lesion1, lesion2 = _ellipse(yy, xx, -0.2, 0.25, 0.25, 0.15), _ellipse(yy, xx, 0.35, -0.2, 0.12, 0.2)
    w_skull, w_brain, w_l1, w_l2 = weights
    texture = 0.15 * torch.cos(5 * xx + 1.0) * torch.sin(3 * yy)
    return (w_skull * (skull - brain) + (w_brain + texture) * brain + w_l1 * lesion1 + w_l2 * lesion2)


def _image(n: int) -> torch.Tensor:
    """The target contrast: complex, smooth phase."""
    yy, xx = _grid(n)
    return _phantom(n, (0.3, 0.6, 0.35, -0.3)) * torch.exp(1j * (0.4 * xx - 0.3 * yy + 0.2))


def _coil_maps(n: int, coils: int) -> torch.Tensor:
    """(coils, n, n) smooth Gaussian sensitivities around the object with linear phases, unit RSS per pixel."""
    yy, xx = _grid(n)
    maps = []
    for c in range(coils):
        a = 2 * math.pi * (c + 0.5) / coils
        cy, cx = 1.2 * math.sin(a), 1.2 * math.cos(a)
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.9 ** 2))
        maps.append(mag * torch.exp(1j * (0.7 * c + 0.5 * (math.cos(a) * yy + math.sin(a) * xx))))
    maps = torch.stack(maps)
    return maps / maps.abs().pow(2).sum(dim=0).sqrt()


def _mask(kind: str, n: int, rng: np.random.Generator) -> torch.Tensor:
    """single: (1, n, n) 8 x 8 centre box + 30 % random points; multi: (1, 1, n) 12 centre columns + 3 random."""
    if kind == "single":
        m = rng.random((n, n)) < 0.3
        m[n // 2 - 4:n // 2 + 4, n // 2 - 4:n // 2 + 4] = True
        return torch.from_numpy(m).view(1, n, n)
    m = np.zeros(n, dtype=bool)
    m[n // 2 - 6:n // 2 + 6] = True
    m[rng.choice(np.flatnonzero(~m), size=3, replace=False)] = True
    return torch.from_numpy(m).view(1, 1, n)


def make_sample(kind: str, *, reference: bool = False) -> Sample:
    """The tiny deterministic ``single`` or ``multi`` coil Sample, normalised to max zero-filled RSS 1."""
    if kind not in KINDS:
        raise ValueError(f"sample kind must be one of {KINDS}, got {kind!r}")
    x = _image(SIZE)
    maps = _coil_maps(SIZE, COILS) if kind == "multi" else None
    coil_images = x.unsqueeze(0) if maps is None else maps * x
    rng = np.random.default_rng([SEED, KINDS.index(kind)])
    mask = _mask(kind, SIZE, rng)
    full = _fft2c(coil_images)
    noise = rng.standard_normal((2, *full.shape)) * NOISE * float(full.abs().max())
    kspace = torch.where(mask, full + torch.complex(*torch.from_numpy(noise)), torch.zeros((), dtype=full.dtype))
    zero_filled = torch.fft.ifftshift(torch.fft.ifft2(torch.fft.fftshift(kspace, dim=(-2, -1)), norm="ortho"),
                                      dim=(-2, -1))
    scale = float(zero_filled.abs().pow(2).sum(dim=0).sqrt().max())
    ref = _phantom(SIZE, (0.8, 0.3, 0.1, 0.6)) / scale if reference else None
    return Sample(
        kspace=(kspace / scale).to(torch.complex64), mask=mask, target=(x.abs() / scale).float(),
        coil_maps=None if maps is None else maps.to(torch.complex64),
        reference=None if ref is None else ref.float(),
        meta=SampleMeta(file=f"tiny-{kind}", slice=0, seed=SEED, scale=scale),
    ).validate()


# --------------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------------
def _randomise(model: nn.Module, std: float) -> nn.Module:
    """Add seeded noise to every parameter, so zero-initialised layers (ControlNet outputs, residual heads)
    contribute to the output too."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn_like(p))
    return model.eval()


def _save(model: nn.Module, folder: Path) -> None:
    """``save_pretrained`` of a PretrainedModel (config.json + model.safetensors), in eval mode."""
    model.eval().save_pretrained(folder)


TINY_UNET = {"chans": 4, "num_pool_layers": 2}
TINY_VARNET = {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2}
TINY_SSDM = {"width": 2, "emb_dim": 8, "sampling_steps": 2}  # the default stage samples 2 DDIM steps
TINY_IMA = {"stages": 2, "channels": 4, "ref_channels": 2, "attn_channels": 2}
TINY_AKDIFF = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_levels": [1]}
# AK-Diffusion's units and frequencies before Issue 19 (k-space * reference_size / sqrt(HW), G_t and w(k) in
# cycles/pixel, sigma_0 = 0.01): the legacy variants below reproduce the pins of 2ca2665 exactly.
TINY_AKDIFF_LEGACY = {"kspace_scaling": "size", "reference_size": 128, "frequency_units": "pixel",
                      "lowpass_std": 0.05, "kspace_weight_f0": 1.0 / 64, "sigma_min_rule": "absolute",
                      "sigma_min": 0.01}
TINY_SWIN = {"embed_dim": 8, "depths": [2], "heads": [2], "window": 4, "mlp_ratio": 2.0}
TINY_VAE = {"block_out_channels": [8, 8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
            "image_channels": 1, "scaling_factor": 1.0, "sample_size": 16}
TINY_LDPM_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4,
                  "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "block_out_channels": [8, 16],
                  "layers_per_block": 1, "cross_attention_dim": 8, "attention_head_dim": 4, "norm_num_groups": 4}


def _unet(folder: Path) -> None:
    torch.manual_seed(SEED)
    _save(UnetModel(TINY_UNET), folder)


def _varnet(folder: Path) -> None:
    torch.manual_seed(SEED)
    _save(VarNetModel(TINY_VARNET), folder)


def _ssdm(folder: Path) -> None:
    torch.manual_seed(SEED)
    _save(SSDMModel(TINY_SSDM), folder)


def _ima(flags: dict) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        torch.manual_seed(SEED)
        _save(IMAModel({**TINY_IMA, **flags}), folder)
    return write


def _akdiff(train_subspace: str, legacy: bool = False) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        torch.manual_seed(SEED)
        extra = TINY_AKDIFF_LEGACY if legacy else {}
        _save(_randomise(AKDiffusionModel({**TINY_AKDIFF, **extra, "train_subspace": train_subspace}), 0.01), folder)
    return write


def _ldpm(folder: Path) -> None:
    """The ldpm-small layout: sketcher, mrvae, vae-nonmri, denoiser, controlnet."""
    torch.manual_seed(SEED)
    _save(_randomise(SketcherModel(TINY_SWIN), 0.05), folder / "sketcher")
    _save(MRVAE(TINY_VAE), folder / "mrvae")
    _save(MRVAE(TINY_VAE), folder / "vae-nonmri")
    denoiser = _randomise(LatentDenoiser({"unet": TINY_LDPM_UNET, "context_tokens": 1}), 0.05)
    _save(denoiser, folder / "denoiser")
    _save(_randomise(IRControlNet.from_denoiser(denoiser), 0.05), folder / "controlnet")


# --------------------------------------------------------------------------------------------------
# The list
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TinyMethod:
    """One pinned method spec: which registered method, which samples, how to write its tiny weights."""

    spec: str
    kinds: tuple[str, ...]
    write_weights: Callable[[Path], None] | None = None
    needs_reference: bool = False

    @property
    def name(self) -> str:
        return self.spec.split(":", 1)[0]

    def build(self, workdir: Path) -> Reconstructor:
        """The method, with its tiny weights written under ``workdir`` (once per spec)."""
        if self.write_weights is None:
            return load(self.spec)
        folder = weights_folder(self, workdir)
        if not folder.exists():
            self.write_weights(folder)
        return load(self.spec, checkpoint=str(folder))


def weights_folder(method: TinyMethod, workdir: Path) -> Path:
    return Path(workdir) / method.spec.replace(":", "_").replace("=", "-")


BOTH, SINGLE, MULTI = ("single", "multi"), ("single",), ("multi",)
# t = 999 (DC, eq. 9), then t = 499 (guidance, eqs. 10-11). Each DC step goes through the random VAE and
# amplifies rounding differences: a 1e-7 relative k-space change moves the output ~5e-7 here, but 1e-5 to 1e-4
# with 4 DC steps (steps=5) and a 4-level VAE, i.e. to the tolerance.
LDPM_STEPS = "steps=2:stage_boundary=600"
AKDIFF_STEPS = "steps=4"
# The legacy AK-Diffusion variants need keys of their own: ":corrector_steps=1" is the default M = 1 spelled out
# (no change of behaviour), their tiny checkpoints use TINY_AKDIFF_LEGACY.
AKDIFF_LEGACY_STEPS = "steps=4:corrector_steps=1"


def tiny_methods() -> list[TinyMethod]:
    """Every pinned spec: each registered method (except EXCLUDED) once, plus variants that take other paths
    through the physics (soft DC, given coil maps, ESPIRiT maps)."""
    return [
        TinyMethod("zero-filled", BOTH),
        TinyMethod("cg-sense", BOTH),
        TinyMethod("cg-sense:maps=espirit", MULTI),
        TinyMethod("l1-wavelet", BOTH),
        TinyMethod("tv", BOTH),
        TinyMethod("grappa", MULTI),
        TinyMethod("spirit", MULTI),
        TinyMethod("loraks", MULTI),
        TinyMethod("unet", BOTH, _unet),
        TinyMethod("varnet", BOTH, _varnet),
        TinyMethod("ima", SINGLE, _ima({}), needs_reference=True),
        TinyMethod("ima-no-csca", SINGLE, _ima({"csca": False}), needs_reference=True),
        TinyMethod("ima-no-dcm", SINGLE, _ima({"dcm": False}), needs_reference=True),
        TinyMethod("ima-single", SINGLE, _ima({"use_reference": False})),
        # T = 4 stages, so that DCM dilates (stage 1); the two readings of eq. 18 (the literal one is the DCM of
        # the code before dcm_mode existed, bit for bit)
        TinyMethod("ima:dcm_mode=literal", SINGLE, _ima({"stages": 4, "dcm_mode": "literal"}), needs_reference=True),
        TinyMethod("ima:dcm_mode=weighted", SINGLE, _ima({"stages": 4, "dcm_mode": "weighted"}),
                   needs_reference=True),
        TinyMethod("ssdm", BOTH, _ssdm),
        TinyMethod("ssdm:dc=soft", BOTH, _ssdm),
        TinyMethod("ssdm:maps=given", MULTI, _ssdm),
        TinyMethod(f"ldpm:{LDPM_STEPS}", BOTH, _ldpm),
        TinyMethod(f"ldpm-no-skm:{LDPM_STEPS}", BOTH, _ldpm),
        TinyMethod(f"ldpm-no-mrvae:{LDPM_STEPS}", BOTH, _ldpm),
        TinyMethod("ldpm-no-dss:steps=2", BOTH, _ldpm),
        TinyMethod("ldpm-sketcher", BOTH, _ldpm),
        TinyMethod(f"akdiff:{AKDIFF_STEPS}", MULTI, _akdiff("espirit")),
        TinyMethod(f"akdiff-no-sscoil:{AKDIFF_STEPS}", MULTI, _akdiff("identity")),
        TinyMethod(f"akdiff-no-slr:{AKDIFF_STEPS}", MULTI, _akdiff("espirit")),
        TinyMethod(f"akdiff:{AKDIFF_LEGACY_STEPS}", MULTI, _akdiff("espirit", legacy=True)),
        TinyMethod(f"akdiff-no-sscoil:{AKDIFF_LEGACY_STEPS}", MULTI, _akdiff("identity", legacy=True)),
        TinyMethod(f"akdiff-no-slr:{AKDIFF_LEGACY_STEPS}", MULTI, _akdiff("espirit", legacy=True)),
    ]


def registered_names() -> list[str]:
    return list(available())


def key(spec: str, kind: str) -> str:
    return f"{spec}|{kind}"


def reconstruct(method: TinyMethod, kind: str, workdir: Path) -> np.ndarray:
    """(H, W) float32 output of ``method`` on the ``kind`` sample: one thread, torch seed 0 before the call."""
    torch.set_num_threads(1)
    recon = method.build(workdir)
    sample = make_sample(kind, reference=method.needs_reference)
    torch.manual_seed(0)
    with torch.no_grad():
        out = recon.reconstruct(sample)
    return out.detach().to("cpu", torch.float32).numpy()


def sample_arrays() -> dict[str, np.ndarray]:
    """The samples' tensors as arrays (stored with the pinned outputs to tell input changes from method changes)."""
    arrays = {}
    for kind in KINDS:
        s = make_sample(kind, reference=True)
        for name in ("kspace", "mask", "coil_maps", "reference"):
            t = getattr(s, name)
            if t is not None:
                arrays[f"input|{kind}|{name}"] = t.numpy()
    return arrays


def weights_fingerprint(method: TinyMethod, workdir: Path) -> str:
    """SHA-256 of the tiny checkpoint tensors (names and float32 values), '' for methods without weights."""
    if method.write_weights is None:
        return ""
    folder = weights_folder(method, workdir)
    if not folder.exists():
        method.write_weights(folder)
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.safetensors")):
        tensors = load_file(str(f))
        for name in sorted(tensors):
            h.update(f"{f.relative_to(folder)}:{name}".encode())
            h.update(tensors[name].float().contiguous().numpy().tobytes())
    return h.hexdigest()
