"""Image-domain classical reconstructions (CG-SENSE, L1-wavelet, TV), the orthonormal DWT, and the BART/sigpy peers."""

import math
import re
import subprocess

import numpy as np
import pytest
import torch

import mrrecon.methods as methods
from mrrecon.classical import peers
from mrrecon.classical.sense import (
    L1_WAVELET_DEFAULTS,
    SolverTrace,
    bart_scale,
    cg_sense,
    finite_difference,
    finite_difference_adjoint,
    l1_wavelet,
    l1_wavelet_objective,
    power_iteration,
    total_variation,
)
from mrrecon.classical.wavelets import (
    WaveletTransform,
    daubechies_lowpass,
    detail_mask,
    dwt2,
    idwt2,
    wavelet_filters,
)
from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.errors import ConfigError, ShapeError
from mrrecon.metrics.image import compute_metrics
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c
from mrrecon.physics.masks import make_mask
from mrrecon.physics.operators import SenseOperator


@pytest.fixture(autouse=True)
def _one_thread():
    # The problems here are small (64x64): one thread avoids thread-synchronisation cost on shared CPUs.
    torch.set_num_threads(1)
    yield


# ---------------------------------------------------------------------------------------------------------
# Fixtures: one simulated 8-coil 64x64 T2 brain slice (noisy and noise-free)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    from mrrecon.data.simulate import simulate_subject

    noisy = simulate_subject(3, size=64, coils=8, contrasts=("T2",))["T2"]
    clean = simulate_subject(3, size=64, coils=8, contrasts=("T2",), noise_level=0.0)["T2"]
    # Maps normalised to unit RSS per pixel (as ESPIRiT's): coil image c = maps_c * image exactly, with the
    # image carrying the RSS of the sensitivities, so |image| is the noise-free RSS image.
    norm = rss(clean.maps[0])
    return {"kspace": noisy.kspace[0], "target": noisy.rss[0], "maps": clean.maps[0] / norm,
            "clean_kspace": clean.kspace[0], "image": clean.image[0] * norm}


def _sample(sim, kind="poisson2d", r=4, seed=0, maps=True, **mask_opts) -> Sample:
    m = make_mask(kind, tuple(sim["kspace"].shape[-2:]), r, seed=seed, **mask_opts)
    return Sample(kspace=sim["kspace"] * m.mask, mask=m.mask, target=sim["target"],
                  coil_maps=sim["maps"] if maps else None,
                  meta=SampleMeta(mask_type=kind, acceleration=r, effective_acceleration=m.effective_acceleration))


def _psnr(sample, image):
    return compute_metrics(sample.target, image)["psnr"]


# ---------------------------------------------------------------------------------------------------------
# Wavelets
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,order", [("haar", 1), ("db2", 2), ("db4", 4), ("db8", 8)])
def test_daubechies_filters_are_orthonormal_with_vanishing_moments(name, order):
    h, g = wavelet_filters(name)
    assert len(h) == 2 * order
    assert h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-12)
    for shift in range(0, len(h), 2):  # <h, h shifted by 2k> = delta_k, and g likewise, and <h, g shifted> = 0
        assert (h[shift:] * h[: len(h) - shift]).sum().item() == pytest.approx(float(shift == 0), abs=1e-12)
        assert (g[shift:] * g[: len(g) - shift]).sum().item() == pytest.approx(float(shift == 0), abs=1e-12)
        assert (h[shift:] * g[: len(g) - shift]).sum().item() == pytest.approx(0.0, abs=1e-12)
    j = torch.arange(len(g), dtype=torch.float64)
    for m in range(order):  # the high-pass filter kills polynomials of degree < order
        assert (g * j**m).sum().item() == pytest.approx(0.0, abs=1e-9 * max(1.0, float(len(g)) ** m))


def test_db2_matches_closed_form():
    s3 = math.sqrt(3)
    expected = np.array([1 + s3, 3 + s3, 3 - s3, 1 - s3]) / (4 * math.sqrt(2))
    np.testing.assert_allclose(daubechies_lowpass(2), expected, atol=1e-14)


