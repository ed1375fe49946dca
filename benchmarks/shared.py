"""Every ready method on the shared real data (benchmarks/shared-data.yaml): the real-data table in docs/results.md.

    python benchmarks/shared.py [--methods all] [--masks random1d] [--accels 4,8] [--out benchmarks/results]

Reads the files in place (from $MRRECON_SHARED_DATA or ../shared/data) and skips cleanly when they are absent.
Writes benchmarks/results/shared.json (no per-slice rows) and the full benchmark folder under --work."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import slim_results  # noqa: E402

import mrrecon  # noqa: E402,F401  (allocator settings)
from mrrecon.eval.benchmark import BenchmarkConfig, collect_data, run_benchmark  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(HERE / "shared-data.yaml"))
    ap.add_argument("--methods", default="all")
    ap.add_argument("--masks", default="random1d")
    ap.add_argument("--accels", default="4,8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    cfg = BenchmarkConfig(methods=args.methods, masks=tuple(args.masks.split(",")),
                          accels=tuple(float(a) for a in args.accels.split(",")), seed=args.seed)
    specs, problems = collect_data([args.manifest], cfg)
    if not specs:
        print(json.dumps({"skipped": "shared data not found", "problems": problems}))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="mrrecon-shared-"))
    res = run_benchmark(specs, cfg, work, problems=problems, overwrite=True)  # measure anew
    command = (f"python benchmarks/shared.py --methods {args.methods} --masks {args.masks} --accels {args.accels} "
               f"--seed {args.seed}")
    root = os.path.commonpath([os.path.realpath(s.path) for s in specs])
    atomic_write_json(Path(args.out) / "shared.json", slim_results(res, command, data_root=root))
    print(json.dumps({"written": str(Path(args.out) / "shared.json"), "report": str(work)}))


if __name__ == "__main__":
    main()
