"""k-space classical reconstructions: GRAPPA, SPIRiT, AC-LORAKS and the SLR projection/correction.

All synthetic cases are small (64 x 64, 4-8 coils) so the file runs in seconds on 2 CPU cores. The one
real-data check (shared brain #17) is marked slow and skips without the shared data.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from mrrecon.classical.grappa import grappa
from mrrecon.classical.kspace_patches import (
    AnnihilationOperator,
    Neighbourhood,
    lift,
    lift_adjoint,
)
from mrrecon.classical.slr import (
    estimate_nullspace,
    hankel_rank,
    hankel_singular_values,
    loraks,
    slr_correct,
    slr_project,
)
from mrrecon.classical.spirit import spirit, spirit_filters, spirit_operator
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.methods import load
from mrrecon.metrics.image import psnr
from mrrecon.physics.coils import rss, simulate_coil_maps
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import find_acs_region
from mrrecon.physics.masks import make_mask

N = 64


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are small (64 x 64): threads do not help, and on a busy machine the OpenMP barriers of
    small multi-threaded LAPACK calls (eigh, batched Cholesky) stall for up to a second each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------------------


def _phantom(n: int = N, seed: int = 0) -> torch.Tensor:
    """An ellipse 'head' with a dozen random inner ellipses and a smooth phase ramp, (n, n) complex64."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((yy / 0.85) ** 2 + (xx / 0.7) ** 2 < 1).float() * 0.8
    for _ in range(12):
        cy, cx = (torch.rand(2, generator=g) - 0.5).tolist()
        a, b = (torch.rand(2, generator=g) * 0.2 + 0.04).tolist()
        v = float(torch.rand(1, generator=g)) * 0.6 - 0.3
        img = img + (((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 < 1).float() * v
    phase = torch.exp(1j * math.pi * 0.5 * (xx + 0.5 * yy))
    return (img.clamp_min(0) * phase).to(torch.complex64)


def _bandlimited_kspace(coils: int = 8, n: int = N, map_support: int = 3, margin: int = 6, seed: int = 0):
    """Multi-coil k-space that satisfies GRAPPA's linear-prediction model exactly.

    Coil maps with a ``map_support`` x ``map_support`` Fourier support (smooth, band-limited maps), times an
    object whose k-space is zero within ``margin`` samples of the edges, so every coil's k-space is the
    *linear* (not circular) convolution z_c = s_c * x and vanishes near the edges (no truncation)."""
    g = torch.Generator().manual_seed(seed)
    ker = torch.zeros(coils, n, n, dtype=torch.complex128)
    h = map_support // 2
    ker[:, n // 2 - h:n // 2 + h + 1, n // 2 - h:n // 2 + h + 1] = torch.randn(
        coils, map_support, map_support, dtype=torch.complex128, generator=g)
    maps = ifft2c(ker)
    band = torch.zeros(n, n, dtype=torch.bool)
    band[margin:n - margin, margin:n - margin] = True
    obj = ifft2c(fft2c(_phantom(n, seed).to(torch.complex128)) * band)
    return fft2c(maps * obj)  # complex128


def _physical_kspace(coils: int = 8, n: int = N, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Phantom times Biot-Savart coil maps (simulate_coil_maps), optional complex Gaussian noise."""
    maps = simulate_coil_maps(coils, (n, n), seed=seed + 1)
    k = fft2c(maps * _phantom(n, seed))
    if noise:
        g = torch.Generator().manual_seed(seed + 2)
        k = k + noise * k.abs().max() * torch.randn(k.shape, dtype=torch.complex64, generator=g)
    return k


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _dot(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex((a.conj() * b).sum())


# --------------------------------------------------------------------------------------------------------
# lifting and operators
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nb", [Neighbourhood.box(3, 5), Neighbourhood.disc(2)])
def test_lift_adjoint(nb):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 12, 11, dtype=torch.complex128, generator=g)
    a = lift(z, nb)
    kh, kw = nb.size
    assert a.shape == (2, (12 - kh + 1) * (11 - kw + 1), 3 * nb.num_points)
    # row 0 is the neighbourhood of anchor (0, 0): coil-major, offsets in footprint order
    assert torch.equal(a[0, 0, :nb.num_points], torch.stack([z[0, 0, i, j] for i, j in nb.positions]))
    r = torch.randn(a.shape, dtype=torch.complex128, generator=g)
    lhs, rhs = _dot(a, r), _dot(z, lift_adjoint(r, nb, (12, 11), 3))
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_disc_neighbourhood_is_loraks():
    assert Neighbourhood.disc(3).num_points == 29  # LORAKS R = 3
    assert Neighbourhood.disc(2).num_points == 13
    assert Neighbourhood.box(5).num_points == 25 and Neighbourhood.box(5).centre_index == 12


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_annihilation_operator_equals_explicit_lifting(boundary):
    """The FFT/per-pixel operator equals H^*(H(z) F F^H) built from the explicit lifting, and is Hermitian PSD."""
    g = torch.Generator().manual_seed(1)
    nb = Neighbourhood.disc(2)
    c, h, w = 3, 14, 12
    kh, kw = nb.size
    f = torch.randn(2, c * nb.num_points, 5, dtype=torch.complex128, generator=g)
    z = torch.randn(2, c, h, w, dtype=torch.complex128, generator=g)
    op = AnnihilationOperator(f, nb, (h, w), c, boundary=boundary, dtype=torch.complex128)
    if boundary == "zero":  # lifting of zero-padded k-space: every anchor whose box overlaps the grid
        zp = F.pad(z, (kw - 1, kw - 1, kh - 1, kh - 1))
        ref = lift_adjoint(lift(zp, nb) @ f @ f.mH, nb, zp.shape[-2:], c)[..., kh - 1:kh - 1 + h, kw - 1:kw - 1 + w]
    else:  # circular lifting: wrap the grid, lift, fold the adjoint back
        zc = torch.cat([z, z[..., :kh - 1, :]], -2)
        zc = torch.cat([zc, zc[..., :kw - 1]], -1)
        o = lift_adjoint(lift(zc, nb) @ f @ f.mH, nb, zc.shape[-2:], c)
        ref = o[..., :h, :w].clone()
        ref[..., :kh - 1, :] += o[..., h:, :w]
        ref[..., :, :kw - 1] += o[..., :h, w:]
        ref[..., :kh - 1, :kw - 1] += o[..., h:, w:]
    assert _rel(op.normal(z), ref) < 1e-10
    x = torch.randn(z.shape, dtype=torch.complex128, generator=g)
    assert abs(_dot(x, op.normal(z)) - _dot(op.normal(x), z)) < 1e-10 * abs(_dot(x, op.normal(z)))
    q = op.penalty(x)
    assert (q >= 0).all() and abs(_dot(x, op.normal(x)).imag) < 1e-9 * abs(_dot(x, op.normal(x)))


def test_operators_used_in_cg_are_hermitian_psd():
    """SPIRiT's (G - I)^H (G - I), the AC-LORAKS H^*(H(.) N N^H) and their restrictions to the unmeasured
    samples: <x, N y> = <N x, y> (adjoint test) and <x, N x> real and >= 0."""
    k = _physical_kspace(4)
    acs = k[:, 24:40, 24:40]
    ops = {
        "spirit": spirit_operator(spirit_filters(acs, 5, 1e-3), (N, N), 4, 5),
        "loraks": estimate_nullspace(acs, 3).operator((N, N)),
    }
    m = make_mask("random1d", (N, N), 4, center_fraction=0.25, seed=0).mask.to(torch.float32)
    g = torch.Generator().manual_seed(3)
    for name, op in ops.items():
        for restricted in (False, True):
            u = (1 - m) if restricted else torch.ones_like(m)

            def normal(v, op=op, u=u):
                return op.normal(v * u) * u

            x, y = (torch.randn(1, 4, N, N, dtype=torch.complex64, generator=g) for _ in range(2))
            lhs, rhs = _dot(x, normal(y)), _dot(normal(x), y)
            assert abs(lhs - rhs) < 1e-5 * abs(lhs), name
            q = _dot(x, normal(x))
            assert q.real >= 0 and abs(q.imag) < 1e-5 * abs(q.real), name


# --------------------------------------------------------------------------------------------------------
# calibration region
# --------------------------------------------------------------------------------------------------------


def test_find_acs_region():
    m1 = make_mask("uniform1d", (40, 64), 4, acs_lines=10).mask
    rows, cols = find_acs_region(m1, (40, 64))
    assert rows == slice(0, 40)
    assert m1[0, 0, cols].all() and cols.stop - cols.start >= 10 and cols.start <= 32 < cols.stop
    assert not m1[0, 0, cols.start - 1] and not m1[0, 0, cols.stop]  # maximal
    m2 = make_mask("poisson2d", (N, N), 4, acs_size=(12, 16), seed=0).mask
    rows, cols = find_acs_region(m2, (N, N))
    assert m2[0, rows, cols].all()
    assert (rows.stop - rows.start) * (cols.stop - cols.start) >= 12 * 16
    no_centre = torch.ones(1, 1, N, dtype=torch.bool)
    no_centre[..., N // 2] = False
    with pytest.raises(ConfigError, match="centre"):
        find_acs_region(no_centre, (N, N))
    with pytest.raises(ConfigError, match="smaller than the kernel"):
        grappa(_physical_kspace(2), make_mask("uniform1d", (N, N), 4, acs_lines=4).mask, kernel_size=(5, 5))


# --------------------------------------------------------------------------------------------------------
# GRAPPA
# --------------------------------------------------------------------------------------------------------


def test_grappa_exact_at_r2_on_bandlimited_data():
    """GRAPPA is exact (relative error < 1e-3) on noise-free data at R = 2 with a fully sampled ACS.

    Why it is exact here: z_c = s_c * x (k-space convolution) with maps of 3 x 3 Fourier support, so every
    5 x 5 window of the C = 8 coils is a linear function of the 7 x 7 (rows) object samples around it. At
    R = 2 a missing point's window holds 2 acquired columns x 5 rows x 8 coils = 80 samples depending on the
    7 x 5 = 35 object samples that also determine the target, so the target is an exact linear combination
    of them, the same everywhere (shift invariance); the ACS fit (lam ~ 0) recovers it. The object's
    k-space is zero near the edges, so the linear model holds at the borders too. Real coil maps are only
    approximately band-limited, which is why GRAPPA is approximate in practice."""
    k = _bandlimited_kspace(8)
    mask = torch.zeros(1, 1, N, dtype=torch.bool)
    mask[..., ::2] = True
    mask[..., N // 2 - 8:N // 2 + 8] = True  # 16 ACS lines
    y = (k * mask).to(torch.complex64)
    out = grappa(y, mask, kernel_size=(5, 5), lam=1e-9)
    assert _rel(out, k.to(torch.complex64)) < 1e-3
    assert torch.equal(out * mask, y)  # measured samples kept bit for bit
    # the same holds for a 2-D (2 x 2 lattice) pattern: one kernel per local pattern
    lattice = torch.zeros(1, N, N, dtype=torch.bool)
    lattice[:, ::2, ::2] = True
    lattice[:, N // 2 - 8:N // 2 + 8, N // 2 - 8:N // 2 + 8] = True
    out2 = grappa((k * lattice).to(torch.complex64), lattice, kernel_size=(5, 5), lam=1e-9)
    assert _rel(out2, k.to(torch.complex64)) < 1e-3
    # negative control: with 2 coils the window holds 2 x 5 x 2 = 20 samples for 35 unknowns -> not exact
    assert _rel(grappa(y[:2], mask, kernel_size=(5, 5), lam=1e-9), k[:2].to(torch.complex64)) > 1e-2


def test_grappa_batched_equals_single():
    k = torch.stack([_physical_kspace(4, n=48, seed=0), _physical_kspace(4, n=48, seed=5)])
    m = make_mask("poisson2d", (48, 48), 4, acs_size=16, seed=2).mask
    both = grappa(k * m, m)
    for i in range(2):
        assert _rel(both[i], grappa(k[i] * m, m)) < 1e-5


# --------------------------------------------------------------------------------------------------------
# SPIRiT / LORAKS / SLR
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [spirit, loraks])
def test_spirit_and_loraks_keep_measured_samples(method):
    k = torch.stack([_physical_kspace(4, noise=0.002), _physical_kspace(4, noise=0.002, seed=3)])
    m = make_mask("random1d", (N, N), 4, center_fraction=0.2, seed=1).mask
    y = k * m
    out = method(y, m)
    assert out.shape == y.shape
    assert torch.equal(out * m, y)
    assert (out * ~m).abs().sum() > 0  # and something was filled in
    single = method(y[1], m)
    assert _rel(single, out[1]) < 1e-4


def test_slr_projection_lowers_rank():
    """Cadzow projection: the lifted matrix of noisy low-rank k-space has full numerical rank; after the
    projection (lift, truncate, average) the numerical rank drops toward the target rank."""
    k = _bandlimited_kspace(4, map_support=3).to(torch.complex64)  # lifting rank <= 7 * 7 + ... << 4 * 29
    g = torch.Generator().manual_seed(4)
    noisy = k + 0.01 * k.abs().max() * torch.randn(k.shape, dtype=torch.complex64, generator=g)
    rank_noisy = hankel_rank(noisy, 3, tol=1e-2)
    s_clean = hankel_singular_values(k, 3)
    r = int((s_clean > 1e-4 * s_clean[0]).sum())  # rank of the noise-free lifting
    assert r < 4 * 29 and rank_noisy > r + 10
    projected = slr_project(noisy, r, kernel_radius=3, iters=5)
    assert hankel_rank(projected, 3, tol=1e-2) < rank_noisy - 10
    tail = hankel_singular_values(projected, 3)[r:].square().sum() / hankel_singular_values(projected, 3).square().sum()
    tail_noisy = hankel_singular_values(noisy, 3)[r:].square().sum() / hankel_singular_values(noisy, 3).square().sum()
    assert tail < 0.1 * tail_noisy
    assert _rel(projected, k) < _rel(noisy, k)  # and it denoises


def test_slr_project_keeps_measured_samples():
    k = _bandlimited_kspace(4).to(torch.complex64)
    m = make_mask("poisson2d", (N, N), 3, acs_size=16, seed=0).mask
    y = k * m
    out = slr_project(y, 40, iters=3, y=y, mask=m)
    assert torch.equal(out * m, y)


def test_slr_correct_keeps_measured_samples_and_prior():
    """AK-Diffusion line 6: hard form keeps M z = y exactly; the paper's soft form keeps it within tolerance
    for small lam when the null space annihilates the data; lam -> large returns the prior z'."""
    k = _bandlimited_kspace(4).to(torch.complex64)
    m = make_mask("poisson2d", (N, N), 3, acs_size=20, seed=0).mask
    y = k * m
    ns = estimate_nullspace(k[:, 22:42, 22:42], 3, rank=int(hankel_rank(k[:, 22:42, 22:42], 3, tol=1e-5)))
    g = torch.Generator().manual_seed(5)
    prior = k + 0.05 * k.abs().max() * torch.randn(k.shape, dtype=torch.complex64, generator=g)
    hard = slr_correct(prior, y, m, ns, lam=1e-4, iters=100, data_weight=None)
    assert torch.equal(hard * m, y)
    soft = slr_correct(prior, y, m, ns, lam=1e-6, iters=150)
    assert _rel(soft * m, y) < 1e-2
    assert _rel(soft, k) < 0.5 * _rel(prior, k)  # the SLR term removes most of the prior's error
    stiff = slr_correct(prior, y, m, ns, lam=1e6, iters=20)
    assert _rel(stiff, prior) < 1e-4


def test_subspace_projection_is_a_contraction_passing_the_signal():
    k = _bandlimited_kspace(4).to(torch.complex64)
    ns = estimate_nullspace(k[:, 22:42, 22:42], 3, rank=int(hankel_rank(k[:, 22:42, 22:42], 3, tol=1e-5)))
    assert _rel(ns.subspace_projection(k), k) < 1e-2  # consistent k-space passes (almost) unchanged
    g = torch.Generator().manual_seed(6)
    x = torch.randn(k.shape, dtype=torch.complex64, generator=g)
    px = ns.subspace_projection(x)
    q = _dot(x, px)
    assert 0 <= q.real <= _dot(x, x).real and float(torch.linalg.vector_norm(px)) < 0.9 * float(
        torch.linalg.vector_norm(x))  # random k-space is mostly outside the coil subspace


# --------------------------------------------------------------------------------------------------------
# every k-space method beats zero-filled; registry
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,opts", [("poisson2d", {"acs_size": 20}), ("equispaced1d", {"center_fraction": 0.16})])
def test_kspace_methods_beat_zero_filled_at_4x(kind, opts):
    """Default settings (chosen on the shared real brains), 8 simulated Biot-Savart coils, 4x (effective)."""
    k = _physical_kspace(8, noise=0.001)
    target = rss(ifft2c(k))
    m = make_mask(kind, (N, N), 4, seed=0, **opts)
    assert abs(m.effective_acceleration - 4) < 0.1
    sample = Sample(kspace=k * m.mask, mask=m.mask)
    zf = psnr(target, load("zero-filled").reconstruct(sample))
    for name in ("grappa", "spirit", "loraks"):
        img = load(name).reconstruct(sample)
        assert img.shape == (N, N) and img.dtype == torch.float32
        assert psnr(target, img) > zf + 1.0, name


def test_registry_options():
    method = load("loraks:rank=30:iters=5")
    assert method.rank == 30 and method.iters == 5
    assert load("grappa", kernel_size=[3, 5]).kernel_size == (3, 5)
    with pytest.raises(ConfigError):
        load("spirit:bogus=1")


# --------------------------------------------------------------------------------------------------------
# real data (slow)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_8ch_brain_random1d_4x(shared_data, capsys):
    """Shared brain #17 (8-ch, fully sampled) at random1d 4x (seed 0): every method beats zero-filled.
    Prints PSNR (fastMRI convention, RSS target) and time per slice on one CPU thread (with two threads on a
    busy machine, OpenMP barriers in the small LAPACK calls stall unpredictably):
    ``pytest tests/test_classical_kspace.py -m slow -s -k real_8ch``."""
    scipy_io = pytest.importorskip("scipy.io")
    path = shared_data / "multicoil_brain8ch_kspace_espirit" / "brain_alias_8ch.mat"
    if not path.exists():
        pytest.skip(f"{path} not found")
    k = torch.from_numpy(scipy_io.loadmat(path)["DATA"].transpose(2, 0, 1).copy()).to(torch.complex64)
    target = rss(ifft2c(k))
    k, target = k / target.max(), target / target.max()
    m = make_mask("random1d", tuple(k.shape[-2:]), 4, seed=0)
    sample = Sample(kspace=k * m.mask, mask=m.mask)
    results = {}
    for name in ("zero-filled", "grappa", "spirit", "loraks"):
        method = load(name)
        method.reconstruct(sample)  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            img = method.reconstruct(sample)
            times.append(time.perf_counter() - t0)
        results[name] = (psnr(target, img), min(times))
    with capsys.disabled():
        print(f"\n#17 random1d 4x (R_eff {m.effective_acceleration:.2f}), 1 CPU thread:")
        for name, (p, t) in results.items():
            print(f"  {name:12s} PSNR {p:6.2f} dB  {t:6.2f} s/slice")
    for name in ("grappa", "spirit", "loraks"):
        assert results[name][0] > results["zero-filled"][0] + 1.0, name
