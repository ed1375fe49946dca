"""Throughput of ``mrrecon benchmark`` on one machine: 1 process x T threads against P processes x T/P threads.

A small simulated set (``--subjects`` T2 volumes of ``--slices`` slices, ``--size``^2, ``--coils`` coils, random1d 4x)
is benchmarked with one classical and one learned method (default ``cg-sense`` and ``unet`` with its shipped
weights), each method alone, in each layout:

- ``1x2``: ``python -m mrrecon benchmark ...`` with ``OMP_NUM_THREADS=2`` (one process, two intra-op threads);
- ``2x1``: ``accelerate launch --cpu --num_processes 2 --num_cpu_threads_per_process 1 -m mrrecon benchmark ...``
  (two gloo processes, one thread each, each volume scored whole on one of them; docs/distributed.md).

Reported per method and layout: ``wall_s`` (the whole command: interpreter start, imports, method loading,
warm-up, the volumes, the merge and the reports), ``run_s`` (``elapsed_seconds`` of results.json: rank 0's run from
the start of the benchmark to its last record merged; no interpreter start), and volumes per hour from each; the
speed-up of ``2x1`` over ``1x2``; and whether both layouts gave the same metrics (they must: same volumes, same
masks, only the process that scored them differs). Layouts run in alternation, ``--repeats`` times each (median).

Usage:
    python benchmarks/scaling.py [--methods cg-sense,unet] [--subjects 12] [--slices 4] [--size 128] [--coils 8]
        [--repeats 2] [--work DIR] [--out benchmarks/results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

LAYOUTS = {"1x2": (1, 2), "2x1": (2, 1)}  # processes x threads per process


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(processes: int, threads: int, args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "mrrecon", *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes),
            "--num_cpu_threads_per_process", str(threads), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(_port()), "-m", "mrrecon", *args]


def run_once(method: str, layout: str, data: Path, out: Path, extra: list[str]) -> dict:
    processes, threads = LAYOUTS[layout]
    args = ["benchmark", "--data", str(data), "--methods", method, "--accels", "4", "--figures", "0",
            "--out", str(out), "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    proc = subprocess.run(command(processes, threads, args), cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{method} {layout} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    vols = [v for v in res["volumes"] if v["error"] is None]
    return {"wall_s": wall, "run_s": res["elapsed_seconds"], "volumes": len(vols),
            "slices": sum(v["n_slices"] for v in vols), "processes": res["environment"]["processes"],
            "threads": [r["threads"] for r in res["environment"].get("ranks", [])] or [res["environment"]["threads"]],
            "ranks": sorted({v["rank"] for v in vols}),
            "seconds_per_slice": statistics.mean(v["seconds_per_slice"] for v in vols),
            "metrics": {(v["file"], v["accel"]): (v["psnr"], v["ssim"]) for v in vols}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="cg-sense,unet")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default=None, help="Folder for the simulated data and the runs (default: a temp dir).")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    args = ap.parse_args()

    from _common import environment

    from mrrecon.data.simulate import simulate_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="mrrecon-scaling-"))
    data = work / "data"
    if not any(data.glob("*.h5")):
        simulate_dataset(data, subjects=args.subjects, size=args.size, coils=args.coils, contrasts=("T2",),
                         slices=args.slices, seed=0)
    rows = []
    for method in [m for m in args.methods.split(",") if m]:
        runs: dict[str, list[dict]] = {k: [] for k in LAYOUTS}
        for _ in range(args.repeats):
            for layout in LAYOUTS:  # alternate, so that machine noise hits both alike
                runs[layout].append(run_once(method, layout, data, work / f"{method}-{layout}", []))
                print(f"{method} {layout}: {runs[layout][-1]['wall_s']:.1f} s", flush=True)
        row = {"method": method, "layouts": {}}
        for layout, rs in runs.items():
            wall = statistics.median(r["wall_s"] for r in rs)
            run_s = statistics.median(r["run_s"] for r in rs)
            n = rs[0]["volumes"]
            row["layouts"][layout] = {
                "processes": rs[0]["processes"], "threads_per_process": rs[0]["threads"], "ranks_used": rs[0]["ranks"],
                "volumes": n, "slices": rs[0]["slices"], "wall_s": wall, "run_s": run_s,
                "volumes_per_hour": 3600 * n / wall, "volumes_per_hour_run": 3600 * n / run_s,
                "seconds_per_slice_mean": statistics.median(r["seconds_per_slice"] for r in rs),
                "repeats": [{"wall_s": r["wall_s"], "run_s": r["run_s"]} for r in rs]}
        a, b = runs["1x2"][0]["metrics"], runs["2x1"][0]["metrics"]
        row["same_metrics"] = a.keys() == b.keys() and all(
            abs(a[k][0] - b[k][0]) <= 1e-6 and abs(a[k][1] - b[k][1]) <= 1e-6 for k in a)
        row["speedup_2x1_over_1x2"] = row["layouts"]["1x2"]["wall_s"] / row["layouts"]["2x1"]["wall_s"]
        row["speedup_2x1_over_1x2_run"] = row["layouts"]["1x2"]["run_s"] / row["layouts"]["2x1"]["run_s"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "layouts"}), flush=True)
    result = {
        "benchmark": "scaling",
        "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        "environment": {**environment(), "cpu_count": os.cpu_count()},
        "data": {"simulated": True, "subjects": args.subjects, "slices": args.slices, "size": args.size,
                 "coils": args.coils, "contrast": "T2", "mask": "random1d", "accel": 4},
        "note": "wall_s: the whole command (interpreter start, imports, loading, warm-up, volumes, merge, reports); "
                "run_s: results.json elapsed_seconds (rank 0, from the start of the run to the merged results). "
                "Volumes per hour = volumes / seconds x 3600.",
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
