"""SSDM-MRI (Liu et al.): a conditional v-prediction diffusion model progressively distilled to one step.

Modules: ``network`` (the residual U-Net), ``model`` (schedule, Alg. 1 objective, checkpoints),
``sampler`` (DDIM sampling, data consistency eq. 4), ``distill`` (Alg. 2 and its training recipe),
``registration`` (the ``ssdm`` method); Sec. III.C's coil maps and phase are ``mrrecon.physics.lowres``.
See docs/ssdm.md.
"""

from mrrecon.methods.ssdm.model import SSDMConfig, SSDMModel
from mrrecon.methods.ssdm.registration import SSDMReconstructor

__all__ = ["SSDMConfig", "SSDMModel", "SSDMReconstructor"]
