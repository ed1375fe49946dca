"""AK-Diffusion: forward process, coil-subspace noise, score-matching loss, PC sampler and its line-6 correction."""

from __future__ import annotations

import math

import pytest
import torch

from mrrecon.classical.kspace_patches import Neighbourhood, resolve_acs
from mrrecon.classical.slr import estimate_nullspace
from mrrecon.errors import ConfigError, DataError
from mrrecon.methods.akdiff import (
    AKDiffusionModel,
    AKDiffusionSDE,
    IdentitySubspace,
    MapsSubspace,
    PCSampler,
    SamplerSettings,
    SLRSubspace,
    complex_noise,
)
from mrrecon.methods.akdiff.model import AKDiffusionConfig, batch_channels_to_coils, coils_to_batch_channels
from mrrecon.physics.coils import espirit_maps, rss, simulate_coil_maps
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.masks import make_mask

TINY = dict(nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_levels=[1])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread (two threads spin against each other on a busy 2-core machine)."""
    torch.set_num_threads(1)
    yield


def _phantom(h: int = 32, w: int = 32, coils: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fully sampled multi-coil k-space (C, H, W) of a smooth complex object and its unit-norm coil maps."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    obj = ((xx / 0.7) ** 2 + (yy / 0.8) ** 2 < 1).float() * (1 + 0.3 * torch.cos(3 * xx + 2 * yy))
    obj = obj + 0.2 * ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.05).float()
    obj = obj * torch.exp(1j * (0.5 * xx + 0.2 * torch.rand(1, generator=g)))
    maps = simulate_coil_maps(coils, (h, w), seed=seed)
    maps = maps / rss(maps).clamp_min(1e-8)  # S^* S = I
    return fft2c(maps * obj.to(torch.complex64)), maps


def _inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex((a.conj() * b).sum())


# ------------------------------------------------------------------------------------------------------------
# Forward process (eqs. 7-8)
# ------------------------------------------------------------------------------------------------------------


def test_forward_process_at_t0_is_identity():
    sde = AKDiffusionSDE()
    k, maps = _phantom()
    z0 = k[None]
    zt, g = sde.perturb(z0, torch.zeros(1), MapsSubspace(maps[None]).project)
    assert torch.equal(g, torch.ones_like(g))
    assert torch.equal(zt, z0)  # G_0 = I and sigma(0)^2 - sigma_0^2 = 0
    assert float(sde.kernel_std(torch.tensor(0.0))) == 0.0


def test_attenuation_keeps_only_low_frequencies_at_T_and_schedules():
    sde = AKDiffusionSDE(sigma_min=0.01, sigma_max=1.0, lowpass_std=0.05, frequency_units="pixel")
    g = sde.attenuation(torch.tensor([0.0, 0.5, 1.0]), (64, 64))[:, 0]
    assert torch.all(g[0] == 1)
    assert g[2, 32, 32] == 1  # DC kept at every t
    assert g[2, 32, 32 + 16] < 1e-3 and g[2, 0, 0] < 1e-20  # |f| = 0.25 cycles/pixel gone at T
    assert torch.all(g[1] >= g[2]) and torch.all(g[0] >= g[1])  # attenuation grows with t
    # G_T is a Gaussian of std lowpass_std cycles/pixel: exp(-1/2) one std from DC
    assert float(g[2, 32, 32 + round(0.05 * 64)]) == pytest.approx(math.exp(-0.5 * (round(3.2) / 3.2) ** 2), rel=1e-5)
    # same blur in image pixels on any grid: G at the same frequency (cycles/pixel) agrees on 32 and 64 grids
    g32 = sde.attenuation(torch.tensor([0.7]), (32, 32))[0, 0]
    g64 = sde.attenuation(torch.tensor([0.7]), (64, 64))[0, 0]
    assert float(g32[16, 20]) == pytest.approx(float(g64[32, 40]), rel=1e-6)
    t, sigma = sde.discretisation(50)
    assert float(sigma[0]) == pytest.approx(0.01) and float(sigma[-1]) == pytest.approx(1.0)
    ratios = sigma[1:] / sigma[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    with pytest.raises(ConfigError):
        AKDiffusionSDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ConfigError):
        AKDiffusionSDE(frequency_units="mm")


def test_attenuation_in_fov_units_is_the_same_process_on_a_central_window():
    sde = AKDiffusionSDE(lowpass_std=5.0)  # fov (default): std in k-space samples
    assert sde.frequency_units == "fov"
    t = torch.tensor([0.0, 0.3, 0.7, 1.0])
    g256 = sde.attenuation(t, (256, 256))[:, 0]
    g128 = sde.attenuation(t, (128, 128))[:, 0]
    # G_t on a 256 grid restricted to its central 128 x 128 equals G_t on the 128 grid, at every t
    assert torch.equal(g256[:, 64:192, 64:192], g128)
    # ... also for non-square and odd grids (centre index n // 2, as fft2c)
    g_odd = sde.attenuation(t, (33, 20))[:, 0]
    g_big = sde.attenuation(t, (65, 40))[:, 0]
    assert torch.equal(g_big[:, 32 - 16:32 + 17, 20 - 10:20 + 10], g_odd)
    # G_T: exp(-1/2) at lowpass_std samples from DC on any matrix; G_0 = I
    assert float(g256[3, 128, 128 + 5]) == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert float(g128[3, 64 + 5, 64]) == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert torch.all(g256[0] == 1)
    # the pixel definition does not have this property: its window grows with the matrix
    pix = AKDiffusionSDE(lowpass_std=0.05, frequency_units="pixel")
    assert not torch.allclose(pix.attenuation(t, (256, 256))[:, 0, 64:192, 64:192],
                              pix.attenuation(t, (128, 128))[:, 0])


def test_perturbation_kernel_mean_and_covariance():
    sde = AKDiffusionSDE()
    k, maps = _phantom(16, 16, 3)
    proj = MapsSubspace(maps[None]).project
    t = torch.full((1,), 0.6)
    g = torch.Generator().manual_seed(1)
    draws = sde.perturb(k[None].expand(400, -1, -1, -1), t.expand(400), proj, generator=g)[0]
    mean_err = (draws.mean(0) - sde.attenuation(t, (16, 16))[0] * k).abs().mean()
    std = float(sde.kernel_std(t))
    assert mean_err < 0.15 * std
    # per pixel the noise has total variance 2 std^2 (real + imaginary) inside the rank-1 coil subspace
    var = (draws - draws.mean(0)).abs().square().mean(0).sum(0)  # (H, W) summed over coils, in k-space
    assert float(var.mean()) == pytest.approx(2 * std ** 2, rel=0.1)


# ------------------------------------------------------------------------------------------------------------
# Units (one helper for training and sampling) and the noise floor
# ------------------------------------------------------------------------------------------------------------


def _smooth_object(n: int, coils: int = 3) -> torch.Tensor:
    """Multi-coil k-space (C, n, n) of a smooth object on a fixed field of view sampled with n pixels: the same
    continuous object at every n (Gaussian blobs much wider than a pixel, smooth coil profiles)."""
    c = (torch.arange(n, dtype=torch.float64) - n // 2) / n  # pixel positions in FOV units (origin at n // 2)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    obj = (torch.exp(-((xx / 0.22) ** 2 + (yy / 0.28) ** 2)) + 0.4 * torch.exp(-(((xx - 0.1) / 0.08) ** 2
                                                                                 + ((yy + 0.05) / 0.1) ** 2)))
    obj = obj * torch.exp(1j * (0.8 * xx - 0.5 * yy))
    angles = [0.3 + 2 * math.pi * i / coils for i in range(coils)]
    maps = torch.stack([torch.exp(-((xx - 0.4 * math.cos(a)) ** 2 + (yy - 0.4 * math.sin(a)) ** 2) / 0.3)
                        * torch.exp(1j * torch.tensor(a)) for a in angles])
    return fft2c((maps * obj).to(torch.complex64))


def test_units_are_invariant_to_a_central_kspace_window_and_to_the_matrix():
    model = AKDiffusionModel(TINY)
    assert model.config.kspace_scaling == "peak" and model.config.frequency_units == "fov"
    k256 = _smooth_object(256)
    window = k256[:, 64:192, 64:192]  # a lower resolution of the same field of view
    s_full, s_win = model.kspace_scale(k256), model.kspace_scale(window)
    assert s_full.shape == (1, 1, 1, 1) and torch.equal(s_full, s_win)  # same peak -> same scale
    z = k256 * s_full
    assert float(z.abs().max()) == pytest.approx(model.config.kspace_peak, rel=1e-6)
    # the measured samples only: an undersampled slice (centre measured) has the fully sampled slice's scale
    mask = make_mask("uniform1d", (256, 256), 6).mask
    assert torch.allclose(model.kspace_scale(k256 * mask, mask), s_full, rtol=1e-6)
    # the same object on a 128 matrix (same FOV): its k-space in model units is the central window of the 256's
    k128 = _smooth_object(128)
    z128, z256 = k128 * model.kspace_scale(k128), z
    err = (z256[..., 64:192, 64:192] - z128[0]).abs().max() / z128.abs().max()
    assert float(err) < 1e-3
    # the earlier units (reference_size / sqrt(HW)) double the values of a central window of half the size
    legacy = AKDiffusionModel({**TINY, "kspace_scaling": "size", "frequency_units": "pixel"})
    assert float(legacy.kspace_scale(window) / legacy.kspace_scale(k256)) == pytest.approx(2.0)
    # batches: one scale per slice
    both = torch.stack([k256, 3 * k256])
    s = model.kspace_scale(both)
    assert s.shape == (2, 1, 1, 1) and float(s[0] / s[1]) == pytest.approx(3.0, rel=1e-6)


def test_noise_floor_rule_recovers_an_injected_noise_std():
    from mrrecon.methods.akdiff.recipe import measure_training_noise_floor
    from mrrecon.methods.akdiff.units import measure_noise_floor, robust_noise_std

    g = torch.Generator().manual_seed(0)
    clean = _smooth_object(128, coils=4)
    sigma = 0.002 * float(clean.abs().max())
    slices = [clean * (1 + 0.2 * i) + sigma * complex_noise(clean.shape, generator=g) for i in range(5)]
    est = robust_noise_std(torch.stack(slices))
    assert est.shape == (5,) and torch.allclose(est, torch.full((5,), sigma, dtype=torch.float64), rtol=0.05)
    model = AKDiffusionModel(TINY)
    # in model units: sigma * scale of each slice (the scale changes with the slice's peak), median over slices
    expected = float(torch.tensor([sigma * float(model.kspace_scale(k)) for k in slices]).median())
    floor = measure_noise_floor(slices, model.kspace_scale)
    assert floor == pytest.approx(expected, rel=0.05)
    assert measure_training_noise_floor(TINY, slices) == floor
    # the rule: sigma_0 = factor * noise_floor, stored in the config (the model carries its own SDE)
    rule = {**TINY, "sigma_min_rule": "noise_floor", "sigma_min_noise_factor": 1.5}
    with pytest.raises(ConfigError, match="noise_floor"):
        AKDiffusionModel(rule)
    m = AKDiffusionModel({**rule, "noise_floor": floor})
    assert m.sde.sigma_min == pytest.approx(1.5 * floor) and m.config_dict()["noise_floor"] == floor
    assert AKDiffusionModel({**TINY, "sigma_min": 0.02}).sde.sigma_min == 0.02  # absolute (paper: 0.01)
    # zero-padded k-space (exact zeros in the corners) is left out of the measurement
    padded = slices[0].clone()
    padded[..., :, :20] = 0
    assert float(robust_noise_std(padded)[0]) == pytest.approx(sigma, rel=0.1)


def test_akdiff_recipe_measures_the_noise_floor_at_setup(tmp_path):
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.data.sample import Sample
    from mrrecon.methods.akdiff.recipe import AKDiffusionRecipe, measure_training_noise_floor
    from mrrecon.train.config import config_from_values
    from mrrecon.train.recipe import RecipeEnv

    g = torch.Generator().manual_seed(1)
    clean = _smooth_object(32, coils=3)
    slices = [clean * (1 + 0.1 * i) + 0.01 * float(clean.abs().max()) * complex_noise(clean.shape, generator=g)
              for i in range(4)]
    train_set = [Sample(kspace=k, mask=torch.ones(1, 1, 32, dtype=torch.bool)) for k in slices]
    params = {**TINY, "sigma_min_rule": "noise_floor"}
    cfg = config_from_values({"name": "t", "model": {"type": "akdiff", "params": params},
                              "recipe": {"name": "akdiff", "params": {}}})
    recipe = AKDiffusionRecipe(cfg)
    recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=train_set, seed=0))
    model = recipe.build_model()
    assert model.config.noise_floor == measure_training_noise_floor(params, slices) > 0
    model.save_pretrained(tmp_path / "m")
    assert from_pretrained(tmp_path / "m").sde.sigma_min == model.sde.sigma_min  # self-contained
    # a noise floor given in the config is used as it is
    cfg2 = config_from_values({"name": "t", "model": {"type": "akdiff", "params": {**params, "noise_floor": 0.5}},
                               "recipe": {"name": "akdiff", "params": {}}})
    r2 = AKDiffusionRecipe(cfg2)
    r2.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))
    assert r2.build_model().sde.sigma_min == 0.5


def test_a_fine_tune_starts_with_the_sampler_settings_of_its_weights(tmp_path):
    from mrrecon.methods.akdiff.recipe import AKDiffusionRecipe
    from mrrecon.train.config import config_from_values
    from mrrecon.train.recipe import RecipeEnv

    tuned = {"output": "corrected", "snr": 0.08, "lam": 0.01}
    AKDiffusionModel({**TINY, "sampler": tuned}).save_pretrained(tmp_path / "tuned")
    AKDiffusionModel(TINY).save_pretrained(tmp_path / "plain")

    def built(init_from, **params):
        cfg = config_from_values({"name": "t", "model": {"type": "akdiff", "params": {**TINY, **params},
                                                         "init_from": init_from},
                                  "recipe": {"name": "akdiff", "params": {}}})
        recipe = AKDiffusionRecipe(cfg)
        recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))
        return recipe.build_model().config.sampler

    assert built(str(tmp_path / "tuned")) == tuned  # inherited: validation samples as the weights were tuned
    assert built(str(tmp_path / "tuned"), sampler={"lam": 1.0}) == {"lam": 1.0}  # a given entry wins
    assert built(str(tmp_path / "tuned"), sampler={}) == {}  # the opt-out
    assert built(str(tmp_path / "plain")) == {}
    assert built(None) == {}


def test_legacy_configs_read_with_the_earlier_units():
    old = {**TINY, "sigma_min": 0.01, "lowpass_std": 0.05, "reference_size": 128, "kspace_weight_f0": 1 / 64}
    m = AKDiffusionModel.from_config(old)  # a config.json written before the units options
    assert m.config.kspace_scaling == "size" and m.config.frequency_units == "pixel"
    assert AKDiffusionModel(old).config.frequency_units == "pixel"
    new = AKDiffusionModel(TINY).config
    assert (new.kspace_scaling, new.frequency_units, new.lowpass_std, new.kspace_weight_f0) == ("peak", "fov", 5.0,
                                                                                                2.0)
    assert AKDiffusionModel({**TINY, "frequency_units": "pixel"}).config.lowpass_std == 0.05


def test_training_loss_does_not_depend_on_the_data_scale():
    from mrrecon.data.sample import Batch

    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "train_subspace": "sos"})
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    k, _ = _phantom(32, 32, 4)
    full = torch.ones(1, 1, 1, 32, dtype=torch.bool)
    losses = []
    for factor in (1.0, 37.0):
        torch.manual_seed(3)
        with torch.no_grad():
            losses.append(float(model.training_loss(Batch(kspace=factor * k[None], mask=full))["loss"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


# ------------------------------------------------------------------------------------------------------------
# Coil subspace (Sbar Sbar^*)
# ------------------------------------------------------------------------------------------------------------


def test_coil_subspace_noise_lies_in_the_subspace():
    k, maps = _phantom()
    sub = MapsSubspace(maps[None])
    n = complex_noise((1, *k.shape), generator=torch.Generator().manual_seed(0))
    pn = sub.project(n)
    assert torch.allclose(sub.project(pn), pn, atol=1e-5)  # projection leaves it unchanged
    assert (pn - n).abs().norm() > 0.5 * n.abs().norm()  # ... and it is not the identity (rank 1 of 4 coils)
    assert torch.allclose(sub.project(k[None]), k[None], atol=1e-4 * k.abs().max())  # data lie in the subspace
    u = complex_noise((1, *k.shape), generator=torch.Generator().manual_seed(1))
    assert abs(_inner(sub.project(u), n) - _inner(u, sub.project(n))) < 1e-3 * abs(_inner(u, n)) + 1e-2  # Hermitian


def test_espirit_subspace_is_a_projection_that_keeps_the_object():
    k, _ = _phantom(48, 48, 4)
    sub = MapsSubspace(espirit_maps(k[None], calib_size=16, kernel_size=4))
    n = complex_noise((1, *k.shape), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(sub.project(sub.project(n)), sub.project(n), atol=1e-4)
    rel = (sub.project(k[None]) - k[None]).norm() / k.norm()
    assert rel < 0.05


def test_slr_subspace_operator_is_hermitian_psd_and_near_identity_on_data():
    k, _ = _phantom(32, 32, 4)
    nb = Neighbourhood.disc(2)
    ns = estimate_nullspace(resolve_acs(k[None], torch.ones(1, 1, 32), (12, 12), nb), nb)
    sub = SLRSubspace(ns)
    g = torch.Generator().manual_seed(3)
    u, v = complex_noise((1, *k.shape), generator=g), complex_noise((1, *k.shape), generator=g)
    assert abs(_inner(sub.project(u), v) - _inner(u, sub.project(v))) < 1e-3 * u.norm() * v.norm()
    assert float(sub.combined_energy(u)) >= 0
    assert (sub.project(k[None]) - k[None]).norm() < 0.1 * k.norm()


# ------------------------------------------------------------------------------------------------------------
# Network and loss (eqs. 10-11)
# ------------------------------------------------------------------------------------------------------------


def test_channels_roundtrip_and_coils_in_batch():
    z = complex_noise((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    x = coils_to_batch_channels(z)
    assert x.shape == (6, 2, 8, 8)
    assert torch.equal(x[4, 0], z[1, 1].real) and torch.equal(x[4, 1], z[1, 1].imag)
    assert torch.equal(batch_channels_to_coils(x, 3), z)


def test_network_is_residual_and_shares_weights_across_coils():
    torch.manual_seed(0)
    model = AKDiffusionModel(TINY).eval()
    k, _ = _phantom(16, 16, 3)
    z = k[None] * model.kspace_scale(k)
    t = torch.tensor([0.4])
    assert torch.equal(model(z, t), z)  # fresh network: r_theta = 0 (zero-initialised output), h = z (eq. 10)
    for p in model.parameters():  # give r_theta something to say
        p.data.add_(0.05 * torch.randn_like(p))
    h = model(z, t)
    assert not torch.allclose(h, z)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(model(z[:, perm], t), h[:, perm], atol=1e-5)  # coils in the batch dimension
    # odd grid sizes are zero-padded for the network and cropped back
    assert model(z[..., :15, :13], t).shape == (1, 3, 15, 13)


def test_subspace_network_reads_and_writes_only_the_coil_subspace():
    torch.manual_seed(0)
    full = AKDiffusionModel(TINY).eval()
    for p in full.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    model = AKDiffusionModel({**TINY, "network_space": "subspace"}).eval()
    model.load_state_dict(full.state_dict())
    k, maps = _phantom(16, 16, 3)
    z = k[None] * model.kspace_scale(k)
    sub = MapsSubspace(maps[None])
    t = torch.tensor([0.4])
    h = model(z, t, project=sub.project)
    assert torch.allclose(h - sub.project(h), z - sub.project(z), atol=1e-5)  # the complement passes through
    assert not torch.allclose(sub.project(h), sub.project(z), atol=1e-3)  # the subspace part is the network's
    v = complex_noise(z.shape, generator=torch.Generator().manual_seed(3))
    off = v - sub.project(v)  # moving z outside the subspace moves h by the same amount and nothing else
    assert torch.allclose(model(z + off, t, project=sub.project), h + off, atol=1e-5)
    assert not torch.allclose(full(z + off, t), full(z, t) + off, atol=1e-3)  # the full network reads it
    # with the identity subspace the two spaces are the same network
    assert torch.allclose(model(z, t, project=IdentitySubspace().project), full(z, t), atol=1e-6)
    with pytest.raises(ConfigError, match="project"):
        model(z, t)
    with pytest.raises(ConfigError, match="network_space"):
        AKDiffusionConfig(network_space="coils")


def test_subspace_network_trains_and_samples_through_the_projection():
    from mrrecon.data.sample import Batch

    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12, "network_space": "subspace"})
    k, y, mask = _undersampled()
    loss = model.training_loss(Batch(kspace=k[None], mask=torch.ones(1, 1, 1, 32, dtype=torch.bool)))["loss"]
    loss.backward()
    assert loss.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    sampler = PCSampler(model.eval(), steps=2, corrector_steps=1, slr_iters=2)
    img = sampler.reconstruct_image(y, mask)
    assert torch.isfinite(img).all() and sampler.last_nfe == 4


def test_train_noise_full_noises_the_complement_of_the_subspace():
    """Eq. 8 (train_noise: subspace) leaves (I - SS^*) z(t) = G_t (I - SS^*) z(0) noise-free; ``full`` noises it
    with the same std as the subspace part."""
    k, maps = _phantom(16, 16, 3)
    sub = MapsSubspace(maps[None])
    t = torch.tensor([0.7])
    seen = {}
    for kind in ("subspace", "full"):
        model = AKDiffusionModel({**TINY, "train_noise": kind})
        z0 = k[None] * model.kspace_scale(k)
        model.score_matching_loss(z0, sub, t=t, generator=torch.Generator().manual_seed(1),
                                  h_fn=lambda z, tt, kind=kind: seen.__setitem__(kind, z) or z)
        g = model.sde.attenuation(t, z0.shape[-2:], z0.device)
        seen[kind] = (seen[kind] - g * z0, model.sde.kernel_std(t).item())
    (res_sub, std), (res_full, _) = seen["subspace"], seen["full"]
    assert torch.allclose(res_sub - sub.project(res_sub), torch.zeros_like(res_sub), atol=1e-5)
    off = res_full - sub.project(res_full)
    assert off.abs().pow(2).mean().sqrt() > 0.5 * std  # a sizeable share of the noise lies outside (2 of 3 dims)
    assert torch.allclose(sub.project(res_full), sub.project(res_sub), atol=1e-5)  # the same draw inside
    with pytest.raises(ConfigError, match="train_noise"):
        AKDiffusionConfig(train_noise="coils")


def test_score_matching_loss_is_zero_for_the_exact_h():
    torch.manual_seed(0)
    model = AKDiffusionModel(TINY)
    k, maps = _phantom(16, 16, 3)
    z0 = k[None] * model.kspace_scale(k)
    sub = MapsSubspace(maps[None])
    t = torch.tensor([0.5])
    exact = model.score_matching_loss(z0, sub, t=t, h_fn=lambda z, tt: z0)
    assert float(exact) == 0.0
    v = complex_noise(z0.shape, generator=torch.Generator().manual_seed(1))
    outside = v - sub.project(v)  # at t = 0 (G_0 = I) errors outside the coil subspace are not penalised
    t0 = torch.zeros(1)
    inside0 = float(model.score_matching_loss(z0, sub, t=t0, h_fn=lambda z, tt: z0 + sub.project(v)))
    assert inside0 > 1e-3
    assert float(model.score_matching_loss(z0, sub, t=t0, h_fn=lambda z, tt: z0 + outside)) < 1e-6 * inside0
    inside = model.score_matching_loss(z0, sub, t=t, h_fn=lambda z, tt: z0 + sub.project(v))
    assert float(inside) > 1e-3
    # the isotropic ablation penalises every coil
    assert float(model.score_matching_loss(z0, IdentitySubspace(), t=t, h_fn=lambda z, tt: z0 + outside)) > 1e-3


def test_training_loss_needs_full_kspace_and_backpropagates():
    from mrrecon.data.sample import Batch

    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12})
    k, _ = _phantom(32, 32, 4)
    full = Batch(kspace=k[None], mask=torch.ones(1, 1, 1, 32, dtype=torch.bool))
    loss = model.training_loss(full)["loss"]
    loss.backward()
    assert loss.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    under = Batch(kspace=k[None], mask=make_mask("uniform1d", (32, 32), 4).mask[None])
    with pytest.raises(DataError, match="fully sampled"):
        model.training_loss(under)


# ------------------------------------------------------------------------------------------------------------
# Line-6 correction and PC sampling (Algorithm 1)
# ------------------------------------------------------------------------------------------------------------


def _undersampled(h=32, w=32, coils=4):
    k, maps = _phantom(h, w, coils)
    mask = make_mask("uniform1d", (h, w), 3, acs_lines=10).mask
    return k, k * mask, mask


@pytest.mark.parametrize("correction", ["slr", "dc"])
def test_line6_correction_keeps_measured_samples(correction):
    k, y, mask = _undersampled()
    sampler = PCSampler(AKDiffusionModel(TINY), correction=correction, lam=1.0)
    prior = y + 0.3 * complex_noise(y.shape, generator=torch.Generator().manual_seed(0))
    out = sampler.correction_fn(y[None], mask)(prior[None])[0]
    m = mask.expand_as(y)
    assert torch.allclose(out[m], y[m], atol=1e-6)  # M z = y exactly (data_weight=None)
    if correction == "dc":
        assert torch.equal(out[~m], prior[~m])  # DC only: the unmeasured samples are the network's
    else:
        assert not torch.allclose(out[~m], prior[~m])  # SLR: the unmeasured samples are corrected too


def test_line6_soft_form_moves_measured_samples_toward_y():
    k, y, mask = _undersampled()
    prior = y + 0.3 * complex_noise(y.shape, generator=torch.Generator().manual_seed(0))
    m = mask.expand_as(y)
    errs = []
    for d in (1.0, 100.0):
        out = PCSampler(AKDiffusionModel(TINY), data_weight=d, lam=1.0).correction_fn(y[None], mask)(prior[None])[0]
        errs.append(float((out[m] - y[m]).abs().norm()))
    assert errs[1] < 0.1 * errs[0] < 0.1 * float((prior[m] - y[m]).abs().norm())


def test_pc_sampler_runs_is_seeded_and_counts_evaluations():
    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12}).eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    k, y, mask = _undersampled()
    a = PCSampler(model, steps=3, corrector_steps=1, seed=5, slr_iters=3)
    img = a.reconstruct_image(y, mask)
    assert img.shape == (32, 32) and torch.isfinite(img).all()
    assert a.last_nfe == 6  # N (1 + M)
    assert torch.equal(PCSampler(model, steps=3, corrector_steps=1, seed=5, slr_iters=3).reconstruct_image(y, mask),
                       img)
    assert not torch.equal(PCSampler(model, steps=3, corrector_steps=1, seed=6, slr_iters=3)
                           .reconstruct_image(y, mask), img)
    for subspace in ("sos", "slr", "identity"):
        out = PCSampler(model, steps=2, subspace=subspace, slr_iters=2).reconstruct_image(y, mask)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("correction", ["slr", "dc"])
def test_corrected_output_keeps_measured_samples_and_skips_the_last_moves(correction):
    """output=corrected returns line 6's z0'' of the last step (M z = y exactly); line 16's z_0 (state) carries
    the last step's noise and Langevin moves, so it does not keep the measured samples."""
    from mrrecon.physics.kspace import mask_as_grid, real_mask

    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12}).eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    k, y, mask = _undersampled()
    m = real_mask(mask_as_grid(mask, y[None])[0], y).expand_as(y).bool()
    kw = dict(steps=3, corrector_steps=1, seed=5, slr_iters=3, correction=correction)
    corrected = PCSampler(model, output="corrected", **kw)
    z = corrected.sample(y, mask)
    state = PCSampler(model, **kw).sample(y, mask)
    assert corrected.last_nfe == 5  # N (1 + M) - M: no corrector after the last predictor step
    assert float((z[m] - y[m]).abs().max()) < 1e-4 * float(y.abs().max())
    assert float((state[m] - y[m]).abs().max()) > 1e-2 * float(y.abs().max())
    with pytest.raises(ConfigError):
        PCSampler(model, output="nope")


