"""Procedural non-MRI images for the ``ldpm-no-mrvae`` ablation's VAE (generated in-project, no downloads).

The paper's "w/o MR-VAE" ablation uses Stable Diffusion's VAE, trained on natural photographs and never on MRI.
Here the same architecture is trained on images that share generic natural-image statistics but no MR
anatomy: each image is a random composition of

* a fractal (1/f^beta) noise field, beta in [1.5, 3] (the power law of natural images),
* 3-12 opaque random shapes (ellipses, rotated rectangles, triangles) with their own intensity and a
  fractal texture inside, occluding each other (the "dead leaves" model of natural images),
* sometimes a sinusoidal grating (man-made periodic texture) and a smooth illumination gradient,

normalised to [0, 1]. Everything is a function of the seed.
"""

from __future__ import annotations

import math

import torch

__all__ = ["procedural_image", "procedural_batch"]


def _fractal(n: int, beta: float, g: torch.Generator) -> torch.Tensor:
    fy = torch.fft.fftfreq(n).view(-1, 1)
    fx = torch.fft.fftfreq(n).view(1, -1)
    f = torch.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spec = torch.randn(n, n, generator=g) + 1j * torch.randn(n, n, generator=g)
    field = torch.fft.ifft2(spec / f ** (beta / 2)).real
    field = field - field.mean()
    return field / field.std().clamp_min(1e-8)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def procedural_image(size: int, seed: int) -> torch.Tensor:
    """One (size, size) float32 image in [0, 1]."""
    g = torch.Generator().manual_seed(int(seed))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = 0.5 + 0.15 * _fractal(size, _uniform(g, 1.5, 3.0), g)
    for _ in range(int(torch.randint(3, 13, (), generator=g))):
        cx, cy = _uniform(g, -1, 1), _uniform(g, -1, 1)
        a, b = _uniform(g, 0.05, 0.6), _uniform(g, 0.05, 0.6)
        th = _uniform(g, 0, math.pi)
        u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
        v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
        kind = int(torch.randint(3, (), generator=g))
        if kind == 0:
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        elif kind == 1:
            inside = (u.abs() <= a) & (v.abs() <= b)
        else:
            inside = (v >= -b) & (v <= b - (2 * b / a) * u.abs())
        level = _uniform(g, 0.0, 1.0)
        tex = _uniform(g, 0.0, 0.2) * _fractal(size, _uniform(g, 1.5, 3.5), g)
        img = torch.where(inside, level + tex, img)
    if float(torch.rand((), generator=g)) < 0.4:
        freq, th = _uniform(g, 4, 40), _uniform(g, 0, math.pi)
        img = img + _uniform(g, 0.05, 0.2) * torch.sin(freq * (xx * math.cos(th) + yy * math.sin(th)))
    img = img * (1 + _uniform(g, -0.4, 0.4) * (xx * _uniform(g, -1, 1) + yy * _uniform(g, -1, 1)))
    img = img - img.min()
    return (img / img.max().clamp_min(1e-8)).float()


def procedural_batch(batch: int, size: int, seed: int) -> torch.Tensor:
    """(batch, size, size) images with seeds ``seed * 100003 + i``."""
    return torch.stack([procedural_image(size, seed * 100003 + i) for i in range(batch)])
