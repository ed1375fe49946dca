"""``mrrecon demo``: the embedded simulated data, every ready method, a table, figures and a report.

It is ``mrrecon benchmark`` on a small simulated set, made once and reused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mrrecon.core.weights import shipped_weights
from mrrecon.data.simulate import simulate_dataset
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark
from mrrecon.eval.report import summary_table_markdown
from mrrecon.methods import available


def ready_methods() -> list[str]:
    """Methods that run on single-contrast multi-coil data without training or with shipped weights; papers'
    ablations are left to ``mrrecon benchmark``, and methods marked ``in_demo=False`` (minutes per slice on a CPU)
    run only when named (``mrrecon demo --methods akdiff``)."""
    weights = shipped_weights()
    return [n for n, mi in available().items()
            if not mi.needs_reference and mi.ablation_of is None and mi.in_demo
            and (not mi.needs_weights or mi.default_weights in weights)]


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
             seed: int = 0, echo: Callable[[str], None] = print, progress: bool = True) -> list[dict]:
    out = Path(out)
    files = demo_data(out, subjects=subjects, size=size, coils=coils, slices=slices, contrast=contrast, seed=seed)
    specs = list(methods) if methods else ready_methods()
    echo(f"demo: {len(files)} simulated {contrast} volume(s) of {slices} slice(s), {size}x{size}, {coils} coils; "
         f"{mask_kind} at {', '.join(f'{a:g}x' for a in accels)}; methods: {', '.join(specs)}")
    cfg = BenchmarkConfig(methods=specs, masks=(mask_kind,), accels=tuple(float(a) for a in accels), seed=seed,
                          figures=1)
    # the demo's folder is its own: the same demo again resumes (nothing to redo), another one replaces it
    res = run_benchmark([DataSpec(f) for f in files], cfg, out, echo=echo, progress=progress, overwrite=None)
    echo("\n" + summary_table_markdown(res["summary"]))
    echo(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'results.json'} and the figures")
    return res["summary"]
