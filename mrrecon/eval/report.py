"""Reports shared by the demo and the benchmark: markdown and self-contained HTML tables, figure grids
(target / each method / error maps) and a PSNR-vs-time plot."""

from __future__ import annotations

import base64
import html
import io
import math
import re
import textwrap
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
FIGURE_DPI = 100  # figure PNGs are at most ~1150 px wide: shown at their own size in the 1200 px HTML page


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


def _png(fig, dpi: int = FIGURE_DPI) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def zoom_box(target: np.ndarray, error: np.ndarray | None = None, fraction: float = 0.25) -> tuple[int, int, int, int]:
    """A square region (top, left, height, width) of side ``fraction`` of the smaller image side for the zoomed
    panels: where the (first method's) error is largest on average, among windows that lie mostly inside the
    object (window mean of the target >= 20 % of the target's maximum); the window of the largest target mean
    when no error is given. Deterministic (integral images, first maximum)."""
    t = np.abs(np.asarray(target, dtype=np.float64))
    h, w = t.shape
    side = max(4, int(round(min(h, w) * fraction)))
    side = min(side, h, w)

    def window_means(a: np.ndarray) -> np.ndarray:
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return (c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]) / side**2

    tm = window_means(t)
    score = tm.copy() if error is None else window_means(np.abs(np.asarray(error, dtype=np.float64)))
    inside = tm >= 0.2 * (t.max() or 1.0)
    if inside.any():
        score = np.where(inside, score, -np.inf)
    top, left = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(top), int(left), side, side


