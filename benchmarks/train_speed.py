"""Seconds per training step of every shipped config, in each precision / memory-format mode, and the
validation numbers and training loss after the same number of steps each way.

For each (config, stage) and each mode, one short run of the one trainer (``mrrecon.train.stages.run_stages``
with ``only=[stage]``): ``--steps`` optimiser steps with the config's own model, data, batch, recipe and
optimiser, one thread, no checkpoints, validation only at the end (the stage's own validation: PSNR/SSIM
through the benchmark's scoring for reconstructing models, a held-out loss for the others, always in float32)
and the mean training loss of the last 5 steps (every mode sees the same batches and noise draws). The stages a
stage builds on (LDPM's frozen VAE, SSDM's teacher, ...) are the shipped weights of those stages, copied into
the run folder as if trained there. Nothing is exported to weights/.

Modes (``--modes``): ``fp32``; ``bf16`` (autocast, ``train.mixed_precision=bf16``); ``channels_last``
(``train.channels_last=true``); ``bf16+channels_last``; ``compile`` (``train.compile=true``, fp32),
``channels_last+compile`` and ``bf16+channels_last+compile``. Time per step: the median over the steps after
``--warmup`` (compilation falls in the warm-up), from the run's train_log.csv (wall time between consecutive
steps). The modes of one (config, stage) run back to back in one process, so machine noise hits them alike;
ratios are to fp32.

Usage:
    python benchmarks/train_speed.py [--threads 1] [--steps 30] [--warmup 5]
        [--configs unet-small,varnet-small,ssdm-small,ldpm-small,akdiff-small,ima-small]
        [--modes fp32,bf16,channels_last,bf16+channels_last] [--out benchmarks/results/train_speed.json]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import argparse  # noqa: E402
import csv  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MODES = {  # 'no' quoted: YAML reads a bare no as false
    "fp32": ["train.mixed_precision='no'", "train.channels_last=false", "train.compile=false"],
    "bf16": ["train.mixed_precision=bf16", "train.channels_last=false", "train.compile=false"],
    "channels_last": ["train.mixed_precision='no'", "train.channels_last=true", "train.compile=false"],
    "bf16+channels_last": ["train.mixed_precision=bf16", "train.channels_last=true", "train.compile=false"],
    "compile": ["train.mixed_precision='no'", "train.channels_last=false", "train.compile=true"],
    "channels_last+compile": ["train.mixed_precision='no'", "train.channels_last=true", "train.compile=true"],
    "bf16+channels_last+compile": ["train.mixed_precision=bf16", "train.channels_last=true", "train.compile=true"],
}
DEFAULT_CONFIGS = "unet-small,varnet-small,ssdm-small,ldpm-small,akdiff-small,ima-small"
DEFAULT_MODES = "fp32,bf16,channels_last,bf16+channels_last"


def _read_log(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def step_seconds(train_log: Path, warmup: int) -> list[float]:
    """Wall time of each step after the first ``warmup`` (differences of the cumulative wall_time_s)."""
    rows = _read_log(train_log)
    wall = [float(r["wall_time_s"]) for r in rows]
    return [b - a for a, b in zip(wall[warmup:], wall[warmup + 1:], strict=False)]


def last_losses(train_log: Path, k: int) -> float:
    """Mean training loss of the last ``k`` steps (the modes see the same batches and noise draws)."""
    rows = _read_log(train_log)[-k:]
    return statistics.fmean(float(r["loss"]) for r in rows)


def last_validation(val_log: Path) -> dict:
    if not val_log.is_file():
        return {}
    rows = _read_log(val_log)
    if not rows:
        return {}
    keep = {}
    for k, v in rows[-1].items():
        if k in ("psnr", "ssim", "val_loss") or k.startswith("val_"):
            try:
                keep[k] = float(v)
            except (TypeError, ValueError):
                pass
    return keep


def _stage_names(config: Path) -> list[str]:
    from mrrecon.train.config import load_stages

    plan = load_stages(config)
    return plan.names() if plan.staged else [""]


def _seed_prerequisites(config: Path, stage: str, root: Path) -> None:
    """Copy the shipped exports of the stages before ``stage`` into ``root/<stage>/final`` (as if trained)."""
    from mrrecon.train.config import load_stages

    plan = load_stages(config)
    for s in plan.stages:
        if s.name == stage:
            break
        export = s.config.train.export_dir
        if export and (REPO / export / "config.json").is_file():
            shutil.copytree(REPO / export, root / s.name / "final")


def run_one(config: Path, stage: str, mode: str, steps: int, warmup: int, threads: int, extra: list[str]) -> dict:
    from mrrecon.train.config import load_stages
    from mrrecon.train.stages import run_stages

    with tempfile.TemporaryDirectory(prefix="mrrecon-train-speed-") as tmp:
        root = Path(tmp)
        if stage:
            _seed_prerequisites(config, stage, root)
        overrides = [f"train.out_dir={root}", f"train.max_steps={steps}", "train.max_epochs=0", "train.max_time_s=0",
                     f"train.val_every={steps}", f"train.checkpoint_every={steps}", "train.keep_checkpoints=1",
                     f"train.threads={threads}", "train.progress=false", "train.tensorboard=false",
                     "train.export_dir=null", "train.log_every=1000000", *MODES[mode], *extra]
        plan = load_stages(config, overrides)
        t0 = time.perf_counter()
        run_stages(plan, only=[stage] if stage else None, echo=lambda *a, **k: None)
        total = time.perf_counter() - t0
        run_dir = root / stage if stage else root
        per_step = step_seconds(run_dir / "train_log.csv", warmup)
        return {"config": config.stem, "stage": stage or None, "mode": mode, "steps": steps, "warmup": warmup,
                "seconds_per_step": statistics.median(per_step), "seconds_per_step_min": min(per_step),
                "seconds_per_step_max": max(per_step), "run_seconds": total,
                "train_loss_last5": last_losses(run_dir / "train_log.csv", 5),
                "validation": last_validation(run_dir / "val_log.csv")}


def main() -> None:
    import torch
    from _common import environment

    from mrrecon.utils.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--stages", default=None, help="comma-separated stage names to keep (default: all)")
    ap.add_argument("--modes", default=DEFAULT_MODES)
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every run (e.g. a smaller simulator cache)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; modes: {list(MODES)}")
    keep_stages = set(args.stages.split(",")) if args.stages else None
    rows, errors = [], []
    for name in args.configs.split(","):
        config = REPO / "configs" / f"{name}.yaml"
        for stage in _stage_names(config):
            if keep_stages is not None and stage not in keep_stages:
                continue
            for mode in modes:
                label = f"{name}{'/' + stage if stage else ''} {mode}"
                try:
                    row = run_one(config, stage, mode, args.steps, args.warmup, args.threads, args.extra)
                except Exception as exc:  # a mode that does not run here (e.g. compile) is reported, not fatal
                    errors.append({"config": name, "stage": stage or None, "mode": mode,
                                   "error": f"{type(exc).__name__}: {exc}"[:500]})
                    print(f"{label}: failed: {errors[-1]['error']}", flush=True)
                    continue
                rows.append(row)
                print(f"{label}: {row['seconds_per_step']:.3f} s/step, loss (last 5) {row['train_loss_last5']:.5g}, "
                      f"validation {row['validation']}", flush=True)
    base = {(r["config"], r["stage"]): r["seconds_per_step"] for r in rows if r["mode"] == "fp32"}
    for r in rows:
        ref = base.get((r["config"], r["stage"]))
        r["speedup_vs_fp32"] = ref / r["seconds_per_step"] if ref else None
    out = {"benchmark": "train_speed", "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:]),
           "environment": environment(), "rows": rows, "errors": errors}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
