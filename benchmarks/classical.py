"""Classical reconstructions side by side with BART and sigpy on the real multi-coil brains of ../shared/data.

Cases (all seeded, so a rerun reproduces them):

* retrospective: #17 (8-ch brain k-space, fully sampled in columns 44-211; cropped to those 168 acquired
  phase-encode columns so undersampling never "samples" zero padding), #18 and #20 (4-ch complex coil images,
  k-space = fft2c per coil); each undersampled with ``poisson2d`` and ``random1d`` masks at 4x and 8x
  (mrrecon.physics.masks.make_mask, seed 1000 + case index). Target: RSS of the fully sampled coil images.
* native: #15 (8-ch brain k-space, already Poisson-disc undersampled by its authors, about 8x) against the
  reference #16 (map 0 of a BART reconstruction of the fully sampled data, whose intensity scale is unknown): each
  method's magnitude is least-squares scaled to the reference's before the metrics (``native_scale_fit``).

Coil maps: ESPIRiT (mrrecon.physics.coils.espirit_maps, defaults) from the undersampled k-space of each case,
computed once and given to every method through ``Sample.coil_maps`` (so times exclude map estimation for all
methods, BART included). Metrics: mrrecon.metrics.image.compute_metrics, fastMRI convention (PSNR with the
target's max as data range, SSIM 7x7). Time: wall time of ``reconstruct(sample)`` per slice, one run per case,
methods interleaved case by case (machine noise hits all alike); BART's time includes writing its inputs, the
process start and reading the output. ``--threads`` (default 1) sets torch's, BART's and numpy's thread count.

Methods: every registered classical method (``mrrecon.methods.available()`` whose factory lives in
``mrrecon.classical``, plus ``zero-filled``), with their defaults; the peers ``bart-pics`` (default: l1 wavelet with
l1-wavelet's lam and iterations) and ``sigpy-l1wavelet``; and matched variants ``l1-wavelet:wavelet=db4`` (the
alternative wavelet), ``bart-pics:regularizer=tv`` and ``bart-pics:regularizer=l2`` (same objectives as ``tv``
and ``cg-sense``).

Usage:
    python benchmarks/classical.py [--data DIR] [--threads 1] [--methods a,b] [--out benchmarks/results/classical.json]
    python benchmarks/classical.py --sweep     # the lam / iteration sweeps that chose the defaults
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.io as sio  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import environment, shared_data_dir  # noqa: E402

import mrrecon.methods as methods  # noqa: E402
from mrrecon.data.formats import read_cfl  # noqa: E402
from mrrecon.data.sample import Sample, SampleMeta  # noqa: E402
from mrrecon.errors import MRReconError  # noqa: E402
from mrrecon.metrics.image import compute_metrics  # noqa: E402
from mrrecon.physics.coils import espirit_maps, rss  # noqa: E402
from mrrecon.physics.fft import fft2c, ifft2c  # noqa: E402
from mrrecon.physics.masks import make_mask  # noqa: E402
from mrrecon.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

MASKS = ("poisson2d", "random1d")
ACCELERATIONS = (4, 8)
EXTRA_SPECS = ("l1-wavelet:wavelet=db4", "bart-pics", "bart-pics:regularizer=tv", "bart-pics:regularizer=l2",
               "sigpy-l1wavelet")
REFERENCE = "bart-pics"


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def _coil_first(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0)).astype(np.complex64))


def load_fully_sampled(root: Path) -> dict[str, torch.Tensor]:
    """Fully sampled multi-coil k-space (C, H, W) per dataset name; missing files are skipped."""
    out = {}
    p = root / "multicoil_brain8ch_kspace_espirit" / "brain_alias_8ch.mat"
    if p.exists():
        k = _coil_first(sio.loadmat(p)["DATA"])  # (8, 320, 256), acquired columns 44..211
        out["brain8ch_espirit(#17)"] = k[:, :, 44:212].contiguous()  # DC stays at W // 2 (128 - 44 = 84)
    p = root / "multicoil_gpunufft" / "img_brain_4ch.mat"
    if p.exists():
        out["brain4ch_gpunufft(#18)"] = fft2c(_coil_first(sio.loadmat(p)["img"]))
    p = root / "multicoil_brain4ch_ugmpi" / "4h_GE.mat"
    if p.exists():
        out["brain4ch_ugmpi(#20)"] = fft2c(_coil_first(sio.loadmat(p)["DATA"]))
    return out


@dataclass
class Case:
    name: str
    dataset: str
    sample: Sample
    native: bool = False  # target from another reconstruction: least-squares scale fit before metrics


def make_cases(root: Path, masks=MASKS, accelerations=ACCELERATIONS, native: bool = True) -> list[Case]:
    cases = []
    index = 0
    for name, k in load_fully_sampled(root).items():
        target = rss(ifft2c(k))
        for kind in masks:
            for r in accelerations:
                seed = 1000 + index
                index += 1
                m = make_mask(kind, tuple(k.shape[-2:]), r, seed=seed)
                ku = k * m.mask
                meta = SampleMeta(file=name, slice=0, mask_type=kind, acceleration=float(r),
                                  effective_acceleration=m.effective_acceleration, center_fraction=m.center_fraction,
                                  seed=seed)
                sample = Sample(kspace=ku, mask=m.mask, target=target, coil_maps=espirit_maps(ku), meta=meta)
                cases.append(Case(f"{name} {kind} {r}x", name, sample.validate()))
    base = root / "multicoil_brain8ch_kspace_bart"
    if native and (base / "ksp.cfl").exists() and (base / "img.cfl").exists():
        k = _coil_first(read_cfl(base / "ksp").squeeze())  # (8, 180, 230)
        ref = torch.from_numpy(np.ascontiguousarray(read_cfl(base / "img").squeeze()[..., 0])).abs()
        mask = (k.abs().sum(0) > 0)[None]
        eff = float(mask.numel() / mask.sum())
        meta = SampleMeta(file="brain8ch_bart(#15)", slice=0, mask_type="native poisson", acceleration=None,
                          effective_acceleration=eff)
        sample = Sample(kspace=k, mask=mask, target=ref.float(), coil_maps=espirit_maps(k), meta=meta)
        cases.append(Case(f"brain8ch_bart(#15) native {eff:.1f}x", "brain8ch_bart(#15)", sample.validate(), True))
    return cases


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------


def classical_specs() -> list[str]:
    names = []
    for name, info in methods.available().items():
        module = getattr(info.factory, "__module__", "")
        if name == "zero-filled" or (module.startswith("mrrecon.classical") and not module.endswith(".peers")):
            if not info.needs_weights and not info.needs_reference:
                names.append(name)
    return names


def evaluate(case: Case, image: torch.Tensor) -> dict:
    target = case.sample.target.abs().double()
    pred = image.detach().abs().double().cpu()
    if case.native:  # unknown reference scale: least-squares fit of the magnitude
        pred = pred * (pred * target).sum() / (pred * pred).sum().clamp_min(1e-30)
    return compute_metrics(target, pred)


def build(specs: list[str]) -> tuple[dict, dict]:
    built, skipped = {}, {}
    for spec in specs:
        try:
            built[spec] = methods.load(spec)
        except MRReconError as exc:  # e.g. BART or sigpy not installed
            skipped[spec] = str(exc)
            print(f"skip {spec}: {exc}", flush=True)
    return built, skipped


def run_cases(cases: list[Case], built: dict, warmup: bool = True) -> list[dict]:
    rows = []
    if warmup and cases:  # first calls pay for imports, plan caches, thread pools
        for meth in built.values():
            meth.reconstruct(cases[0].sample)
    for case in cases:
        for spec, meth in built.items():
            t0 = time.perf_counter()
            try:
                image = meth.reconstruct(case.sample)
            except MRReconError as exc:
                print(f"  {spec} failed on {case.name}: {exc}", flush=True)
                rows.append({"case": case.name, "method": spec, "error": str(exc)})
                continue
            elapsed = time.perf_counter() - t0
            m = evaluate(case, image)
            rows.append({"case": case.name, "dataset": case.dataset, "mask": case.sample.meta.mask_type,
                         "acceleration": case.sample.meta.acceleration,
                         "effective_acceleration": round(case.sample.meta.effective_acceleration, 3),
                         "method": spec, "psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4),
                         "nmse": round(m["nmse"], 5), "time_s": round(elapsed, 4)})
            print(f"  {case.name:42s} {spec:28s} PSNR {m['psnr']:6.2f}  SSIM {m['ssim']:.4f}  {elapsed:7.3f} s",
                  flush=True)
    return rows


def summarise(rows: list[dict], specs: list[str]) -> dict:
    ok = [r for r in rows if "error" not in r]
    ref_time = {r["case"]: r["time_s"] for r in ok if r["method"] == REFERENCE}
    summary = {}
    for spec in specs:
        mine = [r for r in ok if r["method"] == spec]
        if not mine:
            continue
        ratios = [r["time_s"] / ref_time[r["case"]] for r in mine if r["case"] in ref_time]
        mean_time = statistics.mean(r["time_s"] for r in mine)
        entry = {"cases": len(mine), "psnr_mean": round(statistics.mean(r["psnr"] for r in mine), 3),
                 "ssim_mean": round(statistics.mean(r["ssim"] for r in mine), 4),
                 "time_per_slice_s": round(mean_time, 4)}
        if ref_time:
            ref_mean = statistics.mean(ref_time[r["case"]] for r in mine if r["case"] in ref_time)
            entry["time_ratio_to_bart"] = round(mean_time / ref_mean, 3)  # ratio of mean times, same cases
            entry["time_ratio_to_bart_geomean"] = round(math.exp(statistics.mean(math.log(x) for x in ratios)), 3)
        summary[spec] = entry
    return summary


def l1_versus_bart(rows: list[dict]) -> dict:
    """Per case: PSNR(ours) - PSNR(bart-pics) and time ratio, for l1-wavelet (db2 default) and its db4 variant."""
    by = {(r["case"], r["method"]): r for r in rows if "error" not in r}
    out = {}
    for spec in ("l1-wavelet", "l1-wavelet:wavelet=db4"):
        diffs, ratios = {}, {}
        for (case, meth), r in by.items():
            if meth == spec and (case, REFERENCE) in by:
                b = by[(case, REFERENCE)]
                diffs[case] = round(r["psnr"] - b["psnr"], 3)
                ratios[case] = round(r["time_s"] / b["time_s"], 3)
        if diffs:
            out[spec] = {"psnr_minus_bart": diffs, "max_abs_psnr_gap": max(abs(v) for v in diffs.values()),
                         "within_0p5_db_all_cases": all(abs(v) <= 0.5 for v in diffs.values()),
                         "time_ratio": ratios}
    return out


def markdown(summary: dict, rows: list[dict], cases: list[Case], env: dict, threads: int, command: str) -> str:
    lines = ["# Classical reconstructions vs BART and sigpy (real multi-coil brains)", "",
             f"Generated by `{command}` (benchmarks/classical.py; do not edit by hand). "
             f"CPU threads: {threads} (torch, BART, numpy); torch {env['torch']}; {env['processor']}.", "",
             "Cases: " + "; ".join(c.name for c in cases) + ".", "",
             "Mean over all cases; time = wall time per slice (coil maps given, ESPIRiT excluded); ratio = mean time "
             "/ mean time of `bart-pics` (l1 wavelet, same lam, iterations and maps) on the same cases.", "",
             "| method | PSNR (dB) | SSIM | time / slice (s) | time ratio to bart-pics |",
             "|---|---|---|---|---|"]
    for spec, s in summary.items():
        ratio = s.get("time_ratio_to_bart")
        lines.append(f"| {spec} | {s['psnr_mean']:.2f} | {s['ssim_mean']:.4f} | {s['time_per_slice_s']:.3f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} |")
    groups = sorted({(r["mask"], r["acceleration"]) for r in rows if "error" not in r}, key=lambda g: (g[0], g[1] or 0))
    lines += ["", "PSNR (dB) by mask and acceleration (mean over datasets):", "",
              "| method | " + " | ".join(f"{m} {'' if a is None else f'{a:g}x'}" for m, a in groups) + " |",
              "|---|" + "---|" * len(groups)]
    for spec in summary:
        cells = []
        for m, a in groups:
            v = [r["psnr"] for r in rows if "error" not in r and r["method"] == spec and r["mask"] == m
                 and r["acceleration"] == a]
            cells.append(f"{statistics.mean(v):.2f}" if v else "")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Parameter sweeps (how the defaults were chosen)
# ---------------------------------------------------------------------------------------------------------

SWEEPS = {  # method -> list of option grids (every combination within a grid is run)
    "cg-sense": [{"lam": [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1], "iters": [10, 30]}],
    "l1-wavelet": [{"lam": [1e-3, 3e-3, 5e-3, 1e-2, 2e-2, 4e-2], "iters": [30, 60, 100]},
                   {"lam": [3e-3, 5e-3, 1e-2, 2e-2], "iters": [60], "wavelet": ["db4", "haar"]}],
    "tv": [{"lam": [1e-3, 3e-3, 5e-3, 1e-2, 2e-2, 4e-2], "iters": [20, 40]}],
}


def _grid_specs(method: str, grids: list[dict]) -> list[str]:
    import itertools

    specs = []
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            specs.append(method + "".join(f":{k}={v}" for k, v in zip(keys, values, strict=True)))
    return specs


def sweep(cases: list[Case], out: Path) -> dict:
    """Mean PSNR over all cases for every option combination in SWEEPS; the best per method is reported."""
    results = {}
    for method, grids in SWEEPS.items():
        table = {}
        for spec in _grid_specs(method, grids):
            meth = methods.load(spec)
            psnrs, times = [], []
            for case in cases:
                t0 = time.perf_counter()
                image = meth.reconstruct(case.sample)
                times.append(time.perf_counter() - t0)
                psnrs.append(evaluate(case, image)["psnr"])
            table[spec] = {"psnr_mean": round(statistics.mean(psnrs), 3),
                           "psnr": [round(p, 3) for p in psnrs], "time_mean_s": round(statistics.mean(times), 3)}
            print(f"{spec:44s} PSNR {table[spec]['psnr_mean']:6.2f}  {table[spec]['time_mean_s']:.2f} s", flush=True)
        best = max(table, key=lambda s: table[s]["psnr_mean"])
        results[method] = {"grid": table, "best": best}
        print(f"best {method}: {best}", flush=True)
    payload = {"environment": environment(), "cases": [c.name for c in cases], "sweeps": results}
    atomic_write_json(out, payload, indent=1)
    return payload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="shared data folder (default $MRRECON_SHARED_DATA or ../shared/data)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch, BART and numpy (default 1)")
    ap.add_argument("--methods", help="comma-separated method specs (default: all classical + peers)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "classical.json"))
    ap.add_argument("--doc", default=str(REPO / "docs" / "results-classical.md"))
    ap.add_argument("--sweep", action="store_true", help="run the lam/iteration sweeps instead")
    ap.add_argument("--no-native", action="store_true", help="leave out the prospectively undersampled #15")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = shared_data_dir(args.data)
    if root is None:
        print("shared data not found (set MRRECON_SHARED_DATA or pass --data); nothing to do")
        return 0
    t_start = time.perf_counter()
    cases = make_cases(root, native=not args.no_native)
    if not cases:
        print(f"no multi-coil datasets found under {root}; nothing to do")
        return 0
    print(f"{len(cases)} cases, maps ready in {time.perf_counter() - t_start:.1f} s", flush=True)
    if args.sweep:
        sweep(cases, Path(args.out).with_name("classical_sweep.json"))
        return 0
    specs = args.methods.split(",") if args.methods else classical_specs() + list(EXTRA_SPECS)
    built, skipped = build(specs)
    rows = run_cases(cases, built)
    summary = summarise(rows, list(built))
    env = environment()
    command = "python benchmarks/classical.py" + ("" if args.threads == 1 else f" --threads {args.threads}")
    payload = {
        "environment": env, "threads": args.threads, "reference_method": REFERENCE,
        "cases": [{"name": c.name, "dataset": c.dataset, "mask": c.sample.meta.mask_type,
                   "acceleration": c.sample.meta.acceleration,
                   "effective_acceleration": round(c.sample.meta.effective_acceleration, 3),
                   "seed": c.sample.meta.seed, "shape": list(c.sample.kspace.shape), "native_scale_fit": c.native}
                  for c in cases],
        "skipped": skipped, "summary": summary, "l1_wavelet_vs_bart": l1_versus_bart(rows), "results": rows,
        "total_run_time_s": round(time.perf_counter() - t_start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, payload, indent=1)
    doc = Path(args.doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(doc, markdown(summary, rows, cases, env, args.threads, command))
    print(json.dumps(summary, indent=1))
    print(json.dumps(payload["l1_wavelet_vs_bart"], indent=1))
    print(f"wrote {out} and {doc} in {payload['total_run_time_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
