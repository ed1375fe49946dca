"""Compare a folder of reconstructions with a folder of fastMRI references, file by file.

Semantics follow fastMRI's ``fastmri/evaluate.py``: for every target file ``<name>.h5`` the prediction
``<name>.h5`` in the prediction folder is read (dataset ``reconstruction``), its magnitude is compared with
the target's ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil) volume, and the
per-volume metrics are averaged over volumes. One difference: fastMRI centre-crops *both* arrays to the
square ``(W, W)`` of the target's last dimension; we crop the prediction to the target's ``(H, W)`` and
leave the target as it is (the same thing for fastMRI's square 320x320 targets).

A file that cannot be read or compared is recorded in ``errors`` and skipped; a target without a
prediction is listed in ``missing``. Neither stops the evaluation.

Command line: ``python -m mrrecon.eval.evaluate TARGET_DIR PRED_DIR [--convention fastmri] [--out x.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mrrecon.data.fastmri import center_crop
from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.metrics.image import METRIC_CONVENTIONS, MetricAccumulator, compute_metrics
from mrrecon.utils.io import atomic_write_json

__all__ = ["TARGET_KEYS", "evaluate_folders", "main"]

# Looked for in this order when target_key is None: multi-coil RSS, then single-coil ESC reference.
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")


def _read_dataset(path: Path, keys: Sequence[str], what: str) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The first of ``keys`` present in the h5 file, copied into memory, with its key and file attrs."""
    try:
        with h5py.File(path, "r") as f:
            key = next((k for k in keys if k in f), None)
            if key is None:
                raise DataError(f"{what} file has none of the datasets {list(keys)} (it has {sorted(f.keys())})", path)
            arr = np.array(f[key][()])  # a copy that outlives the file handle
            attrs = {k: f.attrs[k] for k in f.attrs}
    except DataError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataError(f"cannot read {what} file: {type(exc).__name__}: {exc}", path) from exc
    if arr.ndim not in (2, 3):
        raise ShapeError(f"{what} dataset {key!r} has shape {arr.shape}; expected (H, W) or (S, H, W)", path)
    return arr, key, attrs


def _match_shapes(target: np.ndarray, pred: np.ndarray, crop_to_target: bool, pred_path: Path) -> np.ndarray:
    if target.ndim != pred.ndim or (target.ndim == 3 and target.shape[0] != pred.shape[0]):
        raise ShapeError(f"prediction shape {pred.shape} does not match target shape {target.shape}", pred_path)
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    if not crop_to_target:
        raise ShapeError(
            f"prediction size {pred.shape[-2:]} != target size {target.shape[-2:]} (crop_to_target=False)",
            pred_path,
        )
    if pred.shape[-2] < target.shape[-2] or pred.shape[-1] < target.shape[-1]:
        raise ShapeError(
            f"prediction size {pred.shape[-2:]} is smaller than target size {target.shape[-2:]}; "
            "cannot centre-crop it to the target",
            pred_path,
        )
    return center_crop(pred, target.shape[-2:])  # fastMRI offsets: (size - crop) // 2


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def evaluate_folders(
    target_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    *,
    target_key: str | None = None,
    pred_key: str = "reconstruction",
    convention: str = "fastmri",
    crop_to_target: bool = True,
    acquisition: str | None = None,
    device: str | torch.device | None = None,
    out_json: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Metrics of every ``<name>.h5`` in ``pred_dir`` against the same name in ``target_dir``.

    ``target_key=None`` uses ``reconstruction_rss`` if present, else ``reconstruction_esc``.
    ``acquisition`` (e.g. ``"CORPD_FBK"``) keeps only targets whose ``acquisition`` attribute matches.
    ``device`` is where the metrics are computed (default CPU). ``out_json`` also writes the result
    atomically. Returns::

        {"psnr", "ssim", "nmse": means over files, "std": {metric: sample std over files (None if n < 2)},
         "n_files", "per_file": {name: {"psnr", "ssim", "nmse"}}, "missing": [names without prediction],
         "errors": [{"file", "error"}], "convention", "target_keys": {name: key used}}
    """
    target_dir, pred_dir = Path(target_dir), Path(pred_dir)
    if convention not in METRIC_CONVENTIONS:
        raise ConfigError(f"unknown metric convention {convention!r}; choose one of {sorted(METRIC_CONVENTIONS)}")
    for folder, what in ((target_dir, "target"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise DataError(f"{what} folder does not exist or is not a folder", folder)
    keys = (target_key,) if target_key is not None else TARGET_KEYS
    dev = torch.device(device) if device is not None else torch.device("cpu")

    acc = MetricAccumulator(convention)
    missing: list[str] = []
    errors: list[dict[str, str]] = []
    used_keys: dict[str, str] = {}
    for target_path in sorted(p for p in target_dir.glob("*.h5") if p.is_file()):
        name = target_path.name
        pred_path = pred_dir / name
        try:
            target, key, attrs = _read_dataset(target_path, keys, "target")
            if acquisition is not None and attrs.get("acquisition") != acquisition:
                continue
            if not pred_path.is_file():
                missing.append(name)
                continue
            pred, _, _ = _read_dataset(pred_path, (pred_key,), "prediction")
            pred = _match_shapes(target, pred, crop_to_target, pred_path)
            metrics = compute_metrics(
                torch.from_numpy(np.ascontiguousarray(target)).to(dev),
                torch.from_numpy(np.ascontiguousarray(pred)).to(dev),
                convention,
            )
        except Exception as exc:  # report and skip: one bad file never stops a batch evaluation
            file = getattr(exc, "file", None) or str(target_path)
            problem = exc.problem if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
            errors.append({"file": file, "error": problem})
            continue
        acc.add(metrics, key=name)
        used_keys[name] = key

    means, stds = acc.mean(), acc.std()
    result: dict[str, Any] = {
        "psnr": means.get("psnr", math.nan),
        "ssim": means.get("ssim", math.nan),
        "nmse": means.get("nmse", math.nan),
        "std": {m: _finite_or_none(stds.get(m, math.nan)) for m in ("psnr", "ssim", "nmse")},
        "n_files": len(acc),
        "per_file": dict(acc.per_item),
        "missing": missing,
        "errors": errors,
        "convention": convention,
        "target_keys": used_keys,
    }
    if out_json is not None:
        atomic_write_json(out_json, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mrrecon.eval.evaluate TARGET_DIR PRED_DIR``: print (and optionally save) the metrics."""
    ap = argparse.ArgumentParser(prog="python -m mrrecon.eval.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("target_dir")
    ap.add_argument("pred_dir")
    ap.add_argument("--target-key", default=None)
    ap.add_argument("--pred-key", default="reconstruction")
    ap.add_argument("--convention", default="fastmri", choices=sorted(METRIC_CONVENTIONS))
    ap.add_argument("--acquisition", default=None)
    ap.add_argument("--no-crop", action="store_true", help="fail instead of centre-cropping predictions")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="write the full result as JSON here")
    args = ap.parse_args(argv)
    res = evaluate_folders(
        args.target_dir,
        args.pred_dir,
        target_key=args.target_key,
        pred_key=args.pred_key,
        convention=args.convention,
        crop_to_target=not args.no_crop,
        acquisition=args.acquisition,
        device=args.device,
        out_json=args.out,
    )
    summary = {k: res[k] for k in ("psnr", "ssim", "nmse", "std", "n_files", "missing", "errors")}
    print(json.dumps(summary, indent=2))
    return 0 if res["n_files"] > 0 and not res["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
