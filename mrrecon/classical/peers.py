"""Peer implementations run as mrrecon methods, on the same k-space, maps and scaling as ours.

* ``bart-pics``: the BART binary (``bart pics``, Debian package ``bart``), called through a subprocess on .cfl/.hdr
  files in a temporary folder. The k-space is scaled by mrrecon (:func:`mrrecon.classical.sense.bart_scale`, which
  reproduces BART's own automatic scale) and passed with ``-w 1`` so BART does not rescale; the sampling pattern is
  passed explicitly (``-p``) and the coil maps are the ones our methods use. Regularisers: ``l1`` (``-l1 -r lam``:
  1/2 ||A x - y||^2 + lam ||W x||_1, W = BART's Daubechies-2 wavelet with random cycle spinning, FISTA), ``tv``
  (``-R T:3:0:lam``: isotropic TV, ADMM with ``-u rho``, ``-C cg_iters``), ``l2`` (``-l2 -r lam``: Tikhonov, CG).
  The timing of this method includes writing the inputs, starting the process and reading the output.
* ``sigpy-l1wavelet``: ``sigpy.mri.app.L1WaveletRecon`` (1/2 ||P F S x - y||^2 + lam ||W x||_1, W = pywt db4 with
  zero padding, all bands penalised, FISTA with step from a 30-iteration power method), in numpy on the CPU.

Both are registered whether or not the tool is installed; building one without it raises a ConfigError that
says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from mrrecon.classical.sense import (
    CG_SENSE_DEFAULTS,
    L1_WAVELET_DEFAULTS,
    MAPS_CHOICES,
    SCALING_CHOICES,
    TV_DEFAULTS,
    Calib,
    Maps,
    SenseProblem,
    prepare_problem,
)
from mrrecon.core.reconstructor import MethodInfo, Reconstructor, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError, MRReconError

__all__ = ["BartPics", "SigpyL1Wavelet", "bart_available", "find_bart", "sigpy_available"]

REGULARIZERS = ("l1", "tv", "l2")

try:  # the project's BART file support; private fallbacks keep this module usable without it
    from mrrecon.data.formats import read_cfl, write_cfl
except ImportError:  # pragma: no cover - formats.py is part of the package
    read_cfl = write_cfl = None


def find_bart(binary: str | None = None) -> str | None:
    """Path of the BART executable: ``binary`` if given (name or path), else ``$BART_BINARY`` or ``bart`` on PATH."""
    name = binary or os.environ.get("BART_BINARY") or "bart"
    return shutil.which(name)


def bart_available() -> bool:
    return find_bart() is not None


def sigpy_available() -> bool:
    try:
        import sigpy.mri.app  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return True


def _check(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# the peers' scaling goes to the tool as already applied (BART: -w 1)
Scaling = Annotated[str, "k-space scaling: bart (passed with -w 1) | none"]


class _PeerBase(Reconstructor):
    def __init__(self, *, maps: str, calib: int, scaling: str, device: str | torch.device):
        _check("maps", maps, MAPS_CHOICES)
        _check("scaling", scaling, SCALING_CHOICES)
        self.maps, self.calib, self.scaling = maps, int(calib), scaling
        self.device = torch.device(device)
        self.last_info: dict = {}

    def _problem(self, sample: Sample) -> SenseProblem:
        # Maps and scaling are computed by mrrecon (on the requested device), the peer itself runs on the CPU.
        return prepare_problem(sample, maps=self.maps, calib=self.calib, scaling=self.scaling, device=self.device)

    def reconstruct(self, sample: Sample) -> torch.Tensor:
        return self.reconstruct_complex(sample).abs().float()


class BartPics(_PeerBase):
    """``bart pics`` on the sample (module docstring). ``lam``/``iters`` default to those of the matching
    mrrecon method (l1 -> l1-wavelet, tv -> tv, l2 -> cg-sense), so the default call solves the same problem."""

    name = "bart-pics"

    def __init__(self, lam: Annotated[float | None, "regularisation weight (default: that of l1-wavelet / tv / "
                                                    "cg-sense)"] = None,
                 iters: Annotated[int | None, "iterations (default: that of the matching mrrecon method)"] = None,
                 regularizer: Annotated[str, "l1 | tv | l2"] = "l1",
                 wavelet: Annotated[str, "dau2 | haar | cdf44 (BART --wavelet)"] = "dau2",
                 randshift: Annotated[bool, "random wavelet cycle spinning (false adds -n)"] = True,
                 rho: Annotated[float | None, "ADMM rho for tv (-u; default: that of tv)"] = None,
                 cg_iters: Annotated[int | None, "ADMM CG iterations for tv (-C; default: that of tv)"] = None,
                 threads: Annotated[int | None, "OMP_NUM_THREADS for BART (default: torch's thread count)"] = None,
                 binary: Annotated[str | None, "path or name of the bart executable (default $BART_BINARY or "
                                               "`bart`)"] = None,
                 maps: Maps = "auto", calib: Calib = 24, scaling: Scaling = "bart",
                 device: str | torch.device = "cpu"):
        super().__init__(maps=maps, calib=calib, scaling=scaling, device=device)
        _check("regularizer", regularizer, REGULARIZERS)
        _check("wavelet", wavelet, ("dau2", "haar", "cdf44"))
        self.binary = find_bart(binary)
        if self.binary is None:
            raise ConfigError("bart-pics: the BART binary was not found (looked for "
                              f"{binary or os.environ.get('BART_BINARY') or 'bart'!r} on PATH). Install it with "
                              "`apt-get install bart` (Debian/Ubuntu) or from https://mrirecon.github.io/bart/, "
                              "or pass binary=/path/to/bart")
        defaults = {"l1": L1_WAVELET_DEFAULTS, "tv": TV_DEFAULTS, "l2": CG_SENSE_DEFAULTS}[regularizer]
        self.regularizer = regularizer
        self.lam = float(defaults["lam"] if lam is None else lam)
        self.iters = int(defaults["iters"] if iters is None else iters)
        self.rho = float(TV_DEFAULTS["rho"] if rho is None else rho)
        self.cg_iters = int(TV_DEFAULTS["cg_iters"] if cg_iters is None else cg_iters)
        self.wavelet, self.randshift = wavelet, bool(randshift)
        self.threads = int(threads) if threads else torch.get_num_threads()
        if self.lam < 0 or self.iters < 1:
            raise ConfigError(f"bart-pics: need lam >= 0 and iters >= 1 (got {self.lam}, {self.iters})")

    def command(self, kspace: str, maps: str, out: str, pattern: str) -> list[str]:
        cmd = [self.binary, "pics", "-w", "1", "-i", str(self.iters), "-p", pattern]
        if self.regularizer == "l1":
            cmd += ["-l1", "-r", repr(self.lam), "--wavelet", self.wavelet]
            if not self.randshift:
                cmd.append("-n")
        elif self.regularizer == "tv":
            cmd += ["-R", f"T:3:0:{self.lam!r}", "-u", repr(self.rho), "-C", str(self.cg_iters)]
        else:
            cmd += ["-l2", "-r", repr(self.lam)]
        return cmd + [kspace, maps, out]

    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        p = self._problem(sample)
        k = p.kspace[0].cpu()  # (C, H, W)
        c, h, w = k.shape
        maps = torch.ones(1, h, w, dtype=torch.complex64) if p.maps is None else p.maps[0].cpu()
        pattern = torch.broadcast_to(p.mask[0].cpu().to(torch.float32), (1, h, w))
        # BART dims: 0 = readout (our H), 1 = phase encode (our W), 2 = second phase encode, 3 = coils.
        to_bart = lambda t: t.permute(1, 2, 0).unsqueeze(2).numpy()  # noqa: E731  (C, H, W) -> (H, W, 1, C)
        with tempfile.TemporaryDirectory(prefix="mrrecon-bart-") as tmp:
            d = Path(tmp)
            _write_cfl(d / "ksp", to_bart(k))
            _write_cfl(d / "sens", to_bart(maps))
            _write_cfl(d / "pat", to_bart(pattern.to(torch.complex64)))
            cmd = self.command(str(d / "ksp"), str(d / "sens"), str(d / "img"), str(d / "pat"))
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
            run = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if run.returncode != 0:
                raise MRReconError(f"bart pics failed (exit {run.returncode}) on {sample.meta.file or 'sample'}: "
                                   f"{(run.stderr or run.stdout).strip()[-500:]}\ncommand: {' '.join(cmd)}")
            img = _read_cfl(d / "img")
        x = torch.from_numpy(np.ascontiguousarray(img.reshape(h, w))).to(self.device)
        self.last_info = {"maps": p.extra["maps"], "scale": float(p.scale[0]), "command": " ".join(cmd[1:-4])}
        return p.unscale(x.unsqueeze(0))[0]


class SigpyL1Wavelet(_PeerBase):
    """``sigpy.mri.app.L1WaveletRecon`` on the same scaled k-space and maps (module docstring)."""

    name = "sigpy-l1wavelet"

    def __init__(self, lam: Annotated[float | None, "L1 weight (default: that of l1-wavelet)"] = None,
                 iters: Annotated[int | None, "FISTA iterations (default: that of l1-wavelet)"] = None,
                 wavelet: Annotated[str, "pywt wavelet name"] = "db4",
                 maps: Maps = "auto", calib: Calib = 24, scaling: Scaling = "bart",
                 device: str | torch.device = "cpu"):
        super().__init__(maps=maps, calib=calib, scaling=scaling, device=device)
        if not sigpy_available():
            raise ConfigError("sigpy-l1wavelet: sigpy is not importable; install it with `pip install sigpy` "
                              "(it needs PyWavelets)")
        self.lam = float(L1_WAVELET_DEFAULTS["lam"] if lam is None else lam)
        self.iters = int(L1_WAVELET_DEFAULTS["iters"] if iters is None else iters)
        self.wavelet = wavelet
        if self.lam < 0 or self.iters < 1:
            raise ConfigError(f"sigpy-l1wavelet: need lam >= 0 and iters >= 1 (got {self.lam}, {self.iters})")

    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        import sigpy.mri.app as app

        p = self._problem(sample)
        k = p.kspace[0].cpu().numpy()
        c, h, w = k.shape
        maps = np.ones((1, h, w), np.complex64) if p.maps is None else p.maps[0].cpu().numpy()
        weights = np.broadcast_to(p.mask[0].cpu().numpy().astype(np.float32), (1, h, w))[0]
        img = app.L1WaveletRecon(k, maps, self.lam, weights=weights, wave_name=self.wavelet, max_iter=self.iters,
                                 show_pbar=False).run()
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(img), dtype=np.complex64)).to(self.device)
        self.last_info = {"maps": p.extra["maps"], "scale": float(p.scale[0])}
        return p.unscale(x.unsqueeze(0))[0]


def _write_cfl(base: Path, arr: np.ndarray) -> None:
    if write_cfl is not None:
        write_cfl(base, arr)
        return
    a = np.asarray(arr, dtype=np.complex64)  # pragma: no cover - fallback
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(s) for s in a.shape) + "\n")
    a.ravel(order="F").tofile(base.with_suffix(".cfl"))


def _read_cfl(base: Path) -> np.ndarray:
    if read_cfl is not None:
        return read_cfl(base)
    lines = [ln for ln in base.with_suffix(".hdr").read_text().splitlines() if ln and not ln.startswith("#")]
    dims = [int(v) for v in lines[0].split()]  # pragma: no cover - fallback
    return np.fromfile(base.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


register(MethodInfo(
    name="bart-pics",
    factory=BartPics,
    description="BART `pics` (binary, subprocess) on the same k-space, maps and scaling: l1 wavelet, TV or l2.",
))

register(MethodInfo(
    name="sigpy-l1wavelet",
    factory=SigpyL1Wavelet,
    description="sigpy.mri.app.L1WaveletRecon on the same k-space, maps and scaling.",
))
