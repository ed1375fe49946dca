"""Training machinery shared by every learned method: configs, the Accelerate loop, checkpoints, EMA, data.

    >>> from mrrecon.train import load_config, train
    >>> result = train(load_config("configs/unet-small.yaml", ["train.max_steps=10"]))

Command line: ``mrrecon train CONFIG [--set key=value] [--resume] [--out DIR]``;
distributed: ``accelerate launch -m mrrecon.train CONFIG``. See docs/training.md.
"""

from mrrecon.train.config import TrainConfig, apply_overrides, config_to_dict, load_config, save_config
from mrrecon.train.ema import EMA
from mrrecon.train.trainer import Trainer, TrainResult, train

__all__ = ["EMA", "TrainConfig", "TrainResult", "Trainer", "apply_overrides", "config_to_dict", "load_config",
           "save_config", "train"]
