"""Helpers shared by the benchmark scripts: interleaved timing and the JSON environment block."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mrrecon.utils.cpu import cpu_has_native_bf16, cpu_model


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_model": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),  # bf16 autocast is fast only where this is true
    }


# The shared folder's single-coil slices by name (MANIFEST number): the fastMRI brains and knees and the complex
# mGRE brain slices, read in place. The benchmarks that report "shared single-coil brains" (ssdm, ldpm) use the
# brain names of this list, so their figures are on the same slices.
SHARED_SINGLE_COIL = {
    "brain_flair(#7)": "fastmri_singlecoil_ssdm/brain1.npy",
    "brain_flair(#8)": "fastmri_singlecoil_ssdm/brain2.npy",
    "knee_pd(#9)": "fastmri_singlecoil_ssdm/knee1.npy",
    "knee_pd(#10)": "fastmri_singlecoil_ssdm/knee2.npy",
    "knee_pd(#2)": "fastmri_knee_scoremri/real/retrospective/001.npy",
    "knee_pdfs(#3)": "fastmri_knee_scoremri/real/retrospective/002.npy",
    "knee_pdfs(#4)": "fastmri_knee_scoremri/real/retrospective/003.npy",
    "brain_mgre(#11)": "mgre_brain_complex_ssdm/img1_slice_50.npy",
    "brain_mgre(#12)": "mgre_brain_complex_ssdm/img1_slice_60.npy",
    "brain_mgre(#13)": "mgre_brain_complex_ssdm/img1_slice_70.npy",
    "brain_mgre(#14)": "mgre_brain_complex_ssdm/img1_slice_80.npy",
}
SHARED_BRAIN = [n for n in SHARED_SINGLE_COIL if n.startswith("brain")]
SHARED_KNEE = [n for n in SHARED_SINGLE_COIL if n.startswith("knee")]


def shared_data_dir(arg: str | None = None) -> Path | None:
    """The shared real-data folder: ``arg``, else $MRRECON_SHARED_DATA, else ../shared/data beside the checkout."""
    for cand in [arg, os.environ.get("MRRECON_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def display_path(path: str | os.PathLike) -> str:
    """A path as results files and cards write it: relative to the repository when inside it, else with the home
    folder as ~ (no machine paths in the repo)."""
    p = os.path.realpath(os.path.expanduser(str(path)))
    repo = str(Path(__file__).resolve().parents[1])
    if p.startswith(repo + os.sep):
        return os.path.relpath(p, repo)
    home = os.path.realpath(os.path.expanduser("~"))
    return "~" + p[len(home):] if p == home or p.startswith(home + os.sep) else p


def probe_command(config: str, out: Path, minutes: float, max_steps: int, val_every: int,
                  sets: dict[str, object]) -> list[str]:
    """A short probe training: ``config`` from scratch for ``minutes`` of wall time on one thread, with the
    long run's schedule (``max_steps``), validation every ``val_every`` steps, no intermediate checkpoints and the
    extra ``--set key=value`` overrides ``sets``."""
    import sys

    cmd = [sys.executable, "-m", "mrrecon.train", config, "--out", str(out),
           "--set", "train.threads=1", "--set", f"train.max_time_s={int(minutes * 60)}",
           "--set", f"train.max_steps={max_steps}", "--set", f"train.val_every={val_every}",
           "--set", "train.checkpoint_every=100000", "--set", "train.progress=false"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def run_probes(groups: list[dict[str, list[str]]], runs: Path, cwd: Path) -> None:
    """Run each group of probe commands ({log name: command}) side by side, one thread each, groups one after
    the other; logs in ``runs/<name>.log``. Exits with a message naming the log of a probe that failed."""
    import subprocess
    import sys

    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for group in groups:
        procs = []
        for name, cmd in group.items():
            log = open(runs / f"{name}.log", "w")  # noqa: SIM115 -- closed when the group ends
            procs.append((subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        for proc, log in procs:
            proc.wait()
            log.close()
            if proc.returncode:
                sys.exit(f"probe failed (exit {proc.returncode}); see {log.name}")


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 3) -> dict[str, dict]:
    """Time several functions round-robin (so machine noise hits all alike); ms statistics and page faults."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    faults: dict[str, int] = dict.fromkeys(fns, 0)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(repeats):
        for name, fn in fns.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            samples[name].append((time.perf_counter() - t0) * 1e3)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return {name: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v),
                   "page_faults_per_call": faults[name] / repeats, "repeats": repeats}
            for name, v in samples.items()}


def _relative_files(obj, root: str):
    """Replace absolute file paths under ``root`` (a resolved path) by paths relative to it (no machine paths in the
    repo); each file is resolved too, so a data folder reached through a link does not leave a ``../`` path."""
    if isinstance(obj, dict):
        return {k: (os.path.relpath(os.path.realpath(v), root)
                    if k == "file" and isinstance(v, str) and os.path.isabs(v) else _relative_files(v, root))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_files(v, root) for v in obj]
    return obj


def slim_results(res: dict, command: str, *, data_root: str | os.PathLike, **extra) -> dict:
    """A benchmark's results.json without the per-slice rows, file paths relative to ``data_root``: what
    benchmarks/results/*.json keep."""
    keep = {k: res[k] for k in ("schema_version", "environment", "config", "elapsed_seconds", "methods", "summary",
                                "volumes", "skipped", "errors")}
    if res.get("paired"):
        keep["paired"] = res["paired"]
    return {**_relative_files(keep, os.path.realpath(data_root)), "command": command, "data_root": "(data root)",
            **extra}
