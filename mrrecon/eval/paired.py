"""Paired comparisons between methods of one benchmark: is a difference in PSNR / SSIM real or noise?

Every method of a benchmark sees identical samples and seeded masks, so the differences between two methods
are *paired*: per volume (or per slice), method minus reference. For each other method and each (data kind,
mask, acceleration) this module gives

* the mean paired difference and its 95 % confidence interval (Student t over the n differences),
* the two-sided Wilcoxon signed-rank p-value (scipy; exact for small n, as the IMA paper's significance
  tests), and
* how often the method beats the reference (``wins`` of ``n``).

The unit of pairing is the volume by default: slices of one subject are correlated, so treating them as
independent overstates the evidence. ``unit="slice"`` pairs slices (fastMRI-convention slice metrics: the data
range is the volume's maximum).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

from mrrecon.core.runner import VolumeResult
from mrrecon.errors import ConfigError

__all__ = ["PAIRED_UNITS", "check_paired_unit", "paired_differences", "paired_table", "paired_table_markdown",
           "seed_paired_differences", "summarise_differences"]

PAIRED_UNITS = ("volume", "slice")


def summarise_differences(diffs: Sequence[float]) -> dict:
    """Mean, 95 % t-interval, Wilcoxon signed-rank p (two-sided) and wins of paired differences."""
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "ci95": [math.nan, math.nan], "p_wilcoxon": math.nan,
           "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    if n >= 1:
        # all-zero differences: no evidence either way (scipy would warn and return NaN)
        out["p_wilcoxon"] = 1.0 if not np.any(d) else float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    return out


def check_paired_unit(unit: str) -> None:
    """A ConfigError unless ``unit`` is one of PAIRED_UNITS (the benchmark checks it before writing anything)."""
    if unit not in PAIRED_UNITS:
        raise ConfigError(f"paired unit must be one of {PAIRED_UNITS}; got {unit!r}")


def _unit_values(v: VolumeResult, metric: str, unit: str) -> dict[tuple, float]:
    if unit == "volume":
        return {(v.file,): float(getattr(v, metric))}
    return {(v.file, s.slice): float(getattr(s, metric)) for s in v.slices}


def paired_differences(volumes: Iterable[VolumeResult], reference: str, *, metrics: Sequence[str] = ("psnr", "ssim"),
                       unit: str = "volume") -> list[dict]:
    """One row per (data, mask, accel, method != reference, metric): ``method - reference`` statistics.

    Only units that both methods scored (no error, finite metric) are paired; ``n`` says how many."""
    check_paired_unit(unit)
    if set(metrics) - {"psnr", "ssim"}:  # wins = higher is better
        raise ConfigError(f"paired metrics are psnr and ssim; got {list(metrics)}")
    groups: dict[tuple, dict[str, list[VolumeResult]]] = {}
    for v in volumes:
        if v.error is None:
            groups.setdefault((v.data, v.mask, v.accel), {}).setdefault(v.method, []).append(v)
    rows = []
    for (data, mask, accel), by_method in groups.items():
        if reference not in by_method:
            continue
        for method, vols in by_method.items():
            if method == reference:
                continue
            for metric in metrics:
                ref = {k: x for r in by_method[reference] for k, x in _unit_values(r, metric, unit).items()}
                other = {k: x for r in vols for k, x in _unit_values(r, metric, unit).items()}
                keys = [k for k in other if k in ref and math.isfinite(other[k]) and math.isfinite(ref[k])]
                diffs = [other[k] - ref[k] for k in keys]
                rows.append({"data": data, "mask": mask, "accel": accel, "method": method, "reference": reference,
                             "metric": metric, "unit": unit, **summarise_differences(diffs)})
    return rows


def _field(v, name: str):
    """A volume row's field, from a VolumeResult or from its JSON dict (benchmarks/results keep the dicts)."""
    return v[name] if isinstance(v, dict) else getattr(v, name)


