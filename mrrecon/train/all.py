"""Train every shipped model in one go, within a wall-time budget per model, on CUDA when present.

    python -m mrrecon.train.all configs/train-all.yaml [--budget-s 600] [--out runs/train-all]
        [--only unet-small,ssdm-small] [--set key=value ...]        (scripts/train-all.sh wraps this)

The manifest (``configs/train-all.yaml``) lists the shipped weights folders in training order; each entry names
its training config, the ``--set`` overrides that make it that model (an ablation is its paper config with a
switch), optional overrides used only when a GPU is present (larger batches), and a command that prepares its
data (IMA's paired folders). Every stage of an entry (LDPM's five networks, SSDM's teacher and students) gets
``--budget-s`` seconds (``train.max_time_s``) on top of its own step count, whichever ends first, so a GPU hour
turns into the best weights the budget allows and a CPU run with a tiny budget checks the whole chain.

Runs go to ``<out>/<weights name>/`` (a normal run folder per stage, resumed when the script runs again), the
trained models to ``<out>/weights/<weights name>/`` in the layout of ``weights/`` (one folder, or one sub-folder
per stage named as the stage's ``train.export_dir``), each with the card the trainer writes (command, steps,
samples, wall time, device, validation). ``<out>/train-all.json`` sums up every entry. Nothing is copied into
the repository's ``weights/``: review the cards, then copy what is better.

``--jobs N`` trains N entries at once, each in its own process (``--only`` that entry; output in
``<out>/logs/<name>.log``): the prepare commands run first, one after the other; each process gets
``train.threads`` = CPU cores // N and, with several GPUs, one GPU (``CUDA_VISIBLE_DEVICES``, round robin), with
one GPU they share it (small models leave most of a large GPU idle). A failed entry is recorded in the summary
(its exit code and log) and does not stop the others; the script then exits with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mrrecon.errors import ConfigError, MRReconError
from mrrecon.train.config import config_from_dict, load_stages, read_yaml
from mrrecon.train.stages import run_stages
from mrrecon.utils.io import atomic_write_json
from mrrecon.utils.runfolder import FolderLock

__all__ = ["ManifestEntry", "TrainAllError", "load_manifest", "main", "train_all"]


@dataclass
class ManifestEntry:
    """One shipped model: ``weights`` (its folder name under weights/), ``config`` (training YAML), ``set``
    (overrides always applied), ``cuda_set`` (overrides applied only on a GPU), ``prepare`` (a command run
    first, e.g. building IMA's paired data; a leading ``python`` is this interpreter)."""

    weights: str
    config: str
    set: list[str] = field(default_factory=list)
    cuda_set: list[str] = field(default_factory=list)
    prepare: str | None = None


def _prepare_simulated_sets(entries: list[ManifestEntry], extra: list[str], echo) -> None:
    """Generate every simulated training set the entries use, once, before their processes start (each would
    otherwise generate a missing set itself, all at once)."""
    from mrrecon.train.data import prepare_simulated, simulated_folder

    cuda = torch.cuda.is_available()
    seen = set()
    for entry in entries:
        for stage in load_stages(entry.config, [*entry.set, *(entry.cuda_set if cuda else []), *extra]).stages:
            data = stage.config.data
            if data.source != "simulated" or simulated_folder(data) in seen:
                continue
            seen.add(simulated_folder(data))
            echo(f"[{entry.weights}] simulated set {simulated_folder(data)}")
            prepare_simulated(data)


class TrainAllError(MRReconError):
    """Some entries of a parallel run failed (the others finished and are in the summary)."""


def load_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    raw = read_yaml(path)
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: expected a non-empty 'models:' list")
    entries = [config_from_dict(ManifestEntry, m, f"{path}: models[{i}]") for i, m in enumerate(models)]
    names = [e.weights for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: weights names must be unique; got {names}")
    return entries


def _copy_tree(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` (copied aside first, then renamed into place)."""
    tmp = dst.with_name(f".{dst.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)


def _run_prepare(entry: ManifestEntry, echo) -> None:
    echo(f"[{entry.weights}] prepare: {entry.prepare}")
    cmd = shlex.split(entry.prepare)
    if cmd and cmd[0] == "python":  # the interpreter running this script
        cmd[0] = sys.executable
    subprocess.run(cmd, check=True)


def train_all(manifest: str | os.PathLike, *, out: str | os.PathLike, budget_s: float, only: list[str] | None = None,
              extra: list[str] | None = None, prepare: bool = True, jobs: int = 1,
              summary_path: str | os.PathLike | None = None, lock_poll_s: float = 60.0,
              echo=print) -> dict[str, Any]:
    """Train the manifest's models in order (``only``: these weights names); returns the summary it writes
    (``summary_path``, default ``<out>/train-all.json``). ``jobs`` > 1: that many entries at once (module docstring).
    A stage folder another process on this machine is training (its ``training.lock``) is waited for, polling
    every ``lock_poll_s`` seconds, and then resumed, or skipped when that run finished it."""
    entries = load_manifest(manifest)
    if only:
        unknown = sorted(set(only) - {e.weights for e in entries})
        if unknown:
            raise ConfigError(f"--only: no model(s) {unknown} in {manifest}; models: {[e.weights for e in entries]}")
        entries = [e for e in entries if e.weights in only]
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1; got {jobs}")
    out = Path(out)
    summary_file = Path(summary_path) if summary_path else out / "train-all.json"
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    summary: dict[str, Any] = {"manifest": str(manifest), "budget_s_per_stage": budget_s, "device": device,
                               "models": {}}
    echo(f"train-all: {len(entries)} model(s), budget {budget_s:g} s per stage, on {device}; runs in {out}")
    if jobs > 1 and len(entries) > 1:
        return _train_parallel(entries, manifest, out, budget_s, extra or [], prepare, jobs, summary, summary_file,
                               echo)
    for entry in entries:
        t0 = time.perf_counter()
        if entry.prepare and prepare:
            _run_prepare(entry, echo)
        overrides = [*entry.set, *(entry.cuda_set if cuda else []), *(extra or []),
                     f"train.out_dir={out / entry.weights}", "train.export_dir=null", "train.progress=false"]
        if budget_s > 0:
            overrides.append(f"train.max_time_s={budget_s}")
        plan = load_stages(entry.config, overrides)
        # the export folder names of the config's own stages decide the shipped layout
        # (a stage without one, e.g. LDPM's sketcher_base or SSDM's intermediate students, is not shipped)
        layout = {s.name: Path(s.config.train.export_dir).name if s.config.train.export_dir else None
                  for s in load_stages(entry.config, entry.set).stages}
        echo(f"[{entry.weights}] {entry.config} {' '.join('--set ' + o for o in entry.set)}".rstrip())
        for stage in plan.stages:  # a stage being trained by another process here: wait, then resume or skip it
            FolderLock(stage.out_dir).wait_until_free(poll_s=lock_poll_s, echo=echo)
        outcomes = run_stages(plan, resume=True, command=f"python -m mrrecon.train.all {manifest} "
                                                         f"(model {entry.weights})", echo=echo)
        dest = out / "weights" / entry.weights
        stages = {}
        for stage, outcome in zip(plan.stages, outcomes, strict=False):
            final = stage.out_dir / "final"
            if not (final / "config.json").is_file() or (plan.staged and layout[stage.name] is None):
                continue
            target = dest if not plan.staged else dest / layout[stage.name]
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_tree(final, target)
            res = outcome.result
            stages[stage.name or entry.weights] = {
                "folder": str(target.relative_to(out)), "skipped": outcome.skipped,
                "step": None if res is None else res.step, "max_steps": None if res is None else res.max_steps,
                "stopped_on_time": None if res is None else res.stopped_on_time,
                "wall_time_s": None if res is None else round(res.wall_time_s, 1),
                "validation": None if res is None else res.last_validation}
        summary["models"][entry.weights] = {"config": entry.config, "set": entry.set,
                                            "cuda_set": entry.cuda_set if cuda else [], "stages": stages,
                                            "seconds": round(time.perf_counter() - t0, 1)}
        atomic_write_json(summary_file, summary)
        echo(f"[{entry.weights}] done in {time.perf_counter() - t0:.0f} s -> {dest}")
    return summary


def _train_parallel(entries: list[ManifestEntry], manifest, out: Path, budget_s: float, extra: list[str],
                    prepare: bool, jobs: int, summary: dict[str, Any], summary_file: Path, echo) -> dict[str, Any]:
    """``jobs`` entries at a time, each ``python -m mrrecon.train.all MANIFEST --only NAME`` in its own process
    writing its own summary, merged into ``summary_file`` in the manifest's order as the processes end."""
    if prepare:
        done = set()
        for entry in entries:
            if entry.prepare and entry.prepare not in done:
                _run_prepare(entry, echo)
                done.add(entry.prepare)
    _prepare_simulated_sets(entries, extra, echo)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    gpus = torch.cuda.device_count()
    summary.update(jobs=jobs, threads_per_job=threads)
    results: dict[str, dict[str, Any]] = {}
    pending = list(enumerate(entries))
    running: list[tuple[ManifestEntry, subprocess.Popen, Any, Path, float]] = []
    while pending or running:
        while pending and len(running) < jobs:
            i, entry = pending.pop(0)
            part = out / f".train-all.{entry.weights}.json"
            cmd = [sys.executable, "-m", "mrrecon.train.all", str(manifest), "--only", entry.weights,
                   "--out", str(out), "--budget-s", str(budget_s), "--skip-prepare", "--summary", str(part)]
            for item in [*extra, f"train.threads={threads}"]:
                cmd += ["--set", item]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            if gpus > 1:
                env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            log = (logs / f"{entry.weights}.log").open("w")
            echo(f"[{entry.weights}] started ({threads} thread(s){f', GPU {i % gpus}' if gpus > 1 else ''}); "
                 f"log {log.name}")
            running.append((entry, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, part,
                            time.perf_counter()))
        time.sleep(0.2)
        for item in [r for r in running if r[1].poll() is not None]:
            entry, proc, log, part, t0 = item
            running.remove(item)
            log.close()
            if proc.returncode == 0 and part.is_file():
                results[entry.weights] = json.loads(part.read_text())["models"][entry.weights]
                part.unlink()
                echo(f"[{entry.weights}] done in {time.perf_counter() - t0:.0f} s")
            else:
                results[entry.weights] = {"config": entry.config, "set": entry.set, "stages": {},
                                          "error": f"exit code {proc.returncode}; see logs/{entry.weights}.log"}
                echo(f"[{entry.weights}] failed with exit code {proc.returncode}: {logs / (entry.weights + '.log')}")
            summary["models"] = {e.weights: results[e.weights] for e in entries if e.weights in results}
            atomic_write_json(summary_file, summary)
    failed = [name for name, r in summary["models"].items() if "error" in r]
    if failed:
        raise TrainAllError(f"{len(failed)} of {len(entries)} model(s) failed: {', '.join(failed)} "
                            f"(logs in {logs}; the others' weights are in {out / 'weights'})")
    return summary



def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mrrecon.train.all", description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", nargs="?", default="configs/train-all.yaml")
    p.add_argument("--budget-s", type=float, default=600.0, help="wall-time budget per stage (0: the configs' steps)")
    p.add_argument("--out", default="runs/train-all")
    p.add_argument("--only", default=None, help="comma-separated weights names of the manifest")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every model (after the manifest's)")
    p.add_argument("--skip-prepare", action="store_true", help="do not run the manifest's prepare commands")
    p.add_argument("--jobs", type=int, default=1,
                   help="entries trained at once, one process each (CPU cores split between them; several GPUs: "
                        "one each)")
    p.add_argument("--summary", default=None, help="summary JSON (default <out>/train-all.json)")
    args = p.parse_args(argv)
    try:
        train_all(args.manifest, out=args.out, budget_s=args.budget_s,
                  only=args.only.split(",") if args.only else None, extra=args.extra,
                  prepare=not args.skip_prepare, jobs=args.jobs, summary_path=args.summary)
    except (MRReconError, subprocess.CalledProcessError) as exc:
        print(f"mrrecon: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
