"""IMA (multi-contrast unfolding): data preparation, training of the variants, stage sweep and evaluation.

Subcommands (run from the repository root; ``--threads N`` sets the torch threads of train / sweep, default 1):

``prepare``
    Simulates the single-coil paired data (``runs/cache/ima-sim/{train,val,test}``; train: 32 subjects x 2
    slices, seed 0; val: 4 subjects x 1 slice, seed 1; test: 16 held-out subjects x 2 slices, seed 2; 256 x 256,
    contrasts T2, PD, FLAIR, T1) and the *mixed-reference* training folders ``runs/cache/ima-sim/{train,val}-mixed``:
    every subject appears three times, as ``<subj>-PD_{T2,REF}.h5``, ``<subj>-FLAIR_{T2,REF}.h5`` and
    ``<subj>-T1_{T2,REF}.h5`` (symbolic links), so one model learns T2 with a PD, FLAIR *or* T1 reference
    (``data.reference_contrast: REF`` in configs/ima-small.yaml).

``train --variant ima|ima-no-csca|ima-no-dcm|ima-single [--seed S] [--stages T] [--steps N] [--out DIR] [--ship]
[--init-from DIR] [--lr LR] [--resume]``
    ``mrrecon train configs/ima-small.yaml`` with the variant's flags (and seed, stage count / step budget, warm
    start, peak learning rate) set by ``--set`` overrides; ``--resume`` continues an interrupted run in ``--out``;
    ``--ship`` copies ``final/`` to ``weights/<variant>-small``. The retraining plan of issue 22 (four variants x
    two seeds, 15,000 steps each) is in docs/ima.md.

``sweep [--stages 6,8,10,12,14] [--steps 100] [--init-from runs/ima-small/final] [--lr 1e-3]``
    One short training per stage count (same budget each) into ``runs/ima-sweep/ima-t<T>``, warm-started from
    the trained 12-stage model (``model.init_from``: stages 1..min(T, 12), embeddings and decoder copied;
    stages 13-14 of T = 14 start from their initialisation), lr 1e-3 cosine.

``evaluate [--which sim|cdlmri|sweep|kernels|retrain|all]``
    ``mrrecon benchmark`` (its Python API) on the held-out pairs and the CDLMRI T1/T2 brains of ../shared/data;
    writes ``benchmarks/results/ima*.json`` (summary rows + parameters / GMACs per method, and the paired
    per-volume PSNR differences against ``ima``). ``kernels`` compares the three DCM kernels of Fig. 4 (Table 2b):
    the shipped ima-small (kernel 1) against ``runs/ima-3000/ima-kernel{2,3}/final``. ``retrain`` (not in
    ``all``) compares the retrained variants ``runs/ima-retrain/<variant>-s<seed>/final`` (both seeds, paired
    against ``ima`` seed 0; the ``ima`` seed-1 row is the run-to-run noise), with zero-filled and the shipped
    unet-small and varnet-small beside them on T2/PD and CDLMRI (they do not read the reference), into
    ``ima_retrain.json``.
    ``retrain-real`` (not in ``all``): the same variants on the CDLMRI pairs only, at radial2d and random1d 4x and
    8x, into ``ima_retrain_real.json``.

``cards``
    Appends the held-out tables to ``weights/<variant>-small/README.md``.

``step-time [--threads 2]``
    Seconds per training step of configs/ima-small.yaml and configs/ima-paper.yaml on this machine and the
    projected time of each config's step budget (``benchmarks/results/ima_step_time.json``).

``validation``
    The retraining runs' validation so far (each run folder's val_log.csv: PSNR / SSIM, mean of the four
    validation settings, and PSNR per setting, at every validation step) as a markdown table, into
    ``benchmarks/results/ima_retrain_validation.json``; works while runs are training.

``registration``
    The reference shift (±4 px, 0.5 px grid) that maximises each real CDLMRI pair's normalised mutual information
    with its target, against no shift (``benchmarks/results/ima_cdlmri_registration.json``).

``dcm``
    The share of k-space that DCM holds at each of the 12 stages (``mrrecon.methods.ima.diagnostics``: frozen,
    weighted, held) for the evaluation masks (256 x 256, seed 0), the three kernels and both readings of eq. 18
    (literal, weighted at its initial hold weight), into ``benchmarks/results/ima_dcm_schedule.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIM = REPO / "runs" / "cache" / "ima-sim"
REFERENCES = ("PD", "FLAIR", "T1")  # the mixed-reference training set: one model for any of them
VARIANT_FLAGS = {
    "ima": [],
    "ima-no-csca": ["model.params.csca=false"],
    "ima-no-dcm": ["model.params.dcm=false"],
    # the reference is never read: its augmentation would only cost time
    "ima-single": ["model.params.use_reference=false", "data.reference_augment=null"],
}
RETRAIN = REPO / "runs" / "ima-retrain"  # issue 22: <variant>-s<seed>, 15,000 steps each (docs/ima.md)
RETRAIN_SEEDS = (0, 1)


def prepare() -> None:
    from mrrecon.data.simulate import simulate_dataset

    splits = {"train": dict(subjects=32, slices=2, seed=0, contrasts=("T2", "PD", "FLAIR", "T1")),
              "val": dict(subjects=4, slices=1, seed=1, contrasts=("T2", "PD", "FLAIR", "T1")),
              "test": dict(subjects=16, slices=2, seed=2, contrasts=("T2", "PD", "FLAIR", "T1"))}
    for name, kw in splits.items():
        folder = SIM / name
        expected = kw["subjects"] * len(kw["contrasts"])
        if not folder.is_dir() or len(list(folder.glob("*.h5"))) < expected:
            simulate_dataset(folder, size=256, coils=1, **kw)
            print(f"simulated {folder}")
    for name in ("train", "val"):
        src, dst = SIM / name, SIM / f"{name}-mixed"
        dst.mkdir(parents=True, exist_ok=True)
        for t2 in sorted(src.glob("*_T2.h5")):
            subject = t2.name[: -len("_T2.h5")]
            for ref in REFERENCES:
                for contrast, target in (("T2", t2), ("REF", src / f"{subject}_{ref}.h5")):
                    link = dst / f"{subject}-{ref}_{contrast}.h5"
                    if not link.exists():
                        link.symlink_to(os.path.relpath(target, dst))
        print(f"mixed-reference pairs in {dst}")


def train(variant: str, stages: int | None, steps: int | None, out: str | None, ship: bool,
          extra: list[str] | None = None, threads: int = 1, seed: int | None = None, resume: bool = False) -> Path:
    sets = [f"name={Path(out).name if out else variant + '-small'}", *VARIANT_FLAGS[variant], *(extra or []),
            f"train.threads={threads}"]
    if seed is not None:
        sets.append(f"train.seed={seed}")
    if stages is not None:
        sets.append(f"model.params.stages={stages}")
    if steps is not None:
        sets.append(f"train.max_steps={steps}")
    out_dir = out or f"runs/{variant}-small"
    cmd = [sys.executable, "-m", "mrrecon.train", "configs/ima-small.yaml", "--out", out_dir]
    for s in sets:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads),
                                                 "MKL_NUM_THREADS": str(threads)})
    final = REPO / out_dir / "final"
    if ship:
        dest = REPO / "weights" / f"{variant}-small"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(final, dest)
        print(f"shipped {final} -> {dest}")
    return final


def dcm_mode_of(checkpoint: str) -> str:
    """The reading of eq. 18 that a trained IMA folder was trained with (checkpoints written before ``dcm_mode``
    existed: literal), so that a warm start continues it."""
    from mrrecon.core.pretrained import read_pretrained_config, resolve_pretrained
    from mrrecon.methods.ima.model import IMAModel

    info = read_pretrained_config(resolve_pretrained(checkpoint))
    return IMAModel.from_config(info.get("config") or {}).config.dcm_mode


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    t = sub.add_parser("train")
    t.add_argument("--variant", choices=sorted(VARIANT_FLAGS), default="ima")
    t.add_argument("--seed", type=int, default=None, help="train.seed: initialisation, data order, masks, "
                                                          "augmentations (default: the config's, 0)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--stages", type=int, default=None)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--out", default=None)
    t.add_argument("--ship", action="store_true")
    t.add_argument("--init-from", default="", help="warm start from a checkpoint folder of the same variant")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="more config overrides, e.g. model.params.dcm_kernel=2 (repeatable)")
    s = sub.add_parser("sweep")
    s.add_argument("--stages", default="6,8,10,12,14")
    s.add_argument("--steps", type=int, default=100)
    s.add_argument("--init-from", default="runs/ima-small/final", help="warm start ('' = from scratch)")
    s.add_argument("--lr", type=float, default=1e-3)
    e = sub.add_parser("evaluate")
    e.add_argument("--which", default="all")
    sub.add_parser("cards")
    sub.add_parser("dcm", help="known fraction of the DCM mask per stage (no training)")
    sub.add_parser("registration", help="best reference shift (NMI) of each real CDLMRI pair")
    sub.add_parser("validation", help="the retraining runs' validation logs as one table (runs may be training)")
    st = sub.add_parser("step-time", help="seconds per training step of the small and paper configs")
    for q in (t, s, st):
        q.add_argument("--threads", type=int, default=1, help="torch threads of each training")
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        prepare()
    elif args.cmd == "train":
        # a warm start continues its checkpoint's reading of eq. 18 unless --set says otherwise (later wins)
        extra = ([f"model.init_from={args.init_from}", f"model.params.dcm_mode={dcm_mode_of(args.init_from)}"]
                 if args.init_from else []) + ([f"optim.lr={args.lr}"] if args.lr is not None else []) + args.sets
        train(args.variant, args.stages, args.steps, args.out, args.ship, extra=extra, threads=args.threads,
              seed=args.seed, resume=args.resume)
    elif args.cmd == "sweep":
        for t_ in (int(v) for v in args.stages.split(",")):
            extra = [f"optim.lr={args.lr}"] + ([f"model.init_from={args.init_from}",
                                                f"model.params.dcm_mode={dcm_mode_of(args.init_from)}"]
                                               if args.init_from else [])
            train("ima", t_, args.steps, f"runs/ima-sweep/ima-t{t_}", ship=False, extra=extra, threads=args.threads)
    elif args.cmd == "evaluate":
        evaluate(args.which)
    elif args.cmd == "cards":
        cards()
    elif args.cmd == "registration":
        registration()
    elif args.cmd == "validation":
        validation_progress()
    elif args.cmd == "dcm":
        dcm_schedules()
    elif args.cmd == "step-time":
        step_time(threads=args.threads)


# ------------------------------------------------------------------------------------------------------------
# Evaluation: the project's benchmark (same samples and seeded masks for every method)
# ------------------------------------------------------------------------------------------------------------
SETTINGS = (("radial2d", 8.0), ("random1d", 4.0))  # the closing-note settings: 8x radial and 4x random
# issue 22's four settings on real pairs (the reference hurt at radial2d 4x on the team's held-out pair)
REAL_SETTINGS = (("radial2d", 4.0), ("radial2d", 8.0), ("random1d", 4.0), ("random1d", 8.0))
MAIN_METHODS = ("zero-filled", "unet", "varnet", "ima-single", "ima-no-dcm", "ima-no-csca", "ima")
BASELINES = MAIN_METHODS[:3]  # zero-filled and the learned baselines: none reads the reference contrast
SWEEP_STAGES = (6, 8, 10, 12, 14)


def _bench(name: str, data: list[str], methods: list[str], target: str, reference: str,
           settings=SETTINGS, compare_to: str | None = "ima", which: str | None = None) -> dict:
    """One benchmark run per (mask, accel) setting into runs/ima-bench/<name>-<mask>-<accel>x; returns the slim
    results per setting, with the paired differences of every method against ``compare_to`` (per volume).
    ``which``: the ``evaluate --which`` part named in the recorded command (default: the first word of ``name``)."""
    import torch
    from _common import slim_results

    from mrrecon.eval.benchmark import BenchmarkConfig, collect_data, run_benchmark

    torch.set_num_threads(1)
    out: dict[str, dict] = {}
    for mask, accel in settings:
        cfg = BenchmarkConfig(methods=list(methods), masks=(mask,), accels=(accel,), target_contrast=target,
                              reference_contrast=reference, figures=2, compare_to=compare_to)
        specs, problems = collect_data(data, cfg)
        folder = REPO / "runs" / "ima-bench" / f"{name}-{mask}-{accel:g}x"
        res = run_benchmark(specs, cfg, folder, problems=problems, progress=False, overwrite=True)  # measure anew
        paths = [Path(d.split("::")[0]).resolve() for d in data]  # inline loader options off
        root = os.path.commonpath([str(q if q.is_dir() else q.parent) for q in paths])
        part = which or name.split("-")[0]
        command = (f"python benchmarks/ima.py evaluate --which {part}  (mrrecon benchmark --data <dir> "
                   f"--methods {','.join(methods)} --masks {mask} --accels {accel:g} --target-contrast {target} "
                   f"--reference-contrast {reference}" + (f" --compare-to {compare_to})" if compare_to else ")"))
        out[f"{mask}-{accel:g}x"] = slim_results(res, command, data_root=root, report=str(folder.relative_to(REPO)))
        print(f"{name} {mask} {accel:g}x done", flush=True)
    return out


def _pivot(results: dict[str, dict]) -> str:
    """Markdown: one row per method, one column per (data, setting) with PSNR / SSIM, then params and GMACs."""
    cols = [(d, st) for d, per in results.items() for st in per]
    methods: dict[str, dict] = {}
    for d, st in cols:
        for r in results[d][st]["summary"]:
            row = methods.setdefault(r["method"], {"params_m": r.get("params_m"), "gmacs": r.get("gmacs")})
            row[(d, st)] = f"{r['psnr_mean']:.2f} / {r['ssim_mean']:.4f}"
    head = "| method | " + " | ".join(f"{d} {st}" for d, st in cols) + " | params (M) | GMACs |"
    lines = [head, "|---" * (len(cols) + 3) + "|"]
    for name, row in methods.items():
        pm = "–" if row["params_m"] is None else f"{row['params_m']:.3f}"
        gm = "–" if row["gmacs"] is None else f"{row['gmacs']:.2f}"
        lines.append(f"| {name} | " + " | ".join(row.get(c, "–") for c in cols) + f" | {pm} | {gm} |")
    return "\n".join(lines)


def _paired_pivot(results: dict[str, dict]) -> str:
    """Markdown: the PSNR gain of the reference method (``--compare-to``) over each other method per (data,
    setting), paired per volume: mean [95 % CI], Wilcoxon p, volumes where the reference won / n."""
    cols = [(d, st) for d, per in results.items() for st in per if per[st].get("paired")]
    if not cols:
        return ""
    ref = results[cols[0][0]][cols[0][1]]["paired"][0]["reference"]
    rows: dict[str, dict] = {}
    for d, st in cols:
        for r in results[d][st]["paired"]:
            if r["metric"] != "psnr":
                continue
            lo, hi = r["ci95"]  # method - reference: the reference's gain is the negative
            stats = f" [{-hi:+.2f}, {-lo:+.2f}] p={r['p_wilcoxon']:.2g}" if r["n"] >= 2 else ""
            rows.setdefault(r["method"], {})[(d, st)] = f"{-r['mean']:+.2f}{stats} {r['losses']}/{r['n']}"
    lines = [f"PSNR gain of `{ref}` over each method (dB, paired per volume): mean [95 % CI], Wilcoxon p, volumes "
             f"where `{ref}` is better / n.", "",
             "| vs | " + " | ".join(f"{d} {st}" for d, st in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(cells.get(c, "–") for c in cols) + " |" for m, cells in rows.items()]
    return "\n".join(lines)


_RETRAINED = re.compile(r"^(?P<variant>[\w-]+):weights=\S*/(?P=variant)-s(?P<seed>\d+)/final$")


def _seed_pivot(results: dict[str, dict]) -> str:
    """Markdown (issue 22): the PSNR gain of ``ima`` over each retrained variant per (data, setting), paired per
    volume and per training seed (``mrrecon.eval.paired.seed_paired_differences``): the seed-averaged gain with
    its 95 % CI and the volumes ``ima`` won, then each seed's mean gain and their spread; the ``ima`` row is
    seed s minus seed 0 of ima itself (run-to-run noise). "" when the results hold no retrained variants."""
    from mrrecon.eval.paired import seed_paired_differences

    cols, cells = [], {}
    for d, per in results.items():
        for st, res in per.items():
            seeds_of = {m: (g["variant"], int(g["seed"])) for m in {v["method"] for v in res["volumes"]}
                        if (g := _RETRAINED.match(m))}
            if not seeds_of:
                continue
            cols.append((d, st))
            for r in seed_paired_differences(res["volumes"], "ima", seeds_of):
                if r["variant"] == "ima":  # run-to-run: ima seed s - ima seed 0
                    text = "; ".join(f"s{s} {x['mean']:+.2f} [{x['ci95'][0]:+.2f}, {x['ci95'][1]:+.2f}]"
                                     for s, x in r["per_seed"].items())
                    cells.setdefault("ima (seed s − seed 0)", {})[(d, st)] = text
                    continue
                m, (lo, hi) = r["seed_mean"]["mean"], r["seed_mean"]["ci95"]
                ci = f" [{-hi:+.2f}, {-lo:+.2f}]" if r["seed_mean"]["n"] >= 2 else ""
                seeds = ", ".join(f"s{s} {-x['mean']:+.2f}" for s, x in r["per_seed"].items())
                spread = f"; spread {r['spread']:.2f}" if len(r["seeds"]) > 1 else ""
                cells.setdefault(f"ima vs {r['variant']}", {})[(d, st)] = (
                    f"{-m:+.2f}{ci} {r['seed_mean']['losses']}/{r['seed_mean']['n']} ({seeds}{spread})")
    if not cols:
        return ""
    lines = ["PSNR gain of `ima` over each variant (dB), paired per volume and per training seed: seed-averaged "
             "gain [95 % CI] and volumes where `ima` is better / n, then (each seed's gain; spread between seeds).",
             "", "| | " + " | ".join(f"{d} {st}" for d, st in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(row.get(c, "–") for c in cols) + " |" for name, row in cells.items()]
    return "\n".join(lines)


def _table(results: dict[str, dict]) -> str:
    lines = ["| data | setting | method | PSNR (dB) | SSIM | params (M) | GMACs |", "|---|---|---|---|---|---|---|"]
    for data_name, per_setting in results.items():
        for setting, res in per_setting.items():
            for r in res["summary"]:
                pm = "–" if r.get("params_m") is None else f"{r['params_m']:.3f}"
                gm = "–" if r.get("gmacs") is None else f"{r['gmacs']:.2f}"
                lines.append(f"| {data_name} | {setting} | {r['method']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} "
                             f"| {r['ssim_mean']:.4f} | {pm} | {gm} |")
    return "\n".join(lines)


def _figure_to_docs(run: str, setting: tuple[str, float], name: str) -> None:
    """Copy the first figure grid of the benchmark run runs/ima-bench/<run>-<mask>-<accel>x to docs/img/<name>.png."""
    mask, accel = setting
    src = REPO / "runs" / "ima-bench" / f"{run}-{mask}-{accel:g}x" / f"figure_00_{mask}_{accel:g}x.png"
    if src.is_file():
        shutil.copyfile(src, REPO / "docs" / "img" / f"{name}.png")


def _save(file: str, key: str, res: dict[str, dict]) -> None:
    """Write benchmarks/results/<file> (results under ``key`` + the rendered tables) and print the tables."""
    from mrrecon.utils.io import atomic_write_json

    seeds = _seed_pivot(res)
    atomic_write_json(REPO / "benchmarks" / "results" / file,
                      {key: res, "table": _table(res), "pivot": _pivot(res), "paired": _paired_pivot(res),
                       **({"seed_paired": seeds} if seeds else {})})
    print(_pivot(res) + "\n\n" + _paired_pivot(res) + ("\n\n" + seeds if seeds else ""))


def _cdlmri_t1(shared: Path) -> list[str]:
    """The three CDLMRI T2/T1 brains: patients A and C (PNG pairs) and the patient of the 4-contrast .mat."""
    folder = shared / "multicontrast_brain_cdlmri"
    return [str(folder), f"{folder / 'T2_FLAIR_T1pre_T1post.mat'}::key=T2,reference_key=T1_pre"]


def _cdlmri_flair(shared: Path) -> list[str]:
    """The CDLMRI T2/FLAIR patient (the 4-contrast .mat)."""
    return [f"{shared / 'multicontrast_brain_cdlmri' / 'T2_FLAIR_T1pre_T1post.mat'}::key=T2,reference_key=FLAIR"]


CDLMRI_PAIRS = (("T1", _cdlmri_t1), ("FLAIR", _cdlmri_flair))  # reference contrast, data of the pair


def _cdlmri_bench(shared: Path, name: str, methods: list[str], **options) -> dict:
    """Both CDLMRI pairs: ``{"CDLMRI T2/T1": ..., "CDLMRI T2/FLAIR": ...}``, run as ``name`` and ``name``-FLAIR;
    ``options`` go to :func:`_bench`."""
    return {f"CDLMRI T2/{ref}": _bench(name if ref == "T1" else f"{name}-FLAIR", data(shared), methods, "T2", ref,
                                       **options) for ref, data in CDLMRI_PAIRS}


def _retrained() -> list[str]:
    """:func:`retrain_methods`, refusing to go on without ``ima`` seed 0 (the paired reference)."""
    methods = retrain_methods()
    if not methods or not methods[0].startswith("ima:"):
        raise SystemExit(f"no retrained ima in {RETRAIN}: run the retraining plan of docs/ima.md first")
    return methods


def retrain_methods() -> list[str]:
    """The retrained variants that exist, as method specs: ``<variant>:weights=runs/ima-retrain/<variant>-s<seed>/
    final``, ``ima`` seed 0 first (the paired reference)."""
    specs = []
    for variant in ("ima", "ima-single", "ima-no-dcm", "ima-no-csca"):
        for seed in RETRAIN_SEEDS:
            final = RETRAIN / f"{variant}-s{seed}" / "final"
            if (final / "config.json").is_file():
                specs.append(f"{variant}:weights={final.relative_to(REPO)}")
    return specs


def evaluate(which: str) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    test = str(SIM / "test")
    shared = shared_data()
    todo = {"sim", "cdlmri", "sweep", "kernels"} if which == "all" else set(which.split(","))
    if "retrain" in todo:  # issue 22: four variants x two seeds, paired against ima seed 0
        methods = _retrained()
        # the learned baselines (shipped unet-small, varnet-small) do not read the reference: PD and CDLMRI only
        res = {"simulated T2/PD": _bench("retrain-sim", [test], [*BASELINES, *methods], "T2", "PD",
                                         compare_to=methods[0])}
        for ref in ("FLAIR", "T1"):
            res[f"simulated T2/{ref}"] = _bench(f"retrain-sim-{ref}", [test], methods, "T2", ref,
                                                compare_to=methods[0])
        if shared is not None:
            res.update(_cdlmri_bench(shared, "retrain-cdlmri", [*BASELINES, *methods], compare_to=methods[0]))
        _save("ima_retrain.json", "retrain", res)
    if "retrain-real" in todo:  # issue 22: ima >= ima-single on every real pair, at all four settings
        if shared is None:
            raise SystemExit("retrain-real needs ../shared/data (the CDLMRI pairs)")
        methods = _retrained()
        res = _cdlmri_bench(shared, "retrain-real", ["zero-filled", *methods], settings=REAL_SETTINGS,
                            compare_to=methods[0], which="retrain-real")
        _save("ima_retrain_real.json", "retrain_real", res)
    if "sim" in todo:
        res = {"simulated T2/PD": _bench("sim-PD", [test], list(MAIN_METHODS), "T2", "PD")}
        # ima-single, unet, varnet and zero-filled do not read the reference: only ima variants are rerun
        for ref in ("FLAIR", "T1"):
            res[f"simulated T2/{ref}"] = _bench(f"sim-{ref}", [test], ["ima-no-dcm", "ima-no-csca", "ima"], "T2",
                                                ref)
        _figure_to_docs("sim-PD", ("radial2d", 8.0), "ima_sim_radial2d_8x")
        _save("ima.json", "held_out_simulated", res)
    if "cdlmri" in todo:
        if shared is None:
            print("no shared data folder: skipping the CDLMRI T1/T2 brains")
        else:
            res = _cdlmri_bench(shared, "cdlmri", list(MAIN_METHODS))
            _figure_to_docs("cdlmri", ("radial2d", 8.0), "ima_cdlmri_radial2d_8x")
            _save("ima_cdlmri.json", "cdlmri", res)
    if "sweep" in todo:
        methods = [f"ima:weights=runs/ima-sweep/ima-t{t}/final" for t in SWEEP_STAGES
                   if (REPO / "runs" / "ima-sweep" / f"ima-t{t}" / "final").is_dir()]
        t12 = next((m for m in methods if "ima-t12/" in m), None)
        res = {"simulated T2/PD": _bench("sweep-sim", [test], methods, "T2", "PD", compare_to=t12)}
        if shared is not None:
            res["CDLMRI T2/T1"] = _bench("sweep-cdlmri", _cdlmri_t1(shared), methods, "T2", "T1", compare_to=t12)
        _save("ima_sweep.json", "stage_sweep", res)


    if "kernels" in todo:  # Table 2b analogue: the three DCM kernels of Fig. 4
        runs = {1: "weights/ima-small", **{k: f"runs/ima-3000/ima-kernel{k}/final" for k in (2, 3)}}
        methods = [f"ima:weights={path}" for path in runs.values() if (REPO / path).is_dir()]
        res = {"simulated T2/PD": _bench("kernels-sim", [test], methods, "T2", "PD", compare_to=methods[0])}
        if shared is not None:
            res["CDLMRI T2/T1"] = _bench("kernels-cdlmri", _cdlmri_t1(shared), methods, "T2", "T1",
                                         compare_to=methods[0])
        _save("ima_kernels.json", "dcm_kernels", res)


def validation_progress() -> dict:
    """The validation logs of runs/ima-retrain/<variant>-s<seed> (finished or training) as one table per seed:
    mean PSNR (dB) of the four validation settings per step and run; written with the per-setting values to
    benchmarks/results/ima_retrain_validation.json."""
    import csv

    from mrrecon.utils.io import atomic_write_json

    runs: dict[str, list[dict]] = {}
    for variant in VARIANT_FLAGS:
        for seed in RETRAIN_SEEDS:
            log = RETRAIN / f"{variant}-s{seed}" / "val_log.csv"
            if log.is_file():
                with log.open() as f:
                    runs[f"{variant}-s{seed}"] = [
                        {k: (int(v) if k == "step" else float(v)) for k, v in row.items()
                         if k == "step" or k.startswith(("psnr", "ssim"))} for row in csv.DictReader(f)]
    if not runs:
        raise SystemExit(f"no validation logs under {RETRAIN}: run the retraining plan of docs/ima.md first")
    tables = []
    for seed in RETRAIN_SEEDS:
        names = [n for n in runs if n.endswith(f"-s{seed}")]
        if not names:
            continue
        steps = sorted({r["step"] for n in names for r in runs[n]})
        lines = [f"| step | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|"]
        for st in steps:
            cells = [next((f"{r['psnr']:.2f}" for r in runs[n] if r["step"] == st), "–") for n in names]
            lines.append(f"| {st:,} | {' | '.join(cells)} |")
        tables.append("\n".join(lines))
    table = "\n\n".join(tables)
    atomic_write_json(REPO / "benchmarks" / "results" / "ima_retrain_validation.json",
                      {"command": "python benchmarks/ima.py validation",
                       "description": "validation PSNR (dB) / SSIM of the retraining runs, mean of the four "
                                      "validation settings (random1d, radial2d at 4x, 8x; 12 slices) and per "
                                      "setting, at every validation step",
                       "runs": runs, "table": table})
    print(table)
    return runs


def dcm_schedules(size: int = 256, stages: int = 12) -> None:
    """The share of k-space DCM holds at every stage (eqs. 16-19; ``mrrecon.methods.ima.diagnostics``) for the
    evaluation masks, the three kernels and both readings of eq. 18: how much each stage may *not* change."""
    from mrrecon.methods.ima.diagnostics import dcm_stage_fractions, format_table
    from mrrecon.physics.masks import make_mask
    from mrrecon.utils.io import atomic_write_json

    rows, tables = [], {}
    for kind, accel in (("random1d", 4.0), ("random1d", 8.0), ("radial2d", 4.0), ("radial2d", 8.0)):
        mask = make_mask(kind, (size, size), accel, seed=0).mask
        for kernel in (1, 2, 3):
            for mode in ("literal", "weighted"):
                per_stage = dcm_stage_fractions(mask, {"stages": stages, "dcm_kernel": kernel, "dcm_mode": mode},
                                                shape=(size, size))
                rows.append({"mask": kind, "accel": accel, "kernel": kernel, "dcm_mode": mode,
                             "frozen": [r.frozen for r in per_stage], "weighted": [r.weighted for r in per_stage],
                             "held": [r.held for r in per_stage], "hold": [r.hold for r in per_stage]})
                tables[f"{kind} {accel:g}x, kernel {kernel}, {mode}"] = per_stage
    table = format_table(tables)
    atomic_write_json(REPO / "benchmarks" / "results" / "ima_dcm_schedule.json",
                      {"command": "python benchmarks/ima.py dcm", "size": size, "stages": stages, "rows": rows,
                       "table": table})
    print(table)


def step_time(steps: int = 4, threads: int = 2) -> None:
    """Seconds per training step (forward, eq. 25 loss, backward, Adam) of configs/ima-small.yaml (128 x 128 crop)
    and configs/ima-paper.yaml (256 x 256), batch 1, on this machine; the first step is a warm-up and not
    counted. Writes benchmarks/results/ima_step_time.json with the projected time of each config's budget."""
    import time

    import torch
    import yaml

    from mrrecon.core.pretrained import model_class
    from mrrecon.data.sample import Batch
    from mrrecon.utils.io import atomic_write_json

    torch.set_num_threads(threads)
    rows = []
    for config, size in (("configs/ima-small.yaml", 128), ("configs/ima-paper.yaml", 256)):
        cfg = yaml.safe_load((REPO / config).read_text())
        model = model_class("ima").from_config(cfg["model"]["params"])
        gen = torch.Generator().manual_seed(0)
        mask = (torch.rand(1, 1, 1, size, generator=gen) < 0.25).float()
        kspace = torch.randn(1, 1, size, size, dtype=torch.complex64, generator=gen) * mask
        batch = Batch(kspace=kspace, mask=mask, target=torch.rand(1, size, size, generator=gen),
                      reference=torch.rand(1, size, size, generator=gen))
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        seconds = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            model.training_loss(batch, torch.nn.functional.l1_loss)["loss"].backward()
            opt.step()
            opt.zero_grad()
            seconds.append(time.perf_counter() - start)
        per_step = float(sorted(seconds[1:])[len(seconds[1:]) // 2])  # median after the warm-up
        budget = int(cfg["train"]["max_steps"])
        rows.append({"config": config, "size": size, "parameters": sum(q.numel() for q in model.parameters()),
                     "seconds_per_step": per_step, "max_steps": budget, "projected_hours": per_step * budget / 3600})
        print(f"{config}: {per_step:.2f} s/step at {size}x{size}, {threads} threads -> {budget} steps = "
              f"{per_step * budget / 3600:.1f} h", flush=True)
    atomic_write_json(REPO / "benchmarks" / "results" / "ima_step_time.json",
                      {"command": f"python benchmarks/ima.py step-time --threads {threads}", "threads": threads,
                       "rows": rows})


def cards() -> None:
    """Append the held-out evaluation (benchmarks/results/ima*.json) to the shipped model cards."""
    results_dir = REPO / "benchmarks" / "results"
    parts = []
    for name, title in (("ima.json", "held-out simulated pairs (16 unseen subjects x 2 slices, single-coil 256x256)"),
                        ("ima_cdlmri.json", "CDLMRI brains of ../shared/data (3 patients with T2/T1, one "
                                            "of them with T2/FLAIR; target T2)")):
        if (results_dir / name).is_file():
            saved = json.loads((results_dir / name).read_text())
            parts.append(f"### {title}\n\n" + saved["pivot"] + "\n\n" + saved.get("paired", "") + "\n")
    parts.append("ima-single, unet, varnet and zero-filled do not read the reference: their T2/FLAIR and T2/T1 "
                 "numbers are the T2/PD ones (same targets and masks).\n")
    if not parts:
        raise SystemExit("no results yet: run `python benchmarks/ima.py evaluate` first")
    text = ("\n## Held-out evaluation\n\nGenerated by `python benchmarks/ima.py evaluate` (the project benchmark: "
            "same samples and seeded masks for every method; fastMRI-convention PSNR / SSIM per volume, mean over "
            "volumes). Cells are PSNR (dB) / SSIM; GMACs per 256x256 slice. See docs/ima.md.\n\n" + "\n".join(parts))
    for variant in VARIANT_FLAGS:
        readme = REPO / "weights" / f"{variant}-small" / "README.md"
        if readme.is_file():
            body = readme.read_text().split("\n## Reproduce")[0].rstrip("\n") + "\n"  # idempotent
            body = body.replace('mrrecon.methods.load("ima", checkpoint=',
                                f'mrrecon.methods.load("{variant}", checkpoint=')
            flags = "".join(f" --set {f}" for f in VARIANT_FLAGS[variant])
            info = json.loads((readme.parent / "config.json").read_text())
            trained = info.get("metadata", {}).get("train_config", {})
            if (trained.get("model") or {}).get("init_from"):  # issue 8: two runs of 1,500 steps
                body += (f"\n## Reproduce\n\n`python benchmarks/ima.py prepare`, then two runs of the same recipe "
                         f"(the issue-8 version of `configs/ima-small.yaml`, literal DCM, no reference "
                         f"augmentation{flags.replace(' --set', ', --set')}):\n\n"
                         f"1. `python benchmarks/ima.py train --variant {variant} --out runs/ima-1500/{variant} "
                         "--threads 2 --set model.params.dcm_mode=literal --set data.reference_augment=null "
                         "--set train.max_steps=1500 --set train.val_every=-1`: 1,500 steps, lr 3e-3 cosine, "
                         "from scratch;\n"
                         f"2. the same with `--init-from runs/ima-1500/{variant}/final --lr 1e-3 --out "
                         f"runs/ima-3000/{variant}`: 1,500 more steps, lr 1e-3 cosine, "
                         "warm-started from step 1's weights (the card above is this run's);\n\n"
                         f"then `runs/ima-3000/{variant}/final` copied here (`--ship` does it). The thread count "
                         "changes the speed, not the recipe. One model for T2 targets with a PD, FLAIR or T1 "
                         "reference (mixed-reference training set).\n")
            else:  # issue 22: one run of configs/ima-small.yaml per seed
                seed = (trained.get("train") or {}).get("seed", 0)
                body += (f"\n## Reproduce\n\n`python benchmarks/ima.py prepare`, then `python benchmarks/ima.py "
                         f"train --variant {variant} --seed {seed} --out runs/ima-retrain/{variant}-s{seed} "
                         f"--threads 2` (`configs/ima-small.yaml`{flags}: weighted DCM, reference augmentation, "
                         "15,000 steps from scratch; docs/ima.md, Retraining plan), then its `final/` copied here. "
                         "The thread count changes the speed, not the recipe. One model for T2 targets with a PD, "
                         "FLAIR or T1 reference (mixed-reference training set).\n")
            readme.write_text(body + text)
            print(f"updated {readme}")


def _nmi(a, b, bins: int = 32) -> float:
    """Normalised mutual information (H(a) + H(b)) / H(a, b) of two images' intensities (1: independent, 2: one
    determines the other)."""
    import numpy as np

    h, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = h / h.sum()

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())
    return (entropy(p.sum(1)) + entropy(p.sum(0))) / entropy(p)


def registration(max_shift: float = 4.0, step: float = 0.5) -> None:
    """Is each real pair registered? Per CDLMRI pair (the images the benchmark loads), the shift of the reference
    (dy, dx on a grid of ``step`` px within +-``max_shift``, bilinear) that maximises its normalised mutual
    information with the target, and that NMI against the NMI at no shift -> ima_cdlmri_registration.json."""
    import numpy as np
    from scipy import ndimage

    from mrrecon.eval.benchmark import BenchmarkConfig, collect_data, load_volume
    from mrrecon.utils.io import atomic_write_json

    shared = shared_data()
    if shared is None:
        raise SystemExit("registration needs ../shared/data (the CDLMRI pairs)")
    grid = np.arange(-max_shift, max_shift + step / 2, step)
    rows = []
    for ref, data in CDLMRI_PAIRS:
        cfg = BenchmarkConfig(methods=["zero-filled"], masks=("radial2d",), accels=(4.0,), target_contrast="T2",
                              reference_contrast=ref)
        specs, _ = collect_data(data(shared), cfg)
        for spec in specs:
            for sample in load_volume(spec, "radial2d", 4.0, cfg):
                t = sample.target.abs().numpy().astype(np.float64)
                r = sample.reference.abs().numpy().astype(np.float64).reshape(t.shape)
                t /= t.max()
                at_zero = _nmi(t, r / r.max())
                best = max((_nmi(t, (q := ndimage.shift(r, (dy, dx), order=1)) / max(q.max(), 1e-12)), dy, dx)
                           for dy in grid for dx in grid)
                rows.append({"pair": f"T2/{ref}", "file": spec.path.name, "slice": sample.meta.slice,
                             "nmi_at_zero": at_zero, "best_nmi": best[0], "best_shift_px": [best[1], best[2]]})
                print(f"T2/{ref} {spec.path.name}: NMI {at_zero:.4f} at no shift, {best[0]:.4f} at (dy, dx) = "
                      f"({best[1]:+.1f}, {best[2]:+.1f}) px", flush=True)
    atomic_write_json(REPO / "benchmarks" / "results" / "ima_cdlmri_registration.json",
                      {"command": "python benchmarks/ima.py registration", "grid_px": [float(-max_shift),
                                                                                       float(max_shift), step],
                       "rows": rows})


def shared_data():
    from _common import shared_data_dir

    return shared_data_dir()


if __name__ == "__main__":
    main()
