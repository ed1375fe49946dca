"""The training loop: one code path for 1 CPU, 1 GPU, many GPUs and many nodes (Hugging Face Accelerate).

``train(config, resume=False)`` (or ``mrrecon train CONFIG``, ``accelerate launch -m mrrecon.train CONFIG``)
trains one stage: the recipe ``config.recipe`` (``mrrecon.train.recipe``; ``default`` trains ``config.model``
with its ``training_loss``) builds the model and its frozen helpers, the data come from
``mrrecon.train.data``, and the loop runs ``max_steps`` optimiser steps. Each step:

1. ``grad_accum`` micro-batches of ``batch_size`` samples per process (a loaded batch serves
   ``updates_per_batch`` consecutive steps): ``recipe.transform`` then ``loss = recipe.loss(model, batch) /
   grad_accum`` inside the data-parallel wrapper, backward (gradients synchronised across processes only on
   the last micro-batch);
2. gradient clipping to ``grad_clip`` (global L2 norm; the norm is logged either way);
3. optimiser step, LR-schedule step, EMA update; then the recipe's second player (a GAN discriminator), if
   any, takes its own step through its own data-parallel wrapper;
4. logging (CSV every step, TensorBoard every ``log_every``), validation (``recipe.validate`` with the EMA
   weights: by default fastMRI-convention PSNR/SSIM through ``mrrecon.core.runner.score_volume``) at each
   epoch end or every ``val_every`` steps, the best checkpoint by ``select_metric``, and a checkpoint every
   ``checkpoint_every`` steps and at the end; ``max_time_s`` stops the stage cleanly (checkpoint, final
   export whose card says so) when a session has run that long.

Every model, helper, discriminator and batch lives on the Accelerator's device; ``mixed_precision: bf16``
autocasts on CPU and GPU (``fp16`` on GPU, with a loss scaler); losses are computed in float32.

Resume (``resume=True``) restores weights, EMA, optimiser, scheduler, loss scaler, the second player and its
optimiser, RNG states and the data position (epoch and batch offset follow from the step), so a resumed run
repeats the uninterrupted run's loss curve exactly when it uses the same number of processes and the same
hardware.

Outputs in ``train.out_dir``: ``config.yaml``, ``train_log.csv``, ``val_log.csv``, ``tensorboard/``,
``checkpoints/step-*/`` (+ ``latest``), ``best/`` and ``final/`` (pretrained folders with README.md), and a
copy of ``final/`` in ``train.export_dir`` when set.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mrrecon.core.pretrained import PretrainedModel, save_pretrained
from mrrecon.data.sample import collate_samples
from mrrecon.errors import ConfigError, DataError
from mrrecon.nn.losses import make_loss
from mrrecon.train import checkpoint as ckpt
from mrrecon.train.config import OptimConfig, StagePlan, TrainConfig, config_to_dict, save_config
from mrrecon.train.data import (
    EpochBatchSampler,
    ValidationSet,
    build_training_slices,
    build_validation_set,
    prepare_simulated,
)
from mrrecon.train.ema import EMA
from mrrecon.train.logging import RunLogger
from mrrecon.train.recipe import BatchInfo, Player, Recipe, RecipeEnv, recipe_class, score_reconstructor
from mrrecon.utils.cpu import cpu_has_native_bf16
from mrrecon.utils.runfolder import FolderLock

__all__ = ["Float32Loss", "LossModule", "PlayerModule", "TrainResult", "Trainer", "TrainerState", "build_optimizer",
           "build_scheduler", "lr_factor", "train"]


class Float32Loss:
    """A loss function evaluated in float32 outside autocast (mixed precision must not reach the loss)."""

    def __init__(self, fn, device_type: str = "cpu"):
        self.fn, self.device_type = fn, device_type

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        up = lambda x: x.float() if x.is_floating_point() else x  # noqa: E731
        with torch.autocast(self.device_type, enabled=False):
            return self.fn(up(pred), up(target))


def resolve_precision(requested: str, use_cpu: bool) -> str:
    """``train.mixed_precision: auto``: bf16 autocast on a CPU with native bf16, where it trains every shipped config
    faster at the same quality (benchmarks/train_speed.py, docs/training.md); none on a GPU or an older CPU (set
    bf16 / fp16 there explicitly)."""
    if requested != "auto":
        return requested
    return "bf16" if use_cpu and cpu_has_native_bf16() else "no"


def precision_warning(precision: str, use_cpu: bool) -> str | None:
    """A one-line warning when bf16 autocast is asked for on a CPU that emulates bf16 (10-16x slower per step than
    fp32 for unet-small / varnet-small, benchmarks/results/train_speed_avx2.json); None otherwise."""
    if precision == "bf16" and use_cpu and not cpu_has_native_bf16():
        return ("warning: train.mixed_precision=bf16 on a CPU without native bf16 (no avx512_bf16 / amx_bf16 in "
                "/proc/cpuinfo) is emulated and an order of magnitude slower than fp32; set it to auto or no")
    return None


class LossModule(nn.Module):
    """Wraps a model so that DDP sees the whole loss computation as ``forward`` (gradients sync there)."""

    def __init__(self, model: PretrainedModel, loss_fn, recipe: Recipe | None = None):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.recipe = recipe  # a plain object: its frozen helpers are not parameters of this module

    def forward(self, batch) -> dict[str, torch.Tensor]:
        if self.recipe is None:
            return self.model.training_loss(batch, self.loss_fn)
        return self.recipe.loss(self.model, batch, self.loss_fn)


class PlayerModule(nn.Module):
    """A recipe's second player (e.g. a discriminator) with its loss as ``forward``: its own DDP module."""

    def __init__(self, player: Player):
        super().__init__()
        self.module = player.module
        self.player_loss = player.loss

    def forward(self, inputs) -> dict[str, torch.Tensor]:
        return self.player_loss(self.module, inputs)