def test_projected_output_is_the_corrected_estimate_in_the_coil_subspace_with_the_measured_samples():
    """output=projected: M y + (1 - M) Sbar Sbar^* z0'' of the same run as output=corrected (same seed, same NFE);
    with the identity subspace it equals corrected exactly."""
    from mrrecon.methods.akdiff.coil_subspace import estimate_subspace
    from mrrecon.physics.kspace import mask_as_grid, real_mask

    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12}).eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    k, y, mask = _undersampled()
    m = real_mask(mask_as_grid(mask, y[None])[0], y).expand_as(y)
    kw = dict(steps=3, corrector_steps=1, seed=5, slr_iters=3, calib_size=12)
    corrected = PCSampler(model, output="corrected", **kw)
    projected = PCSampler(model, output="projected", **kw)
    zc, zp = corrected.sample(y, mask), projected.sample(y, mask)
    assert projected.last_nfe == corrected.last_nfe == 5
    proj = estimate_subspace("espirit", y[None] * m, mask, calib_size=12)
    expected = m * y + (1 - m) * proj(zc[None])[0]
    assert torch.allclose(zp, expected, atol=1e-5 * float(y.abs().max()))
    assert float((zp - zc).abs().max()) > 1e-3 * float(y.abs().max())  # the projection removed something
    kw["subspace"] = "identity"
    assert torch.allclose(PCSampler(model, output="projected", **kw).sample(y, mask),
                          PCSampler(model, output="corrected", **kw).sample(y, mask), atol=1e-6)


