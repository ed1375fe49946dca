"""Training recipes: what one stage of training optimises, on the one trainer (``mrrecon.train.trainer``).

The trainer owns everything common to every stage (devices, processes, precision, the seeded data pipeline,
optimiser, schedule, EMA, clipping, logs, checkpoints, exact resume, validation timing, exports). A
:class:`Recipe` says what is particular to a stage:

* ``build_model()``: the :class:`~mrrecon.core.pretrained.PretrainedModel` this stage trains and exports
  (default: ``config.model``);
* ``setup(env)``: frozen helpers from earlier stages (an SSDM teacher; LDPM's sketcher, MR-VAE, denoiser),
  moved to ``env.device``; anything precomputed (LDPM's latent banks);
* ``transform(batch, info)``: a batch transform before the loss (LDPM's single-coil protocol, encoding to
  latents; procedural non-MRI images when ``loads_data`` is False);
* ``loss(model, batch, loss_fn)``: what one step optimises (default ``model.training_loss(batch, loss_fn)``);
  it runs inside the data-parallel wrapper's ``forward``;
* ``player()``: an optional second player with its own optimiser (LDPM's PatchGAN discriminator), trained
  after each generator step as its own data-parallel module;
* ``validate(model, val_set, device)``: a row of validation numbers (default: fastMRI-convention PSNR/SSIM
  through ``mrrecon.core.runner.score_volume`` of a ``LearnedReconstructor``, like the benchmark);
* ``export_metadata(model)``: measurements after training, stored in the exported metadata (the VAE's
  latent scaling factor).

Recipes register by ``name`` when their module is imported; ``recipe_class(name)`` imports the modules of
the built-in recipes on first use (a table of module names: ``train`` may not import ``methods``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from mrrecon.core.pretrained import LearnedReconstructor, PretrainedModel, config_from_dict, model_class
from mrrecon.core.runner import score_volume
from mrrecon.data.datasets import derive_seed
from mrrecon.data.sample import Batch, collate_samples
from mrrecon.errors import DataError
from mrrecon.train.config import OptimConfig, StagePlan, TrainConfig
from mrrecon.utils.registry import Registry

if TYPE_CHECKING:
    from mrrecon.train.data import TrainingSlices, ValidationSet

__all__ = ["BatchInfo", "Player", "Recipe", "RecipeEnv", "available_recipes", "fixed_batches", "freeze",
           "recipe_class", "score_reconstructor"]

# The recipes, found by name; the built-in ones are imported on first use.
RECIPES: Registry[type[Recipe]] = Registry("recipe", {
    "ssdm-distill": "mrrecon.methods.ssdm.distill",
    "akdiff": "mrrecon.methods.akdiff.recipe",
    "ldpm-sketcher": "mrrecon.methods.ldpm.recipes",
    "ldpm-vae": "mrrecon.methods.ldpm.recipes",
    "ldpm-denoiser": "mrrecon.methods.ldpm.recipes",
    "ldpm-controlnet": "mrrecon.methods.ldpm.recipes",
})


@dataclass
class BatchInfo:
    """Where a micro-batch sits in the run: ``step`` optimiser steps are done before it (0-based index of
    its step), ``micro`` its index among the step's ``grad_accum`` micro-batches, process ``rank`` of
    ``world``. ``seed(tag)`` is a seed that is a function of all of that (and of ``train.seed``), so draws
    made from it repeat exactly after a resume and differ between processes."""

    step: int
    micro: int
    epoch: int
    rank: int
    world: int
    base_seed: int

    def seed(self, *tag: Any) -> int:
        return derive_seed(self.base_seed, *tag, self.step, self.micro, self.rank)

    def generator(self, *tag: Any, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed(*tag))


@dataclass
class RecipeEnv:
    """What a recipe's ``setup`` gets from the trainer."""

    device: torch.device
    train_set: TrainingSlices | None
    seed: int
    rank: int = 0
    world: int = 1
    batch_size: int = 1
    channels_last: bool = False

    def place(self, module: nn.Module) -> nn.Module:
        """Move a module to the run's device (and memory format)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module


@dataclass
class Player:
    """A second player with its own optimiser (a GAN discriminator).

    After every generator step from step ``start`` on (1-based: the step numbered ``start + 1`` is the first),
    the trainer computes ``loss(module, inputs)`` for each micro-batch's ``inputs`` (what the generator's
    ``loss`` returned under ``"_player"``), back-propagates it through the module's own data-parallel wrapper
    and steps ``optim`` (constant learning rate). During the generator's step the module's parameters do not
    require gradients, so the generator's loss can run through the module without updating it."""

    module: nn.Module
    loss: Any  # callable (module, inputs) -> {"loss": tensor, other scalars}
    optim: OptimConfig
    start: int = 0
    log_name: str = "player_loss"  # the train_log.csv column of its loss

    def active(self, step: int) -> bool:
        """Whether the step with 1-based number ``step`` trains (and uses) the player."""
        return step > self.start


