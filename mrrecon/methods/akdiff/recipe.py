"""The ``akdiff`` training recipe: the default step (eq. 11 through ``AKDiffusionModel.training_loss``) plus the
measurement of sigma_0 from the training data at setup.

With ``model.params.sigma_min_rule: noise_floor`` and no ``noise_floor`` in the config, :meth:`setup` measures
the k-space noise floor of the fully sampled training slices in the model's units
(:func:`measure_training_noise_floor`: the median over slices of the robust std of the k-space corners) and
:meth:`build_model` puts it into the model's config, so the exported ``config.json`` holds it and the saved
model carries its own SDE. A ``noise_floor`` given in the config is used as it is (no measurement). Every
process measures the same slices, so every process builds the same SDE; a resumed run measures the same
number again.

A fine-tune (``model.init_from``) whose config has no ``sampler`` entry starts with the one of the weights it
starts from: Algorithm 1's r, lambda and output were chosen for those weights (docs/akdiff.md), and without
them the run's validation (and the exported weights) would sample with the class defaults, which put the
shipped network at 15.3 dB instead of 23.9 (uniform 6x). ``model.params.sampler: {}`` opts out.

To train with it: ``recipe: {name: akdiff}`` in the training config (``configs/akdiff-small.yaml`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from mrrecon.core.pretrained import config_from_dict, read_pretrained_config
from mrrecon.errors import DataError
from mrrecon.methods.akdiff.model import AKDiffusionConfig, AKDiffusionModel, legacy_config
from mrrecon.methods.akdiff.units import kspace_scale, measure_noise_floor
from mrrecon.train.recipe import Recipe, RecipeEnv

__all__ = ["AKDiffusionRecipe", "AKDiffusionRecipeParams", "inherited_sampler_settings",
           "measure_training_noise_floor"]


def measure_training_noise_floor(model_params: dict, slices, corner_fraction: float = 0.125) -> float:
    """The noise floor (k-space noise std per real component, median over ``slices``, each fully sampled
    (C, H, W) k-space in any units) in the units of the model described by ``model_params``."""
    c = config_from_dict(AKDiffusionConfig, legacy_config(dict(model_params)), "akdiff config")
    return measure_noise_floor(slices, lambda k: kspace_scale(k, scaling=c.kspace_scaling,
                                                              kspace_peak=c.kspace_peak,
                                                              reference_size=c.reference_size), corner_fraction)


@dataclass
class AKDiffusionRecipeParams:
    max_slices: int | None = None  # training slices the noise floor is measured on (None: all)
    corner_fraction: float = 0.125  # corner blocks of each axis where only noise remains


class AKDiffusionRecipe(Recipe):
    name = "akdiff"
    params_class = AKDiffusionRecipeParams
    description = ("model.training_loss (eq. 11) on fully sampled k-space; with sigma_min_rule: noise_floor, "
                   "sigma_0 from the training slices' k-space noise floor, measured at setup and stored in the "
                   "model config")

    def setup(self, env: RecipeEnv) -> None:
        super().setup(env)
        self.noise_floor = None
        params = dict(self.config.model.params)
        if params.get("sigma_min_rule") == "noise_floor" and params.get("noise_floor") is None:
            if env.train_set is None:
                raise DataError("the akdiff recipe measures the noise floor on the training set, which is missing")
            n = len(env.train_set) if self.params.max_slices is None else min(len(env.train_set),
                                                                             self.params.max_slices)
            slices = (env.train_set[i].kspace for i in range(n))
            self.noise_floor = measure_training_noise_floor(params, slices, self.params.corner_fraction)

    def build_model(self) -> AKDiffusionModel:
        params = dict(self.config.model.params)
        if self.noise_floor is not None:
            params["noise_floor"] = self.noise_floor
        if self.config.model.init_from and "sampler" not in params:
            params["sampler"] = inherited_sampler_settings(self.resolve(self.config.model.init_from))
        return AKDiffusionModel.from_config(params)


def inherited_sampler_settings(folder: str) -> dict:
    """The ``sampler`` entry (Algorithm 1's settings chosen for those weights) of the model config in the
    pretrained ``folder``; empty when it has none."""
    return dict((read_pretrained_config(folder).get("config") or {}).get("sampler") or {})
