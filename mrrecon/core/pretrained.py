"""Saving and loading learned models: ``config.json`` + ``model.safetensors``, never a pickle.

Every learned method's network is a :class:`PretrainedModel`: an ``nn.Module`` with a typed config
dataclass (``config_class``) and a ``model_type`` name. ``save_pretrained(dir)`` writes

* ``config.json``: ``{"format": "mrrecon-pretrained", "format_version": 1, "model_type": ...,
  "model_class": "module:Class", "config": {...}, "mrrecon_version": ..., "metadata": {...}}``;
* ``model.safetensors``: the state dict (float32 unless the model holds other dtypes), tensor names as in
  ``state_dict()``.

``from_pretrained(path_or_name)`` reads them back: a folder path, or the name of a folder under
``weights/`` (``mrrecon.core.weights.weights_dir()``). The weights are read with
``safetensors.torch.load_file`` (no code execution, no pickle) and loaded with ``strict=True``, so a
mismatch between config and weights is an error naming the file, never a silently half-loaded model.

:class:`LearnedReconstructor` turns any PretrainedModel into a registry ``Reconstructor``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mrrecon.core.reconstructor import Reconstructor
from mrrecon.core.weights import weights_dir
from mrrecon.data.sample import Batch, Sample, collate_samples
from mrrecon.errors import ConfigError, DataError
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c
from mrrecon.utils.config import config_from_dict
from mrrecon.utils.io import atomic_write_json, save_state_dict
from mrrecon.utils.registry import Registry

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "LearnedReconstructor",
    "PretrainedModel",
    "WEIGHTS_NAME",
    "config_from_dict",
    "from_pretrained",
    "model_class",
    "resolve_pretrained",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "mrrecon-pretrained"
FORMAT_VERSION = 1

# The model types, found by name; the built-in ones are imported on first use, so that from_pretrained works
# before their modules are imported.
MODEL_TYPES: Registry[type[PretrainedModel]] = Registry("model type", {
    "unet": "mrrecon.methods.unet",
    "varnet": "mrrecon.methods.varnet",
    "ssdm": "mrrecon.methods.ssdm.model",
    "ldpm-sketcher": "mrrecon.methods.ldpm.sketcher",
    "ldpm-vae": "mrrecon.methods.ldpm.vae",
    "ldpm-denoiser": "mrrecon.methods.ldpm.generator",
    "ldpm-controlnet": "mrrecon.methods.ldpm.generator",
    "akdiff": "mrrecon.methods.akdiff.model",
    "ima": "mrrecon.methods.ima.model",
})


class PretrainedModel(nn.Module):
    """Base class of learned models: a config dataclass, ``save_pretrained`` / ``from_pretrained``.

    Subclasses set ``model_type`` (unique name) and ``config_class`` (a dataclass), take the config as the
    only constructor argument, and implement ``predict(batch) -> (B, H, W)`` magnitude images in the
    batch's units. ``training_loss`` defaults to ``loss_fn(predict(batch), batch.target)``; models with
    their own objective (diffusion, GAN) override it and return ``{"loss": ..., other scalars}``.
    """

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.model_type:
            MODEL_TYPES.add(cls.model_type, cls)

    def __init__(self, config: Any):
        super().__init__()
        self.config = config_from_dict(self.config_class, config, f"{self.model_type} config")

    @classmethod
    def from_config(cls, config: dict[str, Any] | Any) -> PretrainedModel:
        return cls(config_from_dict(cls.config_class, config, f"{cls.model_type} config"))

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the interface the trainer and the reconstructor use -------------------------------------------
    def predict(self, batch: Batch) -> torch.Tensor:
        """(B, H, W) magnitude reconstructions of a batch, in the batch's normalised units."""
        raise NotImplementedError

    def training_loss(self, batch: Batch, loss_fn) -> dict[str, torch.Tensor]:
        if batch.target is None:
            raise DataError("training needs samples with a fully sampled target")
        pred = self.predict(batch)
        return {"loss": loss_fn(pred, batch.target.abs().to(pred.dtype))}

    def after_warm_start(self, copied: set[str]) -> None:
        """Called once ``model.init_from`` has copied the tensors named in ``copied`` from another (e.g. smaller)
        pretrained model. The default keeps the other tensors' initialisation; a model that can grow (more
        residual blocks) makes its new blocks start as the identity here, so it starts as the model it grew from."""

    # -- persistence --------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        return save_pretrained(self, directory, metadata=metadata, state_dict=state_dict)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, device: str | torch.device = "cpu"
                        ) -> PretrainedModel:
        expected = cls.model_type or None
        return from_pretrained(path_or_name, device=device, expected_type=expected)