def test_db4_matches_pywavelets_when_available():
    pywt = pytest.importorskip("pywt")
    np.testing.assert_allclose(daubechies_lowpass(4), pywt.Wavelet("db4").rec_lo, atol=1e-12)


@pytest.mark.parametrize("name", ["haar", "db2", "db4"])
def test_dwt2_is_an_orthogonal_matrix(name):
    n = 16  # the full 256 x 256 matrix of the 3-level transform
    eye = torch.eye(n * n, dtype=torch.float64).reshape(-1, n, n)
    w = dwt2(eye, name, 3).reshape(n * n, n * n).T  # column i = W e_i
    identity = torch.eye(n * n, dtype=torch.float64)
    assert torch.allclose(w.T @ w, identity, atol=1e-12)  # W^T W = I
    assert torch.allclose(w @ w.T, identity, atol=1e-12)  # square: also W W^T = I
    assert not torch.allclose(w, identity)  # (it does transform)


@pytest.mark.parametrize("shape,levels", [((64, 48), 4), ((8, 8), 3), ((2, 6), 1)])
def test_dwt2_perfect_reconstruction_complex(shape, levels):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *shape, dtype=torch.complex128, generator=g)
    c = dwt2(x, "db4", levels)
    assert c.shape == x.shape
    assert torch.allclose(idwt2(c, "db4", levels), x, atol=1e-12)
    assert c.norm().item() == pytest.approx(x.norm().item(), rel=1e-12)  # energy preserved


def test_dwt2_puts_a_constant_into_the_approximation_band():
    x = torch.full((1, 32, 32), 2.0, dtype=torch.float64)
    c = dwt2(x, "db4", 3)
    detail = detail_mask((32, 32), 3)
    assert c[0][detail].abs().max().item() < 1e-12
    assert c[0][~detail].shape == (16,)


def test_dwt2_rejects_indivisible_sizes():
    with pytest.raises(ShapeError):
        dwt2(torch.zeros(1, 36, 32), "db4", 4)


def test_wavelet_transform_any_size_is_an_isometry():
    g = torch.Generator().manual_seed(2)
    t = WaveletTransform((45, 70), "db4", 3)
    assert t.padded_shape == (48, 72)
    x = torch.randn(2, 45, 70, dtype=torch.complex128, generator=g)
    c = t.forward(x)
    assert c.shape == (2, 48, 72)
    assert torch.allclose(t.adjoint(c), x, atol=1e-12)  # W^H W = I
    d = torch.randn(2, 48, 72, dtype=torch.complex128, generator=g)
    lhs = (c.conj() * d).sum()
    rhs = (x.conj() * t.adjoint(d)).sum()
    assert abs(lhs - rhs).item() < 1e-10 * abs(lhs).item()


def test_wavelet_float32_on_the_input_device():
    x = torch.randn(1, 32, 32, dtype=torch.complex64)
    c = dwt2(x, "db4", 2)
    assert c.dtype == torch.complex64 and c.device == x.device
    assert torch.allclose(idwt2(c, "db4", 2), x, atol=1e-5)


def test_unknown_wavelet_is_a_config_error():
    with pytest.raises(ConfigError):
        WaveletTransform((8, 8), "sym4", 1)


# ---------------------------------------------------------------------------------------------------------
# Operators and helpers
# ---------------------------------------------------------------------------------------------------------


def test_finite_difference_adjoint():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 12, 10, dtype=torch.complex128, generator=g)
    p = torch.randn(2, 2, 12, 10, dtype=torch.complex128, generator=g)
    lhs = (finite_difference(x).conj() * p).sum()
    rhs = (x.conj() * finite_difference_adjoint(p)).sum()
    assert abs(lhs - rhs).item() < 1e-10 * abs(lhs).item()
    assert finite_difference(torch.ones(1, 5, 5)).abs().max().item() == 0.0


