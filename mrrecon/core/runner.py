"""Run a reconstructor over one volume of samples and score it (fastMRI convention).

The demo and the benchmark share this: every method sees the identical Samples; images are scored on
magnitudes in physical units (output x ``meta.scale``), inside the reconstruction size when the file has
one. Volume metrics use the fastMRI convention (PSNR/NMSE over the volume, SSIM averaged over slices, data
range = max of the target volume); per-slice rows use the same data range."""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mrrecon.core.memory import PeakMemory
from mrrecon.core.reconstructor import Reconstructor, sample_kind
from mrrecon.data.fastmri import center_crop, clamp_crop_size
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.metrics.image import compute_metrics
from mrrecon.utils.runfolder import RunFolder


@dataclass
class SliceResult:
    slice: int
    psnr: float
    ssim: float
    nmse: float
    seconds: float
    peak_mem_mb: float | None
    nfe: int | None
    lpips: float | None = None  # only with perceptual metrics (mrrecon.metrics.perceptual)
    effective_accel: float | None = None  # of this slice's mask (the volume row holds the mean over slices)


@dataclass
class VolumeResult:
    method: str
    file: str
    mask: str
    accel: float
    effective_accel: float
    n_slices: int
    data: str = ""  # "multi-coil" or "single-coil": summaries never pool the two
    psnr: float = float("nan")
    ssim: float = float("nan")
    nmse: float = float("nan")
    seconds_per_slice: float = float("nan")
    peak_mem_mb: float | None = None
    nfe: int | None = None
    error: str | None = None
    slices: list[SliceResult] = field(default_factory=list)
    target: np.ndarray | None = field(default=None, repr=False)  # the shown slice, when kept
    image: np.ndarray | None = field(default=None, repr=False)
    lpips: float | None = None  # mean over slices, only with perceptual metrics
    perceptual_error: str | None = None  # perceptual metrics failed (the other metrics stand)
    features: dict | None = field(default=None, repr=False)  # Inception features {"pred", "target"}: (S, 2048)
    rank: int | None = None  # the process that scored it (benchmark runs; absent elsewhere)

    def row(self) -> dict:
        """The volume as a flat dict (no per-slice rows, no images)."""
        d = asdict(self)
        for k in ("slices", "target", "image", "features"):
            d.pop(k)
        for k in ("lpips", "perceptual_error", "rank"):  # present only when perceptual metrics ran / in benchmarks
            if d[k] is None:
                d.pop(k)
        return d

    def to_record(self) -> dict:
        """The volume and its slices as JSON-ready values (no images, no features): ``from_record`` inverts it."""
        return {**self.row(), "slices": [asdict(s) for s in self.slices]}

    @classmethod
    def from_record(cls, record: dict) -> VolumeResult:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__ and k != "slices"}
        return cls(**known, slices=[SliceResult(**s) for s in record.get("slices", [])])

    def slice_rows(self) -> list[dict]:
        base = {k: v for k, v in self.row().items() if k not in ("psnr", "ssim", "nmse", "seconds_per_slice",
                                                                  "peak_mem_mb", "nfe", "n_slices", "lpips")}
        rows = [{**base, **asdict(s)} for s in self.slices]
        return [{k: v for k, v in r.items() if not (k == "lpips" and v is None)} for r in rows]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reconstruct_volume(method: Reconstructor, samples: Sequence[Sample]
                       ) -> tuple[list[torch.Tensor], list[float], list[float | None], list[int | None]]:
    """Reconstruct every slice: images (physical units, CPU), seconds, peak memory (MB) and network
    evaluations per slice (``method.last_nfe``; None for methods without a network)."""
    device = torch.device(method.device)
    images, seconds, mems, nfes = [], [], [], []
    for s in samples:
        with PeakMemory(device) as pm:
            _sync(device)
            t0 = time.perf_counter()
            img = method.reconstruct(s)
            _sync(device)
            seconds.append(time.perf_counter() - t0)
        mems.append(pm.peak_mb)
        nfes.append(method.last_nfe)
        images.append(img.detach().abs().float().cpu() * s.meta.scale)
    return images, seconds, mems, nfes