def build_optimizer(params, o: OptimConfig) -> torch.optim.Optimizer:
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, eps=o.eps, weight_decay=o.weight_decay, momentum=o.momentum)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise ConfigError(f"unknown optimiser {o.name!r}")


def lr_factor(step: int, *, optim: OptimConfig, max_steps: int) -> float:
    """LR multiplier after ``step`` completed optimiser steps (LambdaLR's ``last_epoch``)."""
    w = optim.warmup_steps
    if w > 0 and step < w:
        return (step + 1) / w
    t = step - w
    if optim.scheduler == "constant":
        return 1.0
    if optim.scheduler == "step":
        return optim.gamma ** (t // max(optim.step_size, 1))
    progress = min(t / max(max_steps - w, 1), 1.0)  # cosine
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, o: OptimConfig, max_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, optim=o, max_steps=max_steps))


@dataclass
class TrainerState:
    """Everything about the run's progress that is not a tensor (saved as trainer/state.json)."""

    step: int = 0
    epoch: int = 0
    samples_seen: int = 0
    wall_time_s: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    last_validation: dict[str, Any] = field(default_factory=dict)
    best_validation: dict[str, Any] = field(default_factory=dict)
    ema_updates: int = 0
    world_size: int = 1
    sessions: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    losses: list[float]  # this session's per-step losses
    best_metric: float | None
    best_step: int | None
    wall_time_s: float
    final_dir: Path | None
    last_validation: dict[str, Any]
    stopped_early: bool = False  # stop_after (a simulated kill): no final export
    stopped_on_time: bool = False  # train.max_time_s: checkpoint + final export before max_steps
    max_steps: int = 0


def _better(metric: float, best: float | None, key: str) -> bool:
    if not np.isfinite(metric):
        return False
    if best is None:
        return True
    return metric < best if key == "val_loss" else metric > best


