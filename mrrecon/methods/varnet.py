"""``varnet``: the End-to-End Variational Network (Sriram et al., "End-to-End Variational Networks for
Accelerated MRI Reconstruction", MICCAI 2020, arXiv:2004.06688).

Cascade t (paper eq. 4) refines the multi-coil k-space estimate k^t:

    k^{t+1} = k^t - eta_t M (k^t - y) - G(k^t),     G(k) = F E( CNN( R( F^-1 k ) ) ),

* soft data consistency ``k - eta M (k - y)`` = ``mrrecon.physics.consistency.soft_dc(k, y, M, eta)`` with
  a learned scalar eta_t per cascade (initialised to 1, unconstrained, as in the reference code);
* ``E(x) = (S_1 x, ..., S_C x)`` expands an image into coil images, ``R(x_1..C) = sum_c conj(S_c) x_c``
  reduces them (``SenseOperator.expand`` / ``.combine``); CNN is a ``NormUnet`` on the complex image;
* the sensitivity maps S (eq. 5) come from a second ``NormUnet`` applied to every coil image of the ACS
  region alone (the fully sampled centre found from the mask by ``mrrecon.physics.kspace.acs_mask`` with the
  fastMRI ``"symmetric"`` rule, other k-space zeroed), each output divided by the RSS over coils, so
  sum_c |S_c|^2 = 1;
* the output is the RSS over coils of F^-1 k^T (the fastMRI multi-coil target).

``final_dc: hard`` (not in the paper; off by default and in configs/varnet-paper.yaml) replaces the measured samples
of k^T by y before the RSS, so the centre and every measured line are exactly the data: the last cascade's
refinement G(k^T) otherwise moves them too (docs/methods.md). ``final_dc: prox`` (not in the paper either) ends
with the proximal data-consistency step of unrolled networks such as MoDL, under the network's own SENSE model:
with z = R(F^-1 k^T) and A = M F E,

    x = argmin_x (gamma / 2) ||A x - y||^2 + 1/2 ||x - z||^2      (CG, ``SenseOperator.prox_l2``)

and the output is the RSS of E x. Unlike hard DC it also uses the coil sensitivities: where the coils determine
the image (parallel imaging) x follows the data, elsewhere it stays at the network's estimate; gamma weighs the
two (``final_dc_gamma``, chosen on simulated validation subjects: docs/methods.md). ``varnet:final_dc=hard``,
``varnet:final_dc=prox`` (and ``:gamma=G``) switch them on for any checkpoint at reconstruction time.

Single-coil data (C = 1) run through the same network: the estimated "map" is then the unit-modulus phase
of the ACS image, E and R multiply by it and its conjugate, and the output is |F^-1 k^T|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from mrrecon.core.pretrained import LearnedReconstructor, PretrainedModel, from_pretrained
from mrrecon.core.reconstructor import MethodInfo, register
from mrrecon.data.sample import Batch
from mrrecon.errors import ConfigError
from mrrecon.nn.unet import NormUnet
from mrrecon.physics.coils import rss
from mrrecon.physics.consistency import hard_dc, soft_dc
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import acs_mask
from mrrecon.physics.operators import SenseOperator

DEFAULT_WEIGHTS = "varnet-small"


@dataclass
class VarNetConfig:
    """fastMRI defaults (``fastmri/pl_modules/varnet_module.py``; the paper's 12-cascade model)."""

    num_cascades: int = 12
    chans: int = 18  # first-layer channels of each cascade's U-Net
    pools: int = 4
    sens_chans: int = 8  # sensitivity-map U-Net
    sens_pools: int = 4
    dc_weight_init: float = 1.0
    # False: the reference code. True: both U-Net modules are residual with zero-initialised last layers
    # (cascade CNN(x) = U(norm(x)) std, no mean added back; maps = normalise(x_acs + U(norm(x_acs)) std)), so an
    # untrained VarNet returns the zero-filled k-space with the classic ACS-image / RSS maps and every module
    # learns a correction. Trains much faster on small budgets (docs/training.md).
    residual: bool = False
    # "none": the paper's output, RSS of the last cascade's k-space. "hard": its measured samples replaced by y first.
    # "prox": a final proximal SENSE data-consistency step of weight final_dc_gamma (module docstring).
    final_dc: str = "none"
    final_dc_gamma: float = 30.0  # benchmarks/baselines.py --parts prox_gamma (simulated validation subjects)
    final_dc_iters: int = 30  # CG iterations of the prox step


FINAL_DC = ("none", "hard", "prox")


def _check_final_dc(value: str) -> str:
    if value not in FINAL_DC:
        raise ConfigError(f"varnet final_dc must be one of {list(FINAL_DC)}; got {value!r}")
    return value


class SensitivityModel(nn.Module):
    """Coil sensitivities from the ACS: NormUnet on each ACS-only coil image, normalised by the RSS.

    ``residual=True``: maps = normalise(x + NormUnet(x)) with a zero-initialised residual NormUnet, so the
    untrained model returns the low-resolution ACS coil images divided by their RSS."""

    def __init__(self, chans: int, pools: int, eps: float = 1e-12, residual: bool = False):
        super().__init__()
        self.norm_unet = NormUnet(chans, pools, residual=residual)
        self.residual = residual
        self.eps = eps

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = kspace.shape
        acs = acs_mask(mask, (h, w), rule="symmetric")  # the fastMRI centred-run rule (mrrecon.physics.kspace)
        images = ifft2c(kspace * acs).reshape(b * c, h, w)
        maps = self.norm_unet(images)
        if self.residual:
            maps = images + maps
        maps = maps.reshape(b, c, h, w)
        return maps / rss(maps, dim=1).unsqueeze(1).clamp_min(self.eps)


class VarNetCascade(nn.Module):
    """One cascade: soft DC with a learned weight minus the CNN refinement in coil-image space."""

    def __init__(self, chans: int, pools: int, dc_weight_init: float = 1.0, residual: bool = False):
        super().__init__()
        self.regulariser = NormUnet(chans, pools, residual=residual)
        self.dc_weight = nn.Parameter(torch.tensor([float(dc_weight_init)]))

    def data_consistency(self, k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """k - eta M (k - y): measured samples move a fraction eta toward y (eta = 1 replaces them)."""
        return soft_dc(k, y, mask, self.dc_weight)

    def refinement(self, k: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """G(k) = F E(CNN(R(F^-1 k)))."""
        image = op.combine(ifft2c(k))
        return fft2c(op.expand(self.regulariser(image)))

    def forward(self, k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        return self.data_consistency(k, y, mask) - self.refinement(k, op)


class VarNetModel(PretrainedModel):
    """E2E-VarNet: sensitivity network + ``num_cascades`` cascades; (B, C, H, W) k-space -> (B, H, W) RSS."""

    model_type = "varnet"
    config_class = VarNetConfig

    def __init__(self, config: VarNetConfig | dict | None = None):
        super().__init__(config)
        c = self.config
        if c.num_cascades < 0 or min(c.chans, c.pools, c.sens_chans, c.sens_pools) < 1:
            raise ConfigError(f"varnet config needs num_cascades >= 0 and positive widths / depths; got {c}")
        _check_final_dc(c.final_dc)
        self.sens_net = SensitivityModel(c.sens_chans, c.sens_pools, residual=c.residual)
        self.cascades = nn.ModuleList([VarNetCascade(c.chans, c.pools, c.dc_weight_init, c.residual)
                                       for _ in range(c.num_cascades)])

    def final_kspace(self, kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k^T, maps): the last cascade's coil k-space (after the final DC when ``final_dc`` is hard or prox)."""
        maps = self.sens_net(kspace, mask)
        op = SenseOperator(maps, mask)
        k = kspace
        for cascade in self.cascades:
            k = cascade(k, kspace, mask, op)
        if self.config.final_dc == "hard":
            k = hard_dc(k, kspace, mask)
        elif self.config.final_dc == "prox":
            x = op.prox_l2(op.combine(ifft2c(k)), kspace, self.config.final_dc_gamma,
                           max_iter=self.config.final_dc_iters)
            k = fft2c(op.expand(x))
        return k, maps

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, return_maps: bool = False):
        """kspace: (B, C, H, W) undersampled (zeros where not measured); mask broadcastable to it."""
        k, maps = self.final_kspace(kspace, mask)
        image = rss(ifft2c(k), dim=1)
        return (image, maps) if return_maps else image

    def predict(self, batch: Batch) -> torch.Tensor:
        return self(batch.kspace, batch.mask)


def _build(checkpoint: str | None = None, device: str | torch.device = "cpu",
           final_dc: Annotated[str | None, "none (paper), hard (the measured samples of the last cascade's k-space "
                                           "replaced by the data) or prox (a final proximal SENSE DC step; default: "
                                           "the checkpoint's)"] = None,
           gamma: Annotated[float | None, "weight of the data in the prox step (default: the checkpoint's)"] = None,
           ) -> LearnedReconstructor:
    model = from_pretrained(checkpoint or DEFAULT_WEIGHTS, device=device, expected_type="varnet")
    if final_dc is not None:
        model.config.final_dc = _check_final_dc(final_dc)
    if gamma is not None:
        if not gamma > 0:
            raise ConfigError(f"varnet gamma must be positive; got {gamma}")
        model.config.final_dc_gamma = float(gamma)
    return LearnedReconstructor(model, "varnet", device, nfe=1)  # one pass through the cascades


register(MethodInfo(
    name="varnet",
    factory=_build,
    description="E2E-VarNet: cascades of U-Net refinement with learned soft DC and an ACS sensitivity network.",
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    nfe=1,  # learned soft DC: no hard-DC claim
    paper="Sriram et al., End-to-End Variational Networks for Accelerated MRI Reconstruction, MICCAI 2020",
))
