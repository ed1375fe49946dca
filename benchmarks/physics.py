"""Speed of the physics core against raw torch.fft.fft2, measured side by side in one run.

    python benchmarks/physics.py [--out benchmarks/results/physics.json] [--repeats 30] [--device cpu]

Times fft2c / ifft2c, the naive shift-based centred FFT, the SENSE normal operator and one hard-DC step on
(15, 320, 320) and (16, 640, 368) complex64 and reports each as a ratio to raw fft2 of the same array."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, time_interleaved  # noqa: E402

import mrrecon  # noqa: E402,F401  (allocator settings)
from mrrecon.physics import SenseOperator, dc_image, fft2c, ifft2c  # noqa: E402

SHAPES = [(15, 320, 320), (16, 640, 368)]


def bench_shape(shape, repeats, device):
    c, h, w = shape
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(c, h, w, dtype=torch.complex64, generator=g).to(device)
    image = torch.randn(1, h, w, dtype=torch.complex64, generator=g).to(device)
    maps = (torch.randn(1, c, h, w, dtype=torch.complex64, generator=g) / c**0.5).to(device)
    mask = (torch.rand(1, 1, 1, w, generator=g) < 0.3).to(device)
    op = SenseOperator(maps, mask)
    y = op.A(image)
    dims = (-2, -1)
    fns = {
        "raw_fft2": lambda: torch.fft.fft2(x, norm="ortho"),
        "fft2c": lambda: fft2c(x),
        "ifft2c": lambda: ifft2c(x),
        "shift_fft2": lambda: torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"),
                                                 dim=dims),
        "sense_normal": lambda: op.normal(image),
        "dc_step": lambda: dc_image(image, y, mask, maps),
    }
    res = time_interleaved(fns, repeats=repeats)
    raw = res["raw_fft2"]["median_ms"]
    for v in res.values():
        v["ratio_to_raw_fft2"] = v["median_ms"] / raw
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "physics.json"))
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    result = {"benchmark": "physics", "environment": environment(), "device": args.device,
              "shapes": {"x".join(map(str, s)): bench_shape(s, args.repeats, args.device) for s in SHAPES}}
    from mrrecon.utils.io import atomic_write_json

    atomic_write_json(args.out, result)
    for shape, res in result["shapes"].items():
        print(shape)
        for name, v in res.items():
            print(f"  {name:<12} {v['median_ms']:8.2f} ms  x{v['ratio_to_raw_fft2']:.2f}  "
                  f"faults/call {v['page_faults_per_call']:.0f}")
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
