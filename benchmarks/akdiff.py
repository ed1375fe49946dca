"""AK-Diffusion (``akdiff``) and its ablations beside the classical k-space and CS baselines (paper Tables II-III).

Runs ``mrrecon.eval.benchmark.run_benchmark`` (the same Samples, seeded masks and fastMRI-convention metrics for
every method) on two data groups, each written to ``benchmarks/results/akdiff_<group>.json`` (slim: summary and
volume rows, paths relative to the data root), at each matrix of ``--matrices`` (default ``128,full``):

* ``sim``: held-out subjects of the embedded simulator (seed 2; configs/akdiff-small.yaml trains on seed 0 and
  validates on seed 1), 8 coils, full field of view, one slice per file, ``--sim-files`` files (contrasts
  cycled). ``128``: simulated at 128 x 128, the training matrix; ``full``: simulated at 256 x 256 (the same
  anatomy at twice the resolution), the generalisation check;
* ``shared``: the multi-coil brains of ../shared/data (#17 8-ch 320 x 256 (168 acquired columns), #18 and #20
  4-ch 256 x 256). ``128``: the central 128 x 128 of their k-space (``kspace_crop``: the same field of view
  at the training matrix); ``full``: the full matrix (#17: its 320 x 168 acquired columns).

Settings per group: ``uniform1d`` 6x (the paper's "uniform 6x", with ACS) for ``--methods``; the
super-resolution setting ``acs_only`` (a centred box of 128/320 of the matrix per axis, i.e. center_fraction
0.4, nominal 6.25x) for ``--sr-methods``; ``--random`` adds ``random1d`` 6x. ``--checkpoint DIR`` runs the
``akdiff`` methods with the model in DIR (e.g. runs/akdiff-small/final) instead of weights/akdiff-small.
``--compare-to METHOD`` adds each setting's paired differences against METHOD (95 % intervals over volumes).

Analysis groups:

* ``sampler``: Algorithm 1's settings the paper leaves open (the corrector's r, the output: line 16's z_0 or the
  last step's corrected projection) and M, each variant of ``--variants`` one ``akdiff:<options>`` method, on
  ``--sim-files`` slices of the validation seed (1) at 128 x 128, uniform1d 6x: the defaults are chosen here,
  never on the held-out seed 2;

* ``diagnostics``: on one held-out simulated slice (T1, 128 x 128 full FOV, seed 2): (a) the score-matching
  loss of the network relative to that of h = z (no network) at several t, same noise draw (< 1: the network
  denoises / deblurs); (b) unless ``--skip-sampling``, PC sampling (uniform 6x, N = 50, M = 1, SLR) with the exact
  h (h = z(0), an oracle: checks Algorithm 1 itself), with h = z (an untrained r_theta = 0) and with the
  network, beside zero-filling;
* ``leak``: what the network sees outside the coil subspace. Training perturbs only S̄S̄^* z (eq. 8), so the
  component (I - S̄S̄^*) z(t) = G_t (I - S̄S̄^*) z(0) stays noise-free, and the loss (eq. 11) never looks at
  (I - S̄S̄^*) h. On ``--sim-files`` held-out slices (seed 2, 128 x 128) and the networks of ``--checkpoint`` and
  ``--checkpoint-no-sscoil``, per t: the in-subspace loss relative to h = z (as ``diagnostics``) with z(t) drawn
  as in training (noise in the subspace) and with isotropic noise (the complement noised too), and, for the
  training input, the error outside the subspace over the error inside, ||(I - S̄S̄^*) G_t (h - z(0))||^2 /
  ||S̄^* G_t (h - z(0))||^2 (what the loss never sees); plus the energy of z(0) outside the
  ESPIRiT subspace at calibration 24 and 32;
* ``units``: the numbers behind the units and sigma_0 choices (docs/akdiff.md): per training set (the
  configs/akdiff-small.yaml slices at 128, full FOV; the same subjects simulated at 256; the earlier 96 x 96
  crops of the 256 set) the k-space peak / RSS image peak, the noise floor (robust std of the k-space corners,
  and the simulator's true noise std) in the current and in the earlier units, where sigma(t) crosses it for
  sigma_0 = 0.01 (paper) and for the noise-floor rule, and the width of G_T in samples; and the noise floor that
  ``sigma_min_rule: noise_floor`` stores for ``--config``;
* ``speed``: seconds per training step (forward, backward, Adam step; batch 1 = 8 coils at 128 x 128) at
  ``--threads`` of the candidate networks of ``--candidates``, fp32 and bf16 autocast, on the training slices.

Usage:
    python benchmarks/akdiff.py --group sim [--sim-files 4] [--matrices 128,full] [--methods ...] [--threads 1]
    python benchmarks/akdiff.py --group shared [--data DIR] [--matrices 128,full]
    python benchmarks/akdiff.py --group sampler [--variants "output=state;output=corrected"] [--sim-files 4]
    python benchmarks/akdiff.py --group diagnostics [--checkpoint runs/akdiff-small/final] [--skip-sampling]
    python benchmarks/akdiff.py --group leak [--sim-files 8] [--checkpoint DIR] [--checkpoint-no-sscoil DIR]
    python benchmarks/akdiff.py --group units [--config configs/akdiff-small.yaml]
    python benchmarks/akdiff.py --group speed [--steps 6] [--candidates a,b]
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import math  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import display_path, environment, shared_data_dir, slim_results  # noqa: E402

from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, read_manifest, run_benchmark  # noqa: E402
from mrrecon.eval.paired import paired_table_markdown  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

METHODS = "zero-filled,grappa,loraks,l1-wavelet,akdiff,akdiff-no-sscoil,akdiff-no-slr"
SR_METHODS = "zero-filled,akdiff"
SR_FRACTION = 128 / 320  # paper: 128 x 128 ACS of a 320 x 320 matrix
TRAIN_MATRIX = 128
VALIDATION_SEED = 1  # the sampler group tunes Algorithm 1's free settings on these, never on HELDOUT_SEED
# Algorithm 1's settings the paper does not give (r, the output) and M, tried by the sampler group
SAMPLER_VARIANTS = ("snr=0.16;output=corrected;snr=0.08:output=corrected;snr=0.04:output=corrected;"
                    "corrector_steps=0;corrector_steps=0:output=corrected")
FULL_SIM_MATRIX = 256
HELDOUT_SEED = 2  # configs/akdiff-small.yaml: seed 0 (train), 1 (validation)
# network candidates of the speed group (model.params overrides of configs/akdiff-small.yaml)
CANDIDATES = {
    "nf16-1222-rb1": {"nf": 16, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_levels": []},
    "nf16-1244-rb2": {"nf": 16, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_levels": []},
    "nf16-1222-rb2": {"nf": 16, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 2, "attn_levels": []},
    "nf8-1244-rb1": {"nf": 8, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 1, "attn_levels": []},
}


def heldout_folder(size: int, seed: int = HELDOUT_SEED, slices: int = 2) -> Path:
    """Held-out simulated subjects (4 subjects x 4 contrasts, 8 coils, full FOV at ``size``), generated once."""
    folder = REPO / "runs" / "cache" / f"heldout-seed{seed}-s{slices}-n{size}"
    if not sorted(folder.glob("sub*_*.h5")):
        simulate_dataset(folder, subjects=4, slices=slices, seed=seed, size=size, coils=8)
    return folder


def sim_specs(n_files: int, size: int = TRAIN_MATRIX, seed: int = HELDOUT_SEED) -> tuple[list[DataSpec], Path]:
    folder = heldout_folder(size, seed)
    files = sorted(folder.glob("sub*_*.h5"))
    # one file per subject and contrast, cycling through contrasts so that every contrast appears
    by_contrast: dict[str, list[Path]] = {}
    for f in files:
        by_contrast.setdefault(Path(f).stem.split("_")[-1], []).append(Path(f))
    order = [f for group in zip(*by_contrast.values(), strict=False) for f in group]
    return [DataSpec(f, {}) for f in order[:n_files]], folder


def shared_specs(root: Path, matrix: str = "full") -> list[DataSpec]:
    """The shared multi-coil brains; ``matrix='128'``: the central 128 x 128 of their k-space (same FOV)."""
    manifest = REPO / "benchmarks" / "shared-data.yaml"
    multi = ("multicoil_brain8ch_kspace_espirit", "multicoil_gpunufft/img_brain", "multicoil_brain4ch_ugmpi")
    specs = [s for s in read_manifest(manifest, str(root)) if any(m in str(s.path) for m in multi)]
    if matrix == "full":
        return specs
    n = int(matrix)
    return [DataSpec(s.path, {**s.options, "kspace_crop": (n, n)}) for s in specs]


def command_line() -> str:
    """This run's command as results files record it: paths via display_path (no machine paths), quoted."""
    args = [display_path(a) if os.path.exists(os.path.expanduser(a)) else a for a in sys.argv[1:]]
    return "python benchmarks/akdiff.py " + " ".join(shlex.quote(a) for a in args)


