"""Inference time per slice and peak memory of the learned baselines (unet, varnet).

For each model, image size (256x256, 320x320) and coil count (1, 15): one slice of random1d-4x k-space
(a simulated brain, k-space of its coil images) through ``LearnedReconstructor.reconstruct`` (what
``mrrecon.methods.load(name).reconstruct(sample)`` runs: normalisation, the network, un-normalisation),
under ``torch.no_grad``. Models: the shipped small weights (``unet-small``, ``varnet-small``) and the
paper-size architectures of configs/*-paper.yaml (random weights: speed does not depend on the values).

Time: median of ``--repeats`` calls after one warm-up call. Peak memory of one inference: on CUDA,
``torch.cuda.max_memory_allocated`` during the calls minus the memory allocated before them (model and
input); on CPU, the peak resident set size sampled every 2 ms from /proc/self/statm during the calls
(warm-up included: the first call is where the allocator grows) minus the resident size just before them,
each case in a fresh process that receives the input from the parent (so its heap holds nothing freed
that inference could reuse). Both exclude the model's weights and the input sample.

Usage:
    python benchmarks/learned_speed.py [--threads 1] [--repeats 5] [--device cpu|cuda]
        [--models unet-small,varnet-small,unet-paper,varnet-paper] [--out benchmarks/results/learned_speed.json]
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SIZES = (256, 320)
COILS = (1, 15)


def _model(name: str):
    import yaml

    from mrrecon.core.pretrained import from_pretrained, model_class

    if name.endswith("-small"):
        return from_pretrained(name)
    cfg = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    return model_class(cfg["model"]["type"]).from_config(cfg["model"]["params"])


def _sample(size: int, coils: int):
    from mrrecon.data.datasets import make_slice_sample
    from mrrecon.data.sample import SampleMeta
    from mrrecon.data.simulate import simulate_subject
    from mrrecon.physics.masks import make_mask

    data = simulate_subject(3, size=size, coils=coils, contrasts=["T2"], slices=1)["T2"]
    mask = make_mask("random1d", (size, size), 4, seed=0)
    return make_slice_sample(data.kspace[0], mask, meta=SampleMeta(file="speed"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _case(args: tuple) -> dict:
    name, sample, device, repeats, threads = args
    size, coils = sample.shape[0], sample.num_coils
    import torch

    import mrrecon  # noqa: F401
    from mrrecon.core.pretrained import LearnedReconstructor

    torch.set_num_threads(threads)
    model = _model(name)
    rec = LearnedReconstructor(model, name, device)
    sample = sample.to(device)
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = _rss_bytes()
    times = []
    with _PeakRSS() as rss_peak:
        rec.reconstruct(sample)  # warm-up: allocator, kernels, plans
        sync()
        for _ in range(repeats):
            t0 = time.perf_counter()
            rec.reconstruct(sample)
            sync()
            times.append(time.perf_counter() - t0)
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        mem_kind = "cuda max_memory_allocated minus the allocation before the calls (model, input)"
    else:
        peak_mb = (rss_peak.peak - rss0) / 2**20
        mem_kind = "peak RSS during the calls minus RSS before them (fresh process per case)"
    return {"model": name, "type": model.model_type, "parameters": model.num_parameters(), "size": size,
            "coils": coils, "device": device, "seconds_per_slice": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "repeats": repeats, "peak_memory_mb": round(peak_mb, 1),
            "memory": mem_kind}


def main() -> None:
    from _common import environment

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="unet-small,varnet-small,unet-paper,varnet-paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learned_speed.json"))
    args = ap.parse_args()
    rows = []
    ctx = mp.get_context("spawn")
    # The inputs are simulated here, not in the measuring process, whose heap would otherwise already hold
    # (and reuse) the simulator's freed memory.
    samples = {(size, coils): _sample(size, coils) for size in SIZES for coils in COILS}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for size in SIZES:
            for coils in COILS:
                with ctx.Pool(1) as pool:  # a fresh process per case: memory does not carry over
                    row = pool.apply(_case, ((name, samples[size, coils], args.device, args.repeats, args.threads),))
                rows.append(row)
                print(f"{name:<13} {size}x{size} {coils:>2} coil(s): {row['seconds_per_slice']:.3f} s/slice, "
                      f"peak {row['peak_memory_mb']:.0f} MB", flush=True)
    from mrrecon.utils.io import atomic_write_json

    atomic_write_json(args.out, {
        "description": "inference time per slice (median) and peak memory of the learned baselines; batch 1, "
                       "random1d 4x, through LearnedReconstructor.reconstruct",
        "command": "python benchmarks/learned_speed.py " + " ".join(sys.argv[1:]),
        "environment": environment() | {"threads": args.threads}, "rows": rows,
    })
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
