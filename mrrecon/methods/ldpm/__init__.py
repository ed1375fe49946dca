"""LDPM: undersampled MRI reconstruction with MR-VAE and a latent diffusion prior (Guan, Tang et al.).

Modules (paper section -> file): sketcher SkM (II.A) ``sketcher.py`` + ``mrrecon/nn/swin.py``; measurement
model and DC (eqs. 3, 9, 10) ``physics.py``; MR-VAE (II.B.1, eq. 5) ``vae.py``; generator: frozen latent
denoiser + IRControlNet (II.B.2, eqs. 6-7) ``generator.py``; Dual-Stage Sampler (II.B.3, eqs. 8-12)
``sampler.py``; the reconstructor and ablations ``pipeline.py``; training of every network ``train.py``;
non-MRI images for the ablation VAE ``textures.py``. See docs/ldpm.md.
"""

from __future__ import annotations

from functools import partial

from mrrecon.core.reconstructor import MethodInfo, register
from mrrecon.methods.ldpm.pipeline import LDPMReconstructor

PAPER = ("Guan, Tang et al., LDPM: Towards undersampled MRI reconstruction with MR-VAE and Latent Diffusion "
         "Prior (conference and extended versions)")
DEFAULT_WEIGHTS = "ldpm-small"
_OPTIONS = {
    "steps": "spaced sampling steps = denoiser evaluations (default 50)",
    "guidance_scale": "g of eq. 11 (default 0.1)",
    "stage_boundary": "p: DC (eq. 9) for t > p, guidance (eqs. 10-11) for t <= p (default 200)",
    "eta": "0 = deterministic DDIM update (default), 1 = DDPM noise in eq. 12",
    "seed": "initial-noise seed (default 0)",
    "vae": "VAE folder to use instead of the shipped one (mrrecon ldpm-vae folder or diffusers AutoencoderKL)",
}


def _factory(variant: str, checkpoint: str | None = None, device="cpu", **options):
    return LDPMReconstructor(variant, checkpoint=checkpoint, device=device, **options)


_DESCRIPTIONS = {
    "ldpm": "LDPM: SwinIR sketch + DC -> MR-VAE latent -> IRControlNet-controlled latent diffusion, Dual-Stage "
            "Sampler (DC for t > p, k-space guidance for t <= p).",
    "ldpm-no-skm": "LDPM ablation w/o SkM: the ControlNet is conditioned on the zero-filled image x_u.",
    "ldpm-no-mrvae": "LDPM ablation w/o MR-VAE: a VAE never adapted to MRI (trained on non-MRI images).",
    "ldpm-no-dss": "LDPM ablation w/o DSS: plain DDIM sampling, no DC or k-space guidance.",
    "ldpm-sketcher": "LDPM's sketcher module alone: SwinIR repair + DC (eq. 3).",
}
for _name, _desc in _DESCRIPTIONS.items():
    register(MethodInfo(
        name=_name, factory=partial(_factory, _name), description=_desc, needs_weights=True,
        default_weights=DEFAULT_WEIGHTS, paper=PAPER, ablation_of=None if _name == "ldpm" else "ldpm",
        options={} if _name == "ldpm-sketcher" else dict(_OPTIONS)))