def test_full_drift_moves_the_complement_and_equals_the_paper_without_a_subspace():
    """drift=full projects only the noise: with the identity subspace it is Algorithm 1 exactly; with ESPIRiT it
    changes the state outside the coil subspace (which drift=subspace moves only through line 8's deblurring)."""
    torch.manual_seed(0)
    model = AKDiffusionModel({**TINY, "calib_size": 12}).eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    k, y, mask = _undersampled()
    kw = dict(steps=3, corrector_steps=1, seed=5, slr_iters=2, calib_size=12)
    same = [PCSampler(model, subspace="identity", drift=d, **kw).sample(y, mask) for d in ("subspace", "full")]
    assert torch.equal(same[0], same[1])
    paper, full = (PCSampler(model, subspace="espirit", drift=d, **kw).sample(y, mask) for d in ("subspace", "full"))
    assert float((paper - full).abs().max()) > 1e-3 * float(y.abs().max())
    with pytest.raises(ConfigError, match="drift"):
        PCSampler(model, drift="nope")


class _OracleModel:
    """The exact h (h = z(0) for every input): Algorithm 1 must then recover z(0) up to its final noise."""

    def __init__(self, k_full: torch.Tensor):
        self.sde = AKDiffusionSDE()
        self.k_full = k_full

    def kspace_scale(self, kspace, mask=None):
        return torch.ones(1, 1, 1, 1)

    def __call__(self, z, t):
        return self.k_full[None].to(z.dtype)


