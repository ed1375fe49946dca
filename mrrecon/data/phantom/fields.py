"""Seeded smooth random fields on a square field of view.

Two kinds:

* ``CoarseField``: a low-frequency Gaussian random field drawn on a fixed 64 x 64 grid over the field of view
  and evaluated anywhere (cubic spline), so that the subject's deformation, shell thickness, bias and phase
  do not depend on the output image size.
* ``bandpass_noise``: band-limited noise on the render grid (spatial wavelengths between two bounds, in mm),
  the fine tissue texture.

Both are unit-variance Gaussian fields built by filtering white noise in the Fourier domain (spectral
synthesis); the filters are documented in docs/simulator.md.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RectBivariateSpline

COARSE_GRID = 64
_WRAP = 4  # periodic padding (cells) so that the spline covers the whole FOV without edge effects


def _radial_frequency(n: int, spacing_mm: float) -> np.ndarray:
    """|k| in cycles/mm on the rfft2 grid of an n x n image."""
    fy = np.fft.fftfreq(n, d=spacing_mm)[:, None]
    fx = np.fft.rfftfreq(n, d=spacing_mm)[None, :]
    return np.sqrt(fy**2 + fx**2)


def _unit(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


class CoarseField:
    """Zero-mean, unit-variance Gaussian random field, periodic over the FOV, with spectrum exp(-(pi k l)^2):
    white noise smoothed by a Gaussian of std ``l / sqrt(2)``, i.e. correlation exp(-r^2 / (2 l^2)) with
    ``l = corr_mm``."""

    def __init__(self, rng: np.random.Generator, fov_mm: float, corr_mm: float):
        n = COARSE_GRID
        self.fov_mm = float(fov_mm)
        self.spacing = self.fov_mm / n
        k = _radial_frequency(n, self.spacing)
        white = rng.standard_normal((n, n))
        spec = np.fft.rfft2(white) * np.exp(-((np.pi * k * corr_mm) ** 2))
        self.values = _unit(np.fft.irfft2(spec, s=(n, n)))
        # The synthesised field is periodic over the FOV: pad by wrapping and fit an interpolating bicubic
        # spline through the node values (nodes at (i - n/2) * spacing mm).
        padded = np.pad(self.values.astype(np.float64), _WRAP, mode="wrap")
        nodes = (np.arange(n + 2 * _WRAP) - _WRAP - n // 2) * self.spacing
        self._spline = RectBivariateSpline(nodes, nodes, padded, kx=3, ky=3, s=0)

    def __call__(self, u_mm: np.ndarray, v_mm: np.ndarray) -> np.ndarray:
        """Evaluate at scattered physical positions (u: rows, v: columns; mm from the FOV centre)."""
        out = self._spline.ev(np.ravel(u_mm), np.ravel(v_mm))
        return out.astype(np.float32).reshape(np.shape(u_mm))

    def grid(self, u_axis: np.ndarray, v_axis: np.ndarray) -> np.ndarray:
        """Evaluate on the grid u_axis x v_axis (separable, fast)."""
        return self._spline(np.asarray(u_axis, np.float64), np.asarray(v_axis, np.float64)).astype(np.float32)


def bandpass_noise(rng: np.random.Generator, n: int, spacing_mm: float, lo_mm: float, hi_mm: float) -> np.ndarray:
    """Unit-variance noise on an n x n grid whose spectrum is flat between spatial wavelengths ``lo_mm`` and
    ``hi_mm`` (frequencies 1/hi .. 1/lo cycles/mm) with raised-cosine roll-offs of one octave; content above
    the grid's Nyquist frequency is simply absent."""
    k = _radial_frequency(n, spacing_mm)
    f_lo, f_hi = 1.0 / hi_mm, 1.0 / lo_mm
    with np.errstate(divide="ignore"):
        octaves_below = np.log2(np.where(k > 0, f_lo / np.maximum(k, 1e-12), np.inf))
        octaves_above = np.log2(np.where(k > 0, np.maximum(k, 1e-12) / f_hi, 0.0))
    ramp = lambda o: 0.5 + 0.5 * np.cos(np.pi * np.clip(o, 0.0, 1.0))  # noqa: E731  (1 below 0, 0 above 1)
    filt = ramp(octaves_below) * ramp(octaves_above)
    filt[0, 0] = 0.0
    white = rng.standard_normal((n, n))
    return _unit(np.fft.irfft2(np.fft.rfft2(white) * filt, s=(n, n)))