def score_volume(method_name: str, method: Reconstructor, samples: Sequence[Sample], keep_slice: int | None = None,
                 perceptual=None) -> VolumeResult:
    """Reconstruct and score one volume. A failing method is recorded in ``error``, not raised.

    ``perceptual`` (a ``mrrecon.metrics.perceptual.PerceptualMetrics``) adds per-slice LPIPS and keeps the
    Inception features for the set metrics (rFID, KID); its failure is recorded in ``perceptual_error``."""
    m = samples[0].meta
    res = VolumeResult(method=method_name, file=m.file or "", mask=m.mask_type or "", accel=m.acceleration or 0.0,
                       effective_accel=float(np.mean([s.meta.effective_acceleration or 0.0 for s in samples])),
                       n_slices=len(samples), data=sample_kind(samples[0]))
    try:
        images, seconds, mems, nfes = reconstruct_volume(method, samples)
        target = torch.stack([s.target.abs().float().cpu() * s.meta.scale for s in samples])
        pred = torch.stack(images)
        recon_size = m.extra.get("recon_size")  # fastMRI: score inside the reconstruction size
        if recon_size is not None:
            crop = clamp_crop_size(tuple(target.shape[-2:]), tuple(recon_size))
            target, pred = center_crop(target, crop), center_crop(pred, crop)
        vol = compute_metrics(target, pred)
        res.psnr, res.ssim, res.nmse = (float(vol[k]) for k in ("psnr", "ssim", "nmse"))
        data_range = float(target.max())
        for i, s in enumerate(samples):
            sm = compute_metrics(target[i], pred[i], data_range=data_range)
            res.slices.append(SliceResult(slice=int(s.meta.slice or i), psnr=float(sm["psnr"]),
                                          ssim=float(sm["ssim"]), nmse=float(sm["nmse"]), seconds=seconds[i],
                                          peak_mem_mb=mems[i], nfe=nfes[i],
                                          effective_accel=_float_or_none(s.meta.effective_acceleration)))
        if perceptual is not None and perceptual.available:
            _score_perceptual(res, perceptual, target, pred, data_range)
        res.seconds_per_slice = float(np.mean(seconds))
        known = [x for x in mems if x is not None]
        res.peak_mem_mb = max(known) if known else None
        res.nfe = nfes[-1]
        if keep_slice is not None:
            res.target, res.image = target[keep_slice].numpy(), pred[keep_slice].numpy()
    except Exception as exc:  # noqa: BLE001 -- recorded and reported; the run goes on
        res.error = f"{type(exc).__name__}: {exc}"
        res.slices = []
        traceback.print_exc()
    return res


def _score_perceptual(res: VolumeResult, perceptual, target: torch.Tensor, pred: torch.Tensor,
                      data_range: float) -> None:
    try:
        out = perceptual.score_volume(target, pred, data_range)
    except Exception as exc:  # noqa: BLE001 -- recorded; PSNR/SSIM/NMSE of the volume stand
        res.perceptual_error = f"{type(exc).__name__}: {exc}"
        return
    if out["lpips"] is not None:
        for s, v in zip(res.slices, out["lpips"], strict=True):
            s.lpips = float(v)
        res.lpips = float(np.mean(out["lpips"]))
    res.features = out["features"]


