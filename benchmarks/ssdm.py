"""SSDM-MRI closing figures: distillation gap, quality and speed against the U-Net, real single-coil data.

    python benchmarks/ssdm.py [--parts simulated,shared,timing,uncertainty,noise_levels] [--subjects 2] [--slices 1]
                              [--threads 1] [--out benchmarks/results]

Parts (each writes one JSON under --out; the full benchmark folders with report.md/html go under --work):

* ``simulated`` -> ssdm_simulated.json: held-out subjects of the embedded simulator (seed 1000; the shipped
  weights saw seed 0 and validated on seed 1), 256x256, 8 coils, all four contrasts, gaussian1d 8x (default ACS,
  10 lines) and 12x with 6 ACS lines (the paper's setting). Methods zero-filled, unet, ssdm (1-step student, one
  sample), ssdm:samples=4 (mean of 4 samples), ssdm:steps=8, ssdm:steps=128 (teacher), one ``run_benchmark`` run
  per setting (same samples; seconds per slice after a warm-up call each), paired against the 1-step student
  (``compare_to``: mean difference per volume, 95 % interval). Derived: teacher - student, student - zero-filled,
  student - unet PSNR, student / unet seconds.
* ``shared`` -> ssdm_shared.json: the single-coil slices of ../shared/data in two groups, brain (fastMRI brain
  FLAIR #7, #8 at 320x320 and the four mGRE brain slices #11-#14 at 256x256, complex) and knee (the SSDM-MRI
  knees #9, #10 and the Score-MRI knees #2-#4, outside the simulator's domain: reported, not tuned on),
  gaussian1d 8x and 12x with the kinds' default ACS (12 and 6 lines at 320 columns); methods zero-filled,
  l1-wavelet, unet, ssdm, ssdm:samples=4, ssdm:steps=8, paired against ssdm.
* ``timing`` -> ssdm_timing.json: ssdm (1 step) and unet timed round-robin on one 320x320 single-coil slice
  (the paper's Table I setting), median ms and their ratio; ssdm also with its network in the contiguous layout
  (``ssdm:memory_format=contiguous``) beside the default channels_last.
* ``precision`` -> ssdm_precision.json: the ``timing`` pair in float32 and under bf16 autocast (round-robin, with
  PSNR on that slice) and the share of ssdm's float32 time in its bottleneck attention: whether bf16 inference
  could bring the 1-step student within the paper's 1.25x of unet.
* ``noise_levels`` -> ssdm_noise_levels.json: where the teacher's error comes from (every stage of each of
  ``--checkpoints``, default the shipped ``ssdm-small``). On the held-out subjects
  (gaussian1d 8x), for t in {1, 16, 32, 64, 96, 120, 128}: the relative error ||x0_hat(x_t, t) - x0||^2 / ||x0||^2
  of one network evaluation (x0_hat = alpha_t x_t - sigma_t v_hat, eval mode) against that of the zero-filled
  condition itself. A 1-step sampler (and the first steps of any sampler) relies on x0_hat at t = T, where x_t is
  pure noise and the condition is the only information: there x0_hat should beat the zero-filled image.
* ``widths`` -> ssdm_widths.json: the 1-step sampler with networks of width 8, 12 and 16 (random weights) timed
  round-robin with unet on the ``timing`` slice: which widths fit the paper's 1.25x.
* ``decomposition`` -> ssdm_decomposition.json: from the ``simulated`` / ``shared`` folders already in ``--work``
  (no reconstruction), the 1-step student's NMSE split into its samples' spread and the error of its own mean,
  against unet (``sample_spread``; ``simulated`` and ``shared`` record it in ``derived`` too).
* ``gap_probes`` -> ssdm_gap_probes.json: three explanations of the student's gap to unet on the simulator
  (test matrix 128 vs 256, mask kind, batch-norm statistics), see ``part_gap_probes``.
* ``uncertainty`` -> docs/img/ssdm_uncertainty.png: mean and standard deviation of 5 samples (different x_T) of
  the 1-step and the 8-step students on a knee slice at 4x, 8x and 12x (Fig. 8).
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    SHARED_BRAIN,
    SHARED_KNEE,
    SHARED_SINGLE_COIL,
    display_path,
    environment,
    shared_data_dir,
    slim_results,
    time_interleaved,
)

import mrrecon  # noqa: E402,F401  (allocator settings)
from mrrecon.data.datasets import samples_from_file  # noqa: E402
from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark  # noqa: E402
from mrrecon.eval.report import uncertainty_grid_png, uncertainty_maps  # noqa: E402
from mrrecon.methods import load  # noqa: E402
from mrrecon.utils.io import atomic_write_bytes, atomic_write_json  # noqa: E402


def _row(summary: list[dict], method: str, data: str | None = None, accel: float | None = None) -> dict | None:
    for r in summary:
        if r["method"] == method and (data is None or r.get("data") == data) and (accel is None or r["accel"] == accel):
            return r
    return None


# The settings: gaussian1d 8x with the kind's default ACS, and 12x with 6 ACS lines as the paper.
SIM_SETTINGS = ((8.0, None), (12.0, 6))
SSDM_METHODS = ["ssdm", "ssdm:samples=4", "ssdm:steps=8", "ssdm:steps=128"]


def _paired_settings(specs: list, methods: list[str], settings, width: int, work: Path, name: str, figures: int
                     ) -> dict:
    """One ``run_benchmark`` per (acceleration, ACS lines), every method on the same samples, paired against the
    1-step student (``compare_to="ssdm"``): {setting: slim results}."""
    out = {}
    for accel, acs in settings:
        cfg = BenchmarkConfig(methods=methods, masks=("gaussian1d",), accels=(accel,), seed=0, figures=figures,
                              center_fraction=None if acs is None else acs / width, compare_to="ssdm")
        tag = f"gaussian1d_{accel:g}x" + ("" if acs is None else f"_acs{acs}")
        res = run_benchmark(specs, cfg, work / f"{name}-{tag}", overwrite=True)  # measure anew
        out[tag] = res
    return out


def sample_spread(res: dict, samples: int = 4) -> dict | None:
    """Where the 1-step student's error goes: one sample's NMSE against the mean of ``samples`` samples.

    With K samples x_k = m + e_k of the student's conditional distribution (spread E||e_k||^2 = v, the samples'
    errors uncorrelated), the mean of K has error ||m - x||^2 + v / K, so from K = 1 and K: v = (1 - 1/K)^-1 (NMSE_1
    - NMSE_K) and the error of the student's own mean m (K -> infinity) is NMSE_1 - v. Volume-mean NMSE; a perfect
    posterior sampler has v = NMSE_inf (one sample 3 dB below the MMSE estimate), a mode-seeking one v << NMSE_inf.
    Against unet's NMSE it splits the student's gap to unet into spread (what averaging could recover) and mean."""
    by = {}
    for v in res["volumes"]:
        if v.get("error") is None:
            by.setdefault(v["method"], {})[(v["file"], v.get("rank", 0))] = v["nmse"]
    one, mean_k, unet = by.get("ssdm"), by.get(f"ssdm:samples={samples}"), by.get("unet")
    if not one or not mean_k:
        return None
    keys = sorted(set(one) & set(mean_k))
    nmse_1 = float(np.mean([one[k] for k in keys]))
    nmse_k = float(np.mean([mean_k[k] for k in keys]))
    spread = (nmse_1 - nmse_k) / (1.0 - 1.0 / samples)
    out = {"volumes": len(keys), "nmse_one_sample": nmse_1, f"nmse_mean_of_{samples}": nmse_k, "nmse_spread": spread,
           "nmse_student_mean": nmse_1 - spread, "spread_over_student_mean": spread / (nmse_1 - spread)}
    if unet and set(keys) <= set(unet):
        nmse_u = float(np.mean([unet[k] for k in keys]))
        out["nmse_unet"] = nmse_u
        out["student_mean_minus_unet_db"] = 10 * np.log10(nmse_u / (nmse_1 - spread))  # > 0: the mean beats unet
        out["one_sample_minus_unet_db"] = 10 * np.log10(nmse_u / nmse_1)
    return out


def part_decomposition(args, work: Path) -> dict:
    """sample_spread of every simulated and shared setting already measured in --work (no reconstruction)."""
    out = {}
    for results in sorted(work.glob("*/results.json")):
        spread = sample_spread(json.loads(results.read_text()))
        if spread is not None:
            out[results.parent.name] = spread
    if not out:
        raise SystemExit(f"{work}: no ssdm benchmark folders with results.json (run --parts simulated,shared first)")
    return {"settings": out, "command": f"python benchmarks/ssdm.py --parts decomposition --work {display_path(work)}"}


def part_gap_probes(args, work: Path) -> dict:
    """Three explanations of the 1-step student's gap to unet on the simulator, each measured on the held-out
    subjects of ``simulated`` (PSNR, mean over volumes):

    * matrix: the same subjects simulated at 128 x 128 (the training crop size: the bottleneck attention sees as
      many tokens as in training) against 256 x 256 (4x as many), gaussian1d 8x;
    * mask kind: poisson2d and gaussian2d 8x (the teacher trains on gaussian1d, gaussian2d and poisson2d; unet on
      random1d, equispaced1d, gaussian1d and poisson2d);
    * batch norm: the student's batch-norm layers normalising each test image by its own statistics instead of
      the running ones (gaussian1d 8x, 256 x 256).
    """
    from mrrecon.metrics import psnr

    def run(files, kind, tag):
        cfg = BenchmarkConfig(methods=["zero-filled", "unet", "ssdm", "ssdm:samples=4"], masks=(kind,),
                              accels=(8.0,), seed=0, figures=0, compare_to="ssdm")
        res = run_benchmark([DataSpec(f) for f in files], cfg, work / f"gap-{tag}", progress=False, overwrite=True)
        return {r["method"]: r["psnr_mean"] for r in res["summary"]}

    sims = {size: simulate_dataset(work / f"gap-sim{size}", subjects=args.subjects, size=size, coils=8,
                                   contrasts=("T1", "T2", "PD", "FLAIR"), slices=args.slices, seed=1000)
            for size in (128, 256)}
    out = {"matrix": {f"{size}x{size}": run(files, "gaussian1d", f"gaussian1d-{size}") for size, files in sims.items()},
           "mask_kind": {kind: run(sims[256], kind, f"{kind}-256") for kind in ("poisson2d", "gaussian2d")}}
    student = load("ssdm")
    samples = [next(iter(samples_from_file(f, mask_kind="gaussian1d", acceleration=8.0, seed=0))) for f in sims[256]]
    running = float(np.mean([psnr(s.target, student.reconstruct(s)) for s in samples]))
    for module in student.model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.train()
            module.momentum = 0.0  # normalise by the image's own statistics, leave the running ones untouched
    own = float(np.mean([psnr(s.target, student.reconstruct(s)) for s in samples]))
    out["batch_norm"] = {"running statistics (shipped)": running, "each image's own statistics": own}
    out["command"] = (f"python benchmarks/ssdm.py --parts gap_probes --subjects {args.subjects} --slices {args.slices} "
                      f"--threads {args.threads}")
    return out


def _derived(res: dict) -> dict:
    s = res["summary"]
    student, teacher, unet, zf = (_row(s, m) for m in ("ssdm", "ssdm:steps=128", "unet", "zero-filled"))
    derived = {}
    if student and teacher:
        derived["teacher_minus_student_psnr_db"] = teacher["psnr_mean"] - student["psnr_mean"]
    if student and zf:
        derived["student_minus_zero_filled_psnr_db"] = student["psnr_mean"] - zf["psnr_mean"]
    if student and unet:
        derived["student_minus_unet_psnr_db"] = student["psnr_mean"] - unet["psnr_mean"]
        derived["student_over_unet_seconds"] = student["seconds_mean"] / unet["seconds_mean"]
    spread = sample_spread(res)
    if spread is not None:
        derived["sample_spread"] = spread
    return derived


def part_simulated(args, work: Path) -> dict:
    files = simulate_dataset(work / "sim-data", subjects=args.subjects, size=256, coils=8,
                             contrasts=("T1", "T2", "PD", "FLAIR"), slices=args.slices, seed=1000)
    methods = ["zero-filled", "unet", *SSDM_METHODS]
    runs = _paired_settings([DataSpec(f) for f in files], methods, SIM_SETTINGS, 256, work, "simulated", 1)
    command = (f"python benchmarks/ssdm.py --parts simulated --subjects {args.subjects} --slices {args.slices} "
               f"--threads {args.threads}")
    return {tag: slim_results(res, command, data_root=str(work), derived=_derived(res)) for tag, res in runs.items()}


def part_shared(args, work: Path) -> dict | None:
    root = shared_data_dir(args.data)
    if root is None:
        return None
    out = {}
    for group, names in (("brain", SHARED_BRAIN), ("knee", SHARED_KNEE)):
        specs = [DataSpec(root / SHARED_SINGLE_COIL[n], {"name": n}) for n in names
                 if (root / SHARED_SINGLE_COIL[n]).is_file()]
        if not specs:
            continue
        methods = ["zero-filled", "l1-wavelet", "unet", *SSDM_METHODS[:2], "ssdm:steps=8"]
        # the kinds' default ACS: 12 lines at 8x and 6 at 12x on the 320-column slices (10 and 5 on the 256 mGRE)
        runs = _paired_settings(specs, methods, ((8.0, None), (12.0, None)), 320, work, f"shared-{group}", 2)
        command = f"python benchmarks/ssdm.py --parts shared --threads {args.threads}"
        out[group] = {tag: slim_results(res, command, data_root=os.path.realpath(root), derived=_derived(res))
                      for tag, res in runs.items()}
    return out


def _shared_or_simulated_slice(args, work: Path, accel: float, rel: str):
    root = shared_data_dir(args.data)
    if root is not None and (root / rel).is_file():
        return next(iter(samples_from_file(root / rel, mask_kind="gaussian1d", acceleration=accel, seed=0))), rel
    files = simulate_dataset(work / "sim-one", subjects=1, size=320, coils=1, contrasts=("T1",), slices=1, seed=1001)
    sample = next(iter(samples_from_file(files[0], mask_kind="gaussian1d", acceleration=accel, seed=0)))
    return sample, "simulated 320x320"


def part_timing(args, work: Path) -> dict:
    sample, source = _shared_or_simulated_slice(args, work, 8.0, SHARED_SINGLE_COIL["brain_flair(#7)"])
    ssdm, unet = load("ssdm"), load("unet")
    contiguous = load("ssdm:memory_format=contiguous")  # the layout before channels_last became the default
    stats = time_interleaved({"ssdm": lambda: ssdm.reconstruct(sample), "unet": lambda: unet.reconstruct(sample),
                              "ssdm contiguous": lambda: contiguous.reconstruct(sample)},
                             repeats=args.repeats, warmup=2)
    return {"source": source, "shape": list(sample.shape), "threads": torch.get_num_threads(),
            "environment": environment(), "timing": stats,
            "ssdm_over_unet": stats["ssdm"]["median_ms"] / stats["unet"]["median_ms"],
            "ssdm_contiguous_over_unet": stats["ssdm contiguous"]["median_ms"] / stats["unet"]["median_ms"],
            "paper": {"ssdm_s": 0.45, "unet_s": 0.36, "ratio": 0.45 / 0.36, "hardware": "NVIDIA 3060 GPU"},
            "command": f"python benchmarks/ssdm.py --parts timing --repeats {args.repeats} --threads {args.threads}"}


def part_widths(args, work: Path) -> dict:
    """Time of the 1-step sampler at several network widths against unet, round-robin on one 320x320 slice: the
    shipped student's sampler with freshly initialised networks of each width (time does not depend on the
    values), so the widths a student within the timing target could have are known before training one."""
    from mrrecon.methods.ssdm.model import SSDMModel

    sample, source = _shared_or_simulated_slice(args, work, 8.0, SHARED_SINGLE_COIL["brain_flair(#7)"])
    unet, shipped = load("unet"), load("ssdm")
    fns, params = {"unet": lambda: unet.reconstruct(sample)}, {}
    for width in (8, 12, 16):
        method = load("ssdm")
        config = {**vars(shipped.model.config), "width": width}
        method.model = SSDMModel.from_config(config).eval().to(memory_format=torch.channels_last)
        params[f"ssdm width {width}"] = sum(p.numel() for p in method.model.parameters())
        fns[f"ssdm width {width}"] = (lambda m: lambda: m.reconstruct(sample))(method)
    stats = time_interleaved(fns, repeats=max(3, args.repeats // 4), warmup=2)
    unet_ms = stats["unet"]["median_ms"]
    return {"source": source, "shape": list(sample.shape), "environment": environment(), "timing": stats,
            "parameters": params, "over_unet": {k: v["median_ms"] / unet_ms for k, v in stats.items() if k != "unet"},
            "command": f"python benchmarks/ssdm.py --parts widths --repeats {args.repeats} --threads {args.threads}"}


def part_precision(args, work: Path) -> dict:
    """Is bf16 inference the lever for the time bound? ssdm (1 step) and unet in float32 and under bf16 autocast,
    timed round-robin on the ``timing`` slice, with each one's PSNR there and the share of ssdm's float32 time in
    its bottleneck attention (torch.profiler, self time of the attention kernels)."""
    from torch.profiler import ProfilerActivity, profile

    from mrrecon.metrics import psnr

    sample, source = _shared_or_simulated_slice(args, work, 8.0, SHARED_SINGLE_COIL["brain_flair(#7)"])
    methods = {"ssdm": load("ssdm"), "unet": load("unet")}

    def run(method, bf16: bool):
        def call():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return method.reconstruct(sample)
        return call

    fns = {f"{name} {mode}": run(method, mode == "bf16") for name, method in methods.items()
           for mode in ("fp32", "bf16")}
    quality = {k: float(psnr(fn().float(), sample.target)) for k, fn in fns.items()}
    stats = time_interleaved(fns, repeats=args.repeats, warmup=2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fns["ssdm fp32"]()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    attention = sum(e.self_cpu_time_total for e in events if "attention" in e.key)
    ms = {k: v["median_ms"] for k, v in stats.items()}
    return {"source": source, "shape": list(sample.shape), "threads": torch.get_num_threads(),
            "environment": environment(), "timing": stats, "psnr": quality,
            "ssdm_over_unet": {"fp32": ms["ssdm fp32"] / ms["unet fp32"], "bf16": ms["ssdm bf16"] / ms["unet bf16"]},
            "bf16_speed_up": {"ssdm": ms["ssdm fp32"] / ms["ssdm bf16"], "unet": ms["unet fp32"] / ms["unet bf16"]},
            "ssdm_fp32_attention_share": attention / total,
            "command": f"python benchmarks/ssdm.py --parts precision --repeats {args.repeats} --threads {args.threads}"}


def part_uncertainty(args, work: Path) -> dict:
    methods = {"ssdm (1 step)": load("ssdm"), "ssdm:steps=8": load("ssdm:steps=8")}
    pngs, stats = [], {}
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    for accel in (4.0, 8.0, 12.0):
        sample, source = _shared_or_simulated_slice(args, work, accel, SHARED_SINGLE_COIL["knee_pd(#9)"])
        maps = uncertainty_maps(methods, sample, samples=5)
        target = sample.target.abs().numpy() * sample.meta.scale
        pngs.append(uncertainty_grid_png(target, maps, f"{source}, gaussian1d {accel:g}x: 5 samples"))
        stats[f"{accel:g}x"] = {name: {"mean_std": float(np.mean(std)), "max_std": float(np.max(std)),
                                       "target_max": float(target.max())} for name, (_, std) in maps.items()}
    images = [plt.imread(io.BytesIO(p)) for p in pngs]
    width = max(im.shape[1] for im in images)
    padded = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=1.0) for im in images]
    buf = io.BytesIO()
    plt.imsave(buf, np.concatenate(padded, axis=0), format="png")
    out = REPO / "docs" / "img" / "ssdm_uncertainty.png"
    atomic_write_bytes(out, buf.getvalue())
    return {"figure": "docs/img/ssdm_uncertainty.png", "std_stats": stats,
            "command": f"python benchmarks/ssdm.py --parts uncertainty --threads {args.threads}"}


@torch.no_grad()
def part_noise_levels(args, work: Path) -> dict:
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.data.sample import collate_samples
    from mrrecon.diffusion.schedules import x0_from_v
    from mrrecon.methods.ssdm.registration import find_stages

    files = simulate_dataset(work / "sim-data", subjects=args.subjects, size=256, coils=8,
                             contrasts=("T1", "T2", "PD", "FLAIR"), slices=args.slices, seed=1000)
    samples = [s for f in files for s in samples_from_file(f, mask_kind="gaussian1d", acceleration=8.0, seed=0)]
    batch = collate_samples(samples)
    rows = {}
    for checkpoint in args.checkpoints.split(","):
        stages = find_stages(checkpoint)
        for steps, folder in sorted(stages.items(), reverse=True):
            model = from_pretrained(folder, expected_type="ssdm").eval()
            gen = torch.Generator().manual_seed(0)
            x0, cond, _ = model.simulate_pair(batch, gen)
            energy = float((x0 ** 2).sum())
            zf_error = float(((cond[:, :1] - x0) ** 2).sum()) / energy  # the condition's real part (phase-free x0)
            per_t = {}
            for t in (1, 16, 32, 64, 96, 120, 128):
                tt = torch.full((x0.shape[0],), t)
                x_t = model.schedule.q_sample(x0, tt, torch.randn(x0.shape, generator=gen))
                alpha, sigma = model.schedule.alpha_sigma(tt)
                x0_hat = x0_from_v(x_t, model(x_t, cond, tt), alpha, sigma)  # Alg. 1: alpha_t x_t - sigma_t v_hat
                per_t[str(t)] = float(((x0_hat - x0) ** 2).sum()) / energy
            name = checkpoint if len(stages) == 1 else f"{checkpoint}/{folder.name}"
            rows[name] = {"sampling_steps": steps, "relative_error_by_t": per_t,
                          "zero_filled_relative_error": zf_error}
    return {"data": f"{len(samples)} held-out simulated slices (seed 1000), 256x256, gaussian1d 8x", "stages": rows,
            "command": f"python benchmarks/ssdm.py --parts noise_levels --checkpoints {args.checkpoints} "
                       f"--subjects {args.subjects} --slices {args.slices} --threads {args.threads}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="simulated,shared,timing,uncertainty")
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--slices", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--checkpoints", default="ssdm-small",
                    help="noise_levels: comma-separated ssdm checkpoints (folders or shipped names; every stage)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=None, help="shared data folder (default: $MRRECON_SHARED_DATA or ../shared/data)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--work", default=None, help="benchmark folders (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="mrrecon-ssdm-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    parts = {"simulated": part_simulated, "shared": part_shared, "timing": part_timing, "precision": part_precision,
             "uncertainty": part_uncertainty, "noise_levels": part_noise_levels, "widths": part_widths,
             "decomposition": part_decomposition, "gap_probes": part_gap_probes}
    for name in args.parts.split(","):
        if name not in parts:
            raise SystemExit(f"unknown part {name!r}; choose from {', '.join(parts)}")
        result = parts[name](args, work)
        if result is None:
            print(json.dumps({name: "skipped: shared data not found"}))
            continue
        path = out / f"ssdm_{name}.json"
        atomic_write_json(path, result)
        print(json.dumps({"written": str(path), "work": str(work)}), flush=True)


if __name__ == "__main__":
    main()
