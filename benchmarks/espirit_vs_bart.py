"""ESPIRiT maps of mrrecon vs BART's ``ecalib`` on real 8-channel brain k-space: agreement and run time.

For each dataset, both estimators run on the same k-space (one ESPIRiT map set) with matched settings
(calibration region, kernel 6, our ``threshold`` t <-> BART ``-t t^2``, same crop), and, separately, BART with its
own defaults against ours with the translated parameters. Agreement is measured inside the body, where the RSS of
the coil images is above ``--mask-fraction`` (default 0.1) of its maximum (the image is box-smoothed 5x5 first
so that undersampling artefacts do not punch holes in the mask):

* ``corr_total``  = |<S_ours, S_bart>| / (||S_ours|| ||S_bart||) over all coils and masked pixels,
* ``corr_per_coil`` = the same per coil (sum over masked pixels only),
* ``pixel_corr_mean`` = mean over masked pixels of |S_ours(r)^H S_bart(r)| / (||S_ours(r)|| ||S_bart(r)||)
  (insensitive to the per-pixel phase convention: agreement of the sensitivity *directions*).

The inner products are magnitude-weighted (large sensitivities count more) and sensitive to the phase
convention, which both tools share (rotation relative to the first principal component of the calibration data).

Run times: ``ours_s`` is the wall time of :func:`mrrecon.physics.coils.espirit_maps` (median of ``--repeats``
calls, plus the first call), ``bart_s`` the wall time of the ``bart ecalib`` process (median of the same number of
runs; includes process start-up and reading/writing the small .cfl files).

Usage:  python benchmarks/espirit_vs_bart.py [--data DIR] [--out benchmarks/results/espirit_vs_bart.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io as sio
import torch
import torch.nn.functional as F

from mrrecon.data.formats import read_cfl, write_cfl
from mrrecon.physics.coils import espirit_maps, rss
from mrrecon.physics.fft import ifft2c

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import shared_data_dir  # noqa: E402


# ---- data --------------------------------------------------------------------------------------------------
def load_datasets(root: Path) -> dict[str, dict]:
    """(C, H, W) complex64 k-space per dataset, plus the calibration size BART would find."""
    out = {}
    mat = root / "multicoil_brain8ch_kspace_espirit" / "brain_alias_8ch.mat"
    if mat.exists():
        k = sio.loadmat(mat)["DATA"]  # (320, 256, 8): x, y, coil
        out["brain_alias_8ch (fully sampled)"] = {
            "file": str(mat.relative_to(root)),
            "kspace": np.ascontiguousarray(np.moveaxis(k, -1, 0)).astype(np.complex64),
            "calib": 24,
        }
    ksp = root / "multicoil_brain8ch_kspace_bart" / "ksp"
    if Path(f"{ksp}.cfl").exists():
        k = read_cfl(ksp).squeeze()  # (1, 180, 230, 8) -> (180, 230, 8)
        out["bart_ksp (Poisson-disc, ~R=8)"] = {
            "file": str(ksp.relative_to(root)) + ".cfl",
            "kspace": np.ascontiguousarray(np.moveaxis(k, -1, 0)),
            "calib": 24,  # BART and we both shrink to the fully sampled 20x20 centre
        }
    return out


# ---- comparison -----------------------------------------------------------------------------------------
def body_mask(kspace: torch.Tensor, fraction: float) -> torch.Tensor:
    image = rss(ifft2c(kspace))
    smooth = F.avg_pool2d(image[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    return smooth > fraction * smooth.max()


def agreement(ours: torch.Tensor, bart: torch.Tensor, mask: torch.Tensor) -> dict:
    a, b = ours[:, mask].to(torch.complex128), bart[:, mask].to(torch.complex128)  # (C, P)
    per_coil = (a.conj() * b).sum(1).abs() / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    total = (a.conj() * b).sum().abs() / (a.norm() * b.norm())
    pix = (a.conj() * b).sum(0).abs() / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-30)
    both = (a.norm(dim=0) > 0) & (b.norm(dim=0) > 0)
    return {
        "corr_total": round(float(total), 5),
        "corr_per_coil": [round(float(v), 5) for v in per_coil],
        "corr_per_coil_mean": round(float(per_coil.mean()), 5),
        "pixel_corr_mean": round(float(pix[both].mean()), 5),
        "masked_pixels": int(mask.sum()),
        "masked_pixels_zero_in_ours": int((a.norm(dim=0) == 0).sum()),
        "masked_pixels_zero_in_bart": int((b.norm(dim=0) == 0).sum()),
    }


def run_bart(kspace: np.ndarray, flags: list[str], repeats: int, workdir: Path) -> tuple[np.ndarray, list[float]]:
    c, h, w = kspace.shape
    # BART dims: (x, y, z, coil) in Fortran order; our (C, H, W) -> (H, W, 1, C).
    write_cfl(workdir / "ksp", np.moveaxis(kspace, 0, -1)[:, :, None, :])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            ["bart", "ecalib", *flags, str(workdir / "ksp"), str(workdir / "sens")], check=True, capture_output=True
        )
        times.append(time.perf_counter() - t0)
    sens = read_cfl(workdir / "sens").reshape(h, w, c)  # (x, y, 1, coil, 1 map)
    return np.moveaxis(sens, -1, 0), times


def run_ours(kspace: torch.Tensor, kwargs: dict, repeats: int) -> tuple[torch.Tensor, list[float]]:
    times = []
    for _ in range(repeats + 1):  # the first call (cold) is reported separately
        t0 = time.perf_counter()
        maps = espirit_maps(kspace, **kwargs)
        times.append(time.perf_counter() - t0)
    return maps, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=None, help="shared data folder (default: $MRRECON_SHARED_DATA or ../shared/data)"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "espirit_vs_bart.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mask-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenMP (BART) threads")
    args = parser.parse_args(argv)

    root = shared_data_dir(args.data)
    if root is None:
        print("shared data not found; set MRRECON_SHARED_DATA or pass --data", file=sys.stderr)
        return 2
    if shutil.which("bart") is None:
        print("the `bart` binary is not installed", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    bart_version = subprocess.run(["bart", "version"], capture_output=True, text=True).stdout.strip()

    settings = {
        # ours (threshold on sigma/sigma_max, crop on the eigenvalue) <-> BART (-t on (sigma/sigma_max)^2, -c).
        # -O: BART's exact (LAPACK) per-pixel eigendecomposition instead of its default 30 orthogonal
        # iterations, which do not separate near-equal eigenvalues (aliased regions of a too-small FOV).
        "our defaults (t=0.02, c=0.95) vs BART -t 0.0004 -c 0.95 -O (exact eig)": (
            dict(threshold=0.02, crop=0.95),
            ["-t", "0.0004", "-c", "0.95", "-O"],
        ),
        "our defaults (t=0.02, c=0.95) vs BART -t 0.0004 -c 0.95 (orthogonal iteration)": (
            dict(threshold=0.02, crop=0.95),
            ["-t", "0.0004", "-c", "0.95"],
        ),
        "BART defaults (-t 0.001 -c 0.8) vs ours (t=0.0316, c=0.8)": (dict(threshold=0.001**0.5, crop=0.8), []),
    }
    results = {
        "command": " ".join(["python benchmarks/espirit_vs_bart.py", *(sys.argv[1:] if argv is None else argv)]),
        "bart_version": bart_version,
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "mask_fraction": args.mask_fraction,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in load_datasets(root).items():
            k_np = data["kspace"]
            k = torch.from_numpy(k_np)
            mask = body_mask(k, args.mask_fraction)
            entry = {"file": data["file"], "shape": list(k_np.shape), "settings": {}}
            for label, (ours_kw, bart_flags) in settings.items():
                kw = dict(calib_size=data["calib"], kernel_size=6, num_maps=1, **ours_kw)
                flags = ["-m1", "-k", "6", "-r", str(data["calib"]), *bart_flags]
                ours, t_ours = run_ours(k, kw, args.repeats)
                bart_np, t_bart = run_bart(k_np, flags, args.repeats, Path(tmp))
                entry["settings"][label] = {
                    "ours_kwargs": kw,
                    "bart_command": "bart ecalib " + " ".join(flags) + " ksp sens",
                    **agreement(ours, torch.from_numpy(bart_np), mask),
                    "ours_s_median": round(float(np.median(t_ours[1:])), 4),
                    "ours_s_first_call": round(t_ours[0], 4),
                    "bart_s_median": round(float(np.median(t_bart)), 4),
                }
                print(
                    f"{name} | {label}: "
                    + json.dumps(
                        {
                            k2: v
                            for k2, v in entry["settings"][label].items()
                            if k2 not in ("ours_kwargs", "corr_per_coil")
                        }
                    )
                )
            results["datasets"][name] = entry

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    tmp_out.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