def _float_or_none(x) -> float | None:
    return None if x is None else float(x)


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof=1, as fastMRI reports); NaN with fewer than two values."""
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def summarise(results: Iterable[VolumeResult]) -> list[dict]:
    """One row per (data kind, method, mask, accel): mean +- std over volumes that succeeded. Multi-coil and
    single-coil volumes are never pooled (methods that need coils would otherwise be averaged over other data)."""
    groups: dict[tuple, list[VolumeResult]] = {}
    for r in sorted(results, key=lambda r: r.data != "multi-coil"):  # stable: multi-coil rows first
        groups.setdefault((r.data, r.method, r.mask, r.accel), []).append(r)
    rows = []
    for (data, method, mask, accel), rs in groups.items():
        ok = [r for r in rs if r.error is None]

        def col(key: str, ok=ok) -> np.ndarray:
            return np.array([getattr(r, key) for r in ok], dtype=float)

        mems = [r.peak_mem_mb for r in ok if r.peak_mem_mb is not None]
        nfes = {r.nfe for r in ok if r.nfe is not None}
        rows.append({
            "method": method, "mask": mask, "accel": accel, "data": data,
            "effective_accel": _mean(np.array([r.effective_accel for r in rs], dtype=float)),
            "n": len(ok), "n_slices": int(sum(r.n_slices for r in ok)), "failed": len(rs) - len(ok),
            "psnr_mean": _mean(col("psnr")), "psnr_std": _std(col("psnr")),
            "ssim_mean": _mean(col("ssim")), "ssim_std": _std(col("ssim")),
            "nmse_mean": _mean(col("nmse")),
            "seconds_mean": _mean(col("seconds_per_slice")),
            "peak_mem_mb": max(mems) if mems else None,
            "nfe": max(nfes) if nfes else None,
        })
    return rows


def is_finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


class OutputFolder:
    """Resume and sharding for ``mrrecon reconstruct`` into a folder (fastMRI submission layout: one output file
    per input, and its ``_std.h5`` with posterior samples).

    ``targets``: (key, output path) per input, in order; the key names the input (its path and loader options).
    The folder follows the reuse rule of ``mrrecon.utils.runfolder`` (state in ``<out>/.mrrecon/``): the same
    settings resume (an input whose outputs are complete is skipped), different settings are refused unless
    ``overwrite``. An input counts as complete when its record (written after its output files, which are written
    atomically) is there and every output file opens with a ``reconstruction`` of the recorded shape. With
    several processes rank 0 applies the rule and the unfinished inputs are shared out round-robin
    (``mine()``). A single output file (one input, ``--out x.h5``) is written as before: no state, no sharing."""

    def __init__(self, out: Path, targets: Sequence[tuple[object, Path]], settings: dict, *, is_dir: bool,
                 std: bool = False, overwrite: bool = False, group=None):
        import glob

        from mrrecon.utils.distributed import ProcessGroup

        self.out, self.targets, self.is_dir, self.std = Path(out), list(targets), is_dir, std
        self.overwrite = overwrite
        self.group = group if group is not None else ProcessGroup.start()
        self.folder = None
        self.finished = 0
        for key, target in self.targets:  # an output must never replace (or, with overwrite, delete) an input
            source = key.get("input") if isinstance(key, dict) else None
            for f in self._files(target):
                if source and f.exists() and Path(source).exists() and os.path.samefile(f, source):
                    raise ConfigError(f"--out {out}: the output {f} would replace the input {source}; choose another "
                                      "output folder")
        if is_dir:
            patterns = [glob.escape(f.name) for _, t in self.targets for f in self._files(t) if f.parent == self.out]
            self.folder = RunFolder(self.out, "reconstruct", settings, state=".mrrecon", outputs=patterns,
                                    foreign=patterns)

    def _files(self, target: Path) -> list[Path]:
        target = Path(target)
        return [target] + ([target.with_name(target.stem + "_std.h5")] if self.std else [])

    def _complete(self, index: int) -> bool:
        key, target = self.targets[index]
        rec = self.folder.read_record(key)
        if rec is None:
            return False
        import h5py

        for f in self._files(target):
            try:
                with h5py.File(f, "r") as h:
                    if list(h["reconstruction"].shape) != list(rec.get("shape", [])):
                        return False
            except (OSError, KeyError):
                return False
        return True

    def mine(self, echo) -> list[int]:
        """Indices of this process's share of the inputs still to reconstruct (all of them, alone)."""
        if self.folder is None:
            return list(range(len(self.targets))) if self.group.is_main else []

        def plan() -> list[int]:
            outcome = self.folder.prepare(self.overwrite)
            pending = [i for i in range(len(self.targets)) if not self._complete(i)]
            if outcome == "resumed" and len(pending) < len(self.targets):
                echo(f"resuming in {self.out}: {len(self.targets) - len(pending)} of {len(self.targets)} input(s) "
                     f"already reconstructed (--overwrite redoes them)")
            return pending

        pending = self.group.run_on_main(plan)
        if not self.group.is_main:
            self.folder.attach()
        self.finished = len(self.targets) - len(pending)
        return pending[self.group.rank::self.group.world]

    def done(self, index: int, shape: Sequence[int]) -> None:
        """Record input ``index`` as complete (after its output files are written)."""
        if self.folder is not None:
            key, target = self.targets[index]
            self.folder.write_record(key, {"output": str(target), "shape": list(shape), "rank": self.group.rank})

    def total(self, failures: int, shared: int = 0) -> int:
        """Failures of every process, after all have finished; ``shared``: of ``failures``, those every process
        counted (inputs that were not found), counted once."""
        return sum(self.group.gather(failures - shared)) + shared

    def close(self) -> None:
        self.group.close()
