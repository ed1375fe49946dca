"""AK-Diffusion (Cui et al., "Physics-Informed DeepMRI: Bridging the Gap from Heat Diffusion to k-Space
Interpolation"): attenuated k-space diffusion with coil-subspace noise and PC sampling with SLR correction.

Modules: :mod:`.sde` (forward process, eq. 7-8), :mod:`.coil_subspace` (Sbar Sbar^*, Table IV variants),
:mod:`.model` (h_theta, eqs. 10-11), :mod:`.sampler` (Algorithm 1), :mod:`.method` (registry entries).
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
]
