"""Progressive distillation of SSDM-MRI (Alg. 2; Salimans & Ho 2022): T = 128 -> 64 -> ... -> 1 steps.

Each stage initialises a student from its teacher (weights and batch-norm statistics), trains it to do in one
deterministic DDIM step what the teacher does in two, and the student becomes the next teacher. For a teacher
sampling with N steps (spacing D = T/N timesteps), one training example is

    t = 2 D k, k ~ U{1..N/2};  eps ~ N(0, I);  x_t = alpha_t x0 + sigma_t eps                   (eq. 5)
    x_{t-D}, x0'  = teacher DDIM step t -> t - D                                           (Alg. 2 l. 8-9)
    x_{t-2D}, x0'' = teacher DDIM step t - D -> t - 2D                                     (Alg. 2 l. 10)
    x~ = (x_{t-2D} - (sigma_{t-2D}/sigma_t) x_t) / (alpha_{t-2D} - (sigma_{t-2D}/sigma_t) alpha_t)
    eps~ = (x_t - alpha_t x~) / sigma_t,  v~ = alpha_t eps~ - sigma_t x~                   (Alg. 2 l. 11-12)
    loss = || N_student(x_cond, x_t, gamma_bar_t) - v~ ||^2                                (Alg. 2 l. 13)

x~ is the x0 for which a single student DDIM step t -> t - 2D lands exactly on the teacher's two-step result
(the printed Alg. 2 is garbled in its indices; this is the algorithm of its ref. [44]).

Command (every stage's checkpoint is kept in ``out_dir/student-<N>/``, a pretrained folder with README):

    python -m mrrecon.methods.ssdm.distill configs/ssdm-small-distill.yaml [--set key=value ...]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from mrrecon.core.pretrained import config_from_dict, from_pretrained, save_pretrained
from mrrecon.data.sample import Batch, collate_samples
from mrrecon.errors import ConfigError, MRReconError
from mrrecon.methods.ssdm.model import SSDMModel
from mrrecon.methods.ssdm.sampler import ddim_update
from mrrecon.nn.losses import make_loss
from mrrecon.train.config import OptimConfig, apply_overrides, load_config
from mrrecon.utils.io import atomic_write_text

__all__ = ["DistillConfig", "distill", "distillation_loss", "distillation_targets", "main"]


@dataclass
class DistillConfig:
    """A distillation run (YAML). ``train_config``: the teacher's training YAML (its data block is reused);
    ``teacher``: the teacher checkpoint folder; ``final_steps``: stop when the student samples with this many
    steps; every stage runs ``steps_per_stage`` optimiser steps of ``batch_size`` with ``optim`` (a loaded batch
    serves ``updates_per_batch`` steps, each with its own timesteps and noise: loading is most of the cost on CPU)."""

    name: str = "ssdm-distill"
    train_config: str = "configs/ssdm-small.yaml"
    teacher: str = "runs/ssdm-small/final"
    out_dir: str = "runs/ssdm-small-distill"
    final_steps: int = 1
    steps_per_stage: int = 100
    stage_steps: dict[int, int] = field(default_factory=dict)  # {student steps: optimiser steps} overrides
    stage_lr: dict[int, float] = field(default_factory=dict)  # {student steps: learning rate} overrides
    batch_size: int = 4
    updates_per_batch: int = 1  # optimiser steps per loaded batch, each with fresh (t, eps) draws
    loss: str = "mse"
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1
    log_every: int = 10
    validate: bool = True
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam", lr=5e-5, scheduler="constant"))


def load_distill_config(path: str | Path, overrides: list[str] | None = None) -> DistillConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable distillation config: {exc}") from exc
    raw = apply_overrides(raw, overrides or [])
    optim = config_from_dict(OptimConfig, raw.pop("optim", {}) or {}, f"{path}: optim")
    cfg = config_from_dict(DistillConfig, raw, f"{path}: distillation config")
    cfg.optim = optim
    return cfg


@torch.no_grad()
def distillation_targets(teacher: SSDMModel, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                         teacher_steps: int) -> torch.Tensor:
    """The student's v target at ``t`` (B,) from two teacher DDIM steps of spacing T / teacher_steps."""
    d = teacher.config.timesteps // teacher_steps
    x_t1, _ = ddim_update(teacher, x_t, cond, t, t - d)
    x_t2, _ = ddim_update(teacher, x_t1, cond, t - d, t - 2 * d)
    sched = teacher.schedule
    alpha, sigma = (a.reshape(-1, 1, 1, 1) for a in sched.alpha_sigma(t))
    alpha2, sigma2 = (a.reshape(-1, 1, 1, 1) for a in sched.alpha_sigma(t - 2 * d))
    ratio = sigma2 / sigma
    x_tilde = (x_t2 - ratio * x_t) / (alpha2 - ratio * alpha)  # one student step t -> t-2D lands on x_t2
    eps_tilde = (x_t - alpha * x_tilde) / sigma
    return alpha * eps_tilde - sigma * x_tilde  # v~