def mask_settings(methods: str, sr_methods: str, random: bool) -> list[tuple]:
    """(mask, acceleration, centre fraction, methods) of one group: uniform1d 6x, random1d 6x, acs_only."""
    settings = [("uniform1d", 6.0, None, methods)]
    if random:
        settings.append(("random1d", 6.0, None, methods))
    if sr_methods:
        settings.append(("acs_only", 6.25, SR_FRACTION, sr_methods))
    return settings


def run_group(name: str, specs: list[DataSpec], data_root: Path, settings: list[tuple], tag: str,
              compare_to: str | None = None) -> dict:
    """One benchmark per mask setting; ``compare_to``: paired differences against that method wherever it is
    among the setting's methods."""
    out_dir = REPO / "runs" / "bench" / f"akdiff_{name}_{tag}"
    parts = {}
    for mask, accel, cf, methods in settings:
        ref = compare_to if compare_to in methods.split(",") else None
        cfg = BenchmarkConfig(methods=methods, masks=(mask,), accels=(accel,), center_fraction=cf, seed=0,
                              max_slices=1, warmup=False, figures=0, compare_to=ref)
        res = run_benchmark(specs, cfg, out_dir / f"{mask}", progress=False, overwrite=True)  # measure anew
        parts[f"{tag}/{mask}_{accel:g}x"] = slim_results(res, command_line(),
                                                         data_root=data_root)
    return parts


