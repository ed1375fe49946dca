"""LDPM's closing figures: Table II analogue (ablations), Fig. 3 analogue (MR-VAE vs a non-MRI VAE), shared data.

    python benchmarks/ldpm.py --part sim    [--steps 10] [--subjects 4] [--accel 8]   -> results/ldpm_sim.json
    python benchmarks/ldpm.py --part shared [--steps 10] [--accel 8] [--anatomy brain] -> results/ldpm_shared.json
    python benchmarks/ldpm.py --part vae                                              -> results/ldpm_vae.json

``sim``: held-out simulated brains (simulator seed 1000, never seen in training; 8 coils, 256x256) at random1d
``--accel``, through ``mrrecon.eval.benchmark.run_benchmark``: zero-filled, the sketcher alone, ``ldpm`` and the
three ablations, and beside them the retrained ``unet`` and ``ssdm`` when their weights are shipped (time and
denoiser evaluations per slice).
``shared``: the same methods on the shared folder's single-coil slices (read in place; skipped when absent):
``--anatomy brain`` (default) the six brains that ssdm's benchmark reports too (fastMRI FLAIR #7-8 and the complex
mGRE slices #11-14, ``_common.SHARED_BRAIN``), ``--anatomy knee`` the five fastMRI knees (-> ldpm_shared_knee).
``vae``: reconstruction D(E(x)) PSNR/SSIM of the MR-VAE and
of the non-MRI VAE on the held-out simulated targets and the shared brain/knee targets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import SHARED_BRAIN, SHARED_KNEE, SHARED_SINGLE_COIL, environment, shared_data_dir, slim_results  # noqa: E402

import mrrecon  # noqa: E402,F401
from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark  # noqa: E402
from mrrecon.eval.paired import paired_table_markdown  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
# the Fig. 3 analogue's shared targets (names of _common.SHARED_SINGLE_COIL): the fastMRI brains and knees
VAE_SHARED = ("brain_flair(#7)", "brain_flair(#8)", "knee_pd(#9)", "knee_pd(#10)")


def methods(steps: int, with_ssdm: bool) -> list[str]:
    from mrrecon.core.weights import shipped_weights, weights_dir
    from mrrecon.methods import available

    out = ["zero-filled", "ldpm-sketcher"] + [f"{m}:steps={steps}" for m in
                                                ("ldpm", "ldpm-no-skm", "ldpm-no-mrvae", "ldpm-no-dss")]
    shipped = set(shipped_weights()) | {p.name for p in weights_dir().iterdir() if p.is_dir()}
    for name in ("unet",) + (("ssdm",) if with_ssdm else ()):  # the learned baseline and ssdm beside it
        info = available().get(name)
        if info is not None and info.default_weights in shipped:
            out.append(name)
    return out


def simulated_files(work: Path, subjects: int, seed: int = 1000) -> list[Path]:
    return simulate_dataset(work / "data", subjects=subjects, size=256, coils=8, contrasts=("T2",), slices=1,
                            seed=seed)


def part_benchmark(args, specs: list[DataSpec], data_root: Path, name: str, work: Path, info: dict) -> None:
    specs_methods = args.methods.split(",") if args.methods else methods(args.steps, not args.no_ssdm)
    reference = f"ldpm:steps={args.steps}"  # paired differences (95 % intervals over volumes) against ldpm
    cfg = BenchmarkConfig(methods=specs_methods, masks=("random1d",), accels=(float(args.accel),), seed=args.seed,
                          figures=1, compare_to=reference if reference in specs_methods else None)
    res = run_benchmark(specs, cfg, work / "benchmark", overwrite=True)  # measure anew
    command = f"python benchmarks/ldpm.py --part {args.part} --steps {args.steps} --accel {args.accel}" + (
        f" --subjects {args.subjects}" if args.part == "sim" else "") + (
        f" --anatomy {args.anatomy}" if args.part == "shared" and args.anatomy != "brain" else "") + (
        f" --methods {args.methods}" if args.methods else "") + (f" --name {args.name}" if args.name else "")
    name = args.name or name
    atomic_write_json(Path(args.out) / f"{name}.json", slim_results(res, command, data_root=data_root, data=info))
    print(json.dumps({"written": str(Path(args.out) / f"{name}.json"), "report": str(work / "benchmark")}))


def vae_table(args, work: Path) -> None:
    """Fig. 3 analogue: D(E(x)) of the MR-VAE vs the non-MRI VAE on magnitude targets (max-normalised)."""
    import numpy as np

    from mrrecon.core.pretrained import resolve_pretrained
    from mrrecon.data.datasets import SliceDataset
    from mrrecon.methods.ldpm.pipeline import SUBFOLDERS, load_vae
    from mrrecon.methods.ldpm.sampler import crop_to, pad_to
    from mrrecon.metrics import psnr, ssim

    root = resolve_pretrained("ldpm-small")
    vaes = {"mr-vae": load_vae(root / SUBFOLDERS["vae"]), "non-mri-vae": load_vae(root / SUBFOLDERS["vae_nonmri"])}
    sets: dict[str, list[torch.Tensor]] = {"simulated (held-out)": []}
    for f in simulated_files(work, args.subjects):
        ds = SliceDataset([f], seed=0)
        sets["simulated (held-out)"] += [ds[i].target.abs().float() for i in range(len(ds))]
    shared = shared_data_dir()
    if shared is not None:
        for name in VAE_SHARED:
            path = shared / SHARED_SINGLE_COIL[name]
            if path.is_file():
                ds = SliceDataset([path], seed=0)
                sets.setdefault(f"shared {name.split('_')[0]}", []).extend(
                    ds[i].target.abs().float() for i in range(len(ds)))
    rows = []
    with torch.no_grad():
        for set_name, images in sets.items():
            for vname, vae in vaes.items():
                p, s = [], []
                for x in images:
                    x = x / x.max()
                    xp, pad = pad_to(x.unsqueeze(0), vae.config.downsample)
                    rec = crop_to(vae.reconstruct(xp), pad)[0].clamp_min(0)
                    p.append(psnr(x, rec))
                    s.append(ssim(x, rec))
                rows.append({"data": set_name, "vae": vname, "n": len(images), "psnr_mean": float(np.mean(p)),
                             "ssim_mean": float(np.mean(s))})
                print(rows[-1], flush=True)
    atomic_write_json(Path(args.out) / "ldpm_vae.json", {
        "what": "VAE reconstruction D(E(x)) of fully sampled magnitude targets, max-normalised, PSNR/SSIM "
                "(fastMRI convention, data range = max of the image)", "rows": rows,
        "environment": environment(), "command": f"python benchmarks/ldpm.py --part vae --subjects {args.subjects}"})


def tables(out: Path) -> str:
    """Markdown tables of the result files (for docs/ldpm.md)."""
    lines = []
    for name, title in (("ldpm_sim", "held-out simulated brains, 8x"), ("ldpm_sim_4x", "held-out simulated brains, 4x"),
                        ("ldpm_shared", "shared single-coil brains, 8x"),
                        ("ldpm_shared_4x", "shared single-coil brains, 4x"),
                        ("ldpm_shared_knee", "shared fastMRI knees, 8x"),
                        ("ldpm_shared_knee_4x", "shared fastMRI knees, 4x")):
        path = out / f"{name}.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        lines += [f"### {title} (`{res['command']}`)", "",
                  "| method | data | n slices | PSNR | SSIM | NMSE | s / slice | NFE |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["summary"]:
            nfe = "-" if r.get("nfe") is None else f"{r['nfe']:.0f}"
            lines.append(f"| {r['method']} | {r['data']} | {r['n_slices']} | {r['psnr_mean']:.2f} | "
                         f"{r['ssim_mean']:.4f} | {r['nmse_mean']:.4f} | {r['seconds_mean']:.1f} | {nfe} |")
        if res.get("paired"):
            lines += ["", paired_table_markdown(res["paired"])]
        if name.startswith("ldpm_shared"):
            lines += ["", "| method | file | PSNR | SSIM |", "|---|---|---|---|"]
            lines += [f"| {v['method']} | {v['file']} | {v['psnr']:.2f} | {v['ssim']:.4f} |" for v in res["volumes"]
                      if v.get("psnr") is not None]
        lines.append("")
    path = out / "ldpm_vae.json"
    if path.is_file():
        res = json.loads(path.read_text())
        lines += [f"### VAE reconstruction (`{res['command']}`)", "", "| data | VAE | n | PSNR | SSIM |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['data']} | {r['vae']} | {r['n']} | {r['psnr_mean']:.2f} | {r['ssim_mean']:.4f} |"
                  for r in res["rows"]]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("sim", "shared", "vae", "tables"), required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--accel", type=float, default=8.0)
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--no-ssdm", action="store_true")
    ap.add_argument("--anatomy", choices=("brain", "knee"), default="brain",
                    help="--part shared: the shared single-coil brains (default) or knees")
    ap.add_argument("--methods", default=None, help="comma-separated method specs instead of the default list")
    ap.add_argument("--name", default=None, help="result file name (default ldpm_<part>)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.part == "tables":
        return print(tables(Path(args.out)))
    work = Path(args.work or tempfile.mkdtemp(prefix=f"mrrecon-ldpm-{args.part}-"))
    if args.part == "vae":
        return vae_table(args, work)
    if args.part == "sim":
        files = simulated_files(work, args.subjects, args.seed)
        info = {"subjects": args.subjects, "size": 256, "coils": 8, "slices": 1, "contrast": "T2",
                "simulator_seed": args.seed}
        return part_benchmark(args, [DataSpec(f) for f in files], work / "data", "ldpm_sim", work, info)
    shared = shared_data_dir()
    if shared is None:
        print("shared data folder not found (set MRRECON_SHARED_DATA); nothing to do")
        return None
    names = SHARED_BRAIN if args.anatomy == "brain" else SHARED_KNEE
    files = {n: SHARED_SINGLE_COIL[n] for n in names if (shared / SHARED_SINGLE_COIL[n]).is_file()}
    specs = [DataSpec(shared / rel, {"name": n}) for n, rel in files.items()]
    name = "ldpm_shared" if args.anatomy == "brain" else "ldpm_shared_knee"
    return part_benchmark(args, specs, shared, name, work, {"files": files})


if __name__ == "__main__":
    main()
