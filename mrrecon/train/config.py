"""Training configuration: typed dataclasses loaded from YAML, overridden with ``key.path=value``.

A config file has six sections (every key optional; defaults below, documented in docs/training.md):

.. code-block:: yaml

    name: unet-small
    model: {type: unet, params: {chans: 16, num_pool_layers: 3}}
    data:  {source: simulated, crop: [128, 128], mask_kinds: [random1d], accelerations: [4, 8], ...}
    optim: {name: adam, lr: 1.0e-3, scheduler: cosine, warmup_steps: 50, ...}
    train: {max_steps: 2000, batch_size: 4, ema_decay: 0.999, checkpoint_every: 500, out_dir: runs/unet-small}
    recipe: {name: default, params: {}}       # how a step trains (mrrecon.train.recipe)

and optionally a list of ``stages:`` (``mrrecon.train.stages``), each a ``name`` plus any of the sections
above, merged over the base config.

``load_config(path, overrides=["optim.lr=1e-4", "train.max_steps=10"])`` reads the file, applies the
overrides (values parsed as YAML scalars or lists: ``data.accelerations=[4,8]``), checks every key and
type, and returns a :class:`TrainConfig`. Unknown keys are errors naming the valid ones (a typo must not
silently train with a default). ``save_config`` writes the resolved config as YAML.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mrrecon.errors import ConfigError
from mrrecon.utils.config import config_from_dict
from mrrecon.utils.io import atomic_write_text

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeConfig",
    "ReferenceAugmentConfig",
    "SimulationConfig",
    "TrainConfig",
    "TrainingConfig",
    "apply_overrides",
    "Stage",
    "StagePlan",
    "config_from_dict",
    "config_from_values",
    "config_to_dict",
    "load_config",
    "load_stages",
    "read_yaml",
    "save_config",
]


@dataclass
class ModelConfig:
    """Which network (``type``: a PretrainedModel type such as ``unet`` or ``varnet``) and its config."""

    type: str = "unet"
    params: dict[str, Any] = field(default_factory=dict)
    # warm start: a pretrained folder (or the name of an earlier stage) whose tensors are copied where name
    # and shape match (others keep their initialisation), e.g. the IMA stage sweep starts T stages from the
    # trained 12-stage model
    init_from: str | None = None


@dataclass
class SimulationConfig:
    """The embedded simulator's training and validation sets (``data.source: simulated``).

    Train subjects use ``seed``, validation subjects ``val_seed`` (different subjects: the simulator derives
    each subject's seed from (seed, index)). The files are generated once into ``data.cache_dir``.
    """

    subjects: int = 32
    val_subjects: int = 4
    size: int | list[int] = 256  # a list: one matrix size drawn per subject
    coils: int | list[int] = 8  # [low, high]: drawn per subject (inclusive)
    contrasts: list[str] = field(default_factory=lambda: ["T1", "T2", "PD", "FLAIR"])  # also "random"
    slices: int = 2
    val_slices: int = 1
    seed: int = 0
    val_seed: int = 1
    noise_level: float | list[float] = 0.03  # [low, high]: log-uniform per subject
    bias_std: float | list[float] = 0.12  # [low, high]: uniform per subject
    single_coil_fraction: float = 0.0  # share of single-coil subjects
    random_intensity_fraction: float = 0.2  # share of "random" contrasts drawn as random tissue intensities
    store_coil_maps: bool = True  # False: no coil_maps in the files (half the size; VarNet estimates maps)


@dataclass
class ReferenceAugmentConfig:
    """Augmentation of the *reference* image of multi-contrast pairs (``data.reference_augment``; training only).

    Each training item draws, from its own seed ``derive_seed(seed, 'reference', epoch, index)``: a rigid
    misregistration (shift uniform in [-shift_px, shift_px] per axis, sub-pixel, and a rotation uniform in
    [-rotate_deg, rotate_deg] about the crop centre; bilinear), a contrast change (the max-normalised reference
    raised to a power gamma, log-uniform in [gamma[0], gamma[1]]), a smooth multiplicative bias exp(b) (b bicubic
    from a 4 x 4 grid of N(0, bias_std^2) values) and, with probability ``drop``, an uninformative reference
    instead (``drop_to``: zeros or uniform noise, one drawn per dropped item). The target is never touched.
    """

    shift_px: float = 0.0
    rotate_deg: float = 0.0
    gamma: list[float] | None = None  # [low, high], 0 < low <= high; None: no contrast change
    bias_std: float = 0.0
    drop: float = 0.0
    drop_to: list[str] = field(default_factory=lambda: ["zeros", "noise"])

    def __post_init__(self):
        if self.shift_px < 0 or self.rotate_deg < 0 or self.bias_std < 0:
            raise ConfigError(f"data.reference_augment: shift_px, rotate_deg and bias_std must be >= 0; got "
                              f"{self.shift_px}, {self.rotate_deg}, {self.bias_std}")
        if self.gamma is not None and not (len(self.gamma) == 2 and 0 < self.gamma[0] <= self.gamma[1]):
            raise ConfigError(f"data.reference_augment.gamma must be [low, high] with 0 < low <= high; got "
                              f"{self.gamma}")
        if not 0.0 <= self.drop <= 1.0:
            raise ConfigError(f"data.reference_augment.drop must be in [0, 1]; got {self.drop}")
        if not self.drop_to or not set(self.drop_to) <= {"zeros", "noise"}:
            raise ConfigError(f"data.reference_augment.drop_to must be a non-empty list of 'zeros', 'noise'; got "
                              f"{self.drop_to}")


@dataclass
class DataConfig:
    """Where slices come from and how they are undersampled and augmented.

    source: ``simulated`` (generate/cache with the simulator), ``fastmri`` (folders of fastMRI h5 files:
        ``train_path``, ``val_path``) or ``paired`` (multi-contrast pairs; ``target_contrast``,
        ``reference_contrast``; adds the fully sampled reference image to each sample).
    mask_kinds / accelerations: one (kind, acceleration) pair is drawn per training batch, uniformly from
        all combinations; every sample of the batch gets its own random mask of that kind.
    crop: [h, w] image-domain crop of the fully sampled coil images before undersampling (random position
        when ``random_crop``; centred otherwise), "recon" (the header's recon size) or null.
    flip: random left-right and up-down flips (each with probability 1/2) of the coil images.
    reference_augment: paired data only: misregistration, contrast and bias changes and drops of the reference
        image (:class:`ReferenceAugmentConfig`); null (the default): the reference is the exact co-located slice.
    train_contrasts: simulated data only: train on these of ``simulation.contrasts`` (null: all of them), e.g.
        to measure what the random contrast adds on the same cached set; validation keeps every contrast.
    val_*: the held-out split, scored with fixed masks per (file, slice) at every (kind, acceleration).
    """

    source: str = "simulated"
    train_path: str | None = None
    val_path: str | None = None
    cache_dir: str = "runs/cache/simulated"
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    train_contrasts: list[str] | None = None
    target_contrast: str | None = None
    reference_contrast: str | None = None
    mask_kinds: list[str] = field(default_factory=lambda: ["random1d"])
    accelerations: list[float] = field(default_factory=lambda: [4.0, 8.0])
    center_fraction: float | None = None
    crop: Any = None  # [h, w] | "recon" | None
    random_crop: bool = True
    flip: bool = True
    reference_augment: ReferenceAugmentConfig | None = None
    num_workers: int = 0
    val_mask_kinds: list[str] | None = None  # default: mask_kinds
    val_accelerations: list[float] | None = None  # default: accelerations
    val_crop: Any = None
    val_max_volumes: int | None = None
    val_max_slices: int | None = None


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (per optimiser step).

    name: adam | adamw | rmsprop | sgd. scheduler: constant | cosine (to ``min_lr_ratio * lr`` at max_steps)
    | step (multiply by ``gamma`` every ``step_size`` steps); all after ``warmup_steps`` of linear warm-up.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 1000
    gamma: float = 0.1


@dataclass
class TrainingConfig:
    """The loop: steps, batch, precision, EMA, clipping, logging, checkpoints.

    One *step* is one optimiser update on ``batch_size * grad_accum * num_processes`` samples.
    ``val_every`` = 0 validates at the end of every epoch (one pass over the training slices), N > 0 every
    N steps; -1 never (except at the end). ``ema_decay`` = 0 disables EMA.
    """

    max_steps: int = 1000
    max_epochs: int = 0  # > 0: max_steps = max_epochs x steps per epoch (the papers count epochs)
    max_time_s: float = 0.0  # > 0: stop cleanly (checkpoint + final export) after this many seconds of a session
    batch_size: int = 4
    grad_accum: int = 1
    updates_per_batch: int = 1  # optimiser steps per loaded batch (each with its own noise draws; CPU economy)
    loss: str = "l1"
    mixed_precision: str = "auto"  # auto (bf16 on a CPU with native bf16, else no) | no | bf16 | fp16 (GPU)
    channels_last: bool = False  # models (and frozen helpers) in channels_last memory format
    compile: bool = False  # torch.compile (inductor) of the loss computation, through Accelerate's dynamo_backend
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay_t = min(ema_decay, (1 + t) / (10 + t))
    seed: int = 0
    val_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    select_metric: str = "psnr"  # psnr | ssim | val_loss (lower is better): picks the best checkpoint
    log_every: int = 10  # TensorBoard / console; the CSV gets every step
    out_dir: str = "runs/train"
    export_dir: str | None = None  # the shipped folder of this stage's model (e.g. weights/ldpm-small/sketcher)
    export: bool = False  # copy final/ to export_dir at the end (`mrrecon train --export`); off: weights/ untouched
    threads: int = 0  # torch.set_num_threads when > 0
    progress: bool = True
    tensorboard: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms on GPU
    cpu: bool = False  # force CPU even with a GPU


@dataclass
class RecipeConfig:
    """Which recipe trains the model (``mrrecon.train.recipe``; ``default``: ``model.training_loss``) and its
    parameters (the recipe's own typed dataclass; unknown keys are errors)."""

    name: str = "default"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """The whole training configuration."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks
# --------------------------------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict (YAML/JSON-serialisable) of a config dataclass."""
    return dataclasses.asdict(config)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set ``a.b.c=value`` items in a nested dict (in place; returned). Missing sections are created and
    checked later against the dataclasses."""
    for item in overrides or ():
        path, value = _parse_override(item)
        node = values
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return values


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (ConfigError when missing or not a mapping)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return loaded or {}


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None, stage: str | None = None) -> TrainConfig:
    """Read a YAML config (or start from ``base``/defaults), apply overrides, validate, return it.

    A config with ``stages:`` needs ``stage``: the resolved config of that stage (:func:`load_stages`)."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_yaml(path)
    elif base is not None:
        values = yaml.safe_load(yaml.safe_dump(base))  # deep copy
    if "stages" in values:
        plan = load_stages(path, overrides, base=None if path is not None else values)
        if stage is None:
            raise ConfigError(f"{path or 'the config'} has stages {plan.names()}: name one (--stage NAME)")
        return plan.get(stage).config
    if stage is not None:
        raise ConfigError(f"{path or 'the config'} has no stages; cannot select stage {stage!r}")
    values = apply_overrides(values, list(overrides))
    return config_from_values(values)


def config_from_values(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a nested dict."""
    train = values.get("train") if isinstance(values, dict) else None
    if isinstance(train, dict) and train.get("mixed_precision") is False:  # YAML reads a bare `no` as false
        train["mixed_precision"] = "no"
    config = config_from_dict(TrainConfig, values, "")
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Checks that need more than one field or a fixed set of choices."""
    t, o, d = config.train, config.optim, config.data
    choices = {
        "data.source": (d.source, ("simulated", "fastmri", "paired")),
        "optim.name": (o.name, ("adam", "adamw", "rmsprop", "sgd")),
        "optim.scheduler": (o.scheduler, ("constant", "cosine", "step")),
        "train.mixed_precision": (t.mixed_precision, ("auto", "no", "fp16", "bf16")),
        "train.select_metric": (t.select_metric, ("psnr", "ssim", "val_loss")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}; got {value!r}")
    positive = {"train.max_steps": t.max_steps, "train.batch_size": t.batch_size, "train.grad_accum": t.grad_accum,
                "train.updates_per_batch": t.updates_per_batch}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1; got {value}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1); got {t.ema_decay}")
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0; got {o.lr}")
    if t.max_epochs < 0 or t.max_time_s < 0:
        raise ConfigError(f"train.max_epochs and train.max_time_s must be >= 0; got {t.max_epochs}, {t.max_time_s}")
    if d.crop is not None and d.crop != "recon":
        if not (isinstance(d.crop, list) and len(d.crop) == 2 and all(isinstance(c, int) and c > 0 for c in d.crop)):
            raise ConfigError(f"data.crop must be [h, w], 'recon' or null; got {d.crop!r}")
    if d.source in ("fastmri", "paired") and not d.train_path:
        raise ConfigError(f"data.source={d.source!r} needs data.train_path")
    if d.source == "paired" and not (d.target_contrast and d.reference_contrast):
        raise ConfigError("data.source='paired' needs data.target_contrast and data.reference_contrast")
    if not d.mask_kinds or not d.accelerations:
        raise ConfigError("data.mask_kinds and data.accelerations must not be empty")
    if d.train_contrasts is not None:
        if d.source != "simulated":
            raise ConfigError("data.train_contrasts applies to data.source='simulated' only")
        from mrrecon.data.phantom.contrast import canonical_contrast

        cached = {canonical_contrast(c) for c in d.simulation.contrasts}
        chosen = [canonical_contrast(c) for c in d.train_contrasts]
        if not chosen or not set(chosen) <= cached:
            raise ConfigError(f"data.train_contrasts must be a non-empty subset of data.simulation.contrasts "
                              f"{sorted(cached)}; got {d.train_contrasts!r}")


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically)."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------------------------------
# stages: several runs described by one file
# --------------------------------------------------------------------------------------------------
_STAGE_KEYS = ("name", "model", "data", "optim", "train", "recipe")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: mappings recursively, everything else (lists too) replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _copy(values: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(values))


@dataclass
class Stage:
    """One run of a plan: ``name`` ("" for a config without stages) and its resolved config (``train.out_dir``
    is the stage's run folder)."""

    name: str
    config: TrainConfig

    @property
    def out_dir(self) -> Path:
        return Path(self.config.train.out_dir)


@dataclass
class StagePlan:
    """The stages of a config file in order (one unnamed stage for a config without ``stages:``)."""

    name: str
    root: Path  # train.out_dir of the file: stage S runs in root / S
    stages: list[Stage]
    staged: bool
    source: str | None = None  # the config file

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"no stage {name!r}; stages: {self.names()}")

    def output(self, name: str) -> Path | None:
        """Where stage ``name``'s trained model is: its run's final/ when complete, else its export folder."""
        stage = self.get(name)
        final = stage.out_dir / "final"
        if (final / "config.json").is_file():
            return final
        export = stage.config.train.export_dir
        if export and (Path(export) / "config.json").is_file():
            return Path(export)
        return None

    def resolve(self, ref: str | None) -> str | None:
        """A model reference: the name of a stage of this plan (its output, which must exist by now), else a
        folder or a name under weights/ (returned unchanged)."""
        if ref is None or not self.staged or ref not in self.names():
            return ref
        out = self.output(ref)
        if out is None:
            raise ConfigError(f"stage {ref!r} has no trained model yet (neither {self.get(ref).out_dir / 'final'} "
                              f"nor its export_dir): run it first (mrrecon train CONFIG --stage {ref})")
        return str(out)


def _stage_entry(entry: Any, i: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError(f"stages[{i}]: each stage is a mapping with a 'name'")
    unknown = sorted(set(entry) - set(_STAGE_KEYS))
    if unknown:
        raise ConfigError(f"stages[{i}] ({entry['name']}): unknown key(s) {unknown}; valid keys: {list(_STAGE_KEYS)}")
    name = entry["name"]
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"stage name {name!r}: use letters, digits, '-', '_', '.'")
    entry = _copy(entry)
    if isinstance(entry.get("recipe"), str):
        entry["recipe"] = {"name": entry["recipe"]}
    if "out_dir" in (entry.get("train") or {}):
        raise ConfigError(f"stage {name!r}: train.out_dir is set at the top level only (stage S runs in "
                          "<out_dir>/S)")
    return entry


def load_stages(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> StagePlan:
    """The stages of a config (a file or ``base``), each resolved and validated.

    Each stage's sections are merged over the top-level ones (mappings key by key, other values replaced;
    a stage whose ``model`` names a ``type`` replaces the whole model section). Overrides ``a.b=v`` apply to
    every stage (after its own sections), ``stages.NAME.a.b=v`` to stage NAME only. Stage S runs in
    ``<train.out_dir>/S``. A config without ``stages:`` is one unnamed stage, exactly as :func:`load_config`.
    """
    values = read_yaml(path) if path is not None else _copy(base or {})
    overrides = list(overrides or ())
    entries = values.pop("stages", None)
    if entries is None:
        if any(o.split("=", 1)[0].split(".")[0] == "stages" for o in overrides):
            raise ConfigError("stages.NAME.key=value overrides need a config with stages")
        config = config_from_values(apply_overrides(values, overrides))
        return StagePlan(config.name, Path(config.train.out_dir), [Stage("", config)], staged=False,
                         source=None if path is None else str(path))
    if not isinstance(entries, list) or not entries:
        raise ConfigError("stages: expected a non-empty list of stages")
    entries = [_stage_entry(e, i) for i, e in enumerate(entries)]
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique; got {names}")
    common, per_stage = [], {n: [] for n in names}
    for item in overrides:
        key = item.split("=", 1)[0].strip().split(".")
        if key[0] == "stages":
            if len(key) < 3 or key[1] not in per_stage:
                raise ConfigError(f"override {item!r}: expected stages.NAME.key=value with NAME one of {names}")
            per_stage[key[1]].append(item.split(".", 2)[2])
        else:
            common.append(item)
    top = apply_overrides(_copy(values), common)
    top_config = config_from_values(_copy(top))  # the top level alone must be valid too
    root = Path(top_config.train.out_dir)
    stages = []
    for entry in entries:
        name = entry.pop("name")
        merged = _copy(top)
        model = entry.pop("model", None)
        if model is not None:
            merged["model"] = model if "type" in model else _deep_merge(merged.get("model") or {}, model)
        merged = _deep_merge(merged, entry)
        merged = apply_overrides(merged, common + per_stage[name])
        merged.setdefault("train", {})["out_dir"] = str(root / name)
        merged["name"] = f"{top_config.name}/{name}"
        try:
            config = config_from_values(merged)
        except ConfigError as exc:
            raise ConfigError(f"stage {name!r}: {exc}") from exc
        stages.append(Stage(name, config))
    return StagePlan(top_config.name, root, stages, staged=True, source=None if path is None else str(path))
