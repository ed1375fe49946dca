"""``mrrecon demo``: the embedded simulated data, every ready method, a table, a figure and a report."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mrrecon.data.datasets import samples_from_file
from mrrecon.data.simulate import simulate_dataset
from mrrecon.eval.report import figure_grid, summary_table_markdown, write_markdown
from mrrecon.eval.runner import score_volume, summarise
from mrrecon.methods import available, load
from mrrecon.methods.weights import shipped_weights
from mrrecon.utils.io import atomic_write_json


def ready_methods() -> list[str]:
    """Methods that run on single-contrast multi-coil data without training or with shipped weights."""
    weights = shipped_weights()
    return [n for n, mi in available().items()
            if not mi.needs_reference and (not mi.needs_weights or mi.default_weights in weights)]


def demo_data(out: Path, *, subjects: int, size: int, coils: int, slices: int, contrast: str, seed: int) -> list[Path]:
    """Simulate the demo set once; later runs with the same settings reuse the files."""
    folder = out / "data" / f"sim-n{subjects}-s{size}-c{coils}-z{slices}-seed{seed}"
    expected = [folder / f"sub{i:03d}_{contrast.upper()}.h5" for i in range(subjects)]
    if not all(p.is_file() for p in expected):
        simulate_dataset(folder, subjects=subjects, size=size, coils=coils, contrasts=(contrast,), slices=slices,
                         seed=seed)
    return expected


def run_demo(out: Path, *, subjects: int = 2, size: int = 256, coils: int = 8, slices: int = 2, contrast: str = "T2",
             mask_kind: str = "random1d", accels: Sequence[float] = (4, 8), methods: Sequence[str] | None = None,
             seed: int = 0, echo: Callable[[str], None] = print) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = demo_data(out, subjects=subjects, size=size, coils=coils, slices=slices, contrast=contrast, seed=seed)
    specs = list(methods) if methods else ready_methods()
    recons = {spec: load(spec) for spec in specs}
    echo(f"demo: {len(files)} simulated {contrast} volume(s) of {slices} slice(s), {size}x{size}, {coils} coils; "
         f"methods: {', '.join(specs)}")
    results, figures = [], []
    for accel in accels:
        shown: dict[str, object] = {}
        for fi, f in enumerate(files):
            samples = list(samples_from_file(f, mask_kind=mask_kind, acceleration=accel, seed=seed + fi))
            for spec, method in recons.items():
                res = score_volume(spec, method, samples, keep_images=(fi == 0))
                results.append(res)
                if fi == 0 and res.images:
                    shown[spec] = res.images[len(samples) // 2]
            if fi == 0:
                target = (samples[len(samples) // 2].target.abs() * samples[0].meta.scale).numpy()
                eff = samples[0].meta.effective_acceleration
        fig = out / f"figure_{mask_kind}_{accel:g}x.png"
        figure_grid(fig, target, shown, title=f"{contrast}, {mask_kind} {accel:g}x (effective {eff:.2f}x)")
        figures.append(fig)
    summary = summarise(results)
    table = summary_table_markdown(summary)
    echo("\n" + table)
    atomic_write_json(out / "results.json", {
        "summary": summary, "runs": [r.row() for r in results],
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "device": "cpu"},
    })
    failed = [r for r in results if r.error]
    report = ["# mrrecon demo\n",
              f"Simulated {contrast} brain, {len(files)} subject(s) x {slices} slice(s), {size}x{size}, {coils} coils; "
              f"mask {mask_kind}; metrics in the fastMRI convention (per volume; PSNR/SSIM data range = volume max).\n",
              table]
    if failed:
        report.append("\n## Failures\n\n" + "\n".join(f"- {r.method} on {r.file}: {r.error}" for r in failed) + "\n")
    report += [f"\n![{f.stem}]({f.name})\n" for f in figures]
    write_markdown(out / "report.md", "".join(report))
    echo(f"wrote {out / 'report.md'}, {out / 'results.json'} and {len(figures)} figure(s)")
    return summary
