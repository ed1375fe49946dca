"""Quality per CPU-hour of the learned baselines at two sizes each (the learned-baselines issue).

    python benchmarks/baseline_sizes.py run [--minutes 12] [--runs ~/mrrecon-runs]   # the four probe trainings
    python benchmarks/baseline_sizes.py collect [--runs ~/mrrecon-runs]               # -> results/baseline_sizes.json

``run`` trains each candidate size of unet-small and varnet-small from scratch on the configs' own training set
for ``--minutes`` of wall time (``train.max_time_s``), one thread each, the two sizes of a model side by side so
machine noise hits both alike (unet pair first, then varnet pair). The learning-rate schedule is the long run's
(``max_steps`` of a 2.5-hour run), so a probe is the first minutes of the run it stands for. Validation (the
configs' held-out split, random1d 4x and 8x) runs every ``val_every`` steps. ``collect`` reads each probe's
``val_log.csv`` (validation PSNR against wall time) and writes the curves with parameter counts and CPU-hours
(wall time x threads, validation included).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parent

# name: (config, long-run max_steps, val_every, model overrides)
PROBES = {
    "unet-c16p3": ("unet-small", 20000, 300, {"chans": 16, "num_pool_layers": 3}),
    "unet-c32p4": ("unet-small", 20000, 150, {"chans": 32, "num_pool_layers": 4}),
    "varnet-5x8": ("varnet-small", 8000, 100, {"num_cascades": 5, "chans": 8}),
    "varnet-8x12": ("varnet-small", 8000, 50, {"num_cascades": 8, "chans": 12}),
}
PAIRS = (("unet-c16p3", "unet-c32p4"), ("varnet-5x8", "varnet-8x12"))


def run(args) -> None:
    from _common import probe_command, run_probes

    runs = Path(os.path.expanduser(args.runs))
    groups = []
    for pair in PAIRS:
        group = {}
        for name in pair:
            config, max_steps, val_every, params = PROBES[name]
            group[f"probe-{name}"] = probe_command(f"configs/{config}.yaml", runs / f"probe-{name}", args.minutes,
                                                   max_steps, val_every,
                                                   {f"model.params.{k}": v for k, v in params.items()})
        groups.append(group)
    run_probes(groups, runs, REPO)


def collect(args) -> None:
    runs = Path(os.path.expanduser(args.runs))
    out = {"command": f"python benchmarks/baseline_sizes.py run --minutes {args.minutes}; "
                      "python benchmarks/baseline_sizes.py collect",
           "threads_per_run": 1, "probes": {}}
    for name, (config, max_steps, _val_every, params) in PROBES.items():
        folder = runs / f"probe-{name}"
        log = folder / "val_log.csv"
        if not log.is_file():
            continue
        with open(log) as f:
            rows = list(csv.DictReader(f))
        cfg = folder / "final" / "config.json"
        n_params = json.loads(cfg.read_text()).get("num_parameters") if cfg.is_file() else None
        train_rows = list(csv.DictReader(open(folder / "train_log.csv")))
        out["probes"][name] = {
            "config": config, "model_params": params, "num_parameters": n_params, "long_run_max_steps": max_steps,
            "steps": int(train_rows[-1]["step"]) if train_rows else 0,
            "seconds_per_step": (float(train_rows[-1]["wall_time_s"]) / int(train_rows[-1]["step"])
                                 if train_rows else None),
            "curve": [{"step": int(r["step"]), "wall_time_s": float(r["wall_time_s"]),
                       "cpu_hours": float(r["wall_time_s"]) / 3600.0, "psnr": float(r["psnr"]),
                       "ssim": float(r["ssim"]), "psnr_random1d_4x": float(r["psnr_random1d_4x"]),
                       "psnr_random1d_8x": float(r["psnr_random1d_8x"])} for r in rows],
        }
    path = Path(args.out) / "baseline_sizes.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "collect"])
    ap.add_argument("--runs", default="~/mrrecon-runs")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    run(args) if args.action == "run" else collect(args)


if __name__ == "__main__":
    main()
