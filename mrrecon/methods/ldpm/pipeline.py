"""The LDPM reconstructor (eq. 1: x_hat = Phi(k_u, M)) and its Table II ablations.

Phi = phi_2(k_u, M, phi_1(x_u, M)): sketch c (SkM, eq. 2-3) -> c_latent = E(c) -> Dual-Stage Sampler with the
ControlNet-controlled frozen denoiser (eqs. 8-12) -> x_hat = D(z_0).

Variants (registered method names):

* ``ldpm``           -- the method.
* ``ldpm-no-skm``    -- the condition is the zero-filled image x_u itself (no SwinIR, no DC before encoding),
                        with the same trained ControlNet.
* ``ldpm-no-mrvae``  -- a VAE never adapted to MRI: ``weights/ldpm-small/vae-nonmri`` (the MR-VAE's
                        pre-training on procedural non-MRI images, the analogue of SD's VAE), or with the
                        ``vae=`` option any mrrecon VAE folder or a local diffusers AutoencoderKL folder
                        (e.g. Stable Diffusion 2.1-base's ``vae/``).
* ``ldpm-no-dss``    -- plain DDIM sampling (no DC, no k-space guidance).
* ``ldpm-sketcher``  -- the sketch c alone (SkM output), for comparison.

Every variant except ``ldpm-sketcher`` ends with the same final data consistency of the decoded image
(``final_dc``: hard by default, ``soft`` with ``final_dc_weight``, ``none`` = the paper's D(z_0)), so that the
ablations differ only in what their row of Table II removes (docs/ldpm.md). With hard final DC,
``reconstruct_complex`` is the complex DC image, whose single-coil k-space equals k_u at the mask.

Samples are normalised by the peak of their zero-filled magnitude (the training convention) and the result is
scaled back. ``last_nfe`` counts denoiser evaluations (U-Net + ControlNet) of the last slice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mrrecon.core.pretrained import from_pretrained, resolve_pretrained
from mrrecon.core.reconstructor import Reconstructor
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.methods.ldpm.generator import ControlledDenoiser
from mrrecon.methods.ldpm.physics import Measurement, check_single_coil_phase
from mrrecon.methods.ldpm.sampler import SamplerSettings, dual_stage_sample, pad_to
from mrrecon.methods.ldpm.vae import MRVAE

__all__ = ["VARIANTS", "LDPMReconstructor", "load_vae"]

VARIANTS = ("ldpm", "ldpm-no-skm", "ldpm-no-mrvae", "ldpm-no-dss", "ldpm-sketcher")
SUBFOLDERS = {"sketcher": "sketcher", "vae": "mrvae", "vae_nonmri": "vae-nonmri", "denoiser": "denoiser",
              "controlnet": "controlnet"}


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> MRVAE:
    """An mrrecon VAE folder (config.json of type ldpm-vae) or a diffusers AutoencoderKL folder."""
    p = Path(path)
    cfg = p / "config.json"
    if cfg.is_file() and (p / "diffusion_pytorch_model.safetensors").is_file():
        return MRVAE.from_diffusers(p).to(device).eval()
    return from_pretrained(p, device=device, expected_type="ldpm-vae")


class LDPMReconstructor(Reconstructor):
    def __init__(self, variant: str = "ldpm", checkpoint: str | None = None, device: str | torch.device = "cpu",
                 steps: int = SamplerSettings.steps, guidance_scale: float = SamplerSettings.guidance_scale,
                 stage_boundary: int = SamplerSettings.stage_boundary, eta: float = SamplerSettings.eta,
                 seed: int = 0, vae: str | None = None, final_dc: str = SamplerSettings.final_dc,
                 final_dc_weight: float = SamplerSettings.final_dc_weight, samples: int = 1,
                 single_coil_phase: str = "auto"):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown LDPM variant {variant!r}; one of {VARIANTS}")
        if int(samples) < 1:
            raise ConfigError(f"samples must be >= 1, got {samples}")
        self.samples = int(samples)
        check_single_coil_phase(single_coil_phase)
        self.single_coil_phase = single_coil_phase
        self.name, self.variant = variant, variant
        self.device = torch.device(device)
        root = resolve_pretrained(checkpoint or "ldpm-small")
        self.seed = int(seed)
        self.settings = SamplerSettings(steps=int(steps), stage_boundary=int(stage_boundary),
                                        guidance_scale=float(guidance_scale), eta=float(eta),
                                        mode="plain" if variant == "ldpm-no-dss" else "dss",
                                        final_dc=str(final_dc), final_dc_weight=float(final_dc_weight)).check()
        self.sketcher = from_pretrained(root / SUBFOLDERS["sketcher"], device=self.device,
                                        expected_type="ldpm-sketcher")
        self.last_nfe = 0
        if variant == "ldpm-sketcher":
            self.vae = self.model = None
            return
        if vae is not None:
            self.vae = load_vae(vae, self.device)
        else:
            self.vae = load_vae(root / SUBFOLDERS["vae_nonmri" if variant == "ldpm-no-mrvae" else "vae"], self.device)
        denoiser = from_pretrained(root / SUBFOLDERS["denoiser"], device=self.device, expected_type="ldpm-denoiser")
        control = from_pretrained(root / SUBFOLDERS["controlnet"], device=self.device, expected_type="ldpm-controlnet")
        self.model = ControlledDenoiser(denoiser, control).eval()
        self.schedule = denoiser.config.schedule()
        downs = len(denoiser.unet.config.block_out_channels) - 1
        self.pad_multiple = self.vae.config.downsample * 2 ** downs

    def num_parameters(self) -> int:
        mods = [self.sketcher, self.vae, self.model]
        return sum(p.numel() for m in mods if m is not None for p in m.parameters())

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        return self._run(sample, complex_output=False)

    @torch.no_grad()
    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        """(H, W) complex64: the final DC image before its magnitude (``reconstruct`` is its magnitude). With
        ``final_dc=hard`` its single-coil k-space equals the measured samples; with ``none`` (and for
        ``ldpm-sketcher``, whose sketch is already a magnitude) it is the real output."""
        return self._run(sample, complex_output=True)

    def _run(self, sample: Sample, complex_output: bool) -> torch.Tensor:
        k = sample.kspace.to(self.device, torch.complex64).unsqueeze(0)
        mask = sample.mask.to(self.device).unsqueeze(0)
        meas0 = Measurement.from_kspace(k, mask, self.single_coil_phase)
        scale = meas0.zero_filled().amax().clamp_min(torch.finfo(torch.float32).tiny)
        meas = Measurement(meas0.kspace / scale, meas0.mask, meas0.maps)
        if self.variant == "ldpm-no-skm":
            cond = meas.zero_filled()
        else:
            cond = self.sketcher.sketch(meas)
        if self.variant == "ldpm-sketcher":
            self.last_nfe = 0
            out = (cond[0].float() * scale).clamp_min(0)
            return out.to(torch.complex64) if complex_output else out
        cond_pad, pad = pad_to(cond, self.pad_multiple)
        c_latent = self.vae.encode(cond_pad)
        # D(z_0), then the final DC, for each of ``samples`` initial noises (seeds seed, seed + 1, ...); their mean
        # (not in the paper: the posterior mean's estimate, as ssdm:samples) -- with one sample the paper's output
        x, nfe = 0, 0
        for k in range(self.samples):
            g = torch.Generator().manual_seed(self.seed + k)
            xk, nk = dual_stage_sample(lambda z, t: self.model(z, t, c_latent), self.vae, meas, self.schedule,
                                       self.settings, tuple(c_latent.shape), pad, generator=g, complex_output=True)
            x, nfe = x + xk / self.samples, nfe + nk
        self.last_nfe = nfe
        if complex_output:
            if meas.maps is not None and meas.maps.shape[1] == 1:
                # a single-coil phase map (acs, or auto on phased data): S conj(S) z / |S|^2 = z, the DC image
                # with the object's phase, whose k-space is k_u at the mask (the hard-DC claim), of the same
                # magnitude as the combined image
                x = x * meas.maps[:, 0]
            return x[0] * scale.to(x.real.dtype)
        return (x[0].abs().float() * scale).clamp_min(0)