@pytest.mark.parametrize("correction,subspace", [("slr", "espirit"), ("dc", "identity")])
def test_pc_sampling_with_the_exact_h_recovers_the_kspace(correction, subspace):
    from mrrecon.metrics import psnr

    k, y, mask = _undersampled(48, 48, 4)
    target = rss(ifft2c(k))
    sampler = PCSampler(_OracleModel(k), steps=20, correction=correction, subspace=subspace, slr_iters=5,
                        calib_size=10)
    rec = sampler.reconstruct_image(y, mask)
    zero_filled = rss(ifft2c(y))
    assert psnr(target, rec) > psnr(target, zero_filled) + 10


def test_pretrained_roundtrip(tmp_path):
    from mrrecon.core.pretrained import from_pretrained

    torch.manual_seed(0)
    model = AKDiffusionModel(TINY)
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m", expected_type="akdiff")
    z = complex_noise((1, 2, 16, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(z, torch.tensor([0.3])), model.eval()(z, torch.tensor([0.3])))


def test_registry_options():
    from mrrecon.methods import get_info

    for name in ("akdiff", "akdiff-no-sscoil", "akdiff-no-slr"):
        info = get_info(name)
        assert info.multicoil_only and info.needs_weights
    assert "subspace" not in get_info("akdiff-no-sscoil").options
    assert "correction" not in get_info("akdiff-no-slr").options
    with pytest.raises(ConfigError):
        PCSampler(AKDiffusionModel(TINY), subspace="nope")


def test_weights_carry_their_sampler_settings_and_options_override_them(tmp_path):
    """A model config's ``sampler`` entry (the settings chosen for those weights) survives save/load and is what
    the method samples with; an option given in the spec wins over it, the ablations' fixed settings too; an
    unknown setting in the config is refused."""
    from mrrecon.methods import load

    torch.manual_seed(0)
    AKDiffusionModel({**TINY, "sampler": {"snr": 0.05, "lam": 0.02, "output": "corrected"}}).save_pretrained(
        tmp_path / "m")
    tuned = load("akdiff", checkpoint=str(tmp_path / "m")).sampler.settings
    assert (tuned.snr, tuned.lam, tuned.output, tuned.steps) == (0.05, 0.02, "corrected", SamplerSettings.steps)
    given = load("akdiff:lam=0.5:steps=7", checkpoint=str(tmp_path / "m")).sampler.settings
    assert (given.snr, given.lam, given.steps) == (0.05, 0.5, 7)
    assert load("akdiff-no-slr", checkpoint=str(tmp_path / "m")).sampler.settings.correction == "dc"
    AKDiffusionModel(TINY).save_pretrained(tmp_path / "plain")
    assert load("akdiff", checkpoint=str(tmp_path / "plain")).sampler.settings == SamplerSettings()
    with pytest.raises(ConfigError, match="data_weight"):  # refused when the config is built
        AKDiffusionModel({**TINY, "sampler": {"data_weight": 1.0}})
    with pytest.raises(ConfigError, match="output"):
        AKDiffusionModel({**TINY, "sampler": {"output": "nope"}})


# ------------------------------------------------------------------------------------------------------------
# Shipped weights: the trained model, with its own sampler settings, beats zero-filling on a held-out slice
# ------------------------------------------------------------------------------------------------------------


def test_shipped_weights_beat_zero_filled_on_held_out_slice():
    from mrrecon.core.weights import weights_dir
    from mrrecon.data.datasets import make_slice_sample
    from mrrecon.data.simulate import simulate_subject
    from mrrecon.methods import load
    from mrrecon.metrics import psnr

    if not (weights_dir() / "akdiff-small" / "model.safetensors").is_file():
        pytest.skip("weights/akdiff-small not shipped")
    torch.set_num_threads(1)
    subj = simulate_subject(seed=12345, size=128, coils=8, contrasts=("T1",), slices=1)
    k = torch.as_tensor(subj["T1"].kspace[0])
    sample = make_slice_sample(k, make_mask("uniform1d", (128, 128), 6), normalise="max")
    method = load("akdiff:steps=20")
    rec = method.reconstruct(sample)
    zf = rss(ifft2c(sample.kspace))
    assert psnr(sample.target, rec) > psnr(sample.target, zf) + 1.0


def test_shipped_no_sscoil_weights_are_the_ablation_network_with_akdiff_settings():
    """akdiff-no-sscoil loads its own network (trained with the identity in place of Sbar Sbar^*), samples with the
    identity subspace, and with the sampler settings of the akdiff weights, so the ablation changes only SS-coil."""
    from mrrecon.core.weights import weights_dir
    from mrrecon.methods import load

    if not (weights_dir() / "akdiff-no-sscoil-small" / "model.safetensors").is_file():
        pytest.skip("weights/akdiff-no-sscoil-small not shipped")
    ablation, full = load("akdiff-no-sscoil"), load("akdiff")
    assert ablation.model.config.train_subspace == "identity"
    assert full.model.config.train_subspace == "espirit"
    assert ablation.sampler.settings.subspace == "identity"
    assert ablation.model.config.sampler == full.model.config.sampler
    for key, value in full.model.config.sampler.items():
        assert getattr(ablation.sampler.settings, key) == value
    # different networks, not one set of weights under two names
    a, f = ablation.model.state_dict(), full.model.state_dict()
    assert any(not torch.equal(a[k], f[k]) for k in f)
