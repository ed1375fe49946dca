"""Quality of the learned baselines (unet, varnet) beside zero-filled and cg-sense, on held-out data.

Three groups of cases, every mask ``random1d`` at 4x and 8x (fastMRI centre fractions 0.08 / 0.04):

* ``simulated``: held-out subjects of the embedded simulator (``--seed``, default 2; the shipped models were
  trained on seed 0 and validated on seed 1, so these subjects were never seen), 256x256, 8 coils, all four
  contrasts; one volume per (subject, contrast) file, masks from ``samples_from_file(seed=0)``.
* ``real single-coil``: the fastMRI magnitude slices of ../shared/data (knee #2-#4, #9-#10; brain #7-#8),
  k-space = fft2c of the image (Hermitian), 320x320.
* ``real multi-coil``: #17 (8-ch brain, cropped to its 168 acquired phase-encode columns), #18 and #20 (4-ch
  brains, k-space = fft2c of the coil images), the same cases as benchmarks/classical.py.

Every method gets the identical Sample (normalised by the zero-filled peak, ``meta.scale`` undone before
scoring) and is scored by ``mrrecon.core.runner.score_volume`` (fastMRI convention: PSNR over the volume
with the target volume's max as data range, SSIM 7x7 per slice). cg-sense estimates ESPIRiT maps itself.

Usage:
    python benchmarks/learned_quality.py [--methods zero-filled,cg-sense,unet,varnet] [--subjects 4]
        [--slices 2] [--seed 2] [--data DIR] [--threads 1] [--out benchmarks/results/learned_quality.json]
    (--unet / --varnet: checkpoint folders other than the shipped weights)
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import environment, shared_data_dir  # noqa: E402

from mrrecon.core.reconstructor import load  # noqa: E402
from mrrecon.core.runner import score_volume  # noqa: E402
from mrrecon.data.datasets import derive_seed, make_slice_sample, samples_from_file  # noqa: E402
from mrrecon.data.sample import SampleMeta  # noqa: E402
from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.methods import unet, varnet  # noqa: E402,F401  (registers the learned methods)
from mrrecon.physics.masks import make_mask  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

ACCELERATIONS = (4, 8)
SINGLE_COIL = {
    "knee_pd(#2)": "fastmri_knee_scoremri/real/retrospective/001.npy",
    "knee_pdfs(#3)": "fastmri_knee_scoremri/real/retrospective/002.npy",
    "knee_pdfs(#4)": "fastmri_knee_scoremri/real/retrospective/003.npy",
    "brain_flair(#7)": "fastmri_singlecoil_ssdm/brain1.npy",
    "brain_flair(#8)": "fastmri_singlecoil_ssdm/brain2.npy",
    "knee_pd(#9)": "fastmri_singlecoil_ssdm/knee1.npy",
    "knee_pd(#10)": "fastmri_singlecoil_ssdm/knee2.npy",
}


def build_methods(names: list[str], checkpoints: dict[str, str | None]) -> dict:
    return {n: load(n, checkpoint=checkpoints.get(n)) if n in checkpoints else load(n) for n in names}


def simulated_cases(folder: Path, subjects: int, slices: int, seed: int) -> list[tuple[str, str, list]]:
    files = sorted(folder.glob("sub*_*.h5"))
    if len(files) != subjects * 4:
        files = simulate_dataset(folder, subjects=subjects, slices=slices, seed=seed, size=256, coils=8)
    cases = []
    for f in files:
        for a in ACCELERATIONS:
            cases.append(("simulated", Path(f).stem, list(samples_from_file(f, mask_kind="random1d", acceleration=a,
                                                                            seed=0))))
    return cases


def real_single_coil_cases(root: Path, files: dict[str, str] = SINGLE_COIL,
                           settings=tuple(("random1d", a) for a in ACCELERATIONS)) -> list[tuple[str, str, list]]:
    """(group, name, [Sample]) per single-coil file ({name: path under root}) and (mask kind, acceleration)."""
    cases = []
    for name, rel in files.items():
        p = root / rel
        if not p.exists():
            continue
        for kind, a in settings:
            cases.append(("real single-coil", name, list(samples_from_file(p, mask_kind=kind, acceleration=a,
                                                                           seed=0))))
    return cases


def real_multicoil_cases(root: Path, settings=tuple(("random1d", a) for a in ACCELERATIONS)
                         ) -> list[tuple[str, str, list]]:
    """(group, name, [Sample]) per multi-coil brain (#17 cropped, #18, #20) and (mask kind, acceleration)."""
    from classical import load_fully_sampled  # the classical benchmark's cases (#17 cropped, #18, #20)

    cases = []
    for name, k in load_fully_sampled(root).items():
        for kind, a in settings:
            seed = derive_seed(0, name, 0, "mask")
            mask = make_mask(kind, tuple(k.shape[-2:]), a, seed=seed)
            meta = SampleMeta(file=name, slice=0, seed=seed)
            cases.append(("real multi-coil", name, [make_slice_sample(k, mask, normalise="max", meta=meta)]))
    return cases


def run(cases, methods: dict) -> list[dict]:
    rows = []
    for group, name, samples in cases:
        for spec, method in methods.items():
            r = score_volume(spec, method, samples)
            rows.append({"group": group, "case": name, "method": spec, "mask": r.mask, "accel": r.accel,
                         "effective_accel": round(r.effective_accel, 3), "slices": r.n_slices,
                         "coils": samples[0].num_coils, "psnr": r.psnr, "ssim": r.ssim, "nmse": r.nmse,
                         "seconds_per_slice": r.seconds_per_slice, "error": r.error})
        print(f"{group:>16} {name:<24} {samples[0].meta.acceleration:g}x " +
              " ".join(f"{row['method']}={row['psnr']:.2f}" for row in rows[-len(methods):]), flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["group"], r["method"], r["accel"]) for r in rows}, key=lambda k: (k[0], k[2]))
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    for group, method, accel in sorted(keys, key=lambda k: (k[0], k[2], order[k[1]])):
        sel = [r for r in rows if (r["group"], r["method"], r["accel"]) == (group, method, accel) and not r["error"]]
        if not sel:
            continue
        out.append({"group": group, "method": method, "accel": accel, "n": len(sel),
                    "psnr_mean": float(np.mean([r["psnr"] for r in sel])),
                    "psnr_std": float(np.std([r["psnr"] for r in sel], ddof=1)) if len(sel) > 1 else float("nan"),
                    "ssim_mean": float(np.mean([r["ssim"] for r in sel])),
                    "ssim_std": float(np.std([r["ssim"] for r in sel], ddof=1)) if len(sel) > 1 else float("nan"),
                    "seconds_per_slice": float(np.mean([r["seconds_per_slice"] for r in sel]))})
    return out