def wrap_label(name: str, width: int = 30) -> str:
    """A method spec split over lines of at most ``width`` characters where possible, breaking after ``:``, ``,``,
    ``/`` or ``=`` (e.g. ``ima:weights=runs/.../final``), so that panel titles of a figure grid do not overlap."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[:,/=])", name):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join([*lines, line])


def figure_grid_png(target: np.ndarray, recons: dict[str, np.ndarray], title: str = "", *,
                    metrics: dict[str, dict] | None = None, zoom: bool = True, max_cols: int = 5,
                    error_max: float | None = None) -> bytes:
    """One slice: the target and each reconstruction, with a zoomed region and an error map, as PNG bytes.

    Panels come in blocks of at most ``max_cols`` columns (so that the PNG is at most about 1150 px wide and is
    shown at its own size in the HTML report): row 1 the images on one grey scale (target's 99.5th percentile)
    with the zoom box drawn, titled with the method and its PSNR / SSIM (``metrics[name]``, the per-slice values
    of results.csv); row 2 the zoomed region (``zoom_box``, chosen where the first method's error is largest);
    row 3 ``|reconstruction - target|`` in percent of the target's maximum, one colour scale for every method
    (0 to ``error_max`` percent, default the largest 99.5th percentile of the errors) with its colour bar in the
    target's column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    target = np.asarray(target, dtype=np.float32)
    names = ["target", *recons]
    peak = float(np.max(np.abs(target))) or 1.0
    vmax = float(np.percentile(target, 99.5)) or peak
    errors = {n: np.abs(np.asarray(recons[n], dtype=np.float32) - target) / peak * 100.0 for n in recons}
    if error_max is None:
        error_max = max((float(np.percentile(e, 99.5)) for e in errors.values()), default=1.0) or 1.0
    first = next(iter(recons), None)
    box = zoom_box(target, errors.get(first)) if zoom else None
    rows_per_block = 3 if zoom else 2
    ncols = math.ceil(len(names) / math.ceil(len(names) / max_cols))  # balanced blocks: 7 panels -> 4 + 3
    blocks = [names[i:i + ncols] for i in range(0, len(names), ncols)]
    h, w = target.shape
    panel_w = 2.25
    panel_h = panel_w * min(max(h / w, 0.4), 2.5)
    heights = ([panel_h, panel_w * 0.8, panel_h] if zoom else [panel_h, panel_h]) * len(blocks)
    fig_h = sum(heights) + 0.55 * len(heights) + (0.4 if title else 0.0)
    fig = plt.figure(figsize=(panel_w * ncols + 0.2, fig_h), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.04, w_pad=0.02, hspace=0.02, wspace=0.02)
    gs = fig.add_gridspec(rows_per_block * len(blocks), ncols, height_ratios=heights)
    err_im = None
    for b, block in enumerate(blocks):
        for j, name in enumerate(block):
            img = target if name == "target" else np.asarray(recons[name], dtype=np.float32)
            r0 = b * rows_per_block
            ax = fig.add_subplot(gs[r0, j])
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            m = (metrics or {}).get(name) or {}
            label = wrap_label(name)
            if name != "target" and _finite(m.get("psnr")):
                label += f"\nPSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}" if _finite(m.get("ssim")) else (
                    f"\nPSNR {m['psnr']:.2f} dB")
            elif name == "target":
                label += "\n(reference)"
            ax.set_title(label, fontsize=9, color="black", pad=3)
            if box is not None:
                top, left, bh, bw = box
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), bw, bh, fill=False, edgecolor="#ffd400", lw=1.2))
                zax = fig.add_subplot(gs[r0 + 1, j])
                zax.imshow(img[top:top + bh, left:left + bw], cmap="gray", vmin=0, vmax=vmax,
                           interpolation="nearest")
                zax.set_xticks([])
                zax.set_yticks([])
                for spine in zax.spines.values():
                    spine.set_edgecolor("#ffd400")
                if j == 0:
                    zax.set_ylabel("zoom", fontsize=9)
            ax.axis("off")
            eax = fig.add_subplot(gs[r0 + rows_per_block - 1, j])
            if name == "target":  # the shared colour bar of the error maps lives in the target's column
                eax.axis("off")
                err_cax = eax.inset_axes([0.42, 0.04, 0.12, 0.92])
                continue
            err_im = eax.imshow(errors[name], cmap="inferno", vmin=0, vmax=error_max, interpolation="nearest")
            eax.set_title("|error|", fontsize=9, color="black", pad=3)
            eax.axis("off")
    if err_im is not None:
        cb = fig.colorbar(err_im, cax=err_cax)
        cb.ax.tick_params(labelsize=8)
        cb.set_label("|recon − target|\n% of target max", fontsize=9)
        cb.ax.yaxis.set_label_position("left")
    else:
        err_cax.axis("off")
    if title:  # wrapped to the figure's width (about 7 px per character at 10 pt)
        width_chars = max(40, int((panel_w * ncols + 0.2) * FIGURE_DPI / 7))
        fig.suptitle("\n".join(textwrap.wrap(title, width_chars)), fontsize=10)
    return _png(fig)


def figure_grid(path: Path, target: np.ndarray, recons: dict[str, np.ndarray], title: str = "", **kw) -> None:
    atomic_write_bytes(path, figure_grid_png(target, recons, title, **kw))


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


METHOD_MARKERS = "os^Dv<>PXh*"  # 11 markers and tab10's 10 colours: (colour, marker) is unique for 110 methods


def method_style(i: int) -> dict:
    """Colour and marker of the i-th method: neighbours differ in both, no two of the first 110 share both."""
    import matplotlib

    return {"color": matplotlib.colormaps["tab10"](i % 10), "marker": METHOD_MARKERS[i % len(METHOD_MARKERS)]}