def markdown(parts: dict) -> str:
    lines = ["| matrix / setting | method | n | NMSE | PSNR (dB) | SSIM | s / slice | NFE |",
             "|---|---|---|---|---|---|---|---|"]

    def pm(mean: float, std: float, digits: int) -> str:
        return f"{mean:.{digits}f}" if std != std else f"{mean:.{digits}f} ± {std:.{digits}f}"  # n = 1: no std

    for setting, res in parts.items():
        for s in res["summary"]:
            nfe = s.get("nfe")
            lines.append(f"| {setting} | {s['method']} | {s['n']} | {s['nmse_mean']:.4f} | "
                         f"{pm(s['psnr_mean'], s['psnr_std'], 2)} | {pm(s['ssim_mean'], s['ssim_std'], 4)} | "
                         f"{s['seconds_mean']:.1f} | {'' if nfe is None else nfe} |")
    for setting, res in parts.items():  # --compare-to: the paired differences of each setting
        if res.get("paired"):
            lines += ["", f"{setting}: " + paired_table_markdown(res["paired"])]
    return "\n".join(lines)


def use_checkpoint(checkpoint: str | None, no_sscoil: str | None = None) -> None:
    """Point the ``akdiff`` methods' default weights at run folders (a temporary MRRECON_WEIGHTS of links)."""
    if checkpoint is None and no_sscoil is None:
        return
    from mrrecon.core.weights import weights_dir

    tmp = Path(tempfile.mkdtemp(prefix="akdiff-weights-"))
    shipped = weights_dir()
    for entry in shipped.iterdir() if shipped.is_dir() else []:
        (tmp / entry.name).symlink_to(entry.resolve())
    for name, path in (("akdiff-small", checkpoint), ("akdiff-no-sscoil-small", no_sscoil)):
        if path is not None:
            link = tmp / name
            if link.is_symlink():
                link.unlink()
            link.symlink_to(Path(path).resolve())
    os.environ["MRRECON_WEIGHTS"] = str(tmp)


