"""Reports shared by the demo and the benchmark: markdown and self-contained HTML tables, figure grids
(target / each method / error maps) and a PSNR-vs-time plot."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrrecon.eval.paired import paired_table, paired_table_markdown
from mrrecon.utils.io import atomic_write_bytes, atomic_write_text

# column key, header, digits, better ('max' | 'min' | None)
COLUMNS = [("psnr", "PSNR (dB)", 2, "max"), ("ssim", "SSIM", 4, "max"), ("nmse_mean", "NMSE", 5, "min"),
           ("seconds_mean", "s/slice", 3, "min"), ("peak_mem_mb", "peak MB", 0, None), ("nfe", "NFE", 0, None)]
# model size and compute per slice (IMA Table 2 analogue; conv/matmul MACs counted by mrrecon.eval.complexity)
COLUMNS += [("params_m", "params (M)", 3, None), ("gmacs", "GMACs", 2, None)]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v, nd: int) -> str:
    return f"{v:.{nd}f}" if _finite(v) else "–"


def _groups(rows: Sequence[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r.get("data", ""), r["mask"], r["accel"]), []).append(r)
    return out


def _best(rows: Sequence[dict]) -> dict[str, float]:
    best = {}
    for key, _, _, better in COLUMNS:
        k = key if key.endswith(("_mean", "_mb")) or key == "nfe" else f"{key}_mean"
        vals = [r.get(k) for r in rows if _finite(r.get(k))]
        if better and vals:
            best[k] = max(vals) if better == "max" else min(vals)
    return best


def _cells(r: dict, best: dict[str, float]) -> list[tuple[str, bool]]:
    """(text, is_best) per column."""
    out = []
    for key, _, nd, _ in COLUMNS:
        if key in ("psnr", "ssim"):
            m, s = r.get(f"{key}_mean"), r.get(f"{key}_std")
            text = _fmt(m, nd) + (f" ± {_fmt(s, nd)}" if _finite(s) else "")
            out.append((text, _finite(m) and m == best.get(f"{key}_mean")))
        else:
            v = r.get(key)
            out.append((_fmt(v, nd), _finite(v) and v == best.get(key)))
    return out


def summary_table_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of summary rows, grouped by (mask, accel); the best value per column is bold."""
    lines = ["| data | method | mask | accel | effective | n | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(COLUMNS)]
    for _key, rs in _groups(rows).items():
        best = _best(rs)
        for r in rs:
            cells = [f"**{t}**" if b else t for t, b in _cells(r, best)]
            lines.append(f"| {r.get('data', '')} | {r['method']} | {r['mask']} | {r['accel']:g} | "
                         f"{_fmt(r['effective_accel'], 2)} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PERCEPTUAL_NOTE = ("Perceptual metrics from local feature-network weights (--feature-weights): LPIPS mean ± std over "
                   "slices (lower is better); rFID = FID between the reconstructions and their targets, and KID "
                   "(unbiased MMD², cubic polynomial kernel, mean ± std over subsets), both set metrics over the n "
                   "images of a row. With n below 2048 (the Inception feature dimension) FID is biased upwards and "
                   "KID is noisy: compare rows with equal n only.")


def _has_perceptual(rows: Sequence[dict]) -> bool:
    return any(k in r for r in rows for k in ("lpips_mean", "fid"))


def _perceptual_cells(r: dict) -> list[str]:
    lp = _fmt(r.get("lpips_mean"), 4) + (f" ± {_fmt(r['lpips_std'], 4)}" if _finite(r.get("lpips_std")) else "")
    kid = _fmt(r.get("kid_mean"), 4) + (f" ± {_fmt(r['kid_std'], 4)}" if _finite(r.get("kid_std")) else "")
    n = r.get("fid_n", r.get("n_slices"))
    return [str(n), lp if "lpips_mean" in r else "–", _fmt(r.get("fid"), 2), kid if "kid_mean" in r else "–"]


def perceptual_table_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of the perceptual columns (LPIPS, rFID, KID) of summary rows; empty if none has them."""
    if not _has_perceptual(rows):
        return ""
    lines = ["| data | method | mask | accel | n images | LPIPS | rFID | KID |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('data', '')} | {r['method']} | {r['mask']} | {r['accel']:g} | "
                     + " | ".join(_perceptual_cells(r)) + " |")
    return "\n".join(lines) + "\n"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def figure_grid_png(target: np.ndarray, recons: dict[str, np.ndarray], title: str = "", error_scale: float = 5.0
                    ) -> bytes:
    """Target and each reconstruction (top row) with |error| x error_scale below, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["target", *recons]
    vmax = float(np.percentile(target, 99.5)) or 1.0
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 4.8), squeeze=False)
    for j, name in enumerate(names):
        img = target if name == "target" else recons[name]
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(name, fontsize=8)
        if name != "target":
            axes[1, j].imshow(np.abs(img - target) * error_scale, cmap="inferno", vmin=0, vmax=vmax)
            axes[1, j].set_title(f"|error| x{error_scale:g}", fontsize=7)
        for ax in axes[:, j]:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def figure_grid(path: Path, target: np.ndarray, recons: dict[str, np.ndarray], title: str = "",
                error_scale: float = 5.0) -> None:
    atomic_write_bytes(path, figure_grid_png(target, recons, title, error_scale))


