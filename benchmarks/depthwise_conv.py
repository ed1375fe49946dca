"""Dilated depthwise convolution on the CPU: PyTorch's grouped convolution against the polyphase form of
``mrrecon.nn.depthwise.DepthwiseConv2d``, and what that changes in IMA's training step.

    python benchmarks/depthwise_conv.py [--threads 1] [--repeats 15]

Both forms are the same layer (same parameters; tests/test_ima.py checks outputs and gradients). On a
channels_last input the polyphase form rearranges in NHWC order; ``polyphase_nchw`` (the NCHW rearrangement on the
same input, the form before that path) is timed beside it. Timed round-robin in one process
(``_common.time_interleaved``), median milliseconds:

* ``layer``: forward + backward of one 3 x 3 depthwise convolution with dilation 2 at (1, 18, 128, 128) (IMA's
  CSCA ``scale2`` in configs/ima-small.yaml) in fp32 (NCHW), fp32 channels_last and bf16 autocast channels_last;
* ``ima_step``: one training step of configs/ima-small.yaml (forward, eq. 25 loss, backward, Adam) at 128 x 128,
  batch 1, in the config's mode (fp32, channels_last) and in bf16 autocast with channels_last.

Writes benchmarks/results/depthwise_conv.json.
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch start their pools
    from _threads import pin_threads_from_argv

    pin_threads_from_argv()

from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import environment, time_interleaved  # noqa: E402

from mrrecon.nn.depthwise import DepthwiseConv2d  # noqa: E402
from mrrecon.utils.io import atomic_write_json  # noqa: E402

MODES = {"fp32": (False, False), "fp32_channels_last": (False, True), "bf16_channels_last": (True, True)}


@contextmanager
def grouped_only():
    """DepthwiseConv2d as the plain grouped convolution (the form before the polyphase path)."""
    polyphase = DepthwiseConv2d._polyphase
    DepthwiseConv2d._polyphase = lambda self, x: False
    try:
        yield
    finally:
        DepthwiseConv2d._polyphase = polyphase


@contextmanager
def nchw_polyphase():
    """DepthwiseConv2d's polyphase form always rearranged in NCHW order (the form before the NHWC path)."""
    nhwc = DepthwiseConv2d.polyphase_nhwc
    DepthwiseConv2d.polyphase_nhwc = DepthwiseConv2d.polyphase_nchw
    try:
        yield
    finally:
        DepthwiseConv2d.polyphase_nhwc = nhwc


FORMS = {"grouped": grouped_only, "polyphase_nchw": nchw_polyphase, "polyphase": None}


def _run(fn, bf16: bool, form: str):
    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if FORMS[form] is not None:
                with FORMS[form]():
                    fn()
            else:
                fn()
    return call


def layer_case(bf16: bool, channels_last: bool):
    layer = DepthwiseConv2d(18, 3, padding=2, dilation=2)
    x = torch.randn(1, 18, 128, 128)
    if channels_last:
        layer, x = layer.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    x.requires_grad_()

    def step():
        layer(x).float().square().sum().backward()
    return step


def ima_step_case(channels_last: bool):
    from mrrecon.core.pretrained import model_class
    from mrrecon.data.sample import Batch

    cfg = yaml.safe_load((REPO / "configs" / "ima-small.yaml").read_text())
    torch.manual_seed(0)
    model = model_class("ima").from_config(cfg["model"]["params"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    size = 128
    mask = (torch.rand(1, 1, 1, size, generator=gen) < 0.25).float()
    kspace = torch.randn(1, 1, size, size, dtype=torch.complex64, generator=gen) * mask
    batch = Batch(kspace=kspace, mask=mask, target=torch.rand(1, size, size, generator=gen),
                  reference=torch.rand(1, size, size, generator=gen))
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step():
        model.training_loss(batch, torch.nn.functional.l1_loss)["loss"].backward()
        opt.step()
        opt.zero_grad()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "depthwise_conv.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for part, modes in (("layer", MODES), ("ima_step", {k: MODES[k] for k in ("fp32_channels_last",
                                                                             "bf16_channels_last")})):
        for mode, (bf16, cl) in modes.items():
            fns = {}
            forms = ("grouped", "polyphase_nchw", "polyphase") if cl else ("grouped", "polyphase")
            for form in forms:
                case = layer_case(bf16, cl) if part == "layer" else ima_step_case(cl)
                fns[form] = _run(case, bf16, form)
            t = time_interleaved(fns, repeats=args.repeats if part == "layer" else max(3, args.repeats // 3))
            row = {"part": part, "mode": mode, **{f"{f}_ms": t[f]["median_ms"] for f in forms},
                   "speedup": t["grouped"]["median_ms"] / t["polyphase"]["median_ms"]}
            if cl:  # the NHWC rearrangement against the NCHW one on the same channels_last input
                row["nhwc_speedup"] = t["polyphase_nchw"]["median_ms"] / t["polyphase"]["median_ms"]
            rows.append(row)
            print(f"{part:9s} {mode:19s} " + "  ".join(f"{f} {row[f + '_ms']:8.1f} ms" for f in forms)
                  + f"  {row['speedup']:.2f}x" + (f"  nhwc {row['nhwc_speedup']:.2f}x" if cl else ""), flush=True)
    atomic_write_json(Path(args.out), {"description": __doc__.split("\n\n")[0].replace("\n", " "),
                                       "command": f"python benchmarks/depthwise_conv.py --threads {args.threads} "
                                                  f"--repeats {args.repeats}",
                                       "environment": environment(), "rows": rows})


if __name__ == "__main__":
    main()
