"""Registry entries: ``akdiff`` and the ablations ``akdiff-no-sscoil`` and ``akdiff-no-slr`` (paper Table II).

* ``akdiff``: Sbar Sbar^* from ESPIRiT maps, SLR correction in line 6 (Algorithm 1, N = 50, M = 1);
* ``akdiff-no-sscoil``: the identity in place of Sbar Sbar^* in the forward process, the reverse process and the
  loss, so it uses a network trained with ``train_subspace: identity`` (weights ``akdiff-no-sscoil-small``);
* ``akdiff-no-slr``: data consistency only in line 6.

Every option of :class:`~mrrecon.methods.akdiff.sampler.SamplerSettings` is a method option
(``akdiff:subspace=sos``, ``akdiff:steps=20``; Table IV's variants are ``subspace=espirit|sos|slr``). An option
not given takes the weights' own setting (``sampler`` in their config.json, chosen on validation slices) where
they have one, else the SamplerSettings default (:func:`~mrrecon.methods.akdiff.sampler.settings_for`). The
k-space is divided by the peak of its zero-filled RSS image before sampling and the image multiplied back
(as :class:`~mrrecon.core.pretrained.LearnedReconstructor`), so any input units work.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Annotated

import torch

from mrrecon.core.pretrained import from_pretrained
from mrrecon.core.reconstructor import MethodInfo, Reconstructor, factory_options, register
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


class AKDiffusionReconstructor(Reconstructor):
    """Reconstructor: PC sampling of the reverse AK-Diffusion -> RSS magnitude (H, W)."""

    def __init__(self, name: str = "akdiff", checkpoint: str | None = None, device: str | torch.device = "cpu",
                 default_weights: str = DEFAULT_WEIGHTS, **settings):
        self.name = name
        self.device = torch.device(device)
        self.model: AKDiffusionModel = from_pretrained(checkpoint or default_weights, device=self.device,
                                                       expected_type="akdiff")
        self.sampler = PCSampler(self.model, **settings)  # the weights' own settings, then these
        self.last_nfe = 0

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        if not sample.is_multicoil:
            raise DataError(f"{self.name} needs multi-coil k-space (the coil subspace Sbar Sbar^*)", sample.meta.file)
        k = sample.kspace.to(self.device, torch.complex64)
        scale = rss(ifft2c(k)).amax().clamp_min(torch.finfo(torch.float32).tiny)
        image = self.sampler.reconstruct_image(k / scale, sample.mask.to(self.device)) * scale
        self.last_nfe = self.sampler.last_nfe
        return image.clamp_min(0).cpu()


_S = SamplerSettings  # the defaults of every option


def _default(value) -> str:
    return f"default: the weights' own (config.json sampler), else {value}"


# Every option but data_weight defaults to None: "not given", so the weights' own setting (their config's
# ``sampler`` entry, chosen on validation slices) applies, else SamplerSettings' default (settings_for).
def _build(name: str, default_weights: str, checkpoint: str | None = None, device: str | torch.device = "cpu", *,
           steps: Annotated[int | None, f"N predictor steps ({_default(_S.steps)})"] = None,
           corrector_steps: Annotated[int | None, f"M corrector steps per predictor step "
                                                  f"({_default(_S.corrector_steps)})"] = None,
           snr: Annotated[float | None, f"r, the corrector's signal-to-noise ratio (step size) "
                                        f"({_default(_S.snr)})"] = None,
           lam: Annotated[float | None, f"lambda of line 6 (proximity to the network estimate) "
                                        f"({_default(_S.lam)})"] = None,
           correction: Annotated[str | None, f"line 6: slr (paper) | dc (data consistency only) | none "
                                             f"({_default(_S.correction)})"] = None,
           data_weight: Annotated[float | None, "line 6 data term: null = M z = y exactly (default); a number d "
                                                "gives (d/2)||Mz - y||^2"] = _S.data_weight,
           slr_iters: Annotated[int | None, f"CG iterations of line 6 per step ({_default(_S.slr_iters)})"] = None,
           kernel_radius: Annotated[float | None, f"LORAKS neighbourhood radius of the SLR term "
                                                  f"({_default(_S.kernel_radius)})"] = None,
           energy: Annotated[float | None, f"rank rule of the SLR null space (fraction of ACS energy) "
                                           f"({_default(_S.energy)})"] = None,
           subspace: Annotated[str | None, f"Sbar Sbar^*: espirit (paper) | sos | slr | identity "
                                           f"({_default(_S.subspace)})"] = None,
           calib_size: Annotated[int | None, f"ESPIRiT calibration region ({_default(_S.calib_size)})"] = None,
           seed: Annotated[int | None, f"sampler seed (initial noise and every noise draw) ({_default(_S.seed)})"]
           = None,
           output: Annotated[str | None, f"state (line 16's z_0, the paper) | corrected (line 6's z0'' of the last "
                                         f"step: no last noise and Langevin moves) | projected (that z0'' projected "
                                         f"onto the coil subspace, measured samples kept) ({_default(_S.output)})"
                             ] = None,
           drift: Annotated[str | None, f"what Sbar Sbar^* projects besides the noise: subspace (the score terms "
                                        f"of lines 7 and 11 too, the paper) | full ({_default(_S.drift)})"] = None,
           ) -> AKDiffusionReconstructor:
    given = dict(steps=steps, corrector_steps=corrector_steps, snr=snr, lam=lam, correction=correction,
                 slr_iters=slr_iters, kernel_radius=kernel_radius, energy=energy, subspace=subspace,
                 calib_size=calib_size, seed=seed, output=output, drift=drift)
    return AKDiffusionReconstructor(name, checkpoint, device, default_weights, data_weight=data_weight,
                                    **{k: v for k, v in given.items() if v is not None})


# every setting of Algorithm 1 is an option
assert set(factory_options(partial(_build, "akdiff", DEFAULT_WEIGHTS))) == {f.name for f in dataclasses.fields(_S)}


def _nfe(method: AKDiffusionReconstructor) -> int:
    """N (1 + M): one score evaluation per predictor step and per corrector step (output=corrected or projected
    skips the last step's M corrector evaluations)."""
    s = method.sampler.settings
    return s.steps * (1 + s.corrector_steps) - (s.corrector_steps if s.output != "state" else 0)


# No hard-DC claim: line 6 makes the network's estimate consistent, but the sample z_0 takes the predictor's and
# corrector's noise and score steps after it, so the output does not keep the measured samples exactly.
register(MethodInfo(
    name="akdiff",
    factory=partial(_build, "akdiff", DEFAULT_WEIGHTS),
    nfe=_nfe,
    description="AK-Diffusion: k-space heat-diffusion SDE with coil-subspace noise, PC sampling (N=50, M=1) with "
                "SLR/LORAKS correction; RSS.",
    multicoil_only=True,
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    paper=PAPER,
    in_demo=False,  # 99 network evaluations + 50 SLR solves: ~25 s per 128 x 128 slice, minutes at the demo's 256
))
register(MethodInfo(
    name="akdiff-no-sscoil",
    ablation_of="akdiff",
    factory=partial(_build, "akdiff-no-sscoil", NO_SSCOIL_WEIGHTS, subspace="identity"),
    nfe=_nfe,
    description="AK-Diffusion ablation (Table II): identity instead of Sbar Sbar^* in forward, reverse and loss "
                "(network trained with isotropic noise).",
    multicoil_only=True,
    needs_weights=True,
    default_weights=NO_SSCOIL_WEIGHTS,
    paper=PAPER,
))
register(MethodInfo(
    name="akdiff-no-slr",
    ablation_of="akdiff",
    factory=partial(_build, "akdiff-no-slr", DEFAULT_WEIGHTS, correction="dc"),
    nfe=_nfe,
    description="AK-Diffusion ablation (Table II): data consistency only in line 6 (no SLR term).",
    multicoil_only=True,
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    paper=PAPER,
))
