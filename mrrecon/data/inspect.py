"""``mrrecon info``: a short, factual description of a data file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mrrecon.data.fastmri import FastMRIFile
from mrrecon.data.formats import file_format, read_array
from mrrecon.errors import DataError


def _sampling(kspace: np.ndarray) -> str:
    """Sampled fraction of one k-space slice (non-zero over coils) and the effective acceleration."""
    sampled = np.abs(kspace).reshape(-1, *kspace.shape[-2:]).max(axis=0) > 0
    frac = float(sampled.mean())
    cols = sampled.any(axis=0)
    kind = "1-D (columns)" if np.array_equal(sampled, np.broadcast_to(cols, sampled.shape)) else "2-D"
    if frac >= 0.999:
        return "fully sampled"
    return f"{frac:.3f} of samples non-zero, effective acceleration {1 / max(frac, 1e-12):.2f}x, {kind} pattern"


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists() and not path.with_suffix(".cfl").exists():
        raise DataError("no such file", path)
    fmt = file_format(path)
    out: dict[str, Any] = {"file": str(path), "format": fmt}
    if fmt == "h5":
        try:
            f = FastMRIFile(path)
        except DataError:
            raise
        out.update({
            "keys": ", ".join(f.keys),
            "slices": f.num_slices,
            "coils": f.num_coils if f.has_kspace else "n/a",
            "multi-coil": f.is_multicoil,
        })
        if f.has_kspace:
            out["k-space (H, W)"] = f.kspace_shape
            out["sampling (slice 0)"] = _sampling(f.kspace(0).numpy())
        for k in f.target_keys:
            out[f"{k} (h, w)"] = f.target_shape(k)
        out["recon size"] = f.recon_size
        for k, v in f.attrs.items():
            out[f"attr {k}"] = v
        return out
    arr = read_array(path)
    out.update({"shape": tuple(arr.shape), "dtype": str(arr.dtype),
                "complex": bool(np.iscomplexobj(arr)),
                "min |x|": float(np.abs(arr).min()) if arr.size else None,
                "max |x|": float(np.abs(arr).max()) if arr.size else None})
    return out
