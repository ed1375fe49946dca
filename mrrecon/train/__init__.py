"""Training machinery shared by every learned method: configs, stages, recipes, the Accelerate loop,
checkpoints, EMA, data.

    >>> from mrrecon.train import load_config, train
    >>> result = train(load_config("configs/unet-small.yaml", ["train.max_steps=10"]))
    >>> from mrrecon.train import load_stages, run_stages
    >>> run_stages(load_stages("configs/ldpm-small.yaml", ["train.max_steps=2"]))   # every stage in order

Command line: ``mrrecon train CONFIG [--stage NAME] [--set key=value] [--resume] [--out DIR]``;
distributed: ``accelerate launch -m mrrecon.train CONFIG``. See docs/training.md.
"""

from mrrecon.train.config import (
    TrainConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    load_stages,
    save_config,
)
from mrrecon.train.ema import EMA
from mrrecon.train.recipe import Recipe, recipe_class
from mrrecon.train.stages import run_stages
from mrrecon.train.trainer import Trainer, TrainResult, train

__all__ = ["EMA", "Recipe", "TrainConfig", "TrainResult", "Trainer", "apply_overrides", "config_to_dict",
           "load_config", "load_stages", "recipe_class", "run_stages", "save_config", "train"]
