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

from mrrecon.core.reconstructor import SINGLE_COIL, MethodInfo, register
from mrrecon.methods.ldpm.pipeline import LDPMReconstructor
from mrrecon.methods.ldpm.sampler import SamplerSettings

PAPER = ("Guan, Tang et al., LDPM: Towards undersampled MRI reconstruction with MR-VAE and Latent Diffusion "
         "Prior (conference and extended versions)")
DEFAULT_WEIGHTS = "ldpm-small"
_PHASE_DOC = Annotated[str, "single-coil DC model: none (k_u of a real magnitude image, the paper's) | acs (the "
                            "object phase of the calibration block, as the multi-coil maps) | auto (acs where "
                            "the data carry a phase; docs/ldpm.md)"]


def _factory(variant: str, checkpoint: str | None = None, device: str | torch.device = "cpu", *,
             steps: Annotated[int, "spaced sampling steps = denoiser evaluations"] = SamplerSettings.steps,
             guidance_scale: Annotated[float, "g of eq. 11"] = SamplerSettings.guidance_scale,
             stage_boundary: Annotated[int, "p: DC (eq. 9) for t > p, guidance (eqs. 10-11) for t <= p"]
             = SamplerSettings.stage_boundary,
             eta: Annotated[float, "0 = deterministic DDIM update, 1 = DDPM noise in eq. 12"] = SamplerSettings.eta,
             seed: Annotated[int, "initial-noise seed"] = 0,
             vae: Annotated[str | None, "VAE folder to use instead of the shipped one (mrrecon ldpm-vae folder or "
                                        "diffusers AutoencoderKL)"] = None,
             final_dc: Annotated[str, "data consistency of the decoded image after the last step (not in the paper): "
                                      "hard | soft | none (the paper's D(z_0))"] = SamplerSettings.final_dc,
             final_dc_weight: Annotated[float, "soft final DC: fraction in (0, 1) the measured samples move toward "
                                               "k_u"] = SamplerSettings.final_dc_weight,
             samples: Annotated[int, "posterior samples from seeds seed, seed + 1, ... whose mean is the output (not "
                                     "in the paper; 1 = the paper's single sample)"] = 1,
             single_coil_phase: _PHASE_DOC = "auto") -> LDPMReconstructor:
    return LDPMReconstructor(variant, checkpoint=checkpoint, device=device, steps=steps,
                             guidance_scale=guidance_scale, stage_boundary=stage_boundary, eta=eta, seed=seed, vae=vae,
                             final_dc=final_dc, final_dc_weight=final_dc_weight, samples=samples,
                             single_coil_phase=single_coil_phase)


def _sketcher(checkpoint: str | None = None, device: str | torch.device = "cpu", *,
              single_coil_phase: _PHASE_DOC = "auto") -> LDPMReconstructor:
    """``ldpm-sketcher``: the sketch alone takes none of the sampler's options."""
    return LDPMReconstructor("ldpm-sketcher", checkpoint=checkpoint, device=device,
                             single_coil_phase=single_coil_phase)


_DESCRIPTIONS = {
    "ldpm": "LDPM: SwinIR sketch + DC -> MR-VAE latent -> IRControlNet-controlled latent diffusion, Dual-Stage "
            "Sampler (DC for t > p, k-space guidance for t <= p), final DC of the decoded image (final_dc).",
    "ldpm-no-skm": "LDPM ablation w/o SkM: the ControlNet is conditioned on the zero-filled image x_u.",
    "ldpm-no-mrvae": "LDPM ablation w/o MR-VAE: a VAE never adapted to MRI (trained on non-MRI images).",
    "ldpm-no-dss": "LDPM ablation w/o DSS: plain DDIM sampling, no DC or k-space guidance while sampling (the same "
                   "final DC as ldpm).",
    "ldpm-sketcher": "LDPM's sketcher module alone: SwinIR repair + DC (eq. 3).",
}
# Hard-DC claim: with final_dc=hard (the default) the sampled variants end with a hard DC of the decoded image;
# reconstruct_complex is that complex image, whose single-coil k-space equals k_u at the mask (multi-coil: the
# SENSE-combined DC image, no exact claim). No claim with soft / none, nor for the sketcher (the magnitude of its
# DC image, eq. 3). NFE: denoiser evaluations (U-Net + ControlNet), one per sampling step and sample; the sketcher
# none.


def _hard_dc_claim(method: LDPMReconstructor) -> dict[str, str]:
    return {SINGLE_COIL: "image"} if method.settings.final_dc == "hard" else {}


for _name, _desc in _DESCRIPTIONS.items():
    register(MethodInfo(
        name=_name, factory=_sketcher if _name == "ldpm-sketcher" else partial(_factory, _name), description=_desc,
        needs_weights=True, default_weights=DEFAULT_WEIGHTS, paper=PAPER,
        ablation_of=None if _name == "ldpm" else "ldpm",
        hard_dc={} if _name == "ldpm-sketcher" else _hard_dc_claim,
        nfe=0 if _name == "ldpm-sketcher" else (lambda m: m.settings.steps * m.samples)))
