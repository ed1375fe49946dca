"""The Reconstructor protocol and the method registry.

Every method, classical or learned, is a ``Reconstructor``: ``reconstruct(sample) -> image`` returns the
(H, W) magnitude image (float32) of one slice in the sample's normalised units; complex-valued methods
may also implement ``reconstruct_complex``. The benchmark, the CLI and the tests see only this protocol.

Method names may carry options: ``"l1-wavelet:lam=0.005"``, ``"ssdm:steps=8"``, several options joined
with ``:`` (``"l1-wavelet:lam=0.005:iters=50"``). Option values are parsed as YAML scalars.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import yaml

from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError


@runtime_checkable
class Reconstructor(Protocol):
    name: str

    def reconstruct(self, sample: Sample) -> torch.Tensor: ...


class KSpaceReconstructor:
    """Base of methods that fill multi-coil k-space (GRAPPA, SPIRiT, LORAKS): subclasses define
    ``reconstruct_kspace(sample) -> (C, H, W)``; the image is the RSS of the filled coil images."""

    def reconstruct_kspace(self, sample: Sample) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        from mrrecon.physics.coils import rss
        from mrrecon.physics.fft import ifft2c

        return rss(ifft2c(self.reconstruct_kspace(sample))).float()


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method without building it."""

    name: str
    factory: Callable[..., Reconstructor]
    description: str
    multicoil_only: bool = False
    singlecoil_only: bool = False
    needs_reference: bool = False
    needs_weights: bool = False
    default_weights: str | None = None  # folder name under weights/
    paper: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # option name -> one-line help
    ablation_of: str | None = None  # a paper's ablation / component of method ``ablation_of`` (not in the demo)


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    if info.name in _REGISTRY:
        raise ConfigError(f"method {info.name!r} is registered twice")
    _REGISTRY[info.name] = info
    return info


# The packages whose import registers the built-in methods (plugins of this registry: named, not imported
# here, so that this layer stays below them).
BUILTIN_METHOD_PACKAGES = ("mrrecon.methods",)


def _ensure_builtin_methods() -> None:
    for package in BUILTIN_METHOD_PACKAGES:
        importlib.import_module(package)


def available() -> dict[str, MethodInfo]:
    """All registered methods by name, in registration order."""
    _ensure_builtin_methods()
    return dict(_REGISTRY)


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value:key2=value2"`` -> (name, {key: value, ...})."""
    name, *parts = spec.strip().split(":")
    opts: dict[str, Any] = {}
    for part in parts:
        if "=" not in part:
            raise ConfigError(f"method option {part!r} in {spec!r} is not key=value")
        key, value = part.split("=", 1)
        opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return name, opts


def get_info(name: str) -> MethodInfo:
    methods = available()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; registered: {', '.join(methods)}")
    return methods[name]


def load(spec: str, *, checkpoint: str | None = None, device: str | torch.device = "cpu", **options) -> Reconstructor:
    """Build a method from ``"name[:key=value...]"``; keyword options override those in the spec."""
    name, spec_opts = parse_method_spec(spec)
    info = get_info(name)
    opts = {**spec_opts, **options}
    unknown = set(opts) - set(info.options)
    if unknown:
        raise ConfigError(f"method {name!r} has no option(s) {sorted(unknown)}; options: {sorted(info.options)}")
    kwargs: dict[str, Any] = dict(opts, device=device)
    if info.needs_weights:
        kwargs["checkpoint"] = checkpoint
    return info.factory(**kwargs)
