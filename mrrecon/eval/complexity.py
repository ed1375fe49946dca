"""Model complexity: parameters and multiply-accumulates (GMACs) of one slice, for any method.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` while the method reconstructs one
synthetic slice (MACs = FLOPs / 2: the counter counts a multiply-add as 2 FLOPs). It counts the matrix
products of convolutions, linear layers and attention (conv, mm, bmm, addmm, scaled_dot_product_attention);
FFTs and element-wise operations are not counted, as in the usual GMAC tables (e.g. IMA Table 2). For
iterative samplers the count covers every network evaluation of the slice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mrrecon.core.reconstructor import Reconstructor
from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.physics.fft import fft2c
from mrrecon.physics.masks import make_mask

__all__ = ["cached_method_complexity", "complexity_cache_path", "count_macs", "method_complexity", "synthetic_sample"]


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker: its backward hooks fail on methods that call
    autograd inside a no-grad reconstruction (LDPM's k-space guidance); we only need the total."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def count_macs(fn, *args, **kwargs) -> tuple[int, Any]:
    """(MACs, result) of ``fn(*args, **kwargs)`` under FlopCounterMode.

    Gradient mode is left to ``fn`` (reconstructors run under no_grad themselves; LDPM's k-space guidance needs
    autograd), so backward passes a method makes are counted too."""
    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _GlobalOnly()
    with counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()) // 2, result


def synthetic_sample(shape: tuple[int, int] = (256, 256), coils: int = 1, *, mask_kind: str = "random1d",
                     acceleration: float = 4.0, reference: bool = True, seed: int = 0) -> Sample:
    """A smooth random single- or multi-coil slice (normalised units) with a reference image; only its size
    matters for counting."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = ((xx**2 + yy**2) < 0.7).float() * (0.5 + 0.5 * torch.rand(h, w, generator=g))
    maps = torch.ones(coils, h, w, dtype=torch.complex64)
    if coils > 1:
        angles = torch.arange(coils).float() * (2 * torch.pi / coils)
        maps = torch.exp(-((xx[None] - 0.7 * torch.cos(angles)[:, None, None]) ** 2
                           + (yy[None] - 0.7 * torch.sin(angles)[:, None, None]) ** 2)).to(torch.complex64)
    mask = make_mask(mask_kind, shape, acceleration, seed=seed).mask
    kspace = fft2c(maps * image) * mask
    return Sample(kspace=kspace.to(torch.complex64), mask=mask, target=image,
                  coil_maps=maps if coils > 1 else None, reference=image.flip(-1) if reference else None,
                  meta=SampleMeta(mask_type=mask_kind, acceleration=acceleration))


def method_complexity(method: Reconstructor, sample: Sample | None = None, *, shape: tuple[int, int] = (256, 256),
                      coils: int = 1) -> dict[str, Any]:
    """``{"parameters", "gmacs", "shape", "coils"}`` of a registry method.

    ``parameters``: ``method.num_parameters()`` (None for classical methods); ``gmacs``: MACs / 1e9 of one
    ``reconstruct`` call on ``sample`` (default: a synthetic slice of ``shape`` with ``coils`` coils and a
    reference image)."""
    sample = sample if sample is not None else synthetic_sample(shape, coils)
    params = method.num_parameters()
    macs, _ = count_macs(method.reconstruct, sample)
    return {"parameters": params, "gmacs": macs / 1e9, "shape": list(sample.shape), "coils": sample.num_coils}


def complexity_cache_path() -> Path:
    """``$MRRECON_CACHE_DIR/complexity.json`` (default ``$XDG_CACHE_HOME/mrrecon``, else ``~/.cache/mrrecon``)."""
    root = os.environ.get("MRRECON_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                         "mrrecon")
    return Path(root) / "complexity.json"


def _weights_fingerprint(folder: Path) -> str:
    """Hash of the relative names, sizes and modification times of every file under a weights folder."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_method_complexity(spec: str, weights: str | os.PathLike | None, build: Callable[[], Any], *,
                             coils: int = 1, shape: tuple[int, int] = (256, 256)) -> dict[str, Any]:
    """``method_complexity`` of the method ``build()`` returns, remembered per (spec, weights files, shape,
    coils, mrrecon version) in ``complexity_cache_path()``: counting MACs runs one whole reconstruction, which
    for the diffusion samplers takes seconds to minutes. ``weights``: the folder whose files the figure depends
    on (None for methods without weights). An unreadable or unwritable cache is ignored."""
    from mrrecon import __version__
    from mrrecon.core.pretrained import resolve_pretrained

    fingerprint = _weights_fingerprint(resolve_pretrained(weights)) if weights else "-"
    key = f"{spec}|{fingerprint}|{shape[0]}x{shape[1]}|{coils}|{__version__}"
    path = complexity_cache_path()
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    result = method_complexity(build(), shape=shape, coils=coils)
    cache[key] = result
    try:
        from mrrecon.utils.io import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    except OSError:
        pass
    return result