def uncertainty_grid_png(target: np.ndarray | None, maps: dict[str, tuple[np.ndarray, np.ndarray]], title: str = ""
                         ) -> bytes:
    """Per method, the mean (top) and standard deviation (bottom) of repeated posterior samples (SSDM-MRI
    Fig. 8), with the target first when given; std maps share one colour scale. PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = (["target"] if target is not None else []) + list(maps)
    ref = target if target is not None else next(iter(maps.values()))[0]
    vmax = float(np.percentile(ref, 99.5)) or 1.0
    smax = max(float(np.percentile(std, 99.5)) for _, std in maps.values()) or 1.0
    fig, axes = plt.subplots(2, len(cols), figsize=(2.2 * len(cols), 4.8), squeeze=False)
    for j, name in enumerate(cols):
        mean = target if name == "target" else maps[name][0]
        axes[0, j].imshow(mean, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(name if name == "target" else f"{name} mean", fontsize=8)
        if name != "target":
            im = axes[1, j].imshow(maps[name][1], cmap="inferno", vmin=0, vmax=smax)
            axes[1, j].set_title("std", fontsize=7)
        for ax in axes[:, j]:
            ax.axis("off")
    if maps:
        fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _png(fig)


def uncertainty_maps(methods: dict, sample, samples: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (mean, std)} in physical units for the methods that sample (``supports_uncertainty``)."""
    out = {}
    for name, method in methods.items():
        if method.supports_uncertainty:
            mean, std = method.reconstruct_with_uncertainty(sample, samples)
            scale = float(sample.meta.scale)
            out[name] = (mean.detach().float().cpu().numpy() * scale, std.detach().float().cpu().numpy() * scale)
    return out


def psnr_vs_time_png(rows: Sequence[dict]) -> bytes | None:
    """Mean PSNR against seconds per slice (log scale), one marker per method and (mask, accel)."""
    pts = [r for r in rows if _finite(r.get("psnr_mean")) and _finite(r.get("seconds_mean"))]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = "o^sDvP*Xh<>"
    groups = list(dict.fromkeys((r["mask"], r["accel"]) for r in pts))
    methods = list(dict.fromkeys(r["method"] for r in pts))
    cmap = plt.get_cmap("tab20")
    for r in pts:
        g = groups.index((r["mask"], r["accel"]))  # marker per (mask, accel); colour per method
        ax.scatter(max(r["seconds_mean"], 1e-4), r["psnr_mean"], color=cmap(methods.index(r["method"]) % 20),
                   marker=markers[g % len(markers)], s=40)
    for i, m in enumerate(methods):
        ax.scatter([], [], color=cmap(i % 20), marker="o", label=m)
    for g, (mask, accel) in enumerate(groups):
        ax.scatter([], [], color="gray", marker=markers[g % len(markers)], label=f"{mask} {accel:g}x")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per slice")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _png(fig)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;