def seed_paired_differences(volumes: Iterable, reference: str, seeds_of: dict[str, tuple[str, int]], *,
                            metric: str = "psnr") -> list[dict]:
    """Trained variants compared across training seeds: the difference of a variant to the reference variant,
    paired per volume *and* per seed, with the run-to-run spread of that difference.

    ``volumes``: volume rows (``VolumeResult`` or their JSON dicts) of one benchmark, where ``seeds_of`` maps each
    method name to ``(variant, seed)`` (e.g. ``"ima:weights=runs/x/ima-s1/final" -> ("ima", 1)``); methods not in
    it are ignored. For each (data, mask, accel) and variant V != ``reference``, over the seeds both have:

    * ``per_seed[s]``: summary of ``V_s - reference_s`` per volume (the same seed of both: same data order, same
      initialisation stream, so the pairing removes what the seed alone explains);
    * ``seed_mean``: summary of the per-volume difference of the seed-averaged metrics, mean_s V_s - mean_s ref_s;
    * ``spread``: max - min over seeds of the per-seed mean differences (0 with one seed): when it is as large
      as the difference itself, one run per variant could not have told the two apart.

    A row for the reference itself (``variant == reference``) compares each further seed with its first one: the
    run-to-run noise of one variant."""
    if metric not in ("psnr", "ssim"):
        raise ConfigError(f"seed-paired metric must be psnr or ssim; got {metric!r}")
    table: dict[tuple, dict[tuple[str, int], dict[str, float]]] = {}
    for v in volumes:
        method = _field(v, "method")
        value = _field(v, metric)
        if method not in seeds_of or _field(v, "error") is not None or value is None or not math.isfinite(value):
            continue
        key = (_field(v, "data"), _field(v, "mask"), float(_field(v, "accel")))
        table.setdefault(key, {}).setdefault(seeds_of[method], {})[_field(v, "file")] = float(value)
    rows = []
    for (data, mask, accel), runs in table.items():
        ref_seeds = sorted(s for var, s in runs if var == reference)
        if not ref_seeds:
            continue
        head = {"data": data, "mask": mask, "accel": accel, "reference": reference, "metric": metric}
        if len(ref_seeds) > 1:  # run-to-run noise: each further seed of the reference against its first
            first = runs[(reference, ref_seeds[0])]
            per_seed = {s: summarise_differences([x - first[f] for f, x in runs[(reference, s)].items() if f in first])
                        for s in ref_seeds[1:]}
            rows.append({**head, "variant": reference, "reference_seed": ref_seeds[0], "seeds": ref_seeds[1:],
                         "per_seed": per_seed, "seed_mean": None, "spread": None})
        for variant in sorted({var for var, _ in runs} - {reference}):
            seeds = [s for s in ref_seeds if (variant, s) in runs]
            if not seeds:
                continue
            files = [f for f in runs[(reference, seeds[0])]
                     if all(f in runs[(variant, s)] and f in runs[(reference, s)] for s in seeds)]
            diffs = {s: [runs[(variant, s)][f] - runs[(reference, s)][f] for f in files] for s in seeds}
            per_seed = {s: summarise_differences(d) for s, d in diffs.items()}
            averaged = np.mean([diffs[s] for s in seeds], axis=0).tolist()  # per file, over seeds
            means = [per_seed[s]["mean"] for s in seeds]
            rows.append({**head, "variant": variant, "seeds": seeds, "per_seed": per_seed,
                         "seed_mean": summarise_differences(averaged), "spread": float(max(means) - min(means))})
    return rows


def _num(x: float, nd: int) -> str:
    return f"{x:+.{nd}f}" if math.isfinite(x) else "–"


def paired_table(rows: Sequence[dict]) -> tuple[str, list[str], list[list[str]]]:
    """Caption, header and cells of the table of ``paired_differences`` rows (PSNR in dB to 2 decimals, SSIM to 4);
    the markdown and HTML reports both render it."""
    ref, unit = rows[0]["reference"], rows[0]["unit"]
    caption = f"Paired differences, method − `{ref}`, per {unit} (mean [95 % CI], Wilcoxon signed-rank p, wins/n):"
    header = ["method", "mask", "accel", "metric", "mean diff", "95 % CI", "p", "wins/n"]
    cells = []
    for r in rows:
        nd = 2 if r["metric"] == "psnr" else 4
        lo, hi = r["ci95"]
        p = f"{r['p_wilcoxon']:.3g}" if math.isfinite(r["p_wilcoxon"]) else "–"
        cells.append([r["method"], r["mask"], f"{r['accel']:g}x", r["metric"], _num(r["mean"], nd),
                      f"[{_num(lo, nd)}, {_num(hi, nd)}]", p, f"{r['wins']}/{r['n']}"])
    return caption, header, cells


def paired_table_markdown(rows: Sequence[dict]) -> str:
    """Markdown of :func:`paired_table` ("" without rows)."""
    if not rows:
        return ""
    caption, header, cells = paired_table(rows)
    lines = [caption, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
