"""What the simulator's random contrast adds on real brains (the learned-baselines issue, "contrast randomisation").

    python benchmarks/contrast_randomisation.py run [--minutes 12] [--jobs 1] [--runs ~/mrrecon-runs]
    python benchmarks/contrast_randomisation.py evaluate [--runs ~/mrrecon-runs] [--threads 2]
        [--extra NAME=CHECKPOINT ...]            # e.g. old=weights-before/unet-small, long=weights/unet-small

``run`` trains configs/unet-small.yaml twice from scratch for ``--minutes`` of wall time, one thread each, on the
same cached training set and with the same seed, schedule and size; the only difference is
``data.train_contrasts``: ``random`` (T1, T2, PD, FLAIR and the per-subject random contrast) against ``named``
(T1, T2, PD and FLAIR only). ``--jobs 2`` runs them side by side (both cores), ``--jobs 1`` one after the other
(when another training holds a core).

``evaluate`` scores both probes (and any ``--extra`` checkpoints) beside zero-filled on the real brains of
../shared/data: the single-coil fastMRI FLAIR slices #7 and #8 (320x320), the complex mGRE slices #11-#14
(256x256) and the multi-coil brains #17 (8 coils, its 168 acquired columns), #18 and #20 (4 coils), at random1d
4x and 8x and poisson2d 4x; and on 16 held-out simulated volumes of the configs' validation split (random1d 4x,
8x). Paired differences ``random - named`` over the real images (each image and setting one pair) with a 95 %
t-interval. Writes benchmarks/results/contrast_randomisation.json.
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

CONFIG = "configs/unet-small.yaml"
PROBES = {"random": None, "named": "[T1, T2, PD, FLAIR]"}  # probe -> data.train_contrasts (None: all five)
LONG_RUN_STEPS = 34000  # the schedule of the long run, so a probe is its first minutes
SETTINGS = (("random1d", 4), ("random1d", 8), ("poisson2d", 4))


def probe_dir(runs: Path, name: str) -> Path:
    return runs / f"probe-contrast-{name}"


def run(args) -> None:
    from _common import probe_command, run_probes

    runs = Path(os.path.expanduser(args.runs))
    commands = {f"probe-contrast-{name}": probe_command(
        CONFIG, probe_dir(runs, name), args.minutes, LONG_RUN_STEPS, 600,
        {} if contrasts is None else {"data.train_contrasts": contrasts}) for name, contrasts in PROBES.items()}
    names = list(commands)
    run_probes([{n: commands[n] for n in names[i:i + args.jobs]} for i in range(0, len(names), args.jobs)], runs,
               REPO)


def real_cases(root: Path) -> list[tuple[str, str, list]]:
    """(group, name, [Sample]) for every real brain image and setting (the learned-quality benchmark's readers)."""
    from baselines import SINGLE_COIL_BRAINS
    from learned_quality import real_multicoil_cases, real_single_coil_cases

    return real_single_coil_cases(root, SINGLE_COIL_BRAINS, SETTINGS) + real_multicoil_cases(root, SETTINGS)


def simulated_cases() -> list[tuple[str, str, list]]:
    from mrrecon.data.datasets import samples_from_file
    from mrrecon.train.config import load_config
    from mrrecon.train.data import prepare_simulated

    splits = prepare_simulated(load_config(REPO / CONFIG).data, generate=False)
    cases = []
    for f in splits.val[:16]:
        for kind, acc in SETTINGS[:2]:
            cases.append(("simulated", Path(f).stem, list(samples_from_file(f, mask_kind=kind, acceleration=acc,
                                                                            seed=0))))
    return cases


def evaluate(args) -> None:
    from _common import display_path, environment, shared_data_dir

    from mrrecon.core.reconstructor import load
    from mrrecon.core.runner import score_volume
    from mrrecon.eval.paired import summarise_differences
    from mrrecon.utils.io import atomic_write_json

    runs = Path(os.path.expanduser(args.runs))
    checkpoints = {f"unet-{n}": probe_dir(runs, n) / "final" for n in PROBES}
    for item in args.extra:
        label, path = item.split("=", 1)
        checkpoints[f"unet-{label}"] = Path(os.path.expanduser(path))
    missing = [str(p) for p in checkpoints.values() if not (p / "model.safetensors").is_file()]
    if missing:
        raise SystemExit(f"no weights in {', '.join(missing)}; run `{Path(__file__).name} run` first")
    methods = {"zero-filled": load("zero-filled")} | {k: load("unet", checkpoint=str(p))
                                                      for k, p in checkpoints.items()}
    root = shared_data_dir(args.data)
    cases = (real_cases(root) if root else []) + simulated_cases()
    rows = []
    for group, name, samples in cases:
        for spec, method in methods.items():
            r = score_volume(spec, method, samples)
            rows.append({"group": group, "case": name, "method": spec, "mask": r.mask, "accel": r.accel,
                         "psnr": r.psnr, "ssim": r.ssim, "error": r.error})
        print(f"{group:>16} {name:<18} {r.mask} {r.accel:g}x " +
              " ".join(f"{x['method']}={x['psnr']:.2f}" for x in rows[-len(methods):]), flush=True)

    def table(group_names: tuple[str, ...]) -> dict:
        out = {}
        for kind, acc in SETTINGS + (("all", 0),):
            sel = [r for r in rows if r["group"] in group_names and not r["error"]
                   and (kind == "all" or (r["mask"], r["accel"]) == (kind, acc))]
            if not sel:
                continue
            means = {m: {"psnr": float(np.mean([r["psnr"] for r in sel if r["method"] == m])),
                         "ssim": float(np.mean([r["ssim"] for r in sel if r["method"] == m]))} for m in methods}
            by = {(r["case"], r["mask"], r["accel"], r["method"]): r for r in sel}
            keys = sorted({k[:3] for k in by})
            paired = {metric: summarise_differences([by[k + ("unet-random",)][metric] - by[k + ("unet-named",)][metric]
                                                     for k in keys]) for metric in ("psnr", "ssim")}
            out["all" if kind == "all" else f"{kind} {acc}x"] = {"n_images": len(keys), "means": means,
                                                                 "random_minus_named": paired}
        return out

    result = {"command": "python benchmarks/contrast_randomisation.py run --minutes "
                         f"{args.minutes:g}; python benchmarks/contrast_randomisation.py evaluate"
                         + "".join(f" --extra {label}={display_path(path)}"
                                   for label, path in (e.split("=", 1) for e in args.extra)),
              "probes": {n: {"train_contrasts": PROBES[n], "steps": _steps(probe_dir(runs, n))} for n in PROBES},
              "checkpoints": {k: display_path(p) for k, p in checkpoints.items()},
              "real_brains": table(("real single-coil", "real multi-coil")),
              "real_single_coil": table(("real single-coil",)),
              "real_multi_coil": table(("real multi-coil",)),
              "simulated": table(("simulated",)),
              "rows": rows, "environment": environment()}
    path = Path(args.out) / "contrast_randomisation.json"
    atomic_write_json(path, result)
    for key in ("real_brains", "simulated"):
        for setting, t in result[key].items():
            d = t["random_minus_named"]["psnr"]
            print(f"{key:>12} {setting:<14} n={t['n_images']:>2} " +
                  " ".join(f"{m}={v['psnr']:.2f}" for m, v in t["means"].items()) +
                  f"  random-named {d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")
    print(f"wrote {path}")


def _steps(folder: Path) -> int | None:
    import csv

    log = folder / "train_log.csv"
    if not log.is_file():
        return None
    rows = list(csv.DictReader(open(log)))
    return int(rows[-1]["step"]) if rows else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "evaluate"])
    ap.add_argument("--runs", default="~/mrrecon-runs")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--jobs", type=int, choices=[1, 2], default=2)
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=CHECKPOINT")
    ap.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    run(args) if args.action == "run" else evaluate(args)


if __name__ == "__main__":
    main()
