"""Exponential moving average of model weights (Polyak averaging).

After every optimiser step t (counted from 1): ``shadow <- d_t shadow + (1 - d_t) theta`` with
``d_t = decay`` or, with warm-up, ``d_t = min(decay, (1 + t) / (10 + t))`` (the schedule of TensorFlow's
``ExponentialMovingAverage(num_updates=...)``), so early averages are not dominated by the random
initialisation. Floating-point buffers are averaged like parameters; integer buffers are copied. The
shadow is kept in float32 whatever the model's precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()
        }

    def current_decay(self) -> float:
        """The decay the next update uses."""
        t = self.num_updates + 1
        return min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(d).add_(v.detach().to(s.dtype), alpha=1.0 - d)
            else:
                s.copy_(v)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights under the model's keys, in the model's dtypes (for saving as model weights)."""
        return dict(self.shadow)

    def load(self, shadow: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(shadow)
        unexpected = set(shadow) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
        for k, v in shadow.items():
            self.shadow[k].copy_(v)
        self.num_updates = int(num_updates)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model`` (e.g. for validation), then restore."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.to(backup[k].dtype) for k, v in self.shadow.items()})
        try:
            yield model
        finally:
            model.load_state_dict(backup)
