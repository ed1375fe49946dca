"""Registry entries: ``akdiff`` and the ablations ``akdiff-no-sscoil`` and ``akdiff-no-slr`` (paper Table II).

* ``akdiff``: Sbar Sbar^* from ESPIRiT maps, SLR correction in line 6 (Algorithm 1, N = 50, M = 1);
* ``akdiff-no-sscoil``: the identity in place of Sbar Sbar^* in the forward process, the reverse process and the
  loss, so it uses a network trained with ``train_subspace: identity`` (weights ``akdiff-no-sscoil-small``);
* ``akdiff-no-slr``: data consistency only in line 6.

Every option of :class:`~mrrecon.methods.akdiff.sampler.SamplerSettings` is a method option
(``akdiff:subspace=sos``, ``akdiff:steps=20``; Table IV's variants are ``subspace=espirit|sos|slr``). The
k-space is divided by the peak of its zero-filled RSS image before sampling and the image multiplied back
(as :class:`~mrrecon.core.pretrained.LearnedReconstructor`), so any input units work.
"""

from __future__ import annotations

import dataclasses

import torch

from mrrecon.core.pretrained import from_pretrained
from mrrecon.core.reconstructor import MethodInfo, register
from mrrecon.data.sample import Sample
from mrrecon.errors import DataError
from mrrecon.methods.akdiff.model import AKDiffusionModel
from mrrecon.methods.akdiff.sampler import PCSampler, SamplerSettings
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c

__all__ = ["AKDiffusionReconstructor", "DEFAULT_WEIGHTS", "NO_SSCOIL_WEIGHTS"]

DEFAULT_WEIGHTS = "akdiff-small"
NO_SSCOIL_WEIGHTS = "akdiff-no-sscoil-small"
PAPER = "Cui, Liu et al., Physics-Informed DeepMRI: Bridging the Gap from Heat Diffusion to k-Space Interpolation"


class AKDiffusionReconstructor:
    """Reconstructor: PC sampling of the reverse AK-Diffusion -> RSS magnitude (H, W)."""

    def __init__(self, name: str = "akdiff", checkpoint: str | None = None, device: str | torch.device = "cpu",
                 default_weights: str = DEFAULT_WEIGHTS, **settings):
        self.name = name
        self.device = torch.device(device)
        self.model: AKDiffusionModel = from_pretrained(checkpoint or default_weights, device=self.device,
                                                       expected_type="akdiff")
        self.sampler = PCSampler(self.model, SamplerSettings(**settings))
        self.last_nfe = 0

    def num_parameters(self) -> int:
        return self.model.num_parameters()

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        if not sample.is_multicoil:
            raise DataError(f"{self.name} needs multi-coil k-space (the coil subspace Sbar Sbar^*)", sample.meta.file)
        k = sample.kspace.to(self.device, torch.complex64)
        scale = rss(ifft2c(k)).amax().clamp_min(torch.finfo(torch.float32).tiny)
        image = self.sampler.reconstruct_image(k / scale, sample.mask.to(self.device)) * scale
        self.last_nfe = self.sampler.last_nfe
        return image.clamp_min(0).cpu()


_OPTIONS = {
    "steps": "N predictor steps (paper: 50)",
    "corrector_steps": "M corrector steps per predictor step (paper: 1)",
    "snr": "r, the corrector's signal-to-noise ratio (step size); default 0.16",
    "lam": "lambda of line 6 (proximity to the network estimate); default 1",
    "correction": "line 6: slr (paper) | dc (data consistency only) | none",
    "data_weight": "line 6 data term: null = M z = y exactly (default); a number d gives (d/2)||Mz - y||^2",
    "slr_iters": "CG iterations of line 6 per step; default 10",
    "kernel_radius": "LORAKS neighbourhood radius of the SLR term; default 2",
    "energy": "rank rule of the SLR null space (fraction of ACS energy); default 0.999",
    "subspace": "Sbar Sbar^*: espirit (paper) | sos | slr | identity",
    "calib_size": "ESPIRiT calibration region; default 24",
    "seed": "sampler seed (initial noise and every noise draw); default 0",
}


def _factory(name: str, default_weights: str, **fixed):
    def build(checkpoint: str | None = None, device: str | torch.device = "cpu", **options):
        settings = {**fixed, **options}
        return AKDiffusionReconstructor(name, checkpoint, device, default_weights, **settings)
    return build


def _options(**fixed) -> dict[str, str]:
    return {k: v for k, v in _OPTIONS.items() if k not in fixed}


_NO_SSCOIL = {"subspace": "identity"}
assert {f.name for f in dataclasses.fields(SamplerSettings)} == set(_OPTIONS)

register(MethodInfo(
    name="akdiff",
    factory=_factory("akdiff", DEFAULT_WEIGHTS),
    description="AK-Diffusion: k-space heat-diffusion SDE with coil-subspace noise, PC sampling (N=50, M=1) with "
                "SLR/LORAKS correction; RSS.",
    multicoil_only=True,
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    paper=PAPER,
    options=_options(),
))
register(MethodInfo(
    name="akdiff-no-sscoil",
    ablation_of="akdiff",
    factory=_factory("akdiff-no-sscoil", NO_SSCOIL_WEIGHTS, **_NO_SSCOIL),
    description="AK-Diffusion ablation (Table II): identity instead of Sbar Sbar^* in forward, reverse and loss "
                "(network trained with isotropic noise).",
    multicoil_only=True,
    needs_weights=True,
    default_weights=NO_SSCOIL_WEIGHTS,
    paper=PAPER,
    options=_options(**_NO_SSCOIL),
))
register(MethodInfo(
    name="akdiff-no-slr",
    ablation_of="akdiff",
    factory=_factory("akdiff-no-slr", DEFAULT_WEIGHTS, correction="dc"),
    description="AK-Diffusion ablation (Table II): data consistency only in line 6 (no SLR term).",
    multicoil_only=True,
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    paper=PAPER,
    options=_options(correction="dc"),
))
