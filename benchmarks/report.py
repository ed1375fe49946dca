"""Regenerate docs/results.md from the JSON files the benchmarks wrote under benchmarks/results/.

    python benchmarks/report.py [--results benchmarks/results] [--out docs/results.md]

Each section is written only when its JSON exists; every section names the command that made it and the
machine it ran on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _env_line(env: dict) -> str:
    gpu = f", GPU {env['cuda']}" if env.get("cuda") else ""
    return (f"python {env.get('python')}, torch {env.get('torch')}, {env.get('threads')} threads, "
            f"{env.get('cpu_count')} CPUs ({env.get('processor')}){gpu}")


def physics_section(d: dict) -> str:
    lines = ["## Physics core speed\n",
             "Command: `python benchmarks/physics.py` — median of interleaved repeats; ratio to raw "
             "`torch.fft.fft2(norm='ortho')` of the same array in the same run.\n",
             f"Machine: {_env_line(d['environment'])}.\n",
             "| shape | op | median ms | x raw fft2 | page faults/call |", "|---|---|---|---|---|"]
    for shape, res in d["shapes"].items():
        for op, v in res.items():
            lines.append(f"| {shape} | {op} | {v['median_ms']:.2f} | {v['ratio_to_raw_fft2']:.2f} | "
                         f"{v['page_faults_per_call']:.0f} |")
    return "\n".join(lines) + "\n"


def espirit_section(d: dict) -> str:
    lines = ["## ESPIRiT against BART `ecalib`\n",
             f"Command: `{d.get('command', 'python benchmarks/espirit_vs_bart.py')}` — BART {d.get('bart_version')}, "
             f"torch {d.get('torch')}, {d.get('threads')} threads. Correlation |<S_ours, S_bart>| / "
             "(||S_ours|| ||S_bart||) inside the body (smoothed RSS > 10% of max); wall times are medians "
             "from the same run.\n",
             "| data | BART command | correlation | min over coils | ours (s) | BART (s) |",
             "|---|---|---|---|---|---|"]
    for name, r in d.get("datasets", {}).items():
        for _setting, v in r.get("settings", {}).items():
            lines.append(f"| {name} | `{v['bart_command']}` | {v['corr_total']:.5f} | {min(v['corr_per_coil']):.5f} "
                         f"| {v['ours_s_median']:.2f} | {v['bart_s_median']:.2f} |")
    return "\n".join(lines) + "\n"


def settings_section(title: str, what: str):
    """A section from a benchmark script that stores one benchmark result per setting ({tag: result}), or per
    group and setting ({group: {tag: result}}): a summary table and the paired differences of each."""
    def render(d: dict) -> str:
        from mrrecon.eval.paired import paired_table_markdown
        from mrrecon.eval.report import summary_table_markdown

        runs = [((g + ", " if g else "") + tag, r) for g, sub in
                ((d.items()) if all("summary" not in v for v in d.values()) and
                 all(isinstance(x, dict) and "summary" in x for v in d.values() for x in v.values())
                 else [("", d)]) for tag, r in sub.items()]
        first = runs[0][1]
        env = first.get("environment", {})
        lines = [f"## {title}\n", f"{what}\n", f"Command: `{first.get('command', '')}`  \n"
                 f"Machine: {env.get('processor')}, {env.get('cpu_count')} CPUs, {env.get('threads')} torch threads, "
                 f"device {env.get('device')}; torch {env.get('torch')}.\n"]
        for name, r in runs:
            lines += [f"### {name}\n", summary_table_markdown(r["summary"])]
            if r.get("paired"):
                lines.append(paired_table_markdown(r["paired"]).rstrip() + "\n")
        return "\n".join(lines)
    return render


def benchmark_section(title: str, what: str):
    def render(d: dict) -> str:
        from mrrecon.eval.paired import paired_table_markdown
        from mrrecon.eval.report import summary_table_markdown

        env = d.get("environment", {})
        cmd = d.get("command") or env.get("command") or ""
        lines = [f"## {title}\n", f"{what}\n", f"Command: `{cmd}`  \n"
                 f"Machine: {env.get('processor')}, {env.get('cpu_count')} CPUs, {env.get('threads')} torch threads, "
                 f"device {env.get('device')}; torch {env.get('torch')}. "
                 f"Elapsed {d.get('elapsed_seconds', 0):.0f} s.\n",
                 summary_table_markdown(d["summary"])]
        if d.get("paired"):  # benchmark --compare-to: per-volume differences against the reference method
            lines.append(paired_table_markdown(d["paired"]).rstrip() + "\n")
        if d.get("errors"):
            lines.append("Errors: " + "; ".join(f"{e.get('method') or ''} {e.get('file')}: {e.get('error')}"
                                               for e in d["errors"]) + "\n")
        return "\n".join(lines)
    return render


def contrast_randomisation_section(d: dict) -> str:
    methods = list(next(iter(d["real_brains"].values()))["means"])
    lines = ["## Learned baselines: what the random contrast adds on real brains\n",
             f"Command: `{d['command']}` — two unet-small trainings from scratch with the same seed, schedule and "
             "wall time, one thread each; `random` trains on T1, T2, PD, FLAIR and the per-subject random contrast, "
             "`named` on the four named contrasts only (`data.train_contrasts`). Real brains: single-coil #7, #8, "
             "#11-#14 and multi-coil #17, #18, #20 of the shared data; simulated: 16 held-out validation volumes. "
             "Steps: " + ", ".join(f"{n} {p['steps']}" for n, p in d["probes"].items()) + ".\n",
             "| data | setting | images | " + " | ".join(methods) + " | random - named (95 % CI) |",
             "|---" * (len(methods) + 4) + "|"]
    for key, label in (("real_single_coil", "real single-coil brains"), ("real_multi_coil", "real multi-coil brains"),
                       ("real_brains", "all real brains"), ("simulated", "held-out simulated")):
        for setting, t in d[key].items():
            p = t["random_minus_named"]["psnr"]
            cells = " | ".join(f"{t['means'][m]['psnr']:.2f} / {t['means'][m]['ssim']:.3f}" for m in methods)
            lines.append(f"| {label} | {setting} | {t['n_images']} | {cells} | {p['mean']:+.2f} "
                         f"[{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}] dB |")
    return "\n".join(lines) + "\n\nCells: PSNR (dB) / SSIM, mean over images.\n"


def baselines_noise_section(d: dict) -> str:
    methods = list(next(iter(d["psnr"].values())))
    lines = ["## Learned baselines against the scan's noise level\n",
             f"Command: `{d['command']}` — held-out simulated 8-coil brains (2 subjects x T1, T2), the same anatomy "
             "simulated at each noise level, 4x; PSNR (dB), mean over the 4 volumes. Checkpoints: " +
             ", ".join(f"{k} = `{v}`" for k, v in d["checkpoints"].items()) + ".\n",
             "| setting | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for setting, row in d["psnr"].items():
        lines.append(f"| {setting} | " + " | ".join(f"{row[m]:.2f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def train_speed_section(d: dict) -> str:
    modes = list(dict.fromkeys(r["mode"] for r in d["rows"]))
    lines = ["## Training step speed on the CPU by precision and memory format\n",
             f"Command: `{d['command']}` — seconds per optimiser step (median after the warm-up) of each shipped "
             "config's own stage, one thread; the modes of a stage run back to back; loss = mean training loss of "
             "the last 5 steps (same batches and noise draws in every mode); validation after the same steps in "
             "float32 (PSNR dB, or the held-out loss of stages that do not reconstruct). Defaults chosen from it: "
             "[training.md](training.md#speed-on-the-cpu).\n",
             f"Machine: {_env_line(d['environment'])}.\n",
             "| config / stage | " + " | ".join(f"{m} s/step (x fp32)" for m in modes) + " | loss fp32 / bf16 | "
             "validation fp32 / bf16 |", "|---" * (len(modes) + 3) + "|"]
    by_stage: dict[tuple, dict] = {}
    for r in d["rows"]:
        by_stage.setdefault((r["config"], r["stage"]), {})[r["mode"]] = r

    def val(r):
        v = r.get("validation") or {}
        return f"{v['psnr']:.2f} dB" if "psnr" in v else (f"{v['val_loss']:.4g}" if "val_loss" in v else "-")

    for (config, stage), rows in by_stage.items():
        cells = [f"{rows[m]['seconds_per_step']:.3f} ({rows[m]['speedup_vs_fp32']:.2f}x)" if m in rows else "-"
                 for m in modes]
        fp, bf = rows.get("fp32"), rows.get("bf16")
        loss = f"{fp['train_loss_last5']:.4g} / {bf['train_loss_last5']:.4g}" if fp and bf else "-"
        vals = f"{val(fp)} / {val(bf)}" if fp and bf else "-"
        lines.append(f"| {config}{'/' + stage if stage else ''} | " + " | ".join(cells) + f" | {loss} | {vals} |")
    if d.get("errors"):
        skipped = sorted({f"{e['config']}/{e['stage']}" for e in d["errors"]})
        lines.append(f"\nNot measured (the stage's teacher is not shipped, so the stage cannot start alone): "
                     f"{', '.join(skipped)}.")
    return "\n".join(lines) + "\n"


def markdown_section(title: str, what: str, command: str | None, key: str = "table"):
    """A section from a benchmark script that stores its own markdown table (IMA, AK-Diffusion); ``command``
    None: the command the JSON records."""
    def render(d: dict) -> str:
        parts = [f"## {title}\n", f"{what}\n", f"Command: `{command or d['command']}`\n", d[key].rstrip() + "\n"]
        if d.get("paired"):  # paired per-volume differences (benchmark --compare-to), IMA
            parts.append(d["paired"].rstrip() + "\n")
        if d.get("seed_paired"):  # IMA retraining: paired per volume and per training seed
            parts.append(d["seed_paired"].rstrip() + "\n")
        return "\n".join(parts)
    return render


def baseline_sizes_section(d: dict) -> str:
    lines = ["## Learned baselines: quality per CPU-hour at two sizes each\n",
             f"Command: `{d['command']}` — each size trained from scratch on the baselines' training set "
             "(docs/data.md), one thread, the two sizes of a model side by side; validation PSNR (held-out split, "
             "mean of random1d 4x and 8x) against CPU time. Choice in [training.md](training.md).\n",
             "| probe | parameters | s / step | validation PSNR (dB) at CPU-minutes |", "|---|---|---|---|"]
    for name, r in d["probes"].items():
        pts = ", ".join(f"{c['psnr']:.2f} @ {c['wall_time_s'] / 60:.1f}" for c in r["curve"])
        n = f"{r['num_parameters']:,}" if r.get("num_parameters") else "-"
        sps = f"{r['seconds_per_step']:.3f}" if r.get("seconds_per_step") else "-"
        lines.append(f"| {name} | {n} | {sps} | {pts} |")
    return "\n".join(lines) + "\n"


SECTIONS = [
    ("embedded.json", benchmark_section(
        "Every method on held-out simulated subjects",
        "`mrrecon benchmark` on the embedded simulator (subjects the shipped weights never saw); fastMRI-convention "
        "metrics per volume, mean ± sample std over volumes.")),
    ("shared.json", benchmark_section(
        "Every method on the shared real data",
        "`mrrecon benchmark --data benchmarks/shared-data.yaml`: the multi-coil brains and single-coil fastMRI slices "
        "of the project's shared folder (not redistributed), retrospectively undersampled.")),
    ("ssdm_simulated.json", settings_section(
        "SSDM-MRI on held-out simulated subjects (gaussian1d 8x, 12x with 6 ACS lines)",
        "Shipped `ssdm-small`: the 1-step student (one sample and the mean of 4), the 8-step student and the "
        "128-step teacher beside `unet` and zero-filled, one run per setting, paired against the 1-step student; "
        "details and the timing ratio in [ssdm.md](ssdm.md).")),
    ("ssdm_shared.json", settings_section(
        "SSDM-MRI on the shared single-coil brain and knee slices (gaussian1d 8x, 12x)",
        "See [ssdm.md](ssdm.md).")),
    ("ldpm_sim.json", benchmark_section(
        "LDPM and its Table II ablations on held-out simulated brains (random1d 8x)",
        "Shipped `ldpm-small`; see [ldpm.md](ldpm.md).")),
    ("ldpm_shared.json", benchmark_section(
        "LDPM and its ablations on the shared brain and knee slices (random1d 8x)",
        "See [ldpm.md](ldpm.md).")),
    ("ima.json", markdown_section(
        "IMA on held-out simulated T2/PD pairs", "Shipped `ima*-small`; see [ima.md](ima.md).",
        "python benchmarks/ima.py evaluate --which sim")),
    ("ima_cdlmri.json", markdown_section(
        "IMA on the shared real brain pairs (CDLMRI)",
        "T2 target; T1 reference (3 patients), FLAIR reference (1 patient); see [ima.md](ima.md).",
        "python benchmarks/ima.py evaluate --which cdlmri")),
    ("ima_sweep.json", markdown_section(
        "IMA stage sweep", "Each stage count warm-started from `ima-small`, 100 fine-tuning steps.",
        "python benchmarks/ima.py sweep --init-from weights/ima-small --threads 2; "
        "python benchmarks/ima.py evaluate --which sweep")),
    ("ima_kernels.json", markdown_section(
        "IMA DCM kernels (Table 2b analogue)",
        "Kernel 1 = shipped `ima-small`; kernels 2 and 3 continued from the same 1,500-step model with the same "
        "budget; see [ima.md](ima.md).", "python benchmarks/ima.py evaluate --which kernels")),
    ("ima_retrain.json", markdown_section(
        "IMA retraining (issue 22): the variants retrained for 15,000 steps, per seed",
        "Runs of the retraining plan finished so far (`runs/ima-retrain/<variant>-s<seed>/final`), held-out simulated "
        "pairs (T2 with PD, FLAIR and T1 references) and the CDLMRI pairs; paired per volume against `ima` of the "
        "same seed; see [ima.md](ima.md) \"Retraining plan\".", "python benchmarks/ima.py evaluate --which retrain",
        key="pivot")),
    ("ima_retrain_real.json", markdown_section(
        "IMA retraining (issue 22): the real CDLMRI pairs at radial2d and random1d 4x and 8x",
        "The same runs as above on the real pairs only, at all four settings; see [ima.md](ima.md).",
        "python benchmarks/ima.py evaluate --which retrain-real", key="pivot")),
    ("akdiff_sim.json", markdown_section(
        "AK-Diffusion on held-out simulated multi-coil slices",
        "Shipped `akdiff-small` (its own sampler settings, chosen on validation slices) beside the k-space and CS "
        "baselines, `ssdm` and `ldpm`, 8 coils, full field of view; see [akdiff.md](akdiff.md).",
        None, key="markdown")),
    ("akdiff_shared.json", markdown_section(
        "AK-Diffusion on the shared multi-coil brains", "See [akdiff.md](akdiff.md).", None, key="markdown")),
    ("akdiff_ablation_sim.json", markdown_section(
        "AK-Diffusion against its SS-coil ablation on held-out simulated multi-coil slices",
        "`akdiff-no-sscoil` (its own network, trained with the identity in place of the SS-coil subspace, sampled "
        "with `akdiff-small`'s settings) beside `akdiff` and the k-space baselines, paired against `akdiff`; "
        "see [akdiff.md](akdiff.md).", None, key="markdown")),
    ("akdiff_subspace_sim.json", markdown_section(
        "AK-Diffusion: Table IV's coil subspaces in sampling (held-out simulated slices, uniform 6x)",
        "The shipped ESPIRiT-trained network sampled with S̄S̄^* from ESPIRiT (paper), sum of squares, SLR and the "
        "identity, beside `akdiff-no-sscoil`; see [akdiff.md](akdiff.md).", None, key="markdown")),
    ("akdiff_ablation_shared.json", markdown_section(
        "AK-Diffusion against its SS-coil ablation on the shared multi-coil brains", "See [akdiff.md](akdiff.md).",
        None, key="markdown")),
    ("baselines_sim.json", benchmark_section(
        "Learned baselines against compressed sensing on held-out simulated brains",
        "The retrained `unet-small` and `varnet-small` beside zero-filled, cg-sense, l1-wavelet and bart-pics on 16 "
        "held-out simulated 8-coil volumes (4 subjects x T1/T2/PD/FLAIR x 2 slices, 256x256); paired per-volume "
        "differences against l1-wavelet. Discussion in [training.md](training.md#baselines).")),
    ("baselines_shared.json", benchmark_section(
        "Learned baselines against compressed sensing on the shared multi-coil brains",
        "The same methods on #17 (8 coils), #18 and #20 (4 coils) of the shared data; paired against l1-wavelet.")),
    ("baselines_single.json", benchmark_section(
        "Learned baselines on the shared single-coil brain slices",
        "fastMRI FLAIR #7, #8 (magnitude, 320x320) and mGRE #11-#14 (complex, coil-combined, 256x256); paired "
        "against zero-filled.")),
    ("baselines_noise.json", baselines_noise_section),
    ("contrast_randomisation.json", contrast_randomisation_section),
    ("baseline_sizes.json", baseline_sizes_section),
    ("train_speed.json", train_speed_section),
    ("physics.json", physics_section),
    ("espirit_vs_bart.json", espirit_section),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "results.md"))
    args = ap.parse_args()
    parts = ["# Results\n\nGenerated by `python benchmarks/report.py` from `benchmarks/results/*.json`; "
             "do not edit by hand. Timings are medians on the machine named in each section.\n"]
    for name, fn in SECTIONS:
        p = Path(args.results) / name
        if p.is_file():
            parts.append(fn(json.loads(p.read_text())))
    parts.append("## Classical methods against BART and sigpy\n\nSee [results-classical.md](results-classical.md), "
                 "written by `python benchmarks/classical.py`.\n")
    from mrrecon.utils.io import atomic_write_text

    atomic_write_text(args.out, "\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
