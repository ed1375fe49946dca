"""The training loop: one code path for 1 CPU, 1 GPU, many GPUs and many nodes (Hugging Face Accelerate).

``train(config, resume=False)`` (or ``mrrecon train CONFIG``, ``accelerate launch -m mrrecon.train CONFIG``)
builds the model named by ``config.model`` (any :class:`~mrrecon.core.pretrained.PretrainedModel`),
its data (``mrrecon.train.data``), an optimiser and LR schedule, EMA weights, and runs ``max_steps``
optimiser steps. Each step:

1. ``grad_accum`` micro-batches of ``batch_size`` samples per process: ``loss = model.training_loss(batch)
   / grad_accum``, backward (gradients synchronised across processes only on the last micro-batch);
2. gradient clipping to ``grad_clip`` (global L2 norm; the norm is logged either way);
3. optimiser step, LR-schedule step, EMA update;
4. logging (CSV every step, TensorBoard every ``log_every``), validation (held-out split, PSNR/SSIM,
   fastMRI convention through ``mrrecon.core.runner.score_volume``, with the EMA weights) at each epoch
   end or every ``val_every`` steps, the best checkpoint by ``select_metric``, and a checkpoint every
   ``checkpoint_every`` steps and at the end.

Resume (``resume=True``) restores weights, EMA, optimiser, scheduler, loss scaler, RNG states and the
data position (epoch and batch offset follow from the step), so a resumed run repeats the uninterrupted
run's loss curve exactly when it uses the same number of processes and the same hardware.

Outputs in ``train.out_dir``: ``config.yaml``, ``train_log.csv``, ``val_log.csv``, ``tensorboard/``,
``checkpoints/step-*/`` (+ ``latest``), ``best/`` and ``final/`` (pretrained folders with README.md).
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

from mrrecon.core.pretrained import LearnedReconstructor, PretrainedModel, model_class, save_pretrained
from mrrecon.core.runner import score_volume
from mrrecon.data.sample import collate_samples
from mrrecon.errors import ConfigError, DataError
from mrrecon.nn.losses import make_loss
from mrrecon.train import checkpoint as ckpt
from mrrecon.train.config import OptimConfig, TrainConfig, config_to_dict, save_config
from mrrecon.train.data import (
    EpochBatchSampler,
    ValidationSet,
    build_training_slices,
    build_validation_set,
    prepare_simulated,
)
from mrrecon.train.ema import EMA
from mrrecon.train.logging import RunLogger

__all__ = ["LossModule", "TrainResult", "Trainer", "TrainerState", "build_optimizer", "build_scheduler",
           "lr_factor", "train"]


class LossModule(nn.Module):
    """Wraps a model so that DDP sees the whole loss computation as ``forward`` (gradients sync there)."""

    def __init__(self, model: PretrainedModel, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.model.training_loss(batch, self.loss_fn)


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
    stopped_early: bool = False


def _mean(values: list[float]) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: str | None = None):
        self.config = config
        self.out_dir = Path(out_dir or config.train.out_dir)

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
        precision = "no" if use_cpu else t.mixed_precision
        acc = Accelerator(cpu=use_cpu, mixed_precision=precision, step_scheduler_with_optimizer=False)
        if t.deterministic and not use_cpu:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        try:
            return self._fit(acc, resume=resume, stop_after=stop_after, set_seed=set_seed)
        finally:
            acc.wait_for_everyone()
            if acc.num_processes == 1:  # let a later call in this process choose other settings
                AcceleratorState._reset_state()

    # ------------------------------------------------------------------------------------------------
    def _fit(self, acc, *, resume: bool, stop_after: int | None, set_seed) -> TrainResult:
        cfg, t = self.config, self.config.train
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
        val_set = build_validation_set(cfg.data, t.seed, val_files) if main else None

        # -- model, optimiser, schedule, EMA --------------------------------------------------------------
        set_seed(t.seed)
        model = model_class(cfg.model.type).from_config(cfg.model.params).to(acc.device)
        if cfg.model.init_from and resume_from is None:
            _warm_start(model, cfg.model.init_from)
        ema = EMA(model, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None
        optimizer = build_optimizer(model.parameters(), cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, t.max_steps)
        state = TrainerState(world_size=acc.num_processes)
        rng_to_restore = None
        if resume_from is not None:
            state, rng_to_restore = self._load(resume_from, model, optimizer, scheduler, ema, acc)
        state.sessions += 1
        wrapper, optimizer = acc.prepare(LossModule(model, make_loss(t.loss)), optimizer)
        if resume_from is not None and acc.scaler is not None and (resume_from / "trainer" / "scaler.json").is_file():
            acc.scaler.load_state_dict(ckpt.load_json(resume_from / "trainer" / "scaler.json"))

        sampler = EpochBatchSampler(len(train_set), t.batch_size, train_set.combos, t.seed,
                                    acc.process_index, acc.num_processes)
        steps_per_epoch = sampler.per_rank // t.grad_accum
        if steps_per_epoch < 1:
            raise ConfigError(f"an epoch has {sampler.per_rank} batch(es) per process, fewer than grad_accum="
                              f"{t.grad_accum}")
        # The loader gets its own generator: creating iterators must not draw from the global RNG.
        loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_samples,
                            num_workers=cfg.data.num_workers, generator=torch.Generator())
        logger = RunLogger(self.out_dir, tensorboard=t.tensorboard,
                           resume_step=state.step if resume_from is not None else None) if main else None
        if main:
            acc.print(f"{cfg.name}: {cfg.model.type} with {model.num_parameters():,} parameters; "
                      f"{len(train_set)} training slices, {steps_per_epoch} steps per epoch, "
                      f"{acc.num_processes} process(es) on {acc.device}"
                      + (f"; resuming at step {state.step} from {resume_from}" if resume_from else ""))
        if rng_to_restore is not None:
            ckpt.set_rng_state(*rng_to_restore)

        pbar = None
        if main and t.progress:
            from tqdm.auto import tqdm

            pbar = tqdm(total=t.max_steps, initial=state.step, desc=cfg.name, dynamic_ncols=True, smoothing=0.1)
        session_start, wall_base = time.perf_counter(), state.wall_time_s
        losses: list[float] = []
        last_validated = state.step if resume_from is not None else -1
        samples_per_step = t.batch_size * t.grad_accum * acc.num_processes
        wrapper.train()

        def wall() -> float:
            return wall_base + time.perf_counter() - session_start

        while state.step < t.max_steps:
            state.epoch = state.step // steps_per_epoch
            in_epoch = state.step % steps_per_epoch
            sampler.set_epoch(state.epoch, in_epoch * t.grad_accum, steps_per_epoch * t.grad_accum)
            batches = iter(loader)
            for _ in range(steps_per_epoch - in_epoch):
                t0 = time.perf_counter()
                step_loss = torch.zeros((), device=acc.device)
                extras: dict[str, float] = {}
                for micro in range(t.grad_accum):
                    batch = next(batches).to(acc.device)
                    sync = micro == t.grad_accum - 1
                    with contextlib.nullcontext() if sync else acc.no_sync(wrapper):
                        out = wrapper(batch)
                        loss = out["loss"]
                        if not torch.isfinite(loss):
                            raise DataError(f"non-finite loss {float(loss)} at step {state.step + 1}")
                        acc.backward(loss / t.grad_accum)
                    step_loss += loss.detach() / t.grad_accum
                    for k, v in out.items():
                        if k != "loss":
                            extras[k] = extras.get(k, 0.0) + float(v) / t.grad_accum
                grad_norm = acc.clip_grad_norm_(wrapper.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
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
                        acc.print(f"step {state.step}/{t.max_steps} loss {loss_value:.5g} lr {lr:.3g} "
                                  f"{samples_per_step / dt:.1f} samples/s")
                end_of_epoch = state.step % steps_per_epoch == 0
                due = (t.val_every == 0 and end_of_epoch) or (t.val_every > 0 and state.step % t.val_every == 0)
                if due or state.step == t.max_steps:
                    self._validate_and_keep_best(acc, model, ema, val_set, state, logger, pbar, wall)
                    last_validated = state.step
                if state.step % max(t.checkpoint_every, 1) == 0 or state.step == t.max_steps:
                    state.wall_time_s = wall()
                    self._save_checkpoint(acc, manager, model, optimizer, scheduler, ema, state)
                if stop_after is not None and state.step >= stop_after and state.step < t.max_steps:
                    if pbar is not None:
                        pbar.close()
                    if logger is not None:
                        logger.close()
                    return TrainResult(self.out_dir, state.step, losses, state.best_metric, state.best_step, wall(),
                                       None, state.last_validation, stopped_early=True)
                if state.step >= t.max_steps:
                    break
        if pbar is not None:
            pbar.close()
        if last_validated != state.step:
            self._validate_and_keep_best(acc, model, ema, val_set, state, logger, None, wall)
        state.wall_time_s = wall()
        final_dir = None
        if main:
            final_dir = self._export(self.out_dir / "final", model, ema, state, "final")
            logger.close()
        acc.wait_for_everyone()
        return TrainResult(self.out_dir, state.step, losses, state.best_metric, state.best_step, state.wall_time_s,
                           final_dir, state.last_validation)

    # ------------------------------------------------------------------------------------------------
    def validate(self, model: PretrainedModel, val_set: ValidationSet, device) -> dict[str, float]:
        """PSNR / SSIM (fastMRI convention, per volume, averaged) for every (kind, acceleration) and overall."""
        row: dict[str, float] = {}
        psnrs, ssims = [], []
        rec = LearnedReconstructor(model, self.config.name, device)
        for (kind, a), volumes in val_set.volumes.items():
            results = [score_volume(self.config.name, rec, vol) for vol in volumes]
            failed = [r for r in results if r.error is not None]
            if failed:
                raise DataError(f"validation failed on {failed[0].file}: {failed[0].error}")
            p, s = _mean([r.psnr for r in results]), _mean([r.ssim for r in results])
            row[f"psnr_{kind}_{a:g}x"], row[f"ssim_{kind}_{a:g}x"] = p, s
            psnrs.append(p)
            ssims.append(s)
        row["psnr"], row["ssim"] = _mean(psnrs), _mean(ssims)
        return row

    def _validate_and_keep_best(self, acc, model, ema, val_set, state, logger, pbar, wall) -> None:
        main = acc.is_main_process
        if main and val_set is not None and len(val_set):
            t0 = time.perf_counter()
            with ema.swapped_in(model) if ema is not None else contextlib.nullcontext(), torch.no_grad(), \
                    acc.autocast():
                row = self.validate(model, val_set, acc.device)
            model.train()
            row = {"step": state.step, "epoch": state.epoch, **row, "seconds": time.perf_counter() - t0,
                   "wall_time_s": wall()}
            state.last_validation = row
            logger.log_val(row)
            metric = row[self.config.train.select_metric]
            msg = f"validation at step {state.step}: PSNR {row['psnr']:.3f} dB, SSIM {row['ssim']:.4f}"
            if np.isfinite(metric) and (state.best_metric is None or metric > state.best_metric):
                state.best_metric, state.best_step, state.best_validation = float(metric), state.step, row
                self._export(self.out_dir / "best", model, ema, state, "best")
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

    def _export(self, directory: Path, model, ema, state: TrainerState, which: str) -> Path:
        """A pretrained folder (evaluation weights) with the training config and a README, replaced atomically."""
        tmp = directory.with_name(f".{directory.name}.partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        weights = ema.state_dict() if ema is not None else model.state_dict()
        meta = self._metadata(state, ema, which)
        save_pretrained(model, tmp, state_dict=weights, metadata=meta)
        save_config(self.config, tmp / "train_config.yaml")
        (tmp / "README.md").write_text(model_card(self.config, meta, model.num_parameters()))
        _replace_dir(tmp, directory)
        return directory

    def _save_checkpoint(self, acc, manager, model, optimizer, scheduler, ema, state) -> None:
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
            if acc.scaler is not None:
                ckpt.write_json(trainer_dir / "scaler.json", acc.scaler.state_dict())
            ckpt.write_json(trainer_dir / "state.json", asdict(state))
            manager.commit(state.step)
        acc.wait_for_everyone()

    def _load(self, path: Path, model, optimizer, scheduler, ema, acc):
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
        if state.world_size != acc.num_processes:
            acc.print(f"warning: checkpoint written by {state.world_size} process(es), resuming on "
                      f"{acc.num_processes}: the data order (and so the loss curve) will differ")
        rng_file = trainer_dir / f"rng-rank{acc.process_index}.safetensors"
        if not rng_file.is_file():
            rng_file = trainer_dir / "rng-rank0.safetensors"
        rng = (ckpt.read_tensors(rng_file), ckpt.load_json(rng_file.with_suffix(".json")))
        state.world_size = acc.num_processes
        return state, rng


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
    if d.source == "simulated":
        data = (f"embedded simulator (`mrrecon.data.simulate`): {s.subjects} training subjects x {s.slices} "
                f"slice(s) x contrasts {', '.join(s.contrasts)} (seed {s.seed}); validation {s.val_subjects} "
                f"other subjects x {s.val_slices} slice(s) (seed {s.val_seed}); {s.size}x{s.size}, {s.coils} "
                f"coils, noise level {s.noise_level}")
    else:
        data = f"{d.source}: train `{d.train_path}`, validation `{d.val_path}`"
    lines = [
        f"# {config.name}", "",
        f"`{config.model.type}` model trained with `mrrecon train` ({meta['which']} weights, "
        f"{'EMA' if meta['weights'] == 'ema' else 'raw'}; {num_parameters:,} parameters).", "",
        "Load with `mrrecon.methods.load(\"" + config.model.type + "\", checkpoint=\"<this folder>\")` or "
        "`mrrecon.core.pretrained.from_pretrained(\"<this folder>\")`.", "",
        "## Training", "",
        f"- model: `{config.model.params}`",
        f"- data: {data}",
        f"- masks: kinds {d.mask_kinds}, accelerations {d.accelerations} (one pair per batch), centre fraction "
        f"{d.center_fraction if d.center_fraction is not None else 'fastMRI default'}; crop {d.crop} "
        f"({'random' if d.random_crop else 'centred'}), flips {d.flip}",
        f"- optimiser: {o.name}, lr {o.lr:g}, weight decay {o.weight_decay:g}, schedule {o.scheduler} "
        f"(warm-up {o.warmup_steps} steps), loss {t.loss}, batch {t.batch_size} x accumulation {t.grad_accum} x "
        f"{meta['world_size']} process(es), gradient clip {t.grad_clip:g}, EMA decay {t.ema_decay:g}, seed {t.seed}",
        f"- steps: {meta['step']} ({meta['samples_seen']} samples), wall time {meta['wall_time_s']:.0f} s"
        + (f"; warm-started from `{config.model.init_from}` (`model.init_from`: these steps come on top of "
           "that model's)" if config.model.init_from else ""),
        "", "## Validation (held-out split, fastMRI convention, mean over volumes)", "",
    ]
    val = meta.get("validation") or {}
    keys = sorted(k for k in val if k.startswith("psnr_"))
    if keys:
        lines += ["| mask | PSNR (dB) | SSIM |", "|---|---|---|"]
        for k in keys:
            tag = k[len("psnr_"):]
            lines.append(f"| {tag.replace('_', ' ')} | {val[k]:.2f} | {val.get('ssim_' + tag, float('nan')):.4f} |")
        lines += ["", f"at step {val.get('step')}; best step {meta.get('best_step')}."]
    else:
        lines.append("no validation split.")
    lines += ["", "Full resolved config: `train_config.yaml`.", ""]
    return "\n".join(lines)


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
    print(f"warm start from {folder}: {len(matched)} of {len(own)} tensors copied")


def train(config: TrainConfig, *, resume: bool = False, out_dir: str | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Run (or resume) a training run described by ``config``; see :class:`Trainer`."""
    return Trainer(config, out_dir).fit(resume=resume, stop_after=stop_after)