def test_power_iteration_finds_the_largest_eigenvalue():
    g = torch.Generator().manual_seed(5)
    h, w, c = 8, 8, 3
    maps = torch.randn(1, c, h, w, dtype=torch.complex128, generator=g)
    mask = torch.rand(1, 1, h, w, generator=g) > 0.4
    op = SenseOperator(maps, mask)
    basis = torch.eye(h * w, dtype=torch.complex128).reshape(h * w, h, w)
    dense = torch.stack([op.normal(e[None])[0].flatten() for e in basis], dim=1)
    exact = torch.linalg.eigvalsh(dense).max().item()
    est = power_iteration(op.normal, op.A_adjoint(torch.randn(1, c, h, w, dtype=torch.complex128, generator=g)),
                          iters=200, tol=1e-9)
    assert est.item() == pytest.approx(exact, rel=1e-3)
    assert est.item() <= exact * (1 + 1e-9)  # a Rayleigh quotient never overshoots


def test_bart_scale_rule_by_hand():
    # A centred 4x4 fully sampled block of a 16x16 grid (the rest unsampled): BART's calibration block is 4x4.
    g = torch.Generator().manual_seed(6)
    k = torch.zeros(2, 16, 16, dtype=torch.complex64)
    k[:, 6:10, 6:10] = torch.randn(2, 4, 4, dtype=torch.complex64, generator=g)
    img = torch.linalg.vector_norm(torch.fft.ifft2(k[:, 6:10, 6:10], norm="ortho"), dim=0).flatten() / 4.0
    v = torch.sort(img.double()).values
    med, p90, vmax = v[8].item(), v[14].item(), v[15].item()
    expected = p90 if (vmax - p90) < 2 * (p90 - med) else vmax
    assert bart_scale(k).item() == pytest.approx(expected, rel=1e-6)
    assert bart_scale(3 * k).item() == pytest.approx(3 * expected, rel=1e-6)  # proportional to the data


# ---------------------------------------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------------------------------------


def test_cg_sense_full_sampling_returns_the_truth(sim):
    k = sim["clean_kspace"]  # coil images are exactly maps * image
    mask = torch.ones(1, 1, k.shape[-1], dtype=torch.bool)
    x = cg_sense(k, mask, sim["maps"], lam=0.0, iters=100, tol=1e-9)[0]
    err = ((x - sim["image"]).norm() / sim["image"].norm()).item()
    assert err < 1e-4
    # through the method, with the data scaling and back: the magnitude of the truth in the sample's units
    sample = Sample(kspace=k, mask=mask, coil_maps=sim["maps"])
    out = methods.load("cg-sense:lam=0:iters=100:tol=1e-9").reconstruct(sample)
    assert ((out - sim["image"].abs()).norm() / sim["image"].abs().norm()).item() < 1e-4


def test_single_coil_falls_back_to_cartesian(sim):
    x = sim["image"]
    k = fft2c(x)[None]  # (1, H, W)
    mask = torch.ones(1, 1, x.shape[-1], dtype=torch.bool)
    out = methods.load("cg-sense:lam=0").reconstruct_complex(Sample(kspace=k, mask=mask))
    assert torch.allclose(out, x, atol=1e-4 * x.abs().max().item())
    m = make_mask("poisson2d", tuple(x.shape), 3, seed=24)
    under = Sample(kspace=k * m.mask, mask=m.mask, target=x.abs())
    zf = _psnr(under, methods.load("zero-filled").reconstruct(under))
    for spec in ("l1-wavelet", "tv"):
        img = methods.load(spec).reconstruct(under)
        assert img.shape == x.shape
        assert _psnr(under, img) > zf + 1.0, spec


@pytest.mark.parametrize("spec", ["cg-sense", "l1-wavelet", "tv"])
@pytest.mark.parametrize("kind", ["poisson2d", "random1d"])
def test_methods_beat_zero_filled_at_4x(sim, spec, kind):
    sample = _sample(sim, kind, 4, seed=11)
    zf = methods.load("zero-filled").reconstruct(sample)
    out = methods.load(spec).reconstruct(sample)
    assert out.shape == sample.target.shape and out.dtype == torch.float32
    assert _psnr(sample, out) > _psnr(sample, zf) + 1.0


def test_espirit_maps_when_the_sample_has_none(sim):
    sample = _sample(sim, "poisson2d", 4, seed=12, maps=False, acs_size=16)
    meth = methods.load("l1-wavelet")
    out = meth.reconstruct(sample)
    assert meth.last_info["maps"] == "espirit"
    assert _psnr(sample, out) > _psnr(sample, methods.load("zero-filled").reconstruct(sample)) + 1.0
    with pytest.raises(ConfigError, match="no coil_maps"):
        methods.load("cg-sense:maps=given").reconstruct(sample)


