"""IMA (Zheng et al., "Breaking Information Isolation: Accelerating MRI via Inter-sequence Mapping and
Progressive Masking", AAAI 2025): multi-contrast deep unfolding with the explicit mapping X = YA + Y~B,
cross-sequence converging attention (CSCA) and dilation-contraction masking (DCM).

Registered methods (each loads its own trained weights; all are single-coil, like the paper):

* ``ima``          the full model (needs the fully sampled reference contrast);
* ``ima-no-csca``  CSCA replaced by pixel-level coupling (Table 2a ablation);
* ``ima-no-dcm``   the fixed mask M^(0) at every stage (Table 2a ablation);
* ``ima-single``   the same unfolding trained and run without the reference (what the second contrast buys).

Option ``weights=DIR`` (or the ``checkpoint=`` argument of ``mrrecon.methods.load``) picks other weights,
e.g. a stage-sweep model: ``ima:weights=runs/ima-sweep/t6/final``. Option ``dcm_mode=literal|weighted`` states
which reading of eq. 18 the weights must have been trained with (refused otherwise; the shipped weights of
issue 8 are ``literal``, a checkpoint's reading is in its config.json).
"""

from __future__ import annotations

from typing import Annotated

import torch

from mrrecon.core.pretrained import LearnedReconstructor, from_pretrained
from mrrecon.core.reconstructor import SINGLE_COIL, MethodInfo, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.methods.ima.model import IMAConfig, IMAModel

__all__ = ["IMAConfig", "IMAModel", "IMAReconstructor", "VARIANTS"]

PAPER = ("Zheng, Yao, Shen, Li, Jiang, Breaking Information Isolation: Accelerating MRI via Inter-sequence "
         "Mapping and Progressive Masking, AAAI 2025")

# method name -> (default weights folder, the config flags that define the variant, description)
VARIANTS = {
    "ima": ("ima-small", {"csca": True, "dcm": True, "use_reference": True},
            "IMA multi-contrast unfolding (X = YA + Y~B, CSCA, dilation-contraction masking); needs the reference."),
    "ima-no-csca": ("ima-no-csca-small", {"csca": False, "dcm": True, "use_reference": True},
                    "IMA ablation: CSCA replaced by pixel-level coupling of Y and G."),
    "ima-no-dcm": ("ima-no-dcm-small", {"csca": True, "dcm": False, "use_reference": True},
                   "IMA ablation: fixed sampling mask at every stage (no dilation-contraction masking)."),
    "ima-single": ("ima-single-small", {"csca": True, "dcm": True, "use_reference": False},
                   "IMA unfolding without the reference contrast (reference input zeroed): single-contrast."),
}


class IMAReconstructor(LearnedReconstructor):
    """An IMA model as a Reconstructor (one network evaluation per slice), with the complex image too."""

    @torch.no_grad()
    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        """(H, W) complex X_out in the sample's units; with ``output_dc`` (the default) its measured k-space
        samples are the input's."""
        batch, scale = self.normalised_batch(sample)
        out = self.model(batch.kspace, batch.mask, batch.reference, return_all=True)["complex"][0] * scale
        self.last_nfe = self.nfe
        return out


def _factory(name: str):
    default, flags, _ = VARIANTS[name]

    def build(checkpoint: str | None = None,
              weights: Annotated[str | None, "weights folder (path or name under weights/) instead of the "
                                             "default"] = None,
              dcm_mode: Annotated[str | None, "the reading of eq. 18 the weights must have (literal | weighted); "
                                              "refuses others"] = None,
              device: str | torch.device = "cpu") -> IMAReconstructor:
        checkpoint = checkpoint or (None if weights is None else str(weights))
        model = from_pretrained(checkpoint or default, device=device, expected_type="ima")
        expected = dict(flags, **({} if dcm_mode is None else {"dcm_mode": str(dcm_mode)}))
        wrong = {k: getattr(model.config, k) for k, v in expected.items() if getattr(model.config, k) != v}
        if wrong:
            raise ConfigError(f"{name}: checkpoint {checkpoint or default} is not this variant ({wrong}; expected "
                              f"{expected})")
        return IMAReconstructor(model, name, device, nfe=1)

    return build


def _register() -> None:
    for name, (default, flags, description) in VARIANTS.items():
        register(MethodInfo(
            name=name, factory=_factory(name), description=description,
            needs_reference=bool(flags["use_reference"]), needs_weights=True, default_weights=default, paper=PAPER,
            singlecoil_only=True, ablation_of=None if name == "ima" else "ima", nfe=1,
            # the decoded image gets the measured samples back (output_dc), then its magnitude is returned
            hard_dc=lambda m: {SINGLE_COIL: "image"} if m.model.config.output_dc else {}))


_register()
