"""Report writing shared by the demo and the benchmark: a markdown table and a figure grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrrecon.utils.io import atomic_write_bytes, atomic_write_text


def _fmt(v: float, nd: int) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def summary_table_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of summary rows; the best PSNR/SSIM per (mask, accel) is bold."""
    best: dict[tuple, dict[str, float]] = {}
    for r in rows:
        key = (r["mask"], r["accel"])
        b = best.setdefault(key, {"psnr_mean": -math.inf, "ssim_mean": -math.inf})
        for k in b:
            if not math.isnan(r[k]):
                b[k] = max(b[k], r[k])
    lines = ["| method | mask | accel | effective | n | PSNR (dB) | SSIM | NMSE | s/slice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = best[(r["mask"], r["accel"])]
        psnr = f"{_fmt(r['psnr_mean'], 2)} ± {_fmt(r['psnr_std'], 2)}"
        ssim = f"{_fmt(r['ssim_mean'], 4)} ± {_fmt(r['ssim_std'], 4)}"
        if r["psnr_mean"] == b["psnr_mean"]:
            psnr = f"**{psnr}**"
        if r["ssim_mean"] == b["ssim_mean"]:
            ssim = f"**{ssim}**"
        lines.append(f"| {r['method']} | {r['mask']} | {r['accel']:g} | {r['effective_accel']:.2f} | {r['n']} | "
                     f"{psnr} | {ssim} | {_fmt(r['nmse_mean'], 5)} | {_fmt(r['seconds_mean'], 3)} |")
    return "\n".join(lines) + "\n"


def figure_grid(path: Path, target: np.ndarray, recons: dict[str, np.ndarray], title: str = "",
                error_scale: float = 5.0) -> None:
    """Target and each reconstruction (top row) with |error| x error_scale below, saved as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["target", *recons]
    vmax = float(np.percentile(target, 99.5)) or 1.0
    fig, axes = plt.subplots(2, len(names), figsize=(2.4 * len(names), 5.0), squeeze=False)
    for j, name in enumerate(names):
        img = target if name == "target" else recons[name]
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(name, fontsize=9)
        if name != "target":
            axes[1, j].imshow(np.abs(img - target) * error_scale, cmap="inferno", vmin=0, vmax=vmax)
            axes[1, j].set_title(f"|error| x{error_scale:g}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_markdown(path: Path, text: str) -> None:
    atomic_write_text(path, text)
