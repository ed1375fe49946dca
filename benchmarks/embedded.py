"""Every ready method on held-out subjects of the embedded simulator: the table in docs/results.md.

    python benchmarks/embedded.py [--subjects 4] [--size 256] [--coils 8] [--slices 2] [--masks random1d,poisson2d]
                                  [--accels 4,8] [--methods all] [--out benchmarks/results]

Held-out means simulator seeds the shipped weights never saw (training uses seed 0 and its derived subjects;
this uses seed 1000). Writes benchmarks/results/embedded.json (summary, volumes, environment, config; the per-slice
rows stay in the run folder) and the full benchmark folder under --work (not committed)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import slim_results  # noqa: E402

import mrrecon  # noqa: E402,F401  (allocator settings)
from mrrecon.data.simulate import simulate_dataset  # noqa: E402
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--contrast", default="T2")
    ap.add_argument("--masks", default="random1d,poisson2d")
    ap.add_argument("--accels", default="4,8")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--work", default=None, help="benchmark folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="mrrecon-embedded-"))
    data = work / "data"
    files = simulate_dataset(data, subjects=args.subjects, size=args.size, coils=args.coils,
                             contrasts=(args.contrast,), slices=args.slices, seed=args.seed)
    cfg = BenchmarkConfig(methods=args.methods, masks=tuple(args.masks.split(",")),
                          accels=tuple(float(a) for a in args.accels.split(",")), seed=args.seed, figures=1)
    res = run_benchmark([DataSpec(f) for f in files], cfg, work / "benchmark", overwrite=True)  # measure anew
    command = "python benchmarks/embedded.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if k not in ("out", "work") and v is not None)
    data_info = {"subjects": args.subjects, "size": args.size, "coils": args.coils, "slices": args.slices,
                 "contrast": args.contrast, "simulator_seed": args.seed}
    atomic_write_json(Path(args.out) / "embedded.json", slim_results(res, command, data_root=data, data=data_info))
    print(json.dumps({"written": str(Path(args.out) / "embedded.json"), "report": str(work / "benchmark")}))


if __name__ == "__main__":
    main()
