"""LDPM: undersampled MRI reconstruction with MR-VAE and a latent diffusion prior (Guan, Tang et al.).

Modules (paper section -> file): sketcher SkM (II.A) ``sketcher.py`` + ``mrrecon/nn/swin.py``; measurement
model and DC (eqs. 3, 9, 10) ``physics.py``; MR-VAE (II.B.1, eq. 5) ``vae.py``; generator: frozen latent
denoiser + IRControlNet (II.B.2, eqs. 6-7) ``generator.py``; Dual-Stage Sampler (II.B.3, eqs. 8-12)
``sampler.py``; the reconstructor and ablations ``pipeline.py``; training of every network ``recipes.py``
(recipes of ``mrrecon.train``); non-MRI images for the ablation VAE ``textures.py``. See docs/ldpm.md.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import torch

from mrrecon.core.reconstructor import MethodInfo, register
from mrrecon.methods.ldpm.pipeline import LDPMReconstructor
from mrrecon.methods.ldpm.sampler import SamplerSettings

PAPER = ("Guan, Tang et al., LDPM: Towards undersampled MRI reconstruction with MR-VAE and Latent Diffusion "
         "Prior (conference and extended versions)")
DEFAULT_WEIGHTS = "ldpm-small"


def _factory(variant: str, checkpoint: str | None = None, device: str | torch.device = "cpu", *,
             steps: Annotated[int, "spaced sampling steps = denoiser evaluations"] = SamplerSettings.steps,
             guidance_scale: Annotated[float, "g of eq. 11"] = SamplerSettings.guidance_scale,
             stage_boundary: Annotated[int, "p: DC (eq. 9) for t > p, guidance (eqs. 10-11) for t <= p"]
             = SamplerSettings.stage_boundary,
             eta: Annotated[float, "0 = deterministic DDIM update, 1 = DDPM noise in eq. 12"] = SamplerSettings.eta,
             seed: Annotated[int, "initial-noise seed"] = 0,
             vae: Annotated[str | None, "VAE folder to use instead of the shipped one (mrrecon ldpm-vae folder or "
                                        "diffusers AutoencoderKL)"] = None) -> LDPMReconstructor:
    return LDPMReconstructor(variant, checkpoint=checkpoint, device=device, steps=steps,
                             guidance_scale=guidance_scale, stage_boundary=stage_boundary, eta=eta, seed=seed, vae=vae)


def _sketcher(checkpoint: str | None = None, device: str | torch.device = "cpu") -> LDPMReconstructor:
    """``ldpm-sketcher``: the sketch alone takes none of the sampler's options."""
    return LDPMReconstructor("ldpm-sketcher", checkpoint=checkpoint, device=device)


_DESCRIPTIONS = {
    "ldpm": "LDPM: SwinIR sketch + DC -> MR-VAE latent -> IRControlNet-controlled latent diffusion, Dual-Stage "
            "Sampler (DC for t > p, k-space guidance for t <= p).",
    "ldpm-no-skm": "LDPM ablation w/o SkM: the ControlNet is conditioned on the zero-filled image x_u.",
    "ldpm-no-mrvae": "LDPM ablation w/o MR-VAE: a VAE never adapted to MRI (trained on non-MRI images).",
    "ldpm-no-dss": "LDPM ablation w/o DSS: plain DDIM sampling, no DC or k-space guidance.",
    "ldpm-sketcher": "LDPM's sketcher module alone: SwinIR repair + DC (eq. 3).",
}
# No hard-DC claim: the last steps (t <= p) take gradient steps on the k-space residual (eqs. 10-11), and where
# DC is applied (sketch, t > p) the magnitude of the DC'd image is taken after it (eqs. 3, 9). NFE: denoiser
# evaluations (U-Net + ControlNet), one per sampling step; the sketcher alone evaluates none.
for _name, _desc in _DESCRIPTIONS.items():
    register(MethodInfo(
        name=_name, factory=_sketcher if _name == "ldpm-sketcher" else partial(_factory, _name), description=_desc,
        needs_weights=True, default_weights=DEFAULT_WEIGHTS, paper=PAPER,
        ablation_of=None if _name == "ldpm" else "ldpm",
        nfe=0 if _name == "ldpm-sketcher" else (lambda m: m.settings.steps)))
