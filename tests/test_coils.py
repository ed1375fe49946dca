"""Coil sensitivities: rss, coil_combine, simulate_coil_maps, sos / Walsh / ESPIRiT maps (and BART agreement)."""

from __future__ import annotations

import logging
import math
import subprocess
import warnings

import numpy as np
import pytest
import torch

from mrrecon.data.formats import read_cfl, write_cfl
from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.physics.coils import (
    calibration_region,
    coil_combine,
    espirit_maps,
    rss,
    simulate_coil_maps,
    sos_maps,
    walsh_maps,
)
from mrrecon.physics.fft import fft2c, ifft2c

N = 64


def _phantom(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex test object (ellipses of different intensity, smooth phase) and its support."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    mag = torch.zeros(n, n)
    for cy, cx, ay, ax, val in [
        (0, 0, 0.8, 0.65, 1.0),
        (0, 0, 0.7, 0.55, -0.6),
        (-0.2, 0.2, 0.2, 0.12, 0.5),
        (0.25, -0.2, 0.15, 0.2, 0.3),
        (0.3, 0.25, 0.08, 0.08, 0.6),
    ]:
        mag += val * ((((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2) <= 1).float()
    support = mag > 0.05
    phase = math.pi * (0.4 * xx + 0.3 * yy**2)
    return (mag * torch.exp(1j * phase)).to(torch.complex64) * support, support


def _pixel_corr(est: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """|<S_est(r), S(r)>| / (||S_est(r)|| ||S(r)||) per pixel: 1 when equal up to a per-pixel complex factor."""
    num = (est.conj() * true).sum(-3).abs()
    return num / (rss(est) * rss(true)).clamp_min(1e-12)


@pytest.fixture(scope="module")
def scene():
    maps = simulate_coil_maps(8, (N, N), seed=3)
    image, support = _phantom()
    coil_images = maps * image
    return maps, image, support, coil_images


# ---- rss / coil_combine / calibration_region -----------------------------------------------------------


def test_rss_is_root_sum_of_squares():
    x = torch.randn(2, 5, 7, 9, dtype=torch.complex64)
    expected = torch.sqrt((x.real**2 + x.imag**2).sum(1))
    out = rss(x, dim=1)
    assert out.dtype == torch.float32 and out.shape == (2, 7, 9)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(rss(x[0]), torch.sqrt((x[0].abs() ** 2).sum(0)))  # default dim -3


def test_coil_combine_inverts_coil_weighting(scene):
    maps, image, support, coil_images = scene
    out = coil_combine(coil_images, maps)
    assert out.shape == image.shape and out.dtype == torch.complex64
    torch.testing.assert_close(out[support], image[support], rtol=1e-4, atol=1e-5)
    # batched, along another dim
    batch = torch.stack([coil_images, 2 * coil_images]).movedim(1, -1)  # (2, H, W, C)
    out2 = coil_combine(batch, maps.movedim(0, -1), dim=-1)
    torch.testing.assert_close(out2[1][support], 2 * image[support], rtol=1e-4, atol=1e-5)
    with pytest.raises(ShapeError):
        coil_combine(coil_images[:4], maps)


def test_calibration_region_is_centred_on_dc():
    k = fft2c(torch.ones(1, 10, 12, dtype=torch.complex64))  # only DC non-zero, at (5, 6)
    for size in [(4, 4), (5, 3), (3, 6)]:
        block = calibration_region(k, size)
        assert block.shape[-2:] == size
        idx = torch.nonzero(block[0].abs() > 1e-3)
        assert idx.tolist() == [[size[0] // 2, size[1] // 2]]
    assert calibration_region(k, 50).shape[-2:] == (10, 12)


# ---- simulate_coil_maps -------------------------------------------------------------------------------


def test_simulated_maps_shape_normalisation_and_seed():
    maps = simulate_coil_maps(8, (48, 40), seed=7)
    assert maps.shape == (8, 48, 40) and maps.dtype == torch.complex64
    assert torch.isfinite(maps).all()
    assert rss(maps)[24, 20] == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(maps, simulate_coil_maps(8, (48, 40), seed=7), rtol=0, atol=0)
    assert not torch.allclose(maps, simulate_coil_maps(8, (48, 40), seed=8))
    g = torch.Generator().manual_seed(7)
    torch.testing.assert_close(maps, simulate_coil_maps(8, (48, 40), generator=g), rtol=0, atol=0)


def test_single_wire_follows_biot_savart():
    """One z-directed wire: |S| falls off as 1/distance and S is holomorphic (S ~ 1/(z - p)) away from it."""
    h = w = 64
    maps = simulate_coil_maps(
        1, (h, w), coil_type="wire", jitter=0, gain_jitter=0, random_phase=False, radius=1.5, seed=0
    )[0].to(torch.complex128)
    p = complex(1.5 * w / 2, 0.0)  # wire at angle 0 on the ring: x = radius * W/2, y = 0
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    dist = (xx + 1j * yy - p).abs()
    prod = maps.abs() * dist  # constant for a 1/r field
    assert float(prod.std() / prod.mean()) < 1e-3
    # S(z) * (z - p) is a constant for S = a / (z - p) (a holomorphic, not a conjugate-holomorphic, field)
    const = maps * (xx + 1j * yy - p)
    assert float((const - const.mean()).abs().max() / const.abs().mean()) < 3e-3


def test_simulated_loops_are_smooth_and_localised():
    c, n = 8, 96
    maps = simulate_coil_maps(c, (n, n), seed=1)
    yy, xx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    inside = (xx**2 + yy**2) < (0.8 * n / 2) ** 2
    # Smooth: neighbouring pixels differ little inside the object region (no noise, no discontinuities).
    for dim in (-1, -2):
        step = (maps.diff(dim=dim).abs() / rss(maps).unsqueeze(0).narrow(dim, 0, n - 1)).amax(0)
        assert float(step[inside.narrow(dim, 0, n - 1)].max()) < 0.08
    # Localised: each coil is brightest on the side of the FOV where it sits (angle 2 pi k / C within jitter).
    angles = torch.atan2(yy.float(), xx.float())
    for k in range(c):
        weight = maps[k].abs() ** 2 * inside
        centroid = (weight * torch.exp(1j * angles)).sum()
        diff = math.remainder(float(centroid.angle()) - 2 * math.pi * k / c, 2 * math.pi)
        assert abs(diff) < 0.25 * 2 * math.pi / c
    # Plausible dynamic range of the combined sensitivity inside the object (8-channel head coil: ~1.5-4).
    ratio = float(rss(maps)[inside].max() / rss(maps)[inside].min())
    assert 1.3 < ratio < 5


def test_simulated_maps_device_argument():
    maps = simulate_coil_maps(4, (16, 16), seed=0, device="cpu")
    assert maps.device.type == "cpu"
    if torch.cuda.is_available():
        gpu = simulate_coil_maps(4, (16, 16), seed=0, device="cuda")
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), maps)


# ---- estimators ---------------------------------------------------------------------------------------


def test_sos_maps_recover_sensitivities(scene):
    maps, image, support, coil_images = scene
    est = sos_maps(coil_images)
    assert est.shape == maps.shape and est.dtype == torch.complex64
    assert float(_pixel_corr(est, maps)[support].min()) > 0.999
    torch.testing.assert_close(rss(est)[support], torch.ones(int(support.sum())), rtol=1e-4, atol=1e-4)


def test_walsh_maps_recover_sensitivities(scene):
    maps, image, support, coil_images = scene
    est = walsh_maps(coil_images, kernel_size=7)
    corr = _pixel_corr(est, maps)[support]
    assert float(corr.min()) > 0.95 and float(corr.mean()) > 0.99
    torch.testing.assert_close(rss(est), torch.ones(N, N), rtol=1e-4, atol=1e-4)  # unit norm everywhere
    coarse = walsh_maps(coil_images, kernel_size=7, stride=2)
    assert float(_pixel_corr(coarse, est)[support].mean()) > 0.99
    with pytest.raises(ConfigError):
        walsh_maps(coil_images, kernel_size=6)


def test_espirit_recovers_sensitivities_and_projects_onto_data(scene):
    maps, image, support, coil_images = scene
    kspace = fft2c(coil_images)
    est, eig = espirit_maps(kspace, calib_size=24, kernel_size=6, return_eigenvalues=True)
    assert est.shape == maps.shape and est.dtype == torch.complex64 and eig.shape == (N, N)
    corr = _pixel_corr(est, maps)[support]
    assert float(corr.min()) > 0.95 and float(corr.mean()) > 0.995
    # Eigenvalues in [0, 1], ~1 where the object is.
    assert float(eig.max()) < 1 + 1e-3 and float(eig[support].min()) > 0.95
    # Maps S with S S^H y = y: the coil images lie in the span of the maps (and align with ifft2c(kspace)).
    y = ifft2c(kspace)
    proj = est * (est.conj() * y).sum(0, keepdim=True)
    err = ((proj - y).abs() ** 2).sum(0)[support].sum() / (y.abs() ** 2).sum(0)[support].sum()
    assert float(err) < 1e-3
    # The same maps mirrored (a wrong FFT sign or centring) would not fit.
    assert float(_pixel_corr(est.flip(-1, -2), maps)[support].mean()) < 0.9


def test_espirit_shrinks_the_kernel_for_a_narrow_acs(scene, caplog):
    """A 1-D mask with only 5 fully sampled centre lines (8x on a small matrix): the kernel shrinks to about half
    the narrow side (a log record at INFO, not a Python warning with a source line in every run) instead of
    failing or cropping most of the map, and the maps still match the true sensitivities."""
    maps, image, support, coil_images = scene
    kspace = fft2c(coil_images)
    cols = torch.zeros(N, dtype=torch.bool)
    cols[N // 2 - 2 : N // 2 + 3] = True  # 5 ACS lines
    cols[::8] = True
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="mrrecon.physics.coils"):
        warnings.simplefilter("error")
        est = espirit_maps(kspace * cols, calib_size=24, kernel_size=6)
    assert "using kernel_size=3" in caplog.text
    corr = _pixel_corr(est, maps)[support]
    assert float(corr.min()) > 0.9 and float(corr.mean()) > 0.99  # no zeroed (cropped) region in the object


def test_espirit_with_noise_and_undersampling(scene):
    """Only the (fully sampled) calibration block matters: undersampling outside it changes nothing, and a
    too-large calib_size shrinks to the fully sampled centre (24 x 16 here), like BART's -r."""
    maps, image, support, coil_images = scene
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(coil_images.shape, generator=g, dtype=torch.complex64) * 0.01
    kspace = fft2c(coil_images + noise)
    mask = torch.rand(1, 1, N, generator=g) < 0.3
    mask[..., N // 2 - 8 : N // 2 + 8] = True
    under = kspace * mask
    torch.testing.assert_close(espirit_maps(under, calib_size=24), espirit_maps(kspace, calib_size=(24, 16)))
    est = espirit_maps(under, calib_size=24)
    assert float(_pixel_corr(est, maps)[support].mean()) > 0.99
    with pytest.raises(DataError):  # every other column: no fully sampled block larger than the kernel
        espirit_maps(kspace * (torch.arange(N) % 2 == 0), calib_size=24)


def test_espirit_batch_multiple_maps_and_errors(scene):
    maps, image, support, coil_images = scene
    kspace = fft2c(coil_images)
    batch = torch.stack([kspace, fft2c(coil_images * 0.5j)])
    out = espirit_maps(batch)
    assert out.shape == (2, 8, N, N)
    torch.testing.assert_close(out[0], espirit_maps(kspace))
    # same maps for a scaled/phase-shifted object (maps do not depend on the object)
    assert float(_pixel_corr(out[1], out[0])[support].min()) > 0.999
    two, vals = espirit_maps(kspace, num_maps=2, crop=0.0, return_eigenvalues=True)
    assert two.shape == (2, 8, N, N) and vals.shape == (2, N, N)
    assert bool((vals[0] >= vals[1] - 1e-6).all())
    two_b = espirit_maps(batch, num_maps=2)
    assert two_b.shape == (2, 2, 8, N, N)
    with pytest.raises(ShapeError):
        espirit_maps(kspace[0])
    with pytest.raises(ConfigError):
        espirit_maps(kspace, calib_size=6, kernel_size=6)
    with pytest.raises(DataError):
        espirit_maps(kspace * float("nan"))


def test_phase_conventions(scene):
    maps, image, support, coil_images = scene
    kspace = fft2c(coil_images)
    calib = calibration_region(kspace, 24)
    for est, data in (
        (espirit_maps(kspace), calib),
        (walsh_maps(coil_images), coil_images),
        (sos_maps(coil_images), coil_images),
    ):
        # virtual body coil: the projection onto the data's first principal component is real and >= 0
        x = data.reshape(8, -1)
        _, vecs = torch.linalg.eigh((x @ x.conj().T).to(torch.complex128))
        u = vecs[:, -1].to(torch.complex64)
        lead = u[u.abs().argmax()]
        u = u * lead.conj() / lead.abs()  # global phase of u: largest entry real positive
        proj = (u.conj()[:, None, None] * est).sum(0)[support]
        assert float((proj.imag.abs() / proj.abs()).max()) < 1e-3 and bool((proj.real > 0).all())
    est = espirit_maps(kspace, phase_reference=2)
    ref = est[2][support]
    assert float((ref.imag.abs() / ref.abs()).max()) < 1e-4 and bool((ref.real > 0).all())
    raw = espirit_maps(kspace, phase_reference=None)
    torch.testing.assert_close(_pixel_corr(raw, est), torch.where(rss(est) > 0, 1.0, 0.0), atol=1e-4, rtol=0)


def test_estimators_keep_device_and_dtype(scene):
    maps, image, support, coil_images = scene
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        x = coil_images.to(dev, torch.complex128)  # other precisions are accepted and returned as complex64
        for est in (sos_maps(x), walsh_maps(x), espirit_maps(fft2c(x))):
            assert est.device.type == dev and est.dtype == torch.complex64
        assert rss(x).device.type == dev and coil_combine(x, maps.to(dev)).device.type == dev


# ---- BART --------------------------------------------------------------------------------------------



@pytest.mark.bart
@pytest.mark.shared_data
def test_espirit_matches_bart_ecalib(bart_bin, shared_data, tmp_path):
    """Our maps vs ``bart ecalib`` (exact eigendecomposition, matched thresholds) on real 8-channel brain
    k-space (undersampled, 20 x 20 fully sampled centre): correlation inside the body > 0.99."""
    base = shared_data / "multicoil_brain8ch_kspace_bart" / "ksp"
    if not base.with_suffix(".cfl").exists():
        pytest.skip("multicoil_brain8ch_kspace_bart/ksp not in the shared data")
    k = read_cfl(base)  # (1, 180, 230, 8): BART (x, y, z, coil)
    write_cfl(tmp_path / "ksp", k)
    subprocess.run(
        [
            bart_bin,
            "ecalib",
            "-O",
            "-m1",
            "-k",
            "6",
            "-r",
            "24",
            "-t",
            "0.0004",
            "-c",
            "0.95",
            str(tmp_path / "ksp"),
            str(tmp_path / "sens"),
        ],
        check=True,
        capture_output=True,
    )
    bart = torch.from_numpy(np.moveaxis(read_cfl(tmp_path / "sens").reshape(180, 230, 8), -1, 0).copy())
    kspace = torch.from_numpy(np.moveaxis(k.reshape(180, 230, 8), -1, 0).copy())
    ours = espirit_maps(kspace, calib_size=24, kernel_size=6, threshold=0.02, crop=0.95)
    image = rss(ifft2c(kspace))
    body = image > 0.1 * image.max()
    a, b = ours[:, body].to(torch.complex128), bart[:, body].to(torch.complex128)
    corr = float((a.conj() * b).sum().abs() / (a.norm() * b.norm()))
    per_coil = (a.conj() * b).sum(1).abs() / (a.norm(dim=1) * b.norm(dim=1))
    assert corr > 0.99 and float(per_coil.min()) > 0.98