@dataclass
class RecipeParams:
    """The default recipe has no parameters."""


class Recipe:
    """How one stage trains (see the module docstring). Subclasses set ``name`` and ``params_class``."""

    name: ClassVar[str] = ""
    params_class: ClassVar[type] = RecipeParams
    description: ClassVar[str] = "model.training_loss(batch, loss_fn) on the seeded simulator / fastMRI batches"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            RECIPES.add(cls.name, cls)

    def __init__(self, config: TrainConfig, plan: StagePlan | None = None):
        self.config = config
        self.plan = plan
        self.params = config_from_dict(self.params_class, config.recipe.params,
                                       f"recipe.params of recipe {config.recipe.name!r}")
        self.loads_data = True  # False: the trainer passes batch=None to transform (the recipe makes its own)
        self.device = torch.device("cpu")

    # -- references to other stages ------------------------------------------------------------------------
    def resolve(self, ref: str | None) -> str | None:
        """A stage name of this config -> that stage's trained model folder; anything else unchanged."""
        return self.plan.resolve(ref) if self.plan is not None else ref

    # -- the hooks -----------------------------------------------------------------------------------------
    def setup(self, env: RecipeEnv) -> None:
        """Load frozen helpers (``freeze(env.place(...))``), precompute; called before ``build_model``."""
        self.device = env.device

    def build_model(self) -> PretrainedModel:
        m = self.config.model
        return model_class(m.type).from_config(m.params)

    def convert_only(self) -> bool:
        """True when the stage only converts existing weights (exported as built; no training steps)."""
        return False

    def player(self) -> Player | None:
        return None

    def transform(self, batch: Batch | None, info: BatchInfo) -> Any:
        return batch

    def loss(self, model: PretrainedModel, batch: Any, loss_fn) -> dict[str, Any]:
        return model.training_loss(batch, loss_fn)

    def validate(self, model: PretrainedModel, val_set: ValidationSet, device) -> dict[str, float]:
        return score_reconstructor(LearnedReconstructor(model, self.config.name, device), val_set,
                                   self.config.name)

    def export_metadata(self, model: PretrainedModel) -> dict[str, Any]:
        """Measurements stored in the metadata of best/ and final/ (evaluation weights loaded); may update
        the model's config (e.g. a latent scaling factor)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The recipe as recorded in exports: name, parameters, what a step optimises."""
        from dataclasses import asdict

        return {"name": self.config.recipe.name, "params": asdict(self.params), "description": self.description}


class DefaultRecipe(Recipe):
    name = "default"


def recipe_class(name: str) -> type[Recipe]:
    """The recipe registered as ``name`` (importing the built-in recipe modules on demand)."""
    return RECIPES.get(name)


def available_recipes() -> list[str]:
    return RECIPES.names()


# --------------------------------------------------------------------------------------------------
# helpers for recipes
# --------------------------------------------------------------------------------------------------
def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients: a frozen helper."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def fixed_batches(train_set: TrainingSlices, batch_size: int, count: int, seed: int, *tag: Any
                  ) -> Iterator[Batch]:
    """``count`` training batches of a fixed seeded order (epochs ``derive_seed(seed, *tag)`` + 0, 1, ...):
    the same on every process and after every resume (latent banks, post-training measurements)."""
    from mrrecon.train.data import EpochBatchSampler

    sampler = EpochBatchSampler(len(train_set), batch_size, train_set.combos, derive_seed(seed, *tag),
                                groups=train_set.batch_groups())
    made, epoch = 0, 0
    while made < count:
        sampler.set_epoch(epoch)
        for keys in sampler:
            if made >= count:
                return
            batch = collate_samples([train_set[k] for k in keys])
            batch.kspace = batch.kspace.to(torch.complex64)
            yield batch
            made += 1
        epoch += 1


def _mean(values: list[float]) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def score_reconstructor(rec, val_set: ValidationSet, name: str) -> dict[str, float]:
    """PSNR / SSIM (fastMRI convention, per volume, averaged) of a Reconstructor for every validation (kind,
    acceleration) and overall: the benchmark's ``score_volume``."""
    row: dict[str, float] = {}
    psnrs, ssims = [], []
    for (kind, a), volumes in val_set.volumes.items():
        results = [score_volume(name, rec, vol) for vol in volumes]
        failed = [r for r in results if r.error is not None]
        if failed:
            raise DataError(f"validation failed on {failed[0].file}: {failed[0].error}")
        p, s = _mean([r.psnr for r in results]), _mean([r.ssim for r in results])
        row[f"psnr_{kind}_{a:g}x"], row[f"ssim_{kind}_{a:g}x"] = p, s
        psnrs.append(p)
        ssims.append(s)
    row["psnr"], row["ssim"] = _mean(psnrs), _mean(ssims)
    return row