def markdown(summ: list[dict]) -> str:
    lines = ["| data | mask | method | n | PSNR (dB) | SSIM | s / slice |", "|---|---|---|---|---|---|---|"]
    for s in summ:
        lines.append(f"| {s['group']} | random1d {s['accel']:g}x | {s['method']} | {s['n']} | "
                     f"{s['psnr_mean']:.2f} ± {s['psnr_std']:.2f} | {s['ssim_mean']:.4f} ± {s['ssim_std']:.4f} | "
                     f"{s['seconds_per_slice']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="zero-filled,cg-sense,unet,varnet")
    ap.add_argument("--unet", default=None, help="unet checkpoint folder (default: shipped weights)")
    ap.add_argument("--varnet", default=None, help="varnet checkpoint folder (default: shipped weights)")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--sim-dir", default=None, help="held-out simulated set (default runs/cache/heldout-seed<seed>)")
    ap.add_argument("--data", default=None, help="shared real data folder")
    ap.add_argument("--groups", default="simulated,real-single,real-multi")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learned_quality.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = build_methods(names, {"unet": args.unet, "varnet": args.varnet})
    groups = set(args.groups.split(","))
    cases = []
    if "simulated" in groups:
        folder = Path(args.sim_dir or REPO / "runs" / "cache" / f"heldout-seed{args.seed}-s{args.slices}")
        cases += simulated_cases(folder, args.subjects, args.slices, args.seed)
    root = shared_data_dir(args.data)
    if root is None and groups & {"real-single", "real-multi"}:
        print("shared data not found: real-data groups skipped", flush=True)
    elif root is not None:
        if "real-single" in groups:
            cases += real_single_coil_cases(root)
        if "real-multi" in groups:
            cases += real_multicoil_cases(root)
    t0 = time.perf_counter()
    rows = run(cases, methods)
    summ = summary(rows)
    print(markdown(summ))
    atomic_write_json(args.out, {
        "description": "learned baselines vs zero-filled and cg-sense; random1d 4x/8x; fastMRI-convention metrics",
        "command": "python benchmarks/learned_quality.py " + " ".join(sys.argv[1:]),
        "environment": environment(), "wall_time_s": time.perf_counter() - t0,
        "checkpoints": {"unet": args.unet or "weights/unet-small", "varnet": args.varnet or "weights/varnet-small"},
        "simulated_heldout": {"seed": args.seed, "subjects": args.subjects, "slices": args.slices},
        "summary": summ, "rows": rows,
    })


if __name__ == "__main__":
    main()