background:#e6f4e6}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}code{background:#f5f5f5;padding:1px 3px}
.err{color:#a00}"""


def _html_table(rows: Sequence[dict]) -> str:
    parts = []
    for (data, mask, accel), rs in _groups(rows).items():
        best = _best(rs)
        eff = np.nanmean([r["effective_accel"] for r in rs])
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in COLUMNS)
        parts.append(f"<h3>{html.escape(str(data))} {html.escape(str(mask))} {accel:g}x (effective {eff:.2f}x)</h3>"
                     f"<table><tr><th>method</th><th>n</th>{head}</tr>")
        for r in rs:
            tds = "".join(f'<td class="best">{html.escape(t)}</td>' if b else f"<td>{html.escape(t)}</td>"
                          for t, b in _cells(r, best))
            parts.append(f"<tr><td>{html.escape(r['method'])}</td><td>{r['n']}</td>{tds}</tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _html_paired(rows: Sequence[dict]) -> str:
    """The paired-differences table (mrrecon.eval.paired.paired_table) as HTML."""
    caption, header, cells = paired_table(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f"<p>{html.escape(caption)}</p><table><tr>{head}</tr>{body}</table>"


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def write_reports(out: Path, results: dict, figures: Sequence[dict] = ()) -> None:
    """report.md (+ PNG files beside it) and a self-contained report.html (images embedded)."""
    out = Path(out)
    summary = results.get("summary", [])
    env = results.get("environment", {})
    pngs: list[tuple[str, str, bytes]] = []  # (file name, caption, bytes)
    for i, f in enumerate(figures):
        cap = (f"{f['name']} slice {f['slice']}, {f['mask']} {f['accel']:g}x "
               f"(effective {f['effective_accel']:.2f}x)")
        pngs.append((f"figure_{i:02d}_{f['mask']}_{f['accel']:g}x.png", cap,
                     figure_grid_png(f["target"], f["images"], cap)))
        if f.get("uncertainty"):  # {method: (mean, std)} from uncertainty_maps
            pngs.append((f"uncertainty_{i:02d}_{f['mask']}_{f['accel']:g}x.png", f"{cap}: posterior mean and std",
                         uncertainty_grid_png(f["target"], f["uncertainty"], f"{cap}: mean / std of samples")))
    plot = psnr_vs_time_png(summary)
    if plot:
        pngs.append(("psnr_vs_time.png", "PSNR against time per slice", plot))
    for name, _, data in pngs:
        atomic_write_bytes(out / name, data)

    machine = (f"{env.get('processor')}, {env.get('cpu_count')} CPUs, {env.get('threads')} torch threads, "
               f"device {env.get('device')}{', ' + env['cuda'] if env.get('cuda') else ''}; python "
               f"{env.get('python')}, torch {env.get('torch')}")
    cmd = env.get("command") or "(from Python)"
    note = ("Metrics in the fastMRI convention: per volume, PSNR/SSIM data range = max of the target volume, SSIM "
            "7x7; mean ± sample std over volumes; effective acceleration = 1 / sampled fraction. Seconds are wall "
            "time per slice after one warm-up call per method; peak MB is the extra resident memory (CPU) or "
            "tensor memory (CUDA) while reconstructing; NFE = network evaluations per slice.")
    md = [f"# mrrecon benchmark\n\nCommand: `{cmd}`  \nMachine: {machine}  \n"
          f"Elapsed: {results.get('elapsed_seconds', float('nan')):.0f} s\n\n{note}\n\n",
          summary_table_markdown(summary)]
    perceptual = results.get("perceptual") or {}
    if _has_perceptual(summary):
        md.append(f"\n## Perceptual metrics\n\n{PERCEPTUAL_NOTE}\n\n{perceptual_table_markdown(summary)}")
    if perceptual.get("skipped"):
        md.append(f"\nPerceptual metrics skipped: {perceptual['skipped']}\n")
    paired = results.get("paired") or []
    if paired:
        md.append(f"\n## Paired differences\n\n{paired_table_markdown(paired)}\n")
    errors, skipped = results.get("errors", []), results.get("skipped", [])
    if errors:
        md.append("\n## Errors\n\n" + "\n".join(
            f"- `{e.get('file')}`{' / ' + e['method'] if e.get('method') else ''}: {e.get('error')}"
            for e in errors) + "\n")
    if skipped:
        md.append("\n## Skipped\n\n" + "\n".join(
            f"- {s.get('method')}{' on `' + s['file'] + '`' if s.get('file') else ''}: {s.get('reason')}"
            for s in skipped) + "\n")
    md += [f"\n![{cap}]({name})\n" for name, cap, _ in pngs]
    atomic_write_text(out / "report.md", "".join(md))

    body = [f"<h1>mrrecon benchmark</h1><p>Command: <code>{html.escape(cmd)}</code><br>Machine: "
            f"{html.escape(machine)}</p><p>{html.escape(note)}</p>", _html_table(summary)]
    if _has_perceptual(summary):
        head = "".join(f"<th>{h}</th>" for h in ("data", "method", "mask", "accel", "n images", "LPIPS", "rFID",
                                                  "KID"))
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in
                                       (r.get("data", ""), r["method"], r["mask"], f"{r['accel']:g}",
                                        *_perceptual_cells(r))) + "</tr>" for r in summary)
        body.append(f"<h2>Perceptual metrics</h2><p>{html.escape(PERCEPTUAL_NOTE)}</p><table><tr>{head}</tr>{trs}"
                    "</table>")
    if perceptual.get("skipped"):
        body.append(f"<p>Perceptual metrics skipped: {html.escape(str(perceptual['skipped']))}</p>")
    if paired:
        body.append(f"<h2>Paired differences</h2>{_html_paired(paired)}")
    if errors:
        body.append("<h2>Errors</h2><ul>" + "".join(
            f'<li class="err"><code>{html.escape(str(e.get("file")))}</code> {html.escape(str(e.get("method") or ""))}'
            f": {html.escape(str(e.get('error')))}</li>" for e in errors) + "</ul>")
    if skipped:
        body.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li>{html.escape(str(s.get('method')))} {html.escape(str(s.get('file') or ''))}: "
            f"{html.escape(str(s.get('reason')))}</li>" for s in skipped) + "</ul>")
    body += [f"<h2>{html.escape(cap)}</h2>{_img_tag(data, cap)}" for _, cap, data in pngs]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mrrecon benchmark</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(out / "report.html", page)