def psnr_vs_time_png(rows: Sequence[dict]) -> bytes | None:
    """Mean PSNR against seconds per slice (log scale): one panel per (data kind, mask, accel), one colour and
    marker per method (the same in every panel), one legend."""
    pts = [r for r in rows if _finite(r.get("psnr_mean")) and _finite(r.get("seconds_mean"))]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r.get("data", ""), r["mask"], r["accel"]) for r in pts))
    methods = list(dict.fromkeys(r["method"] for r in pts))
    ncols = 2 if len(groups) in (2, 4) else min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 1.9, 2.9 * nrows + 0.3), squeeze=False,
                             layout="constrained")
    for g, (data, mask, accel) in enumerate(groups):
        ax = axes[g // ncols, g % ncols]
        for r in pts:
            if (r.get("data", ""), r["mask"], r["accel"]) == (data, mask, accel):
                ax.scatter(max(r["seconds_mean"], 1e-4), r["psnr_mean"], s=48, edgecolors="black", linewidths=0.4,
                           **method_style(methods.index(r["method"])))
        eff = [r["effective_accel"] for r in pts if (r.get("data", ""), r["mask"], r["accel"]) == (data, mask, accel)
               and _finite(r.get("effective_accel"))]
        ax.set_title(f"{data} {mask} {accel:g}x" + (f" (effective {float(np.mean(eff)):.2f}x)" if eff else ""),
                     fontsize=9)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3, which="both")
        ax.tick_params(labelsize=8)
        ax.set_xlabel("seconds per slice (log)", fontsize=9)
        ax.set_ylabel("PSNR (dB)", fontsize=9)
    for g in range(len(groups), nrows * ncols):
        axes[g // ncols, g % ncols].axis("off")
    handles = [plt.Line2D([], [], linestyle="", markersize=7, markeredgecolor="black", markeredgewidth=0.4,
                          label=m, **method_style(i)) for i, m in enumerate(methods)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return _png(fig)


class FigureSlices:
    """The report's figure slices, picked across files.

    ``add`` is called once per volume and (data kind, mask, acceleration) with the volume's middle slice: the
    target, every method's image and their per-slice PSNR/SSIM (the values of results.csv). ``figures()`` ranks
    the candidates of each group by the first method's PSNR and picks ``per_group`` of them spread over the
    ranking: 1 -> the median, 2 -> best and worst, 3 -> best, median, worst, more -> evenly spaced ranks.
    Images are kept as float16 divided by the slice's target maximum (a few hundred kB per volume for a dozen
    methods on 320 x 320), so a long run can rank every file.
    """

    def __init__(self, per_group: int = 3):
        self.per_group = max(int(per_group), 0)
        self.groups: dict[tuple, list[dict]] = {}
        self.method_order: list[str] = []
        self.uncertainty: list[dict] = []  # posterior mean / std figures, in the order computed

    def add(self, *, file: str, name: str, mask: str, accel: float, slice: int, effective_accel: float | None,
            target: np.ndarray, images: dict[str, np.ndarray], metrics: dict[str, dict], data: str = "",
            uncertainty: dict | None = None) -> None:
        if uncertainty:
            self.uncertainty.append({"file": file, "name": name, "data": data, "mask": mask, "accel": float(accel),
                                     "slice": slice, "effective_accel": effective_accel,
                                     "target": np.asarray(target, dtype=np.float32), "images": {},
                                     "uncertainty": uncertainty})
        if not images or self.per_group == 0:
            return
        for m in images:
            if m not in self.method_order:
                self.method_order.append(m)
        peak = float(np.max(np.abs(target))) or 1.0

        def pack(a):
            return (np.asarray(a, dtype=np.float32) / peak).astype(np.float16)

        self.groups.setdefault((data, mask, float(accel)), []).append({
            "file": file, "name": name, "data": data, "mask": mask, "accel": float(accel), "slice": slice,
            "effective_accel": effective_accel, "peak": peak, "target": pack(target),
            "images": {k: pack(v) for k, v in images.items()},
            "metrics": {k: dict(v) for k, v in metrics.items()}})

    @staticmethod
    def _ranks(n: int, k: int) -> list[int]:
        if k == 1:
            return [n // 2]
        return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}, reverse=True)

    def figures(self) -> list[dict]:
        out = []
        for cands in self.groups.values():
            first = next((m for m in self.method_order if any(_finite(c["metrics"].get(m, {}).get("psnr"))
                                                              for c in cands)), None)
            if first is None:
                continue
            ranked = sorted((c for c in cands if _finite(c["metrics"].get(first, {}).get("psnr"))),
                            key=lambda c: c["metrics"][first]["psnr"])  # worst first
            n = len(ranked)
            for r in self._ranks(n, min(self.per_group, n)):
                c = ranked[r]
                label = ("only" if n == 1 else "best" if r == n - 1 else "worst" if r == 0
                         else "median" if r == n // 2 else f"rank {n - r} of {n}")
                peak = c["peak"]
                out.append({**{k: v for k, v in c.items() if k not in ("peak", "target", "images")},
                            "target": c["target"].astype(np.float32) * peak,
                            "images": {k: v.astype(np.float32) * peak for k, v in c["images"].items()},
                            "rank": label, "ranked_by": first, "candidates": n})
        return out + self.uncertainty


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
.cap{margin:1em 0 0;font-size:14px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;
background:#e6f4e6}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}code{background:#f5f5f5;padding:1px 3px}
.err{color:#a00}"""


def _html_table(rows: Sequence[dict]) -> str:
    parts = []
    for (data, mask, accel), rs in _groups(rows).items():
        best = _best(rs)
        effs = [r["effective_accel"] for r in rs if _finite(r.get("effective_accel"))]
        eff = float(np.mean(effs)) if effs else None  # as _group_effective: the figures' headings agree
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in COLUMNS)
        parts.append(f"<h3>{html.escape(_setting(str(data), str(mask), accel, eff))}</h3>"
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


def _group_effective(summary: Sequence[dict]) -> dict[tuple, float]:
    """Effective acceleration per (data, mask, accel) as the tables print it (mean over the group's rows)."""
    out: dict[tuple, list[float]] = {}
    for r in summary:
        if _finite(r.get("effective_accel")):
            out.setdefault((r.get("data", ""), r["mask"], float(r["accel"])), []).append(r["effective_accel"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def _setting(data: str, mask: str, accel: float, eff: float | None) -> str:
    text = f"{data} {mask} {accel:g}x".strip()
    return text + (f" (effective {eff:.2f}x)" if _finite(eff) else "")


def _figure_caption(f: dict, group_eff: dict[tuple, float]) -> tuple[str, str]:
    """(group heading, caption) of one figure; the heading's effective acceleration is the table's."""
    key = (f.get("data", ""), f["mask"], float(f["accel"]))
    eff = group_eff.get(key)
    if eff is None:  # figure of a group without summary rows: match on mask and accel only
        eff = next((v for (d, m, a), v in group_eff.items() if (m, a) == key[1:]), f.get("effective_accel"))
    heading = _setting(*key, eff)
    where = f"{f['name']} slice {f['slice']}"
    if f.get("rank"):
        n = f.get("candidates", 1)
        score = (f.get("metrics") or {}).get(f["ranked_by"], {}).get("psnr")
        score = f" ({score:.2f} dB)" if _finite(score) else ""
        where = (f"{f['rank']} of {n} files by {f['ranked_by']} PSNR{score}: {where}" if n > 1 else
                 f"{where} (the only file)")
    if _finite(f.get("effective_accel")) and (not _finite(eff) or abs(f["effective_accel"] - eff) > 0.005):
        where += f"; this slice's mask: effective {f['effective_accel']:.2f}x"
    return heading, where


def _strip_prefix(text: str, *prefixes: str | None) -> str:
    """``text`` without a leading "<prefix>: " (error messages often start with the file or method name)."""
    text = str(text)
    for p in prefixes:
        if p and text.startswith(f"{p}: "):
            text = text[len(p) + 2:]
    return text


def _code_html(text: str) -> str:
    """Escape ``text`` for HTML and render markdown `code` spans as <code>."""
    parts = html.escape(str(text)).split("`")
    if len(parts) % 2 == 0:  # unbalanced backticks: leave them as they are
        return html.escape(str(text))
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _short_list(names: Sequence[str], n: int = 4) -> list[str]:
    names = list(dict.fromkeys(names))
    return names[:n] + ([f"{len(names) - n} more"] if len(names) > n else [])


def _skipped_groups(skipped: Sequence[dict]) -> list[tuple[str, str, list[str]]]:
    """(method, reason without a repeated method name, file names) per distinct (method, reason)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        method = str(s.get("method"))
        reason = _strip_prefix(s.get("reason"), method)
        files = groups.setdefault((method, reason), [])
        if s.get("file"):
            files.append(Path(str(s["file"])).name)
    return [(m, r, f) for (m, r), f in groups.items()]


def write_reports(out: Path, results: dict, figures: Sequence[dict] = ()) -> None:
    """report.md (+ PNG files beside it) and a self-contained report.html (images embedded).

    ``figures``: dicts with file, name, mask, accel, slice, effective_accel, target, images ({method: image}) and,
    from :class:`FigureSlices`, data, metrics ({method: {psnr, ssim}}), rank, ranked_by, candidates; an entry with
    ``uncertainty`` ({method: (mean, std)}) adds a posterior mean / std figure."""
    out = Path(out)
    summary = results.get("summary", [])
    env = results.get("environment", {})
    group_eff = _group_effective(summary)
    shown: list[tuple[str, str, str, bytes]] = []  # (group heading, file name, caption, bytes)
    n_grid = n_unc = 0
    for f in figures:
        heading, where = _figure_caption(f, group_eff)
        if f.get("images"):
            shown.append((heading, f"figure_{n_grid:02d}_{f['mask']}_{f['accel']:g}x.png", where,
                          figure_grid_png(f["target"], f["images"], f"{heading} — {where}",
                                          metrics=f.get("metrics"))))
            n_grid += 1
        if f.get("uncertainty"):  # {method: (mean, std)} from uncertainty_maps
            cap = f"{where}: posterior mean and std"
            shown.append((heading, f"uncertainty_{n_unc:02d}_{f['mask']}_{f['accel']:g}x.png", cap,
                          uncertainty_grid_png(f["target"], f["uncertainty"], f"{heading} — {cap}")))
            n_unc += 1
    plot = psnr_vs_time_png(summary)
    if plot:
        shown.append(("PSNR against time per slice", "psnr_vs_time.png",
                      "mean PSNR over volumes against mean seconds per slice, one panel per setting", plot))
    for _, name, _, data in shown:
        atomic_write_bytes(out / name, data)

    machine = (f"{env.get('processor')}, {env.get('cpu_count')} CPUs, {env.get('threads')} torch threads, "
               f"device {env.get('device')}{', ' + env['cuda'] if env.get('cuda') else ''}; python "
               f"{env.get('python')}, torch {env.get('torch')}")
    cmd = env.get("command") or "(from Python)"
    elapsed = results.get("elapsed_seconds")
    elapsed_text = f"{elapsed:.0f} s" if _finite(elapsed) else "–"
    note = ("Metrics in the fastMRI convention: per volume, PSNR/SSIM data range = max of the target volume, SSIM "
            "7x7; mean ± sample std over volumes; effective acceleration = 1 / sampled fraction, mean over the "
            "volumes (each the mean over its slices). Seconds are wall time per slice after one warm-up call per "
            "method; peak MB is the extra resident memory (CPU) or tensor memory (CUDA) while reconstructing; NFE = "
            "network evaluations per slice.")
    fig_note = ("Figures: for each setting, the middle slice of the files where the first method scores best, "
                "median and worst (PSNR); panel titles give that slice's PSNR / SSIM (as in results.csv), the yellow "
                "box is the zoomed region, error maps share one colour scale in percent of the target's maximum.")
    md = [f"# mrrecon benchmark\n\nCommand: `{cmd}`  \nMachine: {machine}  \n"
          f"Elapsed: {elapsed_text}\n\n{note}\n\n",
          summary_table_markdown(summary)]
    perceptual = results.get("perceptual") or {}
    if _has_perceptual(summary):
        md.append(f"\n## Perceptual metrics\n\n{PERCEPTUAL_NOTE}\n\n{perceptual_table_markdown(summary)}")
    if perceptual.get("skipped"):
        md.append(f"\nPerceptual metrics skipped: {perceptual['skipped']}\n")
    paired = results.get("paired") or []
    if paired:
        md.append(f"\n## Paired differences\n\n{paired_table_markdown(paired)}\n")
    errors, skipped = results.get("errors", []), _skipped_groups(results.get("skipped", []))

    def error_parts(e: dict) -> tuple[str, str, str]:
        file = str(e.get("file") or "")
        return file, str(e.get("method") or ""), _strip_prefix(e.get("error"), file, e.get("method"))

    if errors:
        md.append("\n## Errors\n\n" + "\n".join(
            f"- `{file}`{' / ' + method if method else ''}: {err}" for file, method, err in map(error_parts, errors))
            + "\n")
    if skipped:
        md.append("\n## Skipped\n\n" + "\n".join(
            f"- **{m}**: {r}" + (f" ({', '.join(_short_list(files))})" if files else "") for m, r, files in skipped)
            + "\n")
    last = None
    for heading, name, cap, _ in shown:
        if heading != last:
            md.append(f"\n## {heading}\n" + (f"\n{fig_note}\n" if name.startswith("figure_") and last is None
                                               else ""))
            last = heading
        md.append(f"\n{cap}\n\n![{heading} — {cap}]({name})\n")
    atomic_write_text(out / "report.md", "".join(md))

    body = [f"<h1>mrrecon benchmark</h1><p>Command: <code>{html.escape(cmd)}</code><br>Machine: "
            f"{html.escape(machine)}<br>Elapsed: {html.escape(elapsed_text)}</p><p>{html.escape(note)}</p>",
            _html_table(summary)]
    if _has_perceptual(summary):
        head = "".join(f"<th>{h}</th>" for h in ("data", "method", "mask", "accel", "n images", "LPIPS", "rFID",
                                                  "KID"))
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in
                                       (r.get("data", ""), r["method"], r["mask"], f"{r['accel']:g}",
                                        *_perceptual_cells(r))) + "</tr>" for r in summary)
        body.append(f"<h2>Perceptual metrics</h2><p>{html.escape(PERCEPTUAL_NOTE)}</p><table><tr>{head}</tr>{trs}"
                    "</table>")
    if perceptual.get("skipped"):
        body.append(f"<p>Perceptual metrics skipped: {_code_html(perceptual['skipped'])}</p>")
    if paired:
        body.append(f"<h2>Paired differences</h2>{_html_paired(paired)}")
    if errors:
        body.append("<h2>Errors</h2><ul>" + "".join(
            f'<li class="err"><code>{html.escape(file)}</code>{" / " + html.escape(method) if method else ""}: '
            f"{_code_html(err)}</li>" for file, method, err in map(error_parts, errors)) + "</ul>")
    if skipped:
        body.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li><b>{html.escape(m)}</b>: {_code_html(r)}"
            + (f" ({', '.join(html.escape(x) for x in _short_list(files))})" if files else "") + "</li>"
            for m, r, files in skipped) + "</ul>")
    last, section = None, 0
    for heading, name, cap, data in shown:
        if heading != last:  # id: a link target (report.html#figures-0 ...), e.g. for a screenshot of one section
            anchor = "psnr-vs-time" if name == "psnr_vs_time.png" else f"figures-{section}"
            section += name != "psnr_vs_time.png"
            body.append(f'<h2 id="{anchor}">{html.escape(heading)}</h2>' + (
                f"<p>{html.escape(fig_note)}</p>" if name.startswith("figure_") and last is None else ""))
            last = heading
        body.append(f'<p class="cap">{html.escape(cap)}</p>{_img_tag(data, f"{heading} — {cap}")}')
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mrrecon benchmark</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(out / "report.html", page)