def test_l1_wavelet_with_zero_lambda_is_least_squares(sim):
    m = make_mask("poisson2d", (64, 64), 2, seed=13)
    k, mask, maps = (sim["clean_kspace"] * m.mask)[None], m.mask[None], sim["maps"][None]
    op = SenseOperator(maps, mask)
    ls = cg_sense(k, mask, maps, lam=0.0, iters=300, tol=1e-12)
    fista = l1_wavelet(k, mask, maps, lam=0.0, iters=300)
    assert ((fista - ls).norm() / ls.norm()).item() < 3e-2
    residual = lambda x: (op.A(x) - k).norm().item() ** 2  # noqa: E731
    assert residual(fista) - residual(ls) < 1e-3 * (k.norm().item() ** 2 - residual(ls))


def test_fista_objective_decreases_at_the_fista_rate(sim):
    sample = _sample(sim, "poisson2d", 4, seed=14)
    k = sample.kspace[None] / sample.kspace.abs().max()
    args = (k, sample.mask[None], sample.coil_maps[None])
    lam, iters = 2e-3, 30
    trace = SolverTrace()
    l1_wavelet(*args, lam=lam, iters=iters, cycle_spin=False, trace=trace)
    x_star = l1_wavelet(*args, lam=lam, iters=300, cycle_spin=False)
    f = torch.stack(trace.objective)[:, 0]
    f_star = l1_wavelet_objective(x_star, *args, lam=lam)[0]
    assert f[0] == pytest.approx(l1_wavelet_objective(_first_iterate(args, lam), *args, lam=lam)[0].item(), rel=1e-4)
    assert bool(torch.isfinite(f).all()) and f[-1] < f[0]
    assert bool((f[1:] <= f[0]).all())
    # Beck & Teboulle (2009), Thm 4.4: F(x_k) - F* <= 2 L ||x_0 - x*||^2 / (k + 1)^2, here x_0 = 0
    bound = 2 * trace.lipschitz[0] * x_star.abs().square().sum() / (torch.arange(1, iters + 1) + 1) ** 2
    assert bool((f - f_star <= bound * 1.01).all())
    assert (f[-1] - f_star) < 0.02 * (f[0] - f_star)


def _first_iterate(args, lam):
    """The first FISTA iterate from 0 with the same step: prox(step A^H y), computed independently."""
    k, mask, maps = args
    op = SenseOperator(maps, mask)
    b = op.A_adjoint(k)
    step = 1 / power_iteration(op.normal, b, iters=15)[0]
    wavelet = L1_WAVELET_DEFAULTS["wavelet"]  # the solver's default, which l1_wavelet used
    c = dwt2(step * b, wavelet, 4)
    keep = detail_mask((64, 64), 4)
    mag = c.abs()
    shrunk = c * (1 - step * lam / mag.clamp_min(1e-30)).clamp_min(0)
    return idwt2(torch.where(keep, shrunk, c), wavelet, 4)


def test_tv_admm_decreases_the_objective(sim):
    sample = _sample(sim, "random1d", 4, seed=15)
    k = sample.kspace[None] / sample.kspace.abs().max()
    trace = SolverTrace()
    total_variation(k, sample.mask[None], sample.coil_maps[None], lam=5e-3, iters=30, trace=trace)
    f = torch.stack(trace.objective)[:, 0]
    assert f[-1] < f[0]
    assert (f[-5:].max() - f[-5:].min()) < 0.01 * (f[0] - f[-1])  # settled


def test_solvers_are_batched(sim):
    a, b = _sample(sim, "poisson2d", 4, seed=16), _sample(sim, "random1d", 4, seed=17)
    k = torch.stack([a.kspace, b.kspace * 3])
    mask = torch.stack([a.mask.expand(1, 64, 64), b.mask.expand(1, 64, 64)])
    maps = torch.stack([a.coil_maps, b.coil_maps])
    batch = l1_wavelet(k, mask, maps, lam=0.01, iters=15)
    one = l1_wavelet(k[1:], mask[1:], maps[1:], lam=0.01, iters=15)
    assert torch.allclose(batch[1:], one, rtol=1e-4, atol=1e-4 * one.abs().max().item())


