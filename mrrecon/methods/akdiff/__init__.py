"""AK-Diffusion (Cui et al., "Physics-Informed DeepMRI: Bridging the Gap from Heat Diffusion to k-Space
Interpolation"): attenuated k-space diffusion with coil-subspace noise and PC sampling with SLR correction.

Modules: :mod:`.sde` (forward process, eq. 7-8), :mod:`.units` (the k-space units of training and sampling, the
noise floor), :mod:`.coil_subspace` (Sbar Sbar^*, Table IV variants), :mod:`.model` (h_theta, eqs. 10-11),
:mod:`.sampler` (Algorithm 1), :mod:`.method` (registry entries), :mod:`.recipe` (the ``akdiff`` training recipe:
sigma_0 from the measured noise floor; imported on use, not here: it imports the trainer).
"""

from mrrecon.methods.akdiff import method  # noqa: F401  (registers akdiff, akdiff-no-sscoil, akdiff-no-slr)
from mrrecon.methods.akdiff.coil_subspace import (
    SUBSPACES,
    CoilSubspace,
    IdentitySubspace,
    MapsSubspace,
    SLRSubspace,
    estimate_subspace,
)
from mrrecon.methods.akdiff.model import AKDiffusionConfig, AKDiffusionModel
from mrrecon.methods.akdiff.sampler import PCSampler, SamplerSettings
from mrrecon.methods.akdiff.sde import AKDiffusionSDE, complex_noise
from mrrecon.methods.akdiff.units import kspace_scale, measure_noise_floor, robust_noise_std

__all__ = [
    "AKDiffusionConfig",
    "AKDiffusionModel",
    "AKDiffusionSDE",
    "CoilSubspace",
    "IdentitySubspace",
    "MapsSubspace",
    "PCSampler",
    "SLRSubspace",
    "SUBSPACES",
    "SamplerSettings",
    "complex_noise",
    "estimate_subspace",
    "kspace_scale",
    "measure_noise_floor",
    "robust_noise_std",
]
