"""The Reconstructor protocol and the method registry.

Every method, classical or learned, is a :class:`Reconstructor`: ``reconstruct(sample) -> image`` returns the
(H, W) magnitude image (float32) of one slice in the sample's normalised units; the other members the runner,
the benchmark, the complexity counter and the CLI use (``device``, ``model``, ``num_parameters()``,
``last_nfe``, ``supports_uncertainty``, ``reconstruct_with_uncertainty``) are declared on the protocol with
defaults. Complex-valued methods may also implement ``reconstruct_complex(sample) -> (H, W) complex``, methods
that fill coil k-space ``reconstruct_kspace`` (:class:`KSpaceReconstructor`). The benchmark, the CLI and the
tests see only this protocol.

Method names may carry options: ``"l1-wavelet:lam=0.005"``, ``"ssdm:steps=8"``, several options joined
with ``:`` (``"l1-wavelet:lam=0.005:iters=50"``). Option values are parsed as YAML scalars. A method's options
are the keyword parameters of its registered factory, declared once, with the help beside each parameter:
``lam: Annotated[float, "L1 weight"] = 0.01`` (:func:`factory_options`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import yaml
from torch import nn

from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError

SINGLE_COIL, MULTI_COIL = "single-coil", "multi-coil"  # sample kinds (as in the benchmark's ``data`` column)
SAMPLE_KINDS = (SINGLE_COIL, MULTI_COIL)
DC_WHERE = ("kspace", "image")  # where a hard-DC claim can be seen (MethodInfo.hard_dc)
REGISTRY_ARGUMENTS = ("checkpoint", "device")  # factory parameters the registry fills; not options


def sample_kind(sample: Sample) -> str:
    return MULTI_COIL if sample.is_multicoil else SINGLE_COIL


@runtime_checkable
class Reconstructor(Protocol):
    """What every caller may use of a method. Built-in methods subclass it and inherit the defaults; any other
    object with all these members passes ``isinstance(x, Reconstructor)`` too (a structural protocol).

    Required:

    * ``name``: the registered name;
    * ``reconstruct(sample)``: the (H, W) float32 magnitude of the slice, in the sample's normalised units.

    Optional, with these defaults:

    * ``device`` (``torch.device``, default CPU): where the method computes; the runner synchronises and
      measures peak memory there.
    * ``model`` (``nn.Module`` or None, default None): the method's network; None for classical methods.
    * ``num_parameters()``: the parameters of ``model``, None without one; methods with several networks
      override it.
    * ``last_nfe`` (int or None, default None): network evaluations of the last ``reconstruct`` call; None when
      the method evaluates no network (or does not count). What it must equal is ``MethodInfo.expected_nfe``.
    * ``supports_uncertainty`` (default False) and ``reconstruct_with_uncertainty(sample, samples)`` -> (mean,
      std), each (H, W): the per-pixel mean and standard deviation of the magnitudes of ``samples`` posterior
      draws. Methods that sample set the flag and override; the default raises :class:`ConfigError`.
    """

    name: str
    device: torch.device = torch.device("cpu")
    model: nn.Module | None = None
    last_nfe: int | None = None
    supports_uncertainty: bool = False

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        raise NotImplementedError

    def num_parameters(self) -> int | None:
        return None if self.model is None else sum(p.numel() for p in self.model.parameters())

    def reconstruct_with_uncertainty(self, sample: Sample, samples: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError(f"method {self.name!r} does not sample a posterior: no uncertainty maps "
                          f"(supports_uncertainty is False)")


PROTOCOL_MEMBERS = ("name", "reconstruct", "device", "model", "num_parameters", "last_nfe", "supports_uncertainty",
                    "reconstruct_with_uncertainty")


class KSpaceReconstructor(Reconstructor):
    """Base of methods that fill coil k-space (GRAPPA, SPIRiT, LORAKS): subclasses define
    ``reconstruct_kspace(sample) -> (C, H, W)``; the image is the RSS of the filled coil images."""

    def reconstruct_kspace(self, sample: Sample) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        from mrrecon.physics.coils import rss
        from mrrecon.physics.fft import ifft2c

        return rss(ifft2c(self.reconstruct_kspace(sample))).float()


# ---------------------------------------------------------------------------------------------------------
# Options: the keyword parameters of a method's factory
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOption:
    """One option of a method: its name, one-line help and default (from the factory's signature)."""

    name: str
    help: str
    default: Any = None

    def __str__(self) -> str:
        """The help line of ``mrrecon methods --details``; a None default is explained by the help itself."""
        if self.default is None:
            return self.help
        shown = self.default if isinstance(self.default, str) else json.dumps(self.default)
        return f"{self.help} (default {shown})"


def _unwrap(factory: Callable) -> tuple[Callable, set[str]]:
    """The function or class under ``functools.partial`` layers, and the keywords the partials fix."""
    fixed: set[str] = set()
    while isinstance(factory, functools.partial):
        fixed |= set(factory.keywords)
        factory = factory.func
    return factory, fixed


def _init_chain(cls: type) -> list[Callable]:
    """``__init__`` of ``cls`` and, while one ends in ``**kwargs`` (``super().__init__(**kwargs)``), of the next
    class up the MRO that defines one."""
    chain = []
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if klass in (object, Reconstructor) or init is None or getattr(init, "__module__", None) == "typing":
            continue
        chain.append(init)
        kinds = [p.kind for p in inspect.signature(init).parameters.values()]
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            break
    return chain


def _help(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, str)), None)
    return None