def test_options_and_errors():
    m = methods.load("l1-wavelet:lam=0.02:iters=5:wavelet=haar:levels=2")
    assert (m.lam, m.iters, m.wavelet, m.levels) == (0.02, 5, "haar", 2)
    with pytest.raises(ConfigError):
        methods.load("l1-wavelet:lambda=1")
    with pytest.raises(ConfigError):
        methods.load("tv:rho=0")
    with pytest.raises(ConfigError):
        methods.load("cg-sense:maps=walsh")


def test_runs_on_cuda_when_available(sim):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    sample = _sample(sim, "poisson2d", 4, seed=18)
    cpu = methods.load("l1-wavelet:iters=10").reconstruct(sample)
    gpu = methods.load("l1-wavelet:iters=10", device="cuda").reconstruct(sample)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3 * cpu.max().item())


# ---------------------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------------------


def test_missing_bart_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="BART binary was not found"):
        methods.load("bart-pics:binary=mrrecon-no-such-bart")


@pytest.mark.bart
def test_bart_scale_matches_bart(sim, bart_bin, tmp_path):
    sample = _sample(sim, "random1d", 4, seed=19)
    k = sample.kspace
    from mrrecon.data.formats import write_cfl

    write_cfl(tmp_path / "k", k.permute(1, 2, 0).unsqueeze(2).numpy())
    write_cfl(tmp_path / "s", sample.coil_maps.permute(1, 2, 0).unsqueeze(2).numpy())
    run = subprocess.run([bart_bin, "pics", "-d", "4", "-l2", "-r", "0.01", "-i", "1", str(tmp_path / "k"),
                          str(tmp_path / "s"), str(tmp_path / "o")], capture_output=True, text=True, check=True)
    found = re.search(r"Inverse scaling of the data: ([0-9.eE+-]+)", run.stdout + run.stderr)
    assert found, run.stdout + run.stderr
    assert bart_scale(k).item() == pytest.approx(float(found.group(1)), rel=1e-5)


@pytest.mark.bart
def test_bart_l2_equals_cg_sense(sim, bart_bin):
    sample = _sample(sim, "poisson2d", 4, seed=20)
    ours = methods.load("cg-sense:lam=0.01:iters=20:tol=0").reconstruct_complex(sample)
    bart = methods.load("bart-pics:regularizer=l2:lam=0.01:iters=20").reconstruct_complex(sample)
    assert ((bart - ours).norm() / ours.norm()).item() < 2e-3  # same operator, scaling and objective


@pytest.mark.bart
def test_bart_pics_l1_within_half_a_db_of_ours(sim, bart_bin):
    sample = _sample(sim, "poisson2d", 4, seed=21)
    ours = _psnr(sample, methods.load("l1-wavelet").reconstruct(sample))
    bart = _psnr(sample, methods.load("bart-pics").reconstruct(sample))
    zf = _psnr(sample, methods.load("zero-filled").reconstruct(sample))
    assert bart > zf + 1.0
    assert abs(ours - bart) < 0.5, (ours, bart)


@pytest.mark.bart
def test_bart_pics_tv_beats_zero_filled(sim, bart_bin):
    sample = _sample(sim, "random1d", 4, seed=22)
    out = methods.load("bart-pics:regularizer=tv").reconstruct(sample)
    assert _psnr(sample, out) > _psnr(sample, methods.load("zero-filled").reconstruct(sample)) + 1.0


def test_sigpy_l1wavelet_beats_zero_filled(sim):
    if not peers.sigpy_available():
        pytest.skip("sigpy is not installed")
    sample = _sample(sim, "poisson2d", 4, seed=23)
    out = methods.load("sigpy-l1wavelet:iters=30").reconstruct(sample)
    assert out.shape == sample.target.shape
    assert _psnr(sample, out) > _psnr(sample, methods.load("zero-filled").reconstruct(sample)) + 1.0