class Trainer:
    """One run (one stage) of ``config``; ``plan`` resolves references to other stages of the same file."""

    def __init__(self, config: TrainConfig, out_dir: str | None = None, plan: StagePlan | None = None,
                 command: str | None = None, stage: str | None = None):
        self.config = config
        self.out_dir = Path(out_dir or config.train.out_dir)
        self.plan = plan
        self.command = command  # the command line, recorded in the model cards
        self.stage = stage

    # ------------------------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``max_steps`` (``stop_after``: return after that step without the final checkpoint, as if
        killed; used to test resume)."""
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        t = self.config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        use_cpu = t.cpu or not torch.cuda.is_available()
        t.mixed_precision = resolve_precision(t.mixed_precision, use_cpu)  # the card and config.yaml say which
        if use_cpu and t.mixed_precision == "fp16":
            raise ConfigError("train.mixed_precision=fp16 needs a GPU (its loss scaler is CUDA-only); use bf16 on CPU")
        acc = Accelerator(cpu=use_cpu, mixed_precision=t.mixed_precision, step_scheduler_with_optimizer=False,
                          dynamo_backend="inductor" if t.compile else "no")
        warning = precision_warning(t.mixed_precision, use_cpu)
        if warning:
            acc.print(warning)
        if t.deterministic and not use_cpu:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        # one process trains a run folder at a time: a second start on it is refused, not interleaved
        lock = FolderLock(self.out_dir) if acc.is_main_process else None
        try:
            if lock is not None:
                note = lock.acquire()
                if note:
                    acc.print(note)
            return self._fit(acc, resume=resume, stop_after=stop_after, set_seed=set_seed)
        finally:
            if lock is not None:
                lock.release()
            acc.wait_for_everyone()
            # let a later run in this process (the next stage) choose other settings; the process group stays
            AcceleratorState._reset_state(reset_partial_state=False)

    # ------------------------------------------------------------------------------------------------
    def _fit(self, acc, *, resume: bool, stop_after: int | None, set_seed) -> TrainResult:
        cfg, t = self.config, self.config.train
        fit_start = time.perf_counter()
        main = acc.is_main_process
        manager = ckpt.CheckpointManager(self.out_dir, t.keep_checkpoints)
        resume_from = manager.latest() if resume else None
        if main:
            if not resume and manager.latest() is not None:
                raise ConfigError(f"{self.out_dir} already holds checkpoints of a run; pass --resume to continue "
                                  "it or choose another --out")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
            if resume and resume_from is None:
                acc.print(f"no checkpoint in {self.out_dir}; starting a new run")
        recipe = recipe_class(cfg.recipe.name)(cfg, self.plan)

        # -- data ------------------------------------------------------------------------------------
        train_files = val_files = None
        if cfg.data.source == "simulated":
            if main:
                splits = prepare_simulated(cfg.data)
            acc.wait_for_everyone()
            if not main:
                splits = prepare_simulated(cfg.data, generate=False)
            train_files, val_files = splits.train, splits.val
        train_set = build_training_slices(cfg.data, t.seed, train_files)
        # validation: on rank 0, or shared out over every rank when the recipe scores volumes (validate_sharded)
        val_set = build_validation_set(cfg.data, t.seed, val_files) \
            if main or (acc.num_processes > 1 and scores_volumes(recipe)) else None

        # -- recipe, model, optimiser, schedule, EMA, second player --------------------------------------
        env = RecipeEnv(device=acc.device, train_set=train_set, seed=t.seed, rank=acc.process_index,
                        world=acc.num_processes, batch_size=t.batch_size, channels_last=t.channels_last)
        recipe.setup(env)
        set_seed(t.seed)
        model = env.place(recipe.build_model())
        if recipe.convert_only():
            return self._convert(acc, recipe, model, fit_start)
        if cfg.model.init_from and resume_from is None:
            _warm_start(model, recipe.resolve(cfg.model.init_from))
        sampler = EpochBatchSampler(len(train_set), t.batch_size, train_set.combos, t.seed,
                                    acc.process_index, acc.num_processes, groups=train_set.batch_groups())
        groups_per_epoch = sampler.per_rank // t.grad_accum
        if groups_per_epoch < 1:
            raise ConfigError(f"an epoch has {sampler.per_rank} batch(es) per process, fewer than grad_accum="
                              f"{t.grad_accum}")
        reuse = t.updates_per_batch
        steps_per_epoch = groups_per_epoch * reuse
        max_steps = t.max_epochs * steps_per_epoch if t.max_epochs > 0 else t.max_steps
        ema = EMA(model, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, max_steps)
        player = recipe.player()
        p_optimizer = None
        if player is not None:
            player.module = env.place(player.module)
            p_optimizer = build_optimizer(player.module.parameters(), player.optim)
        state = TrainerState(world_size=acc.num_processes)
        rng_to_restore = None
        if resume_from is not None:
            state, rng_to_restore = self._load(resume_from, model, optimizer, scheduler, ema, acc, player,
                                               p_optimizer)
        state.sessions += 1
        loss_fn = Float32Loss(make_loss(t.loss), acc.device.type)
        wrapper, optimizer = acc.prepare(LossModule(model, loss_fn, recipe), optimizer)
        p_wrapper = None
        if player is not None:
            p_wrapper, p_optimizer = acc.prepare(PlayerModule(player), p_optimizer)
        if resume_from is not None and acc.scaler is not None and (resume_from / "trainer" / "scaler.json").is_file():
            acc.scaler.load_state_dict(ckpt.load_json(resume_from / "trainer" / "scaler.json"))

        # The loader gets its own generator: creating iterators must not draw from the global RNG.
        loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_samples,
                            num_workers=cfg.data.num_workers, generator=torch.Generator())
        logger = RunLogger(self.out_dir, tensorboard=t.tensorboard,
                           resume_step=state.step if resume_from is not None else None) if main else None
        if main:
            acc.print(f"{cfg.name}: {model.model_type} with {model.num_parameters():,} parameters (recipe "
                      f"{cfg.recipe.name}); {len(train_set)} training slices, {steps_per_epoch} steps per epoch, "
                      f"{max_steps} steps; {acc.num_processes} process(es) on {acc.device}, precision "
                      f"{acc.mixed_precision}" + (f"; resuming at step {state.step} from {resume_from}"
                                                  if resume_from else ""))
        if rng_to_restore is not None:
            ckpt.set_rng_state(*rng_to_restore)

        pbar = None
        if main and t.progress:
            from tqdm.auto import tqdm

            pbar = tqdm(total=max_steps, initial=state.step, desc=cfg.name, dynamic_ncols=True, smoothing=0.1)
        session_start, wall_base = time.perf_counter(), state.wall_time_s
        losses: list[float] = []
        last_validated = state.step if resume_from is not None else -1
        last_saved = state.step if resume_from is not None else -1
        samples_per_step = t.batch_size * t.grad_accum * acc.num_processes
        stopped_on_time = False
        wrapper.train()
        if p_wrapper is not None:
            p_wrapper.train()

        def wall() -> float:
            return wall_base + time.perf_counter() - session_start

        def out_of_time() -> bool:
            if t.max_time_s <= 0:
                return False
            flag = torch.tensor(float(time.perf_counter() - fit_start >= t.max_time_s), device=acc.device)
            if acc.num_processes > 1:
                flag = acc.reduce(flag, "sum")
            return bool(flag > 0)

        while state.step < max_steps and not stopped_on_time:
            state.epoch = state.step // steps_per_epoch
            in_epoch = state.step % steps_per_epoch
            sampler.set_epoch(state.epoch, (in_epoch // reuse) * t.grad_accum, groups_per_epoch * t.grad_accum)
            batches = iter(loader) if recipe.loads_data else None
            group: list | None = None
            for _ in range(steps_per_epoch - in_epoch):
                t0 = time.perf_counter()
                if batches is not None and (group is None or state.step % reuse == 0):
                    group = [next(batches) for _ in range(t.grad_accum)]
                step_loss = torch.zeros((), device=acc.device)
                extras: dict[str, float] = {}
                player_inputs = []
                if player is not None:
                    player.module.requires_grad_(False)
                for micro in range(t.grad_accum):
                    info = BatchInfo(step=state.step, micro=micro, epoch=state.epoch, rank=acc.process_index,
                                     world=acc.num_processes, base_seed=t.seed)
                    raw = group[micro].to(acc.device) if group is not None else None
                    with acc.autocast():
                        batch = recipe.transform(raw, info)
                    sync = micro == t.grad_accum - 1
                    with contextlib.nullcontext() if sync else acc.no_sync(wrapper):
                        out = wrapper(batch)
                        loss = out["loss"]
                        if not torch.isfinite(loss):
                            raise DataError(f"non-finite loss {float(loss)} at step {state.step + 1}")
                        acc.backward(loss / t.grad_accum)
                    step_loss += loss.detach().float() / t.grad_accum
                    if "_player" in out:
                        player_inputs.append(out["_player"])
                    for k, v in out.items():
                        if k != "loss" and not k.startswith("_"):
                            v = v.detach() if torch.is_tensor(v) else v
                            extras[k] = extras.get(k, 0.0) + float(v) / t.grad_accum
                grad_norm = acc.clip_grad_norm_(wrapper.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if player is not None and player_inputs and player.active(state.step + 1):
                    extras.update(self._player_step(acc, player, p_wrapper, p_optimizer, player_inputs))
                if ema is not None:
                    ema.update(model)
                    state.ema_updates = ema.num_updates
                state.step += 1
                state.samples_seen += samples_per_step
                loss_value = float(acc.reduce(step_loss, "mean")) if acc.num_processes > 1 else float(step_loss)
                losses.append(loss_value)
                dt = time.perf_counter() - t0
                if main:
                    lr = scheduler.get_last_lr()[0]
                    row = {"step": state.step, "epoch": state.epoch, "loss": loss_value, "lr": lr,
                           "grad_norm": float(grad_norm), "samples_per_s": samples_per_step / dt,
                           "wall_time_s": wall(), **extras}
                    logger.log_train(row, to_tensorboard=state.step % max(t.log_every, 1) == 0)
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.2e}", sps=f"{samples_per_step / dt:.1f}",
                                         refresh=False)
                        pbar.update(1)
                    elif state.step % max(t.log_every, 1) == 0:
                        acc.print(f"step {state.step}/{max_steps} loss {loss_value:.5g} lr {lr:.3g} "
                                  f"{samples_per_step / dt:.1f} samples/s")
                end_of_epoch = state.step % steps_per_epoch == 0
                due = (t.val_every == 0 and end_of_epoch) or (t.val_every > 0 and state.step % t.val_every == 0)
                if due or state.step == max_steps:
                    self._validate_and_keep_best(acc, recipe, model, ema, val_set, state, logger, pbar, wall)
                    last_validated = state.step
                if state.step % max(t.checkpoint_every, 1) == 0 or state.step == max_steps:
                    state.wall_time_s = wall()
                    self._save_checkpoint(acc, manager, model, optimizer, scheduler, ema, state, player,
                                          p_optimizer)
                    last_saved = state.step
                if stop_after is not None and state.step >= stop_after and state.step < max_steps:
                    if pbar is not None:
                        pbar.close()
                    if logger is not None:
                        logger.close()
                    return TrainResult(self.out_dir, state.step, losses, state.best_metric, state.best_step, wall(),
                                       None, state.last_validation, stopped_early=True, max_steps=max_steps)
                if state.step >= max_steps:
                    break
                if out_of_time():
                    stopped_on_time = True
                    break
        if pbar is not None:
            pbar.close()
        if stopped_on_time:
            acc.print(f"{cfg.name}: train.max_time_s = {t.max_time_s:g} s reached at step {state.step} of "
                      f"{max_steps}; saving and exporting")
        if last_validated != state.step:
            self._validate_and_keep_best(acc, recipe, model, ema, val_set, state, logger, None, wall)
        state.wall_time_s = wall()
        if last_saved != state.step:
            self._save_checkpoint(acc, manager, model, optimizer, scheduler, ema, state, player, p_optimizer)
        final_dir = None
        end = {"max_steps": max_steps, "complete": state.step >= max_steps, "stopped_on_time": stopped_on_time}
        if main:
            final_dir = self._export(self.out_dir / "final", recipe, model, ema, state, "final", end)
            export_final(self.config.train, final_dir)
            logger.close()
        acc.wait_for_everyone()
        return TrainResult(self.out_dir, state.step, losses, state.best_metric, state.best_step, state.wall_time_s,
                           final_dir, state.last_validation, stopped_on_time=stopped_on_time, max_steps=max_steps)

    # ------------------------------------------------------------------------------------------------
    def _player_step(self, acc, player: Player, p_wrapper, p_optimizer, inputs: list) -> dict[str, float]:
        """One optimiser step of the second player on the generator step's micro-batches."""
        player.module.requires_grad_(True)
        extras: dict[str, float] = {}
        n = len(inputs)
        for i, x in enumerate(inputs):
            with contextlib.nullcontext() if i == n - 1 else acc.no_sync(p_wrapper):
                out = p_wrapper(x)
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise DataError(f"non-finite second-player loss {float(loss)}")
                acc.backward(loss / n)
            for k, v in out.items():
                key = player.log_name if k == "loss" else k
                extras[key] = extras.get(key, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / n
        p_optimizer.step()
        p_optimizer.zero_grad(set_to_none=True)
        player.module.requires_grad_(False)
        return extras

    def _convert(self, acc, recipe: Recipe, model: PretrainedModel, fit_start: float) -> TrainResult:
        """A stage whose recipe only converts weights: export them as final/ (no steps, no checkpoints)."""
        state = TrainerState(world_size=acc.num_processes, wall_time_s=time.perf_counter() - fit_start)
        final_dir = None
        if acc.is_main_process:
            end = {"max_steps": 0, "complete": True, "stopped_on_time": False, "converted": True}
            final_dir = self._export(self.out_dir / "final", recipe, model, None, state, "final", end)
            export_final(self.config.train, final_dir)
        acc.wait_for_everyone()
        return TrainResult(self.out_dir, 0, [], None, None, state.wall_time_s, final_dir, {}, max_steps=0)

    # ------------------------------------------------------------------------------------------------
    def validate(self, model: PretrainedModel, val_set: ValidationSet, device) -> dict[str, float]:
        """PSNR / SSIM (fastMRI convention, per volume, averaged) for every (kind, acceleration) and overall."""
        from mrrecon.core.pretrained import LearnedReconstructor

        return score_reconstructor(LearnedReconstructor(model, self.config.name, device), val_set, self.config.name)

    def _validate_and_keep_best(self, acc, recipe, model, ema, val_set, state, logger, pbar, wall) -> None:
        main = acc.is_main_process
        sharded = acc.num_processes > 1 and scores_volumes(recipe)  # every rank scores its share of the volumes
        if (main or sharded) and val_set is not None and len(val_set):
            from accelerate.utils import gather_object

            t0 = time.perf_counter()
            key = self.config.train.select_metric
            # validation measures the model in float32 (no autocast): a 128-step sampler in bf16 is not the model
            with ema.swapped_in(model) if ema is not None else contextlib.nullcontext(), torch.no_grad():
                if sharded:
                    row = validate_sharded(recipe, model, val_set, acc.device, acc.process_index, acc.num_processes,
                                           gather_object)
                else:
                    row = recipe.validate(model, val_set, acc.device)
            model.train()
            if not main:
                acc.wait_for_everyone()
                return
            row = {"step": state.step, "epoch": state.epoch, **row, "seconds": time.perf_counter() - t0,
                   "wall_time_s": wall()}
            state.last_validation = row
            logger.log_val(row)
            metric = float(row.get(key, float("nan")))
            msg = f"validation at step {state.step}: {_summary(row)}"
            if _better(metric, state.best_metric, key):
                state.best_metric, state.best_step, state.best_validation = metric, state.step, row
                self._export(self.out_dir / "best", recipe, model, ema, state, "best")
                msg += " (best so far)"
            (pbar.write if pbar is not None else acc.print)(msg)
        acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------
    def _metadata(self, state: TrainerState, ema: EMA | None, which: str) -> dict[str, Any]:
        return {"name": self.config.name, "which": which, "weights": "ema" if ema is not None else "raw",
                "step": state.step, "epoch": state.epoch, "samples_seen": state.samples_seen,
                "wall_time_s": round(state.wall_time_s, 1), "world_size": state.world_size,
                "validation": state.last_validation, "best_step": state.best_step,
                "best_validation": state.best_validation, "train_config": config_to_dict(self.config)}

    def _export(self, directory: Path, recipe: Recipe, model, ema, state: TrainerState, which: str,
                extra: dict[str, Any] | None = None) -> Path:
        """A pretrained folder (evaluation weights) with the training config and a README, replaced atomically.
        The recipe's measurements (``export_metadata``) are taken on the evaluation weights."""
        tmp = directory.with_name(f".{directory.name}.partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        meta = {**self._metadata(state, ema, which), **(extra or {}), "recipe": recipe.describe()}
        if self.command:
            meta["command"] = self.command
        if self.stage:
            meta["stage"] = self.stage
        was_training = model.training
        with ema.swapped_in(model) if ema is not None else contextlib.nullcontext(), torch.no_grad():
            model.eval()
            meta["measured"] = recipe.export_metadata(model)
            save_pretrained(model, tmp, metadata=meta)
        model.train(was_training)
        save_config(self.config, tmp / "train_config.yaml")
        (tmp / "README.md").write_text(model_card(self.config, meta, model.num_parameters()))
        _replace_dir(tmp, directory)
        return directory

    def _save_checkpoint(self, acc, manager, model, optimizer, scheduler, ema, state, player=None,
                         p_optimizer=None) -> None:
        main = acc.is_main_process
        if main:
            manager.begin(state.step)
        acc.wait_for_everyone()
        trainer_dir = manager.partial_dir(state.step) / ckpt.TRAINER_DIR
        tensors, meta = ckpt.get_rng_state()
        ckpt.write_tensors(trainer_dir / f"rng-rank{acc.process_index}.safetensors", tensors)
        ckpt.write_json(trainer_dir / f"rng-rank{acc.process_index}.json", meta)
        acc.wait_for_everyone()
        if main:
            tmp = manager.partial_dir(state.step)
            weights = ema.state_dict() if ema is not None else model.state_dict()
            save_pretrained(model, tmp, state_dict=weights, metadata=self._metadata(state, ema, "checkpoint"))
            save_config(self.config, tmp / "train_config.yaml")
            ckpt.write_tensors(trainer_dir / "weights.safetensors", model.state_dict())
            if ema is not None:
                ckpt.write_tensors(trainer_dir / "ema.safetensors", ema.state_dict())
            ckpt.save_optimizer_state(trainer_dir, optimizer)
            ckpt.write_json(trainer_dir / "scheduler.json", scheduler.state_dict())
            if player is not None:
                ckpt.write_tensors(trainer_dir / "player.safetensors", player.module.state_dict())
                ckpt.save_optimizer_state(trainer_dir, p_optimizer, "player_optimizer")
            if acc.scaler is not None:
                ckpt.write_json(trainer_dir / "scaler.json", acc.scaler.state_dict())
            ckpt.write_json(trainer_dir / "state.json", asdict(state))
            manager.commit(state.step)
        acc.wait_for_everyone()

    def _load(self, path: Path, model, optimizer, scheduler, ema, acc, player=None, p_optimizer=None):
        trainer_dir = path / ckpt.TRAINER_DIR
        state = TrainerState.from_dict(ckpt.load_json(trainer_dir / "state.json"))
        model.load_state_dict(ckpt.read_tensors(trainer_dir / "weights.safetensors"))
        if ema is not None:
            if (trainer_dir / "ema.safetensors").is_file():
                ema.load(ckpt.read_tensors(trainer_dir / "ema.safetensors"), state.ema_updates)
            else:
                acc.print("checkpoint has no EMA weights; the EMA restarts from the current weights")
                ema.load(model.state_dict(), 0)
        ckpt.load_optimizer_state(trainer_dir, optimizer)
        scheduler.load_state_dict(ckpt.load_json(trainer_dir / "scheduler.json"))
        if player is not None:
            if (trainer_dir / "player.safetensors").is_file():
                player.module.load_state_dict(ckpt.read_tensors(trainer_dir / "player.safetensors"))
                ckpt.load_optimizer_state(trainer_dir, p_optimizer, "player_optimizer")
            else:
                acc.print("checkpoint has no second-player state; it restarts from its initialisation")
        if state.world_size != acc.num_processes:
            acc.print(f"warning: checkpoint written by {state.world_size} process(es), resuming on "
                      f"{acc.num_processes}: the data order (and so the loss curve) will differ")
        rng_file = trainer_dir / f"rng-rank{acc.process_index}.safetensors"
        if not rng_file.is_file():
            rng_file = trainer_dir / "rng-rank0.safetensors"
        rng = (ckpt.read_tensors(rng_file), ckpt.load_json(rng_file.with_suffix(".json")))
        state.world_size = acc.num_processes
        return state, rng


def scores_volumes(recipe: Recipe) -> bool:
    """Whether the recipe validates with the default per-volume scores (``Recipe.validate``: PSNR / SSIM per volume,
    averaged), which ``validate_sharded`` can share out over processes; other recipes validate on rank 0."""
    return type(recipe).validate is Recipe.validate


def _finite_mean(values) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def validate_sharded(recipe: Recipe, model, val_set: ValidationSet, device, rank: int, world: int,
                     gather) -> dict[str, float]:
    """``recipe.validate`` with the validation volumes shared out over ``world`` processes: volume i (in the order
    of ``val_set``) is scored whole, once, on rank ``i % world``; ``gather`` (accelerate's ``gather_object``) collects
    the per-volume rows on every rank, which then average them in the original order, exactly as a single process
    does (per (kind, acceleration) the mean of the finite volume scores, overall the mean of those means). A
    failure on any rank raises the same ``DataError`` on every rank."""
    items = [(g, j, key, vol) for g, (key, vols) in enumerate(val_set.volumes.items()) for j, vol in enumerate(vols)]
    mine = []
    for n, (g, j, key, vol) in enumerate(items):
        if n % world != rank:
            continue
        try:
            mine.append((g, j, recipe.validate(model, ValidationSet({key: [vol]}), device), None))
        except Exception as exc:  # noqa: BLE001 -- raised below on every rank, so that no rank waits forever
            mine.append((g, j, None, f"{type(exc).__name__}: {exc}"))
    rows = sorted(gather(mine), key=lambda x: (x[0], x[1]))
    failed = [err for *_, err in rows if err is not None]
    if failed:
        raise DataError(f"validation failed: {failed[0]}")
    out: dict[str, float] = {}
    overall: dict[str, list[float]] = {"psnr": [], "ssim": []}
    for g in range(len(val_set.volumes)):
        group = [r for gg, _, r, _ in rows if gg == g]
        if not group:
            continue
        means = {k: _finite_mean([r[k] for r in group]) for k in group[0]}
        for k in overall:
            overall[k].append(means.pop(k, float("nan")))
        out.update(means)
    return {**out, "psnr": _finite_mean(overall["psnr"]), "ssim": _finite_mean(overall["ssim"])}


def _summary(row: dict[str, Any]) -> str:
    parts = []
    if np.isfinite(row.get("psnr", float("nan"))):
        parts.append(f"PSNR {row['psnr']:.3f} dB, SSIM {row['ssim']:.4f}")
    if "val_loss" in row:
        parts.append(f"held-out loss {row['val_loss']:.5g}")
    return ", ".join(parts) or "no scores"


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder ``new`` onto ``target`` (the old one is renamed aside first, then removed)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    new.rename(target)
    if old.exists():
        shutil.rmtree(old)


def model_card(config: TrainConfig, meta: dict[str, Any], num_parameters: int) -> str:
    """README.md of an exported model: what it is, how it was trained, and how well it validated."""
    d, o, t, s = config.data, config.optim, config.train, config.data.simulation
    recipe = meta.get("recipe") or {"name": config.recipe.name, "params": config.recipe.params}
    if d.source == "simulated":
        data = (f"embedded simulator (`mrrecon.data.simulate`): {s.subjects} training subjects x {s.slices} "
                f"slice(s) x contrasts {', '.join(s.contrasts)} (seed {s.seed}); validation {s.val_subjects} "
                f"other subjects x {s.val_slices} slice(s) (seed {s.val_seed}); {s.size}x{s.size}, {s.coils} "
                f"coils, noise level {s.noise_level}")
    else:
        data = f"{d.source}: train `{d.train_path}`, validation `{d.val_path}`"
    model_type = config.model.type if recipe["name"] == "default" else "see config.json"
    lines = [
        f"# {config.name}", "",
        f"Trained with `mrrecon train` ({meta['which']} weights, {'EMA' if meta['weights'] == 'ema' else 'raw'}; "
        f"{num_parameters:,} parameters), recipe `{recipe['name']}`.", "",
        "Load with `mrrecon.core.pretrained.from_pretrained(\"<this folder>\")`"
        + (f" or `mrrecon.methods.load(\"{model_type}\", checkpoint=\"<this folder>\")`."
           if recipe["name"] == "default" else "."), "",
        "## Training", "",
    ]
    if meta.get("command"):
        lines.append(f"- command: `{meta['command']}`" + (f" (stage `{meta['stage']}`; alone: `--stage "
                                                          f"{meta['stage']}`)" if meta.get("stage") else ""))
    if meta.get("converted"):
        lines += [f"- converted, not trained: {recipe.get('description', '')}",
                  f"- recipe parameters: `{recipe.get('params')}`", ""]
        lines += ["Full resolved config: `train_config.yaml`.", ""]
        return "\n".join(lines)
    lines += [
        f"- recipe: `{recipe['name']}` ({recipe.get('description', '')}); parameters `{recipe.get('params')}`",
        f"- model: `{config.model.type}` `{config.model.params}`",
        f"- data: {data}",
        f"- masks: kinds {d.mask_kinds}, accelerations {d.accelerations} (one pair per batch), centre fraction "
        f"{d.center_fraction if d.center_fraction is not None else 'fastMRI default'}; crop {d.crop} "
        f"({'random' if d.random_crop else 'centred'}), flips {d.flip}",
        f"- optimiser: {o.name}, lr {o.lr:g}, betas {o.betas}, weight decay {o.weight_decay:g}, schedule "
        f"{o.scheduler} (warm-up {o.warmup_steps} steps), loss {t.loss}, batch {t.batch_size} x accumulation "
        f"{t.grad_accum} x {meta['world_size']} process(es)"
        + (f", {t.updates_per_batch} updates per loaded batch" if t.updates_per_batch > 1 else "")
        + f", gradient clip {t.grad_clip:g}, EMA decay {t.ema_decay:g}, seed {t.seed}, precision {t.mixed_precision}"
        + (", channels_last" if t.channels_last else ""),
        f"- steps: {meta['step']}" + (f" of {meta['max_steps']}" if meta.get("max_steps") else "")
        + f" ({meta['samples_seen']} samples), wall time {meta['wall_time_s']:.0f} s"
        + (f"; warm-started from `{config.model.init_from}` (`model.init_from`: these steps come on top of "
           "that model's)" if config.model.init_from else ""),
    ]
    if meta.get("stopped_on_time"):
        lines.append(f"- **stopped on time** at step {meta['step']} of {meta.get('max_steps')} "
                     f"(`train.max_time_s` = {t.max_time_s:g} s): not the full schedule")
    measured = meta.get("measured") or {}
    if measured:
        lines.append("- measured after training: " + ", ".join(f"{k} = {v}" for k, v in measured.items()))
    lines += ["", "## Validation (held-out split, mean over volumes)", ""]
    val = meta.get("validation") or {}
    keys = sorted(k for k in val if k.startswith("psnr_"))
    if keys:
        lines += ["fastMRI convention (`mrrecon.core.runner.score_volume`).", "", "| setting | PSNR (dB) | SSIM |",
                  "|---|---|---|"]
        for k in keys:
            tag = k[len("psnr_"):]
            lines.append(f"| {tag.replace('_', ' ')} | {val[k]:.2f} | {val.get('ssim_' + tag, float('nan')):.4f} |")
    if "val_loss" in val:
        lines += ["", f"held-out loss: {val['val_loss']:.5g}"]
    if keys or "val_loss" in val:
        lines += ["", f"at step {val.get('step')}; best step {meta.get('best_step')}."]
    else:
        lines.append("no validation split.")
    lines += ["", "Full resolved config: `train_config.yaml`.", ""]
    return "\n".join(lines)


def export_final(train_config, final_dir: Path) -> Path | None:
    """Copy a run's ``final/`` to ``train.export_dir`` (atomically: the old folder stays until the copy is whole)
    when ``train.export`` is on and an export folder is set; the target, else None."""
    export = train_config.export_dir
    if not export or not train_config.export:
        return None
    target = Path(export)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(final_dir, tmp)
    _replace_dir(tmp, target)
    print(f"exported {target}", flush=True)
    return target


def _warm_start(model: PretrainedModel, folder: str) -> None:
    """Copy the tensors of a pretrained folder into ``model`` where name and shape match (safetensors only)."""
    from safetensors.torch import load_file

    from mrrecon.core.pretrained import WEIGHTS_NAME, resolve_pretrained

    source = load_file(str(resolve_pretrained(folder) / WEIGHTS_NAME))
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ConfigError(f"model.init_from={folder!r}: no tensor matches the model's names and shapes")
    model.load_state_dict(matched, strict=False)
    model.after_warm_start(set(matched))
    print(f"warm start from {folder}: {len(matched)} of {len(own)} tensors copied")


def train(config: TrainConfig, *, resume: bool = False, out_dir: str | None = None,
          stop_after: int | None = None, plan: StagePlan | None = None, command: str | None = None,
          stage: str | None = None) -> TrainResult:
    """Run (or resume) a training run described by ``config``; see :class:`Trainer`."""
    return Trainer(config, out_dir, plan=plan, command=command, stage=stage).fit(resume=resume,
                                                                                  stop_after=stop_after)
