"""The learned baselines (unet, varnet) against compressed sensing: the learned-baselines issue's must-show tables.

    python benchmarks/baselines.py [--parts sim,shared,single] [--subjects 4] [--slices 2] [--threads 2]
        [--work ~/mrrecon-runs/bench/baselines] [--out benchmarks/results]

Every part is one ``run_benchmark`` (the code behind ``mrrecon benchmark``), every method on the same samples, with
paired per-volume differences against a reference method (``--compare-to``):

* ``sim``: held-out simulated multi-coil brains (simulator seed 1000; the weights trained on seed 0 and validated on
  seed 1), ``--subjects`` x T1/T2/PD/FLAIR (16 volumes by default) x ``--slices``, 256x256, 8 coils; zero-filled,
  cg-sense, l1-wavelet, bart-pics, unet (and unet:dc=hard), varnet (the paper's output, final_dc=none, with the
  measured samples put back, final_dc=hard, and with the final proximal SENSE step, final_dc=prox) at random1d
  and poisson2d, 4x and 8x; compared to l1-wavelet.
  Equivalent CLI: ``mrrecon simulate --out DATA --subjects 4 --slices 2 --seed 1000`` then
  ``mrrecon benchmark --data DATA --methods zero-filled,cg-sense,l1-wavelet,bart-pics,unet,varnet:final_dc=none,
  varnet:final_dc=hard --masks random1d,poisson2d --accels 4,8 --compare-to l1-wavelet --out RUN``.
* ``shared``: the multi-coil brains of benchmarks/shared-data.yaml (#17, #18, #20), the same methods and settings.
* ``single``: the single-coil brain slices of ../shared/data (fastMRI FLAIR #7, #8; mGRE #11-#14, complex,
  coil-combined): zero-filled, unet, varnet (final_dc none and hard) at random1d 4x and 8x, compared to
  zero-filled.
* ``noise``: PSNR against the scan's noise level. Held-out simulated 8-coil brains (seed 1000; 2 subjects x T1, T2,
  1 slice) simulated at each of ``NOISE_LEVELS`` (the same anatomy and coils, only the noise differs), poisson2d
  and random1d 4x: zero-filled, cg-sense, l1-wavelet and every ``--checkpoint LABEL=FOLDER`` (unet or varnet
  weights, a varnet with final_dc none and hard; default the shipped ones), each scored with ``score_volume``.
  It measures whether a model keeps its precision on scans cleaner than its training data, as CS does.

* ``prox_gamma``: the weight gamma of varnet's final proximal SENSE data-consistency step (``final_dc=prox``,
  not in the paper), chosen on simulated *validation* subjects (seed 1: neither the held-out seed 1000 nor the
  shared data), ``--subjects`` x T1/T2/PD/FLAIR at 4 and 8 coils and noise 0.005 and 0.03, random1d and poisson2d
  at 4x and 8x: the gamma of the best mean PSNR over these 16 cells; final_dc=hard beside it.

Writes benchmarks/results/baselines_{sim,shared,single,noise,prox_gamma}.json (no per-slice rows); the full
benchmark folders (report.html, figures) stay under ``--work``.
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _common import display_path, shared_data_dir, slim_results  # noqa: E402

import mrrecon  # noqa: E402,F401  (allocator settings)
from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, collect_data, run_benchmark  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

# varnet:final_dc=... : the paper's output and the one with the measured samples put back (whichever the shipped
# weights do not use by default), side by side on the same samples; unet:dc=hard likewise (the paper's unet has none)
MULTI_COIL_METHODS = ["zero-filled", "cg-sense", "l1-wavelet", "bart-pics", "unet", "unet:dc=hard",
                      "varnet:final_dc=none", "varnet:final_dc=hard", "varnet:final_dc=prox"]
SINGLE_COIL_METHODS = ["zero-filled", "unet", "unet:dc=hard", "varnet:final_dc=none", "varnet:final_dc=hard",
                       "varnet:final_dc=prox"]
SIM_SEED = 1000
SINGLE_COIL_BRAINS = {
    "brain_flair(#7)": "fastmri_singlecoil_ssdm/brain1.npy",
    "brain_flair(#8)": "fastmri_singlecoil_ssdm/brain2.npy",
    "brain_mgre(#11)": "mgre_brain_complex_ssdm/img1_slice_50.npy",
    "brain_mgre(#12)": "mgre_brain_complex_ssdm/img1_slice_60.npy",
    "brain_mgre(#13)": "mgre_brain_complex_ssdm/img1_slice_70.npy",
    "brain_mgre(#14)": "mgre_brain_complex_ssdm/img1_slice_80.npy",
}


def _run(specs, methods, masks, compare_to, work: Path, command: str, data_root, **extra) -> dict:
    cfg = BenchmarkConfig(methods=methods, masks=masks, accels=(4.0, 8.0), seed=0, figures=1, compare_to=compare_to)
    res = run_benchmark(specs, cfg, work, overwrite=True)  # measure anew
    return slim_results(res, command, data_root=data_root, **extra)


def part_sim(args, work: Path) -> dict:
    files = simulate_dataset(work / "sim-data", subjects=args.subjects, size=256, coils=8,
                             contrasts=("T1", "T2", "PD", "FLAIR"), slices=args.slices, seed=SIM_SEED)
    command = (f"python benchmarks/baselines.py --parts sim --subjects {args.subjects} --slices {args.slices} "
               f"--threads {args.threads}")
    return _run([DataSpec(f) for f in files], MULTI_COIL_METHODS, ("random1d", "poisson2d"), "l1-wavelet",
                work / "sim", command, work / "sim-data",
                data={"subjects": args.subjects, "contrasts": ["T1", "T2", "PD", "FLAIR"], "slices": args.slices,
                      "size": 256, "coils": 8, "simulator_seed": SIM_SEED})


def part_shared(args, work: Path) -> dict | None:
    cfg = BenchmarkConfig(methods=MULTI_COIL_METHODS)
    specs, _problems = collect_data([str(HERE / "shared-data.yaml")], cfg)
    specs = [s for s in specs if "coil_axis" in s.options]  # the multi-coil brains
    if not specs:
        return None
    command = f"python benchmarks/baselines.py --parts shared --threads {args.threads}"
    root = os.path.commonpath([os.path.realpath(s.path) for s in specs])
    return _run(specs, MULTI_COIL_METHODS, ("random1d", "poisson2d"), "l1-wavelet", work / "shared", command, root)


def part_single(args, work: Path) -> dict | None:
    root = shared_data_dir(args.data)
    if root is None:
        return None
    specs = [DataSpec(root / rel, {"name": n}) for n, rel in SINGLE_COIL_BRAINS.items() if (root / rel).is_file()]
    if not specs:
        return None
    command = f"python benchmarks/baselines.py --parts single --threads {args.threads}"
    return _run(specs, SINGLE_COIL_METHODS, ("random1d",), "zero-filled", work / "single", command, root)


NOISE_LEVELS = (0.002, 0.005, 0.01, 0.03, 0.08)


def part_noise(args, work: Path) -> dict:
    import numpy as np

    from mrrecon.core.reconstructor import load
    from mrrecon.core.runner import score_volume
    from mrrecon.data.datasets import samples_from_file

    checkpoints = dict(item.split("=", 1) for item in args.checkpoint) or {
        "unet": str(HERE.parent / "weights" / "unet-small"), "varnet": str(HERE.parent / "weights" / "varnet-small")}
    methods = {m: load(m) for m in ("zero-filled", "cg-sense", "l1-wavelet")}
    for label, folder in checkpoints.items():
        kind = json.loads((Path(os.path.expanduser(folder)) / "config.json").read_text())["model_type"]
        folder = os.path.expanduser(folder)
        if kind == "varnet":  # the paper's output and the one with the measured samples put back
            methods[label] = load(kind, checkpoint=folder, final_dc="none")
            methods[f"{label} final_dc=hard"] = load(kind, checkpoint=folder, final_dc="hard")
        else:
            methods[label] = load(kind, checkpoint=folder)
    rows = []
    for level in NOISE_LEVELS:
        files = simulate_dataset(work / f"noise-{level:g}", subjects=2, size=256, coils=8, contrasts=("T1", "T2"),
                                 slices=1, seed=SIM_SEED, noise_level=level)
        for mask in ("poisson2d", "random1d"):
            for f in files:
                samples = list(samples_from_file(f, mask_kind=mask, acceleration=4, seed=0))
                for label, method in methods.items():
                    r = score_volume(label, method, samples)
                    rows.append({"noise_level": level, "mask": mask, "file": Path(f).name, "method": label,
                                 "psnr": r.psnr, "ssim": r.ssim})
            print(json.dumps({"noise_level": level, "mask": mask, **{
                m: round(float(np.mean([r["psnr"] for r in rows[-len(files) * len(methods):]
                                        if r["method"] == m])), 2) for m in methods}}), flush=True)
    table = {f"{mask} 4x, noise {level:g}": {m: float(np.mean([r["psnr"] for r in rows if r["method"] == m and
                                                               r["mask"] == mask and r["noise_level"] == level]))
                                             for m in methods}
             for mask in ("poisson2d", "random1d") for level in NOISE_LEVELS}
    return {"command": f"python benchmarks/baselines.py --parts noise --threads {args.threads}"
                       + "".join(f" --checkpoint {k}={display_path(v)}"
                                 for k, v in checkpoints.items() if args.checkpoint),
            "checkpoints": {k: display_path(v) for k, v in checkpoints.items()}, "noise_levels": list(NOISE_LEVELS),
            "psnr": table, "rows": rows}


PROX_GAMMAS = (1.0, 3.0, 10.0, 30.0, 100.0)
VALIDATION_SEED = 1  # the prox_gamma part chooses on these subjects, never on SIM_SEED or the shared data


def part_prox_gamma(args, work: Path) -> dict:
    """varnet final_dc=prox: its gamma chosen on simulated validation subjects (module docstring)."""
    import numpy as np

    methods = ["varnet:final_dc=hard", *[f"varnet:final_dc=prox:gamma={g:g}" for g in PROX_GAMMAS]]
    sets = {f"{coils} coils, noise {noise:g}": (coils, noise) for coils in (4, 8) for noise in (0.005, 0.03)}
    cells: dict[str, dict[str, float]] = {}
    for name, (coils, noise) in sets.items():
        folder = work / "prox-gamma" / f"data-c{coils}-n{noise:g}"
        files = simulate_dataset(folder, subjects=args.subjects, size=256, coils=coils,
                                 contrasts=("T1", "T2", "PD", "FLAIR"), slices=1, seed=VALIDATION_SEED,
                                 noise_level=noise)
        cfg = BenchmarkConfig(methods=methods, masks=("random1d", "poisson2d"), accels=(4.0, 8.0), seed=0,
                              figures=0)
        res = run_benchmark([DataSpec(f) for f in files], cfg, work / "prox-gamma" / f"run-c{coils}-n{noise:g}",
                            overwrite=True, progress=False)
        for r in res["summary"]:
            cells.setdefault(f"{name}, {r['mask']} {r['accel']:g}x", {})[r["method"]] = r["psnr_mean"]
    mean = {m: float(np.mean([cell[m] for cell in cells.values()])) for m in methods}
    best = max(methods[1:], key=mean.get)
    return {"description": "varnet final_dc=prox: mean PSNR (dB) over simulated validation subjects (seed "
                           f"{VALIDATION_SEED}) per set and mask; the chosen gamma maximises the mean over every cell",
            "command": f"python benchmarks/baselines.py --parts prox_gamma --subjects {args.subjects} "
                       f"--threads {args.threads}",
            "gammas": list(PROX_GAMMAS), "cells": cells, "mean_over_cells": mean,
            "chosen": best, "chosen_gamma": float(best.rsplit("=", 1)[1])}


PARTS = {"sim": part_sim, "shared": part_shared, "single": part_single, "noise": part_noise,
         "prox_gamma": part_prox_gamma}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="sim,shared,single")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=FOLDER",
                    help="noise part: unet / varnet weights to score (default: the shipped ones)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="~/mrrecon-runs/bench/baselines")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    work = Path(os.path.expanduser(args.work))
    for part in args.parts.split(","):
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        result = PARTS[part](args, work)
        if result is None:
            print(json.dumps({"part": part, "skipped": "shared data not found"}))
            continue
        path = Path(args.out) / f"baselines_{part}.json"
        atomic_write_json(path, result)
        print(json.dumps({"part": part, "written": str(path), "report": str(work / part)}))


if __name__ == "__main__":
    main()