def factory_options(factory: Callable, method: str = "?") -> dict[str, MethodOption]:
    """The options of a method factory: its keyword parameters, except the registry's own (``checkpoint``,
    ``device``) and those a ``functools.partial`` fixes, each with the help of its annotation
    ``Annotated[type, "help"]`` and its default.

    A class factory's ``**kwargs`` passed on to ``super().__init__`` contributes the parent's keyword parameters.
    A parameter without a default or without help, ``*args``, or a function's ``**kwargs`` is a ConfigError:
    every option is declared, once, where the factory takes it."""
    target, fixed = _unwrap(factory)
    functions = _init_chain(target) if isinstance(target, type) else [target]
    if not functions:
        raise ConfigError(f"method {method!r}: factory {target!r} has no signature to read options from")
    options: dict[str, MethodOption] = {}
    for i, fn in enumerate(functions):
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # noqa: BLE001 -- an annotation that does not resolve
            raise ConfigError(f"method {method!r}: cannot read the annotations of {fn.__qualname__}: {exc}") from exc
        for p in inspect.signature(factory if i == 0 else fn).parameters.values():
            if p.name in ("self", *REGISTRY_ARGUMENTS) or p.name in fixed or p.name in options:
                continue
            if p.kind is p.VAR_KEYWORD:
                if isinstance(target, type):
                    continue  # handed to the next __init__ in the chain
                raise ConfigError(f"method {method!r}: factory {fn.__qualname__} takes **{p.name}; declare each option "
                                  f"as a keyword parameter (name: Annotated[type, 'help'] = default)")
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.default is p.empty:
                raise ConfigError(f"method {method!r}: factory parameter {p.name!r} of {fn.__qualname__} is not an "
                                  f"option (options are keyword parameters with defaults); fix it with "
                                  f"functools.partial or give it a default")
            help_ = _help(hints.get(p.name))
            if not help_:
                raise ConfigError(f"method {method!r}: option {p.name!r} of {fn.__qualname__} has no help; annotate "
                                  f"it as Annotated[type, 'one-line help']")
            options[p.name] = MethodOption(p.name, help_, p.default)
    return options


# ---------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------
HardDC = Mapping[str, str]  # sample kind -> where the kept samples show: "kspace" | "image"


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method without building it.

    ``options`` are not given: they are read from ``factory``'s signature (:func:`factory_options`).

    ``hard_dc``: the sample kinds (``SINGLE_COIL``, ``MULTI_COIL``) on which the method's output keeps the
    measured k-space samples exactly, each with where that shows: ``"kspace"`` -- the method's
    ``reconstruct_kspace(sample)`` (the coil k-space whose RSS is the image) equals the input at the mask;
    ``"image"`` -- the centred FFT of ``reconstruct_complex(sample)`` does (single-coil). Empty: no claim (soft,
    learned or no data consistency, or a magnitude taken after the DC). A callable of the built method returns
    the mapping when the claim depends on the method's options or checkpoint.

    ``nfe``: the network evaluations one ``reconstruct`` call makes, which ``last_nfe`` reports: None (no
    network; ``last_nfe`` stays None), an int, or a callable of the built method when it depends on the
    method's options or checkpoint (steps of a sampler).
    """

    name: str
    factory: Callable[..., Reconstructor]
    description: str
    multicoil_only: bool = False
    singlecoil_only: bool = False
    needs_reference: bool = False
    needs_weights: bool = False
    default_weights: str | None = None  # folder name under weights/
    paper: str | None = None
    ablation_of: str | None = None  # a paper's ablation / component of method ``ablation_of`` (not in the demo)
    in_demo: bool = True  # in `mrrecon demo`'s default list (False: minutes per slice on a CPU; named there)
    hard_dc: HardDC | Callable[[Any], HardDC] = field(default_factory=dict)
    nfe: int | Callable[[Any], int | None] | None = None
    options: dict[str, MethodOption] = field(init=False, repr=False)  # option name -> MethodOption

    def __post_init__(self):
        object.__setattr__(self, "options", factory_options(self.factory, self.name))
        if not callable(self.hard_dc):
            self._checked_dc(self.hard_dc)

    def _checked_dc(self, claim: HardDC) -> dict[str, str]:
        bad = {k: v for k, v in claim.items() if k not in SAMPLE_KINDS or v not in DC_WHERE}
        if bad:
            raise ConfigError(f"method {self.name!r}: hard_dc {bad} must map {SAMPLE_KINDS} to one of {DC_WHERE}")
        return dict(claim)

    def hard_dc_of(self, method: Reconstructor) -> dict[str, str]:
        """The hard-DC claim of a built instance of this method (``hard_dc`` resolved)."""
        return self._checked_dc(self.hard_dc(method) if callable(self.hard_dc) else self.hard_dc)

    def expected_nfe(self, method: Reconstructor) -> int | None:
        """The network evaluations per ``reconstruct`` call a built instance declares (``nfe`` resolved)."""
        return self.nfe(method) if callable(self.nfe) else self.nfe

    def incompatibility(self, sample: Sample) -> str | None:
        """Why this method cannot run on ``sample`` (coil count, missing reference), or None."""
        if self.multicoil_only and not sample.is_multicoil:
            return "multi-coil method, single-coil data"
        if self.needs_reference and sample.reference is None:
            return "needs a reference contrast (use --target-contrast/--reference-contrast on paired data)"
        if self.singlecoil_only and sample.is_multicoil:
            return "single-coil method, multi-coil data"
        return None


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
    method = info.factory(**kwargs)
    if not isinstance(method, Reconstructor):
        missing = [m for m in PROTOCOL_MEMBERS if not hasattr(method, m)]
        raise ConfigError(f"method {name!r}: its factory built a {type(method).__name__} without {missing}; "
                          f"subclass mrrecon.core.reconstructor.Reconstructor")
    return method