def distillation_loss(student: SSDMModel, teacher: SSDMModel, batch: Batch, teacher_steps: int, loss_fn=None,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Alg. 2 lines 4-13 for one batch: the student's v loss against the two-teacher-step target."""
    if teacher_steps < 2 or teacher.config.timesteps % teacher_steps:
        raise ConfigError(f"teacher_steps {teacher_steps} must be >= 2 and divide T = {teacher.config.timesteps}")
    loss_fn = loss_fn or make_loss("mse")
    x0, cond, _ = teacher.simulate_pair(batch, generator)
    b = x0.shape[0]
    d = teacher.config.timesteps // teacher_steps
    dev = x0.device
    k = torch.randint(1, teacher_steps // 2 + 1, (b,), generator=generator, device=dev)
    t = 2 * d * k  # t ~ DiscreteU(1, N/2) x 2 (in teacher steps)
    eps = torch.randn(x0.shape, generator=generator, device=dev)
    x_t = teacher.schedule.q_sample(x0, t, eps)
    target = distillation_targets(teacher, x_t, cond, t, teacher_steps)
    return {"loss": loss_fn(student(x_t, cond, t), target)}


def _data(train_config, seed: int, batch_size: int):
    from mrrecon.train.data import EpochBatchSampler, build_training_slices, build_validation_set, prepare_simulated

    files = val_files = None
    if train_config.data.source == "simulated":
        splits = prepare_simulated(train_config.data)
        files, val_files = splits.train, splits.val
    train_set = build_training_slices(train_config.data, seed, files)
    val_set = build_validation_set(train_config.data, seed, val_files)
    sampler = EpochBatchSampler(len(train_set), batch_size, train_set.combos, seed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_samples,
                        num_workers=train_config.data.num_workers, generator=torch.Generator())
    return sampler, loader, val_set


def _batches(sampler, loader):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _model_card(name: str, meta: dict[str, Any], cfg: DistillConfig, num_parameters: int) -> str:
    val = meta.get("validation") or {}
    lines = [f"# {name}", "",
             f"SSDM-MRI student distilled to **{meta['sampling_steps']} step(s)** from a {meta['teacher_steps']}-step "
             f"teacher (progressive distillation, Alg. 2); {num_parameters:,} parameters.", "",
             "Load with `mrrecon.methods.load(\"ssdm\", checkpoint=\"<this folder>\")`.", "",
             "## Distillation", "",
             f"- command: `python -m mrrecon.methods.ssdm.distill {meta.get('config_file', '<config>')}`",
             f"- teacher training config: `{cfg.train_config}` (its data block: masks drawn per mini-batch)",
             f"- {meta['optimiser_steps']} optimiser steps of batch {cfg.batch_size} ({cfg.updates_per_batch} per "
             f"loaded batch), {cfg.optim.name} lr {meta['lr']:g} ({cfg.optim.scheduler}), loss {cfg.loss} on v, "
             f"seed {cfg.seed}",
             f"- stage wall time {meta['stage_wall_time_s']:.0f} s; mean loss first/last 10 steps "
             f"{meta['loss_first']:.4g} / {meta['loss_last']:.4g}"]
    if val:
        lines += ["", "## Validation (held-out simulated split, fastMRI convention)", "", "| mask | PSNR (dB) | SSIM |",
                  "|---|---|---|"]
        for key in sorted(k for k in val if k.startswith("psnr_")):
            tag = key[len("psnr_"):]
            lines.append(f"| {tag.replace('_', ' ')} | {val[key]:.2f} | {val.get('ssim_' + tag, float('nan')):.4f} |")
    return "\n".join(lines) + "\n"


def distill(cfg: DistillConfig, config_file: str | None = None) -> list[Path]:
    """Run every stage from the teacher's step count down to ``final_steps``; returns the stage folders.
    ``config_file``: the command-line arguments, recorded in each stage's README."""
    from mrrecon.train.trainer import Trainer, build_optimizer, build_scheduler

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    train_config = load_config(cfg.train_config)
    teacher = from_pretrained(cfg.teacher, expected_type="ssdm")
    n = teacher.config.sampling_steps
    if n & (n - 1) or cfg.final_steps < 1 or n % cfg.final_steps:
        raise ConfigError(f"cannot halve {n} teacher steps down to {cfg.final_steps}")
    torch.manual_seed(cfg.seed)
    sampler, loader, val_set = _data(train_config, cfg.seed, cfg.batch_size)
    batches = _batches(sampler, loader)
    loss_fn = make_loss(cfg.loss)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "distill_log.csv"
    folders = []
    with log_path.open("w", newline="") as fh:
        log = csv.writer(fh)
        log.writerow(["stage_steps", "step", "loss", "lr", "wall_time_s"])
        start = time.perf_counter()
        while n > cfg.final_steps:
            stage_start = time.perf_counter()
            teacher.eval()
            student = SSDMModel({**teacher.config_dict(), "sampling_steps": n // 2})
            student.load_state_dict(teacher.state_dict())  # Alg. 2 l. 2: initialise from the teacher
            student.train()
            for p in teacher.parameters():
                p.requires_grad_(False)
            stage_optim = replace(cfg.optim, lr=float(cfg.stage_lr.get(n // 2, cfg.optim.lr)))
            stage_steps = int(cfg.stage_steps.get(n // 2, cfg.steps_per_stage))
            optimizer = build_optimizer(student.parameters(), stage_optim)
            scheduler = build_scheduler(optimizer, stage_optim, stage_steps)
            losses = []
            batch = None
            for step in range(1, stage_steps + 1):
                if (step - 1) % max(cfg.updates_per_batch, 1) == 0:
                    batch = next(batches)
                loss = distillation_loss(student, teacher, batch, n, loss_fn)["loss"]
                if not torch.isfinite(loss):
                    raise MRReconError(f"non-finite distillation loss at stage {n}, step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                loss = loss.detach()
                losses.append(float(loss))
                log.writerow([n // 2, step, f"{float(loss):.6g}", f"{scheduler.get_last_lr()[0]:.3g}",
                              f"{time.perf_counter() - start:.1f}"])
                if step % max(cfg.log_every, 1) == 0:
                    fh.flush()
                    print(f"stage {n}->{n // 2} step {step}/{stage_steps} loss {loss:.5g}", flush=True)
            student.eval()
            validation = {}
            if cfg.validate and val_set is not None and len(val_set):
                with torch.no_grad():
                    validation = Trainer(train_config).validate(student, val_set, "cpu")
                print(f"stage {n // 2}: validation PSNR {validation['psnr']:.3f} dB SSIM {validation['ssim']:.4f}",
                      flush=True)
            k = min(10, len(losses))
            meta = {"name": f"{cfg.name}-student-{n // 2}", "sampling_steps": n // 2, "teacher_steps": n,
                    "teacher": str(cfg.teacher), "stage_wall_time_s": round(time.perf_counter() - stage_start, 1),
                    "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
                    "optimiser_steps": stage_steps, "lr": stage_optim.lr,
                    "validation": validation, "distill_config": asdict(cfg), "config_file": config_file}
            folder = out / f"student-{n // 2}"
            save_pretrained(student, folder, metadata=meta)
            atomic_write_text(folder / "README.md", _model_card(f"ssdm student-{n // 2}", meta, cfg,
                                                                student.num_parameters()))
            atomic_write_text(folder / "distill_config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))
            folders.append(folder)
            teacher = student  # Alg. 2 l. 15: the student becomes the next teacher
            n //= 2
    print(f"distilled to {n} step(s) in {time.perf_counter() - start:.0f} s; stages in {out}", flush=True)
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mrrecon.methods.ssdm.distill",
                                     description="Progressive distillation of an SSDM-MRI teacher (Alg. 2).")
    parser.add_argument("config", help="distillation YAML, e.g. configs/ssdm-small-distill.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        command = " ".join([args.config, *(f"--set {o}" for o in args.overrides)])
        distill(load_distill_config(args.config, args.overrides), command)
    except MRReconError as exc:
        print(f"mrrecon: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
