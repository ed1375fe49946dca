"""AK-Diffusion (``akdiff``) and its ablations beside the classical k-space and CS baselines (paper Tables II-III).

Runs ``mrrecon.eval.benchmark.run_benchmark`` (the same Samples, seeded masks and fastMRI-convention metrics for
every method) on two groups, each written to ``benchmarks/results/akdiff_<group>.json`` (slim: summary and
volume rows, paths relative to the data root):

* ``sim``: held-out subjects of the embedded simulator (seed 2; the shipped weights were trained on seed 0),
  8 coils, 256 x 256 (``--sim-crop 128`` takes the centred 128 x 128 image crop instead: a quarter of the
  sampling cost, but only 10 ACS lines at 6x), one slice per file, ``--sim-files`` files (contrasts cycled);
* ``shared``: the multi-coil brains of ../shared/data (#17 8-ch 320 x 168, #18 and #20 4-ch 256 x 256), full
  matrix.

Settings per group: ``uniform1d`` 6x (the paper's "uniform 6x", with ACS) for ``--methods``; the
super-resolution setting ``acs_only`` (a centred box of 128/320 of the matrix per axis, i.e. center_fraction
0.4, nominal 6.25x) for ``--sr-methods``; ``--random`` adds ``random1d`` 6x.

* ``diagnostics``: on one held-out simulated slice (T1, centred 128 x 128 crop): (a) the score-matching loss of
  the network relative to that of h = z (no network) at several t, same noise draw; (b) PC sampling
  (uniform 6x, N = 50, M = 1, SLR) with the exact h (h = z(0), an oracle: checks Algorithm 1 itself), with
  h = z (an untrained r_theta = 0) and with the shipped network, beside zero-filling.

Usage:
    python benchmarks/akdiff.py --group sim [--sim-files 4] [--methods ...] [--threads 1]
    python benchmarks/akdiff.py --group shared [--data DIR]
    python benchmarks/akdiff.py --group diagnostics
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import shared_data_dir, slim_results  # noqa: E402

from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, read_manifest, run_benchmark  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

METHODS = "zero-filled,grappa,loraks,l1-wavelet,akdiff,akdiff-no-sscoil,akdiff-no-slr"
SR_METHODS = "zero-filled,akdiff"
SR_FRACTION = 128 / 320  # paper: 128 x 128 ACS of a 320 x 320 matrix


def sim_specs(n_files: int, crop: int | None = None, seed: int = 2, slices: int = 2) -> tuple[list[DataSpec], Path]:
    folder = REPO / "runs" / "cache" / f"heldout-seed{seed}-s{slices}"
    files = sorted(folder.glob("sub*_*.h5"))
    if not files:
        files = simulate_dataset(folder, subjects=4, slices=slices, seed=seed, size=256, coils=8)
    # one file per subject and contrast, cycling through contrasts so that every contrast appears
    by_contrast: dict[str, list[Path]] = {}
    for f in sorted(files):
        by_contrast.setdefault(Path(f).stem.split("_")[-1], []).append(Path(f))
    order = [f for group in zip(*by_contrast.values(), strict=False) for f in group]
    opts = {} if crop is None else {"crop": (crop, crop)}
    return [DataSpec(f, dict(opts)) for f in order[:n_files]], folder


def shared_specs(root: Path) -> list[DataSpec]:
    manifest = REPO / "benchmarks" / "shared-data.yaml"
    multi = ("multicoil_brain8ch_kspace_espirit", "multicoil_gpunufft/img_brain", "multicoil_brain4ch_ugmpi")
    return [s for s in read_manifest(manifest, str(root)) if any(m in str(s.path) for m in multi)]


def run_group(name: str, specs: list[DataSpec], data_root: Path, args) -> dict:
    out_dir = REPO / "runs" / "bench" / f"akdiff_{name}"
    parts = {}
    settings = [("uniform1d", 6.0, None, args.methods)]
    if args.random:
        settings.append(("random1d", 6.0, None, args.methods))
    settings.append(("acs_only", 6.25, SR_FRACTION, args.sr_methods))
    for mask, accel, cf, methods in settings:
        cfg = BenchmarkConfig(methods=methods, masks=(mask,), accels=(accel,), center_fraction=cf, seed=0,
                              max_slices=1, warmup=False, figures=0)
        res = run_benchmark(specs, cfg, out_dir / f"{mask}", progress=False, overwrite=True)  # measure anew
        parts[f"{mask}_{accel:g}x"] = slim_results(res, "python benchmarks/akdiff.py " + " ".join(sys.argv[1:]),
                                                   data_root=data_root)
    return parts


def markdown(parts: dict) -> str:
    lines = ["| setting | method | n | NMSE | PSNR (dB) | SSIM | s / slice | NFE |",
             "|---|---|---|---|---|---|---|---|"]
    def pm(mean: float, std: float, digits: int) -> str:
        return f"{mean:.{digits}f}" if std != std else f"{mean:.{digits}f} ± {std:.{digits}f}"  # n = 1: no std

    for setting, res in parts.items():
        for s in res["summary"]:
            nfe = s.get("nfe")
            lines.append(f"| {setting} | {s['method']} | {s['n']} | {s['nmse_mean']:.4f} | "
                         f"{pm(s['psnr_mean'], s['psnr_std'], 2)} | {pm(s['ssim_mean'], s['ssim_std'], 4)} | "
                         f"{s['seconds_mean']:.1f} | {'' if nfe is None else nfe} |")
    return "\n".join(lines)


def diagnostics(checkpoint: str = "akdiff-small") -> dict:
    """Loss ratio per t and PC sampling with exact / identity / trained h on one held-out slice (see docstring)."""
    import time

    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.data.datasets import samples_from_file
    from mrrecon.methods.akdiff import AKDiffusionModel, PCSampler, complex_noise
    from mrrecon.metrics import psnr, ssim
    from mrrecon.physics.coils import rss
    from mrrecon.physics.fft import ifft2c

    _, folder = sim_specs(1)
    f = sorted(folder.glob("sub000_T1.h5"))[0]
    crop = (128, 128)
    under = next(iter(samples_from_file(f, mask_kind="uniform1d", acceleration=6, seed=0, max_slices=1, crop=crop)))
    full = next(iter(samples_from_file(f, mask_kind="uniform1d", acceleration=1, seed=0, max_slices=1, crop=crop)))
    k_full = full.kspace * (full.meta.scale / under.meta.scale)  # the undersampled sample's units
    model = from_pretrained(checkpoint)
    z0 = k_full[None] * model.kspace_units(crop)
    sub = model.training_subspace(z0)
    ratios = {}
    with torch.no_grad():
        for t in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
            n = complex_noise(z0.shape, generator=torch.Generator().manual_seed(0))
            tt = torch.tensor([t])
            net = model.score_matching_loss(z0, sub, t=tt, noise=n)
            ident = model.score_matching_loss(z0, sub, t=tt, noise=n, h_fn=lambda z, _t: z)
            ratios[f"{t:g}"] = float(net / ident)

    class Exact:
        sde, kspace_units = model.sde, model.kspace_units

        def __call__(self, z, t):
            return z0.to(z.dtype)

    rows = {"zero-filled": rss(ifft2c(under.kspace))}
    timings = {}
    for name, h in (("exact h (oracle)", Exact()), ("h = z (r_theta = 0)", AKDiffusionModel(model.config_dict())),
                    (f"trained ({checkpoint})", model)):
        t0 = time.perf_counter()
        rows[name] = PCSampler(h).reconstruct_image(under.kspace, under.mask)
        timings[name] = time.perf_counter() - t0
    metrics = {k: {"psnr": psnr(under.target, v), "ssim": ssim(under.target, v), "seconds": timings.get(k)}
               for k, v in rows.items()}
    return {"slice": f"{f.name} slice {under.meta.slice}, crop {crop}, uniform1d 6x",
            "loss_ratio_network_over_identity": ratios, "pc_sampling": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", choices=("sim", "shared", "diagnostics"), required=True)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--sr-methods", default=SR_METHODS)
    ap.add_argument("--random", action="store_true", help="also random1d 6x")
    ap.add_argument("--sim-files", type=int, default=2)
    ap.add_argument("--sim-crop", type=int, default=None, help="centred image crop of the simulated slices")
    ap.add_argument("--data", default=None, help="shared real data folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="default benchmarks/results/akdiff_<group>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.group == "diagnostics":
        res = diagnostics()
        print(res)
        atomic_write_json(args.out or REPO / "benchmarks" / "results" / "akdiff_diagnostics.json",
                          {"description": "AK-Diffusion diagnostics (benchmarks/akdiff.py docstring)",
                           "command": "python benchmarks/akdiff.py " + " ".join(sys.argv[1:]), **res})
        return
    if args.group == "sim":
        specs, root = sim_specs(args.sim_files, args.sim_crop)
    else:
        root = shared_data_dir(args.data)
        if root is None:
            print("shared data not found (set MRRECON_SHARED_DATA): nothing to do")
            return
        specs = shared_specs(root)
    parts = run_group(args.group, specs, root, args)
    table = markdown(parts)
    print(table)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"akdiff_{args.group}.json")
    atomic_write_json(out, {"description": __doc__.split("\n\n")[0], "group": args.group, "markdown": table,
                            "settings": parts})


if __name__ == "__main__":
    main()