def model_class(model_type: str) -> type[PretrainedModel]:
    """The PretrainedModel subclass registered as ``model_type`` (importing built-in modules on demand)."""
    return MODEL_TYPES.get(model_type)


def save_pretrained(model: PretrainedModel, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``model`` into ``directory`` (created if needed).

    ``state_dict`` saves other weights under the model's config (e.g. EMA weights); it must have the
    model's keys. ``metadata`` (JSON-serialisable) is stored in config.json under ``"metadata"``.
    """
    import mrrecon

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if state_dict is None else state_dict
    expected = set(model.state_dict())
    if set(state) != expected:
        raise ConfigError(f"state_dict keys do not match the model: missing {sorted(expected - set(state))[:5]}, "
                          f"unexpected {sorted(set(state) - expected)[:5]}")
    cls = type(model)
    save_state_dict(state, directory / WEIGHTS_NAME, metadata={"format": "pt", "model_type": model.model_type})
    atomic_write_json(directory / CONFIG_NAME, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_type": model.model_type,
        "model_class": f"{cls.__module__}:{cls.__qualname__}", "config": model.config_dict(),
        "num_parameters": model.num_parameters(), "mrrecon_version": mrrecon.__version__,
        "metadata": metadata or {},
    })
    return directory


def resolve_pretrained(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint folder from a path, or from the name of a folder under ``weights/``."""
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        return p
    shipped = weights_dir() / str(path_or_name)
    if not os.path.isabs(str(path_or_name)) and shipped.is_dir():
        return shipped
    raise ConfigError(f"no checkpoint folder {str(path_or_name)!r} (neither a folder nor a name under "
                      f"{weights_dir()})")


def read_pretrained_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, checked for the mrrecon format."""
    path = resolve_pretrained(directory) / CONFIG_NAME
    if not path.is_file():
        raise DataError(f"missing {CONFIG_NAME} (not an mrrecon checkpoint folder)", path.parent)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model_type" not in info:
        raise DataError(f"not an mrrecon checkpoint config (expected format {FORMAT!r} and a model_type)", path)
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"format_version {info['format_version']} is newer than this mrrecon reads "
                        f"({FORMAT_VERSION})", path)
    return info


def from_pretrained(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu",
                    expected_type: str | None = None) -> PretrainedModel:
    """Build the model described by ``config.json`` and load ``model.safetensors`` (strict) onto ``device``.

    The model is returned in eval mode. ``expected_type`` guards against loading e.g. VarNet weights into
    the ``unet`` method.
    """
    directory = resolve_pretrained(path_or_name)
    info = read_pretrained_config(directory)
    model_type = info["model_type"]
    if expected_type is not None and model_type != expected_type:
        raise ConfigError(f"{directory}: holds a {model_type!r} model, expected {expected_type!r}")
    cls = model_class(model_type)
    try:
        model = cls.from_config(info.get("config") or {})
    except ConfigError as exc:
        raise DataError(f"config does not fit {cls.__name__}: {exc}", directory / CONFIG_NAME) from exc
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise DataError(f"missing {WEIGHTS_NAME}", directory)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise DataError(f"unreadable safetensors file: {exc}", weights) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"weights do not match config.json: {exc}", weights) from exc
    return model.to(device).eval()


class LearnedReconstructor(Reconstructor):
    """A PretrainedModel as a registry Reconstructor: ``reconstruct(sample) -> (H, W)`` float32 magnitude.

    The k-space is divided by the peak of its zero-filled RSS image before the network and the output is
    multiplied back, so samples in any units (raw scanner values ~1e13 or the datasets' max-normalised
    ones) see the input range the model was trained on. The output is clamped at 0 (a magnitude).

    ``nfe``: the network evaluations one ``predict`` makes (1 for a feed-forward network), reported as
    ``last_nfe`` after each reconstruction; None (the default) when the caller does not know it.
    """

    def __init__(self, model: PretrainedModel, name: str, device: str | torch.device = "cpu",
                 nfe: int | None = None):
        self.name = name
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.nfe = nfe

    def normalised_batch(self, sample: Sample) -> tuple[Batch, torch.Tensor]:
        """The sample as a batch of one on the device, divided by its scale; (batch, scale)."""
        batch = collate_samples([sample]).to(self.device)
        batch.kspace = batch.kspace.to(torch.complex64)
        scale = rss(ifft2c(batch.kspace)).amax().clamp_min(torch.finfo(torch.float32).tiny)
        batch.kspace = batch.kspace / scale
        if batch.target is not None:  # not used by predict; keep it in the same units anyway
            batch.target = batch.target / scale
        return batch, scale

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        batch, scale = self.normalised_batch(sample)
        out = self.model.predict(batch)[0].float() * scale
        self.last_nfe = self.nfe
        return out.clamp_min(0)