# ---------------------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------------------
def diagnostics(checkpoint: str = "akdiff-small", sampling: bool = True, ts=(0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
                ) -> dict:
    """Loss ratio per t and PC sampling with exact / identity / trained h on one held-out slice (see docstring)."""
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.data.datasets import samples_from_file
    from mrrecon.methods.akdiff import AKDiffusionModel, PCSampler, complex_noise
    from mrrecon.metrics import psnr, ssim
    from mrrecon.physics.coils import rss
    from mrrecon.physics.fft import ifft2c

    f = heldout_folder(TRAIN_MATRIX) / "sub000_T1.h5"
    under = next(iter(samples_from_file(f, mask_kind="uniform1d", acceleration=6, seed=0, max_slices=1)))
    full = next(iter(samples_from_file(f, mask_kind="uniform1d", acceleration=1, seed=0, max_slices=1)))
    k_full = full.kspace * (full.meta.scale / under.meta.scale)  # the undersampled sample's units
    model = from_pretrained(checkpoint)
    z0 = k_full[None] * model.kspace_scale(k_full)
    sub = model.training_subspace(z0)
    ratios = {}
    with torch.no_grad():
        for t in ts:
            n = complex_noise(z0.shape, generator=torch.Generator().manual_seed(0))
            tt = torch.tensor([t])
            net = model.score_matching_loss(z0, sub, t=tt, noise=n)
            ident = model.score_matching_loss(z0, sub, t=tt, noise=n, h_fn=lambda z, _t: z)
            ratios[f"{t:g}"] = float(net / ident)
    out = {"slice": f"{f.name} slice {under.meta.slice}, {tuple(under.kspace.shape[-2:])} full FOV, uniform1d 6x",
           "checkpoint": str(checkpoint), "sigma_0": model.sde.sigma_min,
           "loss_ratio_network_over_identity": ratios}
    if not sampling:
        return out

    class Exact:
        sde, kspace_scale = model.sde, model.kspace_scale

        def __call__(self, z, t):
            return (k_full[None] * model.kspace_scale(k_full)).to(z.dtype)

    rows = {"zero-filled": rss(ifft2c(under.kspace))}
    timings = {}
    for name, h in (("exact h (oracle)", Exact()), ("h = z (r_theta = 0)", AKDiffusionModel(model.config_dict())),
                    (f"trained ({checkpoint})", model)):
        t0 = time.perf_counter()
        rows[name] = PCSampler(h).reconstruct_image(under.kspace, under.mask)
        timings[name] = time.perf_counter() - t0
    out["pc_sampling"] = {k: {"psnr": psnr(under.target, v), "ssim": ssim(under.target, v),
                              "seconds": timings.get(k)} for k, v in rows.items()}
    return out


def subspace_leak(networks: dict[str, str], n_files: int, ts=(0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                  calib_sizes=(24, 32)) -> dict:
    """The ``leak`` group (module docstring): ESPIRiT subspace of each held-out slice's fully sampled k-space at
    the first network's calibration size, the same noise draw for every network, t and input."""
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.data.datasets import samples_from_file
    from mrrecon.methods.akdiff import complex_noise
    from mrrecon.methods.akdiff.coil_subspace import MapsSubspace
    from mrrecon.physics.coils import espirit_maps

    models = {name: from_pretrained(path) for name, path in networks.items()}
    first = next(iter(models.values()))
    specs, _root = sim_specs(n_files, TRAIN_MATRIX)
    energy = {c: [] for c in calib_sizes}
    rows = {name: {f"{t:g}": {"train_input": [], "isotropic_input": [], "complement_error": []} for t in ts}
            for name in models}
    for i, spec in enumerate(specs):
        full = next(iter(samples_from_file(spec.path, mask_kind="uniform1d", acceleration=1, seed=0,
                                           max_slices=1)))
        z0 = full.kspace[None].to(torch.complex64)
        z0 = z0 * first.kspace_scale(z0)
        subspaces = {c: MapsSubspace(espirit_maps(z0, calib_size=c))
                     for c in {*calib_sizes, first.config.calib_size}}
        for c in calib_sizes:
            energy[c].append(float((z0 - subspaces[c].project(z0)).abs().square().sum() / z0.abs().square().sum()))
        sub = subspaces[first.config.calib_size]
        with torch.no_grad():
            for t in ts:
                tt = torch.tensor([t])
                n = complex_noise(z0.shape, generator=torch.Generator().manual_seed(1000 * i + int(100 * t)))
                g = first.sde.attenuation(tt, z0.shape[-2:], z0.device)
                std = first.sde.kernel_std(tt).to(torch.float32).reshape(-1, 1, 1, 1)
                inputs = {"train_input": g * z0 + std * sub.project(n), "isotropic_input": g * z0 + std * n}
                for name, model in models.items():
                    row = rows[name][f"{t:g}"]
                    for key, z_t in inputs.items():
                        err = g * (model(z_t, tt, project=sub.project) - z0)
                        inside = sub.combined_energy(err)
                        row[key].append(float(inside / sub.combined_energy(g * (z_t - z0))))
                        if key == "train_input":  # what the loss never sees, on the input it was trained on
                            row["complement_error"].append(float((err.abs().square().sum() - inside) / inside))
    mean = statistics.fmean
    return {"slices": [display_path(s.path) for s in specs], "matrix": TRAIN_MATRIX,
            "networks": {k: str(v) for k, v in networks.items()},
            "energy_outside_espirit_subspace": {str(c): {"mean": mean(v), "max": max(v)} for c, v in energy.items()},
            "relative_error": {name: {t: {k: mean(v) for k, v in r.items()} for t, r in per_t.items()}
                               for name, per_t in rows.items()}}


# ---------------------------------------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------------------------------------
def _training_files(config_path: str, size: int | None = None) -> tuple[object, list[Path]]:
    from mrrecon.train.config import load_config
    from mrrecon.train.data import prepare_simulated

    overrides = [] if size is None else [f"data.simulation.size={size}"]
    cfg = load_config(config_path, overrides)
    return cfg, prepare_simulated(cfg.data).train


def _slices(path: Path, crop: int | None = None):
    """Fully sampled k-space (C, H, W) of every slice of a file; ``crop``: centred image-domain crop (the earlier
    training set-up; an image crop keeps the per-pixel noise std)."""
    from mrrecon.data.fastmri import FastMRIFile, center_crop
    from mrrecon.physics.fft import fft2c, ifft2c

    f = FastMRIFile(path)
    for s in range(f.num_slices):
        k = f.kspace(s)
        if crop is not None:
            k = fft2c(center_crop(ifft2c(k), (crop, crop)))
        yield k.to(torch.complex64)


def _crossing_t(level: float, sigma_0: float, sigma_max: float = 1.0) -> float:
    """t where sigma(t) = sigma_0 (sigma_max / sigma_0)^t reaches ``level`` (0 when sigma_0 >= level)."""
    if sigma_0 >= level:
        return 0.0
    return math.log(level / sigma_0) / math.log(sigma_max / sigma_0)


def units_report(config_path: str, max_slices: int | None = None) -> dict:
    """The measurements behind the units and sigma_0 choices (module docstring, group ``units``)."""
    import h5py

    from mrrecon.methods.akdiff import AKDiffusionModel
    from mrrecon.methods.akdiff.recipe import measure_training_noise_floor
    from mrrecon.methods.akdiff.units import robust_noise_std
    from mrrecon.physics.coils import rss
    from mrrecon.physics.fft import ifft2c
    from mrrecon.train.data import build_training_slices

    cfg, files128 = _training_files(config_path)
    params = dict(cfg.model.params)
    probe = {**params, "sigma_min_rule": "absolute", "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
             "attn_levels": []}
    new = AKDiffusionModel(probe)
    old = AKDiffusionModel({**probe, "kspace_scaling": "size", "reference_size": 128, "frequency_units": "pixel",
                            "lowpass_std": 0.05, "kspace_weight_f0": 1 / 64})
    _, files256 = _training_files(config_path, FULL_SIM_MATRIX)
    sets = {"128 full FOV (training)": (files128, None, TRAIN_MATRIX),
            "256 full FOV (same subjects)": (files256, None, FULL_SIM_MATRIX),
            "96 crop of 256 (earlier training)": (files256, 96, 96),
            "128 crop of 256 (earlier validation)": (files256, 128, 128)}

    def true_sigma(path: Path) -> float:
        with h5py.File(path, "r") as h:
            return float(h.attrs["noise_sigma"])

    rows = {}
    for label, (files, crop, matrix) in sets.items():
        peak_img, floors_new, floors_old, true_new, ratio_true = [], [], [], [], []
        n = 0
        for path in files:
            sigma_true = true_sigma(path)
            for k in _slices(path, crop):
                s_new, s_old = float(new.kspace_scale(k)), float(old.kspace_scale(k))
                peak_img.append(float(k.abs().max() / rss(ifft2c(k)).max()))
                est = float(robust_noise_std(k)[0])
                floors_new.append(est * s_new)
                floors_old.append(est * s_old)
                true_new.append(sigma_true * s_new)
                ratio_true.append(est / sigma_true)
                n += 1
            if max_slices is not None and n >= max_slices:
                break
        med = statistics.median
        floor_new, floor_old = med(floors_new), med(floors_old)
        rows[label] = {
            "slices": n, "matrix": matrix,
            "kspace_peak_over_rss_image_peak_median": med(peak_img),
            "kspace_peak_over_rss_image_peak_range": [min(peak_img), max(peak_img)],
            "noise_floor_peak_units": floor_new, "noise_floor_peak_units_true": med(true_new),
            "noise_floor_earlier_units": floor_old,
            "corner_estimate_over_true_noise_std_median": med(ratio_true),
            "t_where_sigma_reaches_floor_sigma0_0.01_peak_units": _crossing_t(floor_new, 0.01),
            "t_where_sigma_reaches_floor_sigma0_0.01_earlier_units": _crossing_t(floor_old, 0.01),
            "G_T_std_samples_fov": new.config.lowpass_std,
            "G_T_std_samples_pixel_0.05": 0.05 * matrix,
        }
    # the number sigma_min_rule: noise_floor stores for this config: the recipe's measurement on the training slices
    train_set = build_training_slices(cfg.data, cfg.train.seed, files128)
    count = len(train_set) if max_slices is None else min(len(train_set), max_slices)
    floor = measure_training_noise_floor(params, (train_set[i].kspace for i in range(count)))
    factor = float(params.get("sigma_min_noise_factor", 1.0))
    rule = {"config": os.path.relpath(config_path, REPO), "training_slices": count, "noise_floor": floor,
            "sigma_min_noise_factor": factor, "sigma_0": factor * floor,
            "t_where_sigma_reaches_floor": _crossing_t(floor, factor * floor),
            "paper_sigma_0_over_floor": 0.01 / floor}
    for label in ("256 full FOV (same subjects)",):
        rule[f"sigma_0_over_floor_at {label}"] = factor * floor / rows[label]["noise_floor_peak_units"]
    return {"kspace_peak": new.config.kspace_peak, "sets": rows, "noise_floor_rule": rule}


# ---------------------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------------------
def speed(config_path: str, candidates: list[str], steps: int, warmup: int) -> list[dict]:
    """Seconds per optimiser step (training_loss forward + backward + clip + Adam) per candidate and precision."""
    from mrrecon.data.sample import collate_samples
    from mrrecon.methods.akdiff import AKDiffusionModel
    from mrrecon.train.data import build_training_slices
    from mrrecon.utils.cpu import cpu_has_native_bf16

    cfg, files = _training_files(config_path)
    train_set = build_training_slices(cfg.data, cfg.train.seed, files)
    batches = [collate_samples([train_set[i]]) for i in range(steps + warmup)]
    params = dict(cfg.model.params)
    if params.get("sigma_min_rule") == "noise_floor" and params.get("noise_floor") is None:
        params["noise_floor"] = 0.01
    rows = []
    modes = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    for name in candidates:
        for mode in modes:
            torch.manual_seed(0)
            model = AKDiffusionModel({**params, **CANDIDATES[name]}).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            times, losses = [], []
            for i, batch in enumerate(batches):
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    loss = model.training_loss(batch)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.float().backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
                    losses.append(float(loss))
            rows.append({"candidate": name, "params": CANDIDATES[name], "mode": mode,
                         "parameters": model.num_parameters(), "seconds_per_step": statistics.median(times),
                         "seconds_per_step_min": min(times), "steps_timed": len(times),
                         "finite_loss": all(math.isfinite(v) for v in losses)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", required=True,
                    choices=("sim", "shared", "sampler", "diagnostics", "leak", "units", "speed"))
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--sr-methods", default=SR_METHODS)
    ap.add_argument("--compare-to", default=None,
                    help="sim / shared: paired differences (95 %% intervals over volumes) against this method")
    ap.add_argument("--random", action="store_true", help="also random1d 6x")
    ap.add_argument("--sim-files", type=int, default=2)
    ap.add_argument("--matrices", default=f"{TRAIN_MATRIX},full",
                    help="128 (the training matrix: simulated at 128 / central 128 x 128 k-space of the shared "
                         "data) and/or full (simulated at 256 / the shared data's full matrix)")
    ap.add_argument("--data", default=None, help="shared real data folder")
    ap.add_argument("--checkpoint", default=None, help="model folder for akdiff / akdiff-no-slr (and diagnostics)")
    ap.add_argument("--checkpoint-no-sscoil", default=None, help="model folder for akdiff-no-sscoil")
    ap.add_argument("--variants", default=SAMPLER_VARIANTS,
                    help="sampler: ';'-separated akdiff option strings (a:b=c:d=e), each one method")
    ap.add_argument("--skip-sampling", action="store_true", help="diagnostics: loss ratios only")
    ap.add_argument("--config", default=str(REPO / "configs" / "akdiff-small.yaml"))
    ap.add_argument("--max-slices", type=int, default=None, help="units: slices per set (default: all)")
    ap.add_argument("--candidates", default="nf16-1222-rb1,nf16-1244-rb2", help=f"speed: of {list(CANDIDATES)}")
    ap.add_argument("--steps", type=int, default=6, help="speed: timed steps per candidate and mode")
    ap.add_argument("--warmup", type=int, default=2, help="speed: untimed steps first")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="default benchmarks/results/akdiff_<group>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = command_line()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"akdiff_{args.group}.json")
    if args.group in ("diagnostics", "leak", "units", "speed"):
        if args.group == "diagnostics":
            res = diagnostics(args.checkpoint or "akdiff-small", sampling=not args.skip_sampling)
        elif args.group == "leak":
            res = subspace_leak({"akdiff": args.checkpoint or "akdiff-small",
                                 "akdiff-no-sscoil": args.checkpoint_no_sscoil or "akdiff-no-sscoil-small"},
                                args.sim_files)
        elif args.group == "units":
            res = units_report(args.config, args.max_slices)
        else:
            res = {"rows": speed(args.config, args.candidates.split(","), args.steps, args.warmup)}
        print(res)
        atomic_write_json(out, {"description": f"AK-Diffusion {args.group} (benchmarks/akdiff.py docstring)",
                                "command": command, "environment": environment(), **res})
        return
    use_checkpoint(args.checkpoint, args.checkpoint_no_sscoil)
    if args.group == "sampler":  # uniform1d 6x on validation-seed slices at the training matrix
        specs, root = sim_specs(args.sim_files, TRAIN_MATRIX, seed=VALIDATION_SEED)
        methods = ",".join(["zero-filled"] + [f"akdiff:{v}" for v in args.variants.split(";")])
        parts = run_group(args.group, specs, root, mask_settings(methods, "", random=False), f"val{TRAIN_MATRIX}")
    else:
        parts = matrix_groups(args)
        if parts is None:
            print("shared data not found (set MRRECON_SHARED_DATA): nothing to do")
            return
    table = markdown(parts)
    print(table)
    atomic_write_json(out, {"description": __doc__.split("\n\n")[0], "group": args.group, "command": command,
                            "markdown": table, "settings": parts})


def matrix_groups(args) -> dict | None:
    """The sim / shared groups at each of --matrices (None: the shared data is absent)."""
    settings = mask_settings(args.methods, args.sr_methods, args.random)
    parts = {}
    for matrix in args.matrices.split(","):
        if args.group == "sim":
            size = TRAIN_MATRIX if matrix == str(TRAIN_MATRIX) else FULL_SIM_MATRIX
            specs, root = sim_specs(args.sim_files, size)
            tag = f"sim{size}"
        else:
            root = shared_data_dir(args.data)
            if root is None:
                return None
            specs = shared_specs(root, matrix)
            tag = f"kspace{matrix}" if matrix != "full" else "full"
        parts.update(run_group(args.group, specs, root, settings, tag, args.compare_to))
    return parts


if __name__ == "__main__":
    main()
