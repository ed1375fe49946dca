"""LDPM: Swin blocks, measurement model (DC exactness, guidance), ControlNet zero init, sampler, registry."""

from __future__ import annotations

import math

import pytest
import torch

from mrrecon.errors import ConfigError
from mrrecon.methods.ldpm.generator import ControlledDenoiser, IRControlNet, LatentDenoiser
from mrrecon.methods.ldpm.physics import Measurement
from mrrecon.methods.ldpm.sampler import SamplerSettings, crop_to, dc_step, dual_stage_sample, guidance_step, pad_to
from mrrecon.methods.ldpm.sketcher import SketcherModel
from mrrecon.methods.ldpm.textures import procedural_image
from mrrecon.methods.ldpm.vae import MRVAE, PatchDiscriminator, PyramidLoss, vae_loss_terms
from mrrecon.nn.swin import SwinIR, SwinTransformerBlock, _shift_mask, window_partition, window_reverse
from mrrecon.physics.fft import fft2c
from mrrecon.physics.kspace import acs_lowpass, find_acs_region
from mrrecon.physics.masks import make_mask

torch.set_num_threads(1)

TINY_VAE = {"block_out_channels": [8, 8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
            "image_channels": 1, "scaling_factor": 1.0, "sample_size": 16}
TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "block_out_channels": [8, 16],
             "layers_per_block": 1, "cross_attention_dim": 8, "attention_head_dim": 4, "norm_num_groups": 4}
TINY_SWIN = {"embed_dim": 8, "depths": [2], "heads": [2], "window": 4, "mlp_ratio": 2.0}


def _phantom(n: int = 32, seed: int = 0) -> torch.Tensor:
    return procedural_image(n, seed)


def _single_coil(x: torch.Tensor, accel: float = 4.0, seed: int = 0):
    mask = make_mask("random1d", tuple(x.shape[-2:]), accel, seed=seed).mask.view(1, 1, 1, -1)
    k = fft2c(x.to(torch.complex64)).view(1, 1, *x.shape[-2:]) * mask
    return Measurement.from_kspace(k, mask)


# -- Swin ----------------------------------------------------------------------------------------------------
def test_window_partition_inverts():
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(window_reverse(w, 4, 8, 12), x)


def test_shift_mask_separates_regions_only():
    mask = _shift_mask(8, 8, 4, 2, torch.device("cpu"))
    assert mask.shape == (4, 16, 16)
    assert torch.all(mask[0] == 0)  # the top-left window holds one region only
    assert (mask[3] < 0).any() and torch.all(mask.diagonal(dim1=-2, dim2=-1) == 0)


def test_shifted_block_is_local_and_swinir_keeps_shape():
    torch.manual_seed(0)
    blk = SwinTransformerBlock(8, 2, window=4, shift=0).eval()
    x = torch.randn(1, 8, 8, 8)
    y = blk(x)
    x2 = x.clone()
    x2[:, 0, 0] += 1.0  # change a token in the top-left window
    y2 = blk(x2)
    changed = (y2 - y).abs().sum(-1) > 1e-6
    assert changed[0, :4, :4].any() and not changed[0, 4:, :].any() and not changed[0, :, 4:].any()
    net = SwinIR(1, 1, embed_dim=8, depths=(2,), heads=(2,), window=4)
    assert net(torch.randn(2, 1, 18, 22)).shape == (2, 1, 18, 22)


# -- measurement model -----------------------------------------------------------------------------------------
def test_dc_agrees_with_measured_lines_single_coil():
    x = _phantom()
    meas = _single_coil(x)
    guess = torch.rand(1, 32, 32)
    out = meas.dc_complex(guess)
    m = meas.mask.expand(1, 1, 32, 32)
    k_out = fft2c(out.unsqueeze(1))
    assert torch.allclose(k_out[m], meas.kspace[m], atol=1e-5)  # eq. 3 / eq. 9: measured lines replaced exactly
    unsampled = ~m
    assert torch.allclose(k_out[unsampled], fft2c(guess.to(torch.complex64).unsqueeze(1))[unsampled], atol=1e-5)
    assert float(meas.residual(x).max()) < 1e-8  # delta = 0 at the truth (eq. 10)


def test_acs_lowpass_keeps_exactly_the_calibration_block():
    k = torch.randn(1, 2, 48, 48, dtype=torch.complex64)
    for kind in ("random1d", "poisson2d"):
        mask = make_mask(kind, (48, 48), 4.0, seed=3).mask
        rows, cols = find_acs_region(mask, (48, 48))
        block = torch.zeros(48, 48, dtype=torch.bool)
        block[rows, cols] = True
        kept = acs_lowpass(k, mask.expand(1, 48, 48).reshape(1, 1, 48, 48)) != 0
        assert torch.equal(kept[0, 0], block), kind  # a 2-D mask's scattered samples near the block are not taken in
    no_centre = torch.ones(1, 1, 1, 48, dtype=torch.bool)
    no_centre[..., 24] = False
    assert int((acs_lowpass(k, no_centre) != 0).sum()) == 2  # centre sample per coil only


def test_multicoil_maps_reproduce_coil_images():
    from mrrecon.physics.coils import simulate_coil_maps

    x = _phantom(32)
    phase = torch.exp(1j * torch.linspace(0, 1, 32)).view(1, 32).to(torch.complex64)
    maps = simulate_coil_maps(4, (32, 32)).to(torch.complex64)
    k_full = fft2c(maps * (x * phase)).unsqueeze(0)
    mask = make_mask("random1d", (32, 32), 4.0, center_fraction=0.25, seed=1).mask.view(1, 1, 1, -1)
    meas = Measurement.from_kspace(k_full * mask, mask)
    assert meas.maps.shape == (1, 4, 32, 32)
    assert acs_lowpass(k_full, mask).abs().sum() < k_full.abs().sum()
    # DC of the truth's magnitude keeps it close to the truth; of a blank image it moves towards it
    err = lambda y: float((meas.dc(y) - x).abs().mean())  # noqa: E731
    assert err(torch.zeros(1, 32, 32)) > err(x.unsqueeze(0))


def test_single_coil_phase_from_the_calibration_block():
    """A single-coil object with a smooth phase: the hard DC of its magnitude against the measured (phased) samples
    mixes two objects with single_coil_phase=none; with acs, the calibration block's phase map makes it almost
    the truth, and the DC image times the map has exactly the measured samples."""
    n = 64
    x = _phantom(n)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    phase = torch.exp(1j * (1.5 * xx + 1.0 * yy ** 2)).to(torch.complex64)  # smooth: inside the ACS band
    mask = make_mask("random1d", (n, n), 4.0, center_fraction=0.16, seed=2).mask.view(1, 1, 1, -1)
    k = fft2c(x * phase).view(1, 1, n, n) * mask
    err = {}
    for mode in ("none", "acs"):
        meas = Measurement.from_kspace(k, mask, single_coil_phase=mode)
        assert (meas.maps is None) == (mode == "none")
        err[mode] = float((meas.dc(x.unsqueeze(0)) - x).norm() / x.norm())
    assert err["acs"] < 0.5 * err["none"]  # measured 0.059 against 0.136 (10 calibration lines of 64)
    meas = Measurement.from_kspace(k, mask, single_coil_phase="acs")
    # a phase, not a sensitivity: unit magnitude also where the object (and its calibration image) vanishes,
    # so the combine never divides by a small |S|^2
    assert torch.allclose(meas.maps.abs(), torch.ones(()), atol=1e-6)
    z = meas.dc_complex(torch.rand(1, n, n)) * meas.maps[:, 0]
    m = mask.expand(1, 1, n, n)
    assert torch.allclose(fft2c(z.unsqueeze(1))[m], k[m], atol=1e-4)
    # auto: the phased sample gets its map, a real magnitude's k-space keeps the paper's model (no map)
    assert torch.equal(Measurement.from_kspace(k, mask).maps, meas.maps)
    assert Measurement.from_kspace(fft2c(x.to(torch.complex64)).view(1, 1, n, n) * mask, mask).maps is None
    with pytest.raises(ConfigError, match="single_coil_phase"):
        Measurement.from_kspace(k, mask, single_coil_phase="homodyne")


# -- VAE -----------------------------------------------------------------------------------------------------
def test_vae_shapes_and_loss_terms():
    torch.manual_seed(0)
    vae = MRVAE(TINY_VAE)
    x = torch.rand(2, 16, 16)
    z = vae.encode(x)
    assert z.shape == (2, 4, 8, 8) and vae.decode(z).shape == (2, 16, 16)
    with pytest.raises(ConfigError):
        vae.encode(torch.rand(1, 15, 16))
    terms = vae_loss_terms(vae, x, PyramidLoss())
    assert all(torch.isfinite(terms[k]) for k in ("l1", "perceptual", "kl"))
    assert PyramidLoss()(x, x) == 0
    d = PatchDiscriminator(1, 8, 2)
    assert d(2 * x.unsqueeze(1) - 1).ndim == 4


# -- generator -------------------------------------------------------------------------------------------------
def _tiny_denoiser(seed: int = 0) -> LatentDenoiser:
    torch.manual_seed(seed)
    den = LatentDenoiser({"unet": TINY_UNET, "context_tokens": 1})
    with torch.no_grad():  # diffusers zero-initialises conv_out: randomise so the outputs are informative
        for p in den.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return den.eval()


def test_controlnet_zero_init_leaves_denoiser_unchanged():
    den = _tiny_denoiser()
    ctrl = IRControlNet.from_denoiser(den, condition_channels=4).eval()
    assert torch.all(ctrl.conv_in.weight[:, 4:] == 0)  # IRControlNet extra input channels
    assert torch.equal(ctrl.conv_in.weight[:, :4], den.unet.conv_in.weight)
    z, c = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        plain = den(z, t)
        controlled = ControlledDenoiser(den, ctrl)(z, t, c)
    assert torch.equal(plain, controlled)
    with torch.no_grad():  # wiring: once the zero convs are non-zero the condition changes the output
        for zc in ctrl.zero_convs:
            zc.weight.normal_(0, 0.1)
        ctrl.conv_in.weight[:, 4:].normal_(0, 0.1)
        a = ControlledDenoiser(den, ctrl)(z, t, c)
        b = ControlledDenoiser(den, ctrl)(z, t, -c)
    assert not torch.allclose(a, plain) and not torch.allclose(a, b)


def test_controlnet_gets_gradients_denoiser_frozen():
    from mrrecon.methods.ldpm.generator import eps_loss

    den = _tiny_denoiser()
    for p in den.parameters():
        p.requires_grad_(False)
    ctrl = IRControlNet.from_denoiser(den)
    z0, c = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    loss = eps_loss(lambda zt, t: ControlledDenoiser(den, ctrl)(zt, t, c), z0, den.config.schedule(),
                    torch.Generator().manual_seed(0))
    loss.backward()
    assert ctrl.zero_convs[0].weight.grad is not None and ctrl.zero_convs[0].weight.grad.abs().sum() > 0


# -- sampler ---------------------------------------------------------------------------------------------------
class PixelVAE:
    """An exact 'autoencoder' (pixel unshuffle by 2, 4 channels): isolates the sampler's own operations."""

    class config:  # noqa: N801
        downsample = 2

    def encode(self, x):
        return torch.nn.functional.pixel_unshuffle(x.unsqueeze(1), 2)

    def decode(self, z):
        return torch.nn.functional.pixel_shuffle(z, 2).squeeze(1)


def test_dc_step_makes_decoded_image_consistent():
    x = _phantom(30)
    meas = _single_coil(x, seed=3)
    vae = PixelVAE()
    z0, pad = pad_to(torch.rand(1, 30, 30), 4)
    assert z0.shape[-1] == 32 and torch.equal(crop_to(z0, pad), z0[..., 1:31, 1:31])
    z0 = vae.encode(z0)
    before = float(meas.residual(crop_to(vae.decode(z0), pad)))
    after = float(meas.residual(crop_to(vae.decode(dc_step(z0, vae, meas, pad)), pad)))
    assert after < 0.2 * before  # only the magnitude's phase-loss remains (the DC image is made real)


def test_guidance_lowers_delta():
    torch.manual_seed(0)
    vae = MRVAE(TINY_VAE).eval()
    x = _phantom(16)
    meas = _single_coil(x, seed=2)
    with torch.no_grad():
        z0 = vae.encode(torch.rand(1, 16, 16))
        d0 = float(meas.residual(vae.decode(z0)))
        z1 = guidance_step(z0, vae, meas, (0, 0, 0, 0), 0.1)  # g = 0.1 (the paper)
        d1 = float(meas.residual(vae.decode(z1)))
    assert d1 < d0


def test_dual_stage_sampler_runs_both_stages_and_is_reproducible():
    den = _tiny_denoiser()
    ctrl = IRControlNet.from_denoiser(den)
    model = ControlledDenoiser(den, ctrl).eval()
    vae = PixelVAE()
    x = _phantom(16)
    meas = _single_coil(x, seed=5)
    c_lat = vae.encode(meas.zero_filled())
    settings = SamplerSettings(steps=4, stage_boundary=600, guidance_scale=0.1)  # t: 999, 749 | 499, 249
    sched = den.config.schedule()
    run = lambda s: dual_stage_sample(lambda z, t: model(z, t, c_lat), vae, meas, sched, s,  # noqa: E731
                                      tuple(c_lat.shape), (0, 0, 0, 0), torch.Generator().manual_seed(0))
    out1, nfe = run(settings)
    out2, _ = run(settings)
    assert nfe == 4 and torch.equal(out1, out2) and out1.shape == (1, 16, 16)
    # DC + guidance pull the sampled image towards the measurements; plain sampling does not (the sampler's own
    # image D(z_0): final_dc none, the paper's output)
    dss, _ = run(SamplerSettings(steps=4, stage_boundary=600, guidance_scale=0.1, final_dc="none"))
    plain, _ = run(SamplerSettings(steps=4, mode="plain", final_dc="none"))
    assert float(meas.residual(dss)) < float(meas.residual(plain))
    with pytest.raises(ConfigError):
        SamplerSettings(mode="other").check()


def test_final_dc_of_the_sampler():
    """After the last step: hard DC keeps the measured samples of the complex image (its magnitude is the
    output); soft moves them the fraction w; none returns D(z_0) itself; the final DC is the only difference."""
    den = _tiny_denoiser()
    model = ControlledDenoiser(den, IRControlNet.from_denoiser(den)).eval()
    vae = PixelVAE()
    x = _phantom(16)
    meas = _single_coil(x, seed=5)
    c_lat = vae.encode(meas.zero_filled())

    def run(final_dc, weight=0.5, complex_output=False):
        s = SamplerSettings(steps=3, stage_boundary=600, final_dc=final_dc, final_dc_weight=weight)
        return dual_stage_sample(lambda z, t: model(z, t, c_lat), vae, meas, den.config.schedule(), s,
                                 tuple(c_lat.shape), (0, 0, 0, 0), torch.Generator().manual_seed(0),
                                 complex_output=complex_output)[0]

    none, hard, hard_c = run("none"), run("hard"), run("hard", complex_output=True)
    assert (none >= 0).all() and torch.equal(run("none", complex_output=True), none.to(torch.complex64))
    assert torch.equal(hard, hard_c.abs()) and torch.equal(hard, meas.dc(none))  # DC of the sampler's image
    m = meas.mask.to(torch.bool).expand_as(meas.kspace)
    k_hard = fft2c(hard_c.unsqueeze(1))
    assert torch.allclose(k_hard[m], meas.kspace[m], rtol=0, atol=1e-5 * float(meas.kspace.abs().max()))
    soft_c = run("soft", 0.25, complex_output=True)
    r_none = (fft2c(none.to(torch.complex64).unsqueeze(1)) - meas.kspace)[m]
    r_soft = (fft2c(soft_c.unsqueeze(1)) - meas.kspace)[m]
    assert torch.allclose(r_soft, 0.75 * r_none, rtol=0, atol=1e-5 * float(meas.kspace.abs().max()))
    for bad in (SamplerSettings(final_dc="bogus"), SamplerSettings(final_dc="soft", final_dc_weight=1.0)):
        with pytest.raises(ConfigError):
            bad.check()


# -- whole method with tiny saved weights -------------------------------------------------------------------------
def _save_tiny_weights(root):
    torch.manual_seed(0)
    SketcherModel(TINY_SWIN).save_pretrained(root / "sketcher")
    MRVAE({**TINY_VAE, "block_out_channels": [8, 8, 8, 8]}).save_pretrained(root / "mrvae")
    MRVAE({**TINY_VAE, "block_out_channels": [8, 8, 8, 8]}).save_pretrained(root / "vae-nonmri")
    den = _tiny_denoiser()
    den.save_pretrained(root / "denoiser")
    IRControlNet.from_denoiser(den).save_pretrained(root / "controlnet")


def test_registered_methods_reconstruct_reproducibly(tmp_path):
    from mrrecon.data.sample import Sample
    from mrrecon.methods import available, load

    names = {"ldpm", "ldpm-no-skm", "ldpm-no-mrvae", "ldpm-no-dss", "ldpm-sketcher"}
    assert names <= set(available())
    _save_tiny_weights(tmp_path)
    x = _phantom(24) * 3.0
    meas = _single_coil(x, seed=4)
    sample = Sample(kspace=meas.kspace[0], mask=meas.mask[0], target=x)
    m = load("ldpm:steps=2", checkpoint=str(tmp_path))
    a, b = m.reconstruct(sample), m.reconstruct(sample)
    assert a.shape == (24, 24) and torch.equal(a, b) and m.last_nfe == 2 and (a >= 0).all()
    assert math.isfinite(float(a.sum())) and m.num_parameters() > 0
    no_mrvae = load("ldpm-no-mrvae:steps=1", checkpoint=str(tmp_path))
    assert no_mrvae.reconstruct(sample).shape == (24, 24)
    p_mr, p_non = next(m.vae.parameters()), next(no_mrvae.vae.parameters())
    assert not torch.equal(p_mr, p_non)  # the ablation really swaps the VAE (vae-nonmri)
    with pytest.raises(ConfigError):
        load("ldpm:bogus=1", checkpoint=str(tmp_path))


def test_samples_option_averages_the_seeds_complex_outputs(tmp_path):
    """``ldpm:samples=K``: the output is the mean of the K complex final-DC images of seeds seed..seed+K-1 (so it
    keeps the measured samples under hard DC), and NFE counts every sample's steps."""
    from mrrecon.core.reconstructor import get_info
    from mrrecon.data.sample import Sample
    from mrrecon.methods import load

    _save_tiny_weights(tmp_path)
    x = _phantom(24) * 3.0
    meas = _single_coil(x, seed=4)
    sample = Sample(kspace=meas.kspace[0], mask=meas.mask[0], target=x)
    ck = str(tmp_path)
    one = [load(f"ldpm:steps=2:seed={s}", checkpoint=ck).reconstruct_complex(sample) for s in (3, 4)]
    m = load("ldpm:steps=2:seed=3:samples=2", checkpoint=ck)
    both = m.reconstruct_complex(sample)
    assert torch.allclose(both, (one[0] + one[1]) / 2, atol=1e-5 * float(both.abs().max()))
    assert not torch.allclose(one[0], one[1])  # the two seeds differ, so the mean is not one of them
    assert torch.allclose(m.reconstruct(sample), both.abs(), atol=1e-6 * float(both.abs().max()))
    assert m.last_nfe == 4 and get_info("ldpm").expected_nfe(m) == 4
    at = meas.mask[0, 0].expand_as(both)  # (1, 24) -> (24, 24)
    kept = fft2c(both)[at]
    assert torch.allclose(kept, meas.kspace[0, 0][at], atol=1e-4 * float(kept.abs().max()))
    with pytest.raises(ConfigError, match="samples"):
        load("ldpm:samples=0", checkpoint=ck)


def test_final_dc_option_of_every_sampled_variant(tmp_path, monkeypatch):
    """``final_dc`` (hard default, soft, none) is an option of ldpm and each sampled ablation (the same final DC
    for all); with hard DC the single-coil measured samples are kept (``reconstruct_complex``, the registry's
    hard-DC claim), ``none`` is the sampler's decoded image, and the final DC is all that differs."""
    from mrrecon.core.reconstructor import MULTI_COIL, SINGLE_COIL, get_info
    from mrrecon.data.sample import Sample
    from mrrecon.methods import load
    from mrrecon.methods.ldpm import sampler as sampler_module
    from mrrecon.physics.coils import simulate_coil_maps

    _save_tiny_weights(tmp_path)
    x = _phantom(24) * 3.0
    meas = _single_coil(x, seed=4)
    single = Sample(kspace=meas.kspace[0], mask=meas.mask[0], target=x)
    maps = simulate_coil_maps(3, (24, 24)).to(torch.complex64)
    multi = Sample(kspace=fft2c(maps * x) * meas.mask[0], mask=meas.mask[0], target=x)
    ck = str(tmp_path)
    for name in ("ldpm", "ldpm-no-skm", "ldpm-no-mrvae", "ldpm-no-dss"):
        info = get_info(name)
        assert info.options["final_dc"].default == "hard"
        hard = load(f"{name}:steps=2", checkpoint=ck)
        none = load(f"{name}:steps=2:final_dc=none", checkpoint=ck)
        assert info.hard_dc_of(hard) == {SINGLE_COIL: "image"} and info.hard_dc_of(none) == {}
        for sample in (single, multi):
            full = Measurement.from_kspace(sample.kspace.unsqueeze(0), sample.mask.unsqueeze(0))
            a, b = hard.reconstruct(sample), none.reconstruct(sample)
            # hard = |DC(none)| (DC is affine: the pipeline's normalisation does not change it)
            assert torch.allclose(a, full.dc(b.unsqueeze(0))[0], rtol=1e-4, atol=1e-5 * float(a.max())), name
            assert float(full.residual(a.unsqueeze(0))) < float(full.residual(b.unsqueeze(0)))
        xc = hard.reconstruct_complex(single)
        assert torch.allclose(xc.abs(), hard.reconstruct(single), rtol=1e-5, atol=1e-6)
        y, m = single.kspace, single.mask.to(torch.bool).expand_as(single.kspace)
        assert torch.allclose(fft2c(xc.unsqueeze(0))[m], y[m], rtol=0, atol=1e-5 * float(y.abs().max()))
        assert MULTI_COIL not in info.hard_dc_of(hard)  # SENSE-combined DC image: no exact per-coil claim
    soft = load("ldpm:steps=2:final_dc=soft:final_dc_weight=0.3", checkpoint=ck)
    assert get_info("ldpm").hard_dc_of(soft) == {}
    with pytest.raises(ConfigError):
        load("ldpm:final_dc=bogus", checkpoint=ck)
    assert "final_dc" not in get_info("ldpm-sketcher").options  # the sketch alone has no sampler
    # final_dc=none reproduces the pre-final-DC pipeline: replacing the final DC by the identity gives it exactly
    ref = load("ldpm:steps=2:final_dc=none", checkpoint=ck).reconstruct(single)
    monkeypatch.setattr(sampler_module, "final_dc", lambda img, meas, settings: img.to(torch.complex64))
    assert torch.equal(load("ldpm:steps=2", checkpoint=ck).reconstruct(single), ref)


def test_single_coil_conversion_matches_paper_protocol():
    from mrrecon.data.sample import Batch
    from mrrecon.methods.ldpm.recipes import to_single_coil

    x = torch.stack([_phantom(16, 1), _phantom(16, 2)])
    mask = make_mask("random1d", (16, 16), 4.0, seed=0).mask.view(1, 1, 1, -1).expand(2, 1, 1, 16)
    batch = Batch(kspace=torch.zeros(2, 3, 16, 16, dtype=torch.complex64), mask=mask, target=x)
    sc = to_single_coil(batch)
    assert sc.kspace.shape == (2, 1, 16, 16)
    from mrrecon.physics.fft import ifft2c

    assert torch.allclose(ifft2c(sc.kspace).abs().amax(dim=(-3, -2, -1)), torch.ones(2), atol=1e-5)
    meas = Measurement.from_kspace(sc.kspace, sc.mask)
    assert float(meas.residual(sc.target).max()) < 1e-8


def test_procedural_images_seeded():
    a, b, c = procedural_image(32, 1), procedural_image(32, 1), procedural_image(32, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) == 0.0 and abs(float(a.max()) - 1.0) < 1e-6


@pytest.mark.slow
def test_shipped_weights_dss_and_mrvae_help_on_held_out_slice():
    """The shipped small weights: DSS beats plain sampling and the MR-VAE beats the non-MRI VAE (Table II / Fig. 3
    directions). (At this scale ldpm does not beat zero-filled: the small VAE is the ceiling, see docs/ldpm.md.)"""
    from mrrecon.core.pretrained import resolve_pretrained
    from mrrecon.data.datasets import SliceDataset
    from mrrecon.methods import load
    from mrrecon.methods.ldpm.pipeline import SUBFOLDERS, load_vae
    from mrrecon.metrics import psnr
    from mrrecon.train.config import load_config
    from mrrecon.train.data import prepare_simulated

    data = load_config("configs/ldpm-small.yaml", stage="sketcher").data
    val = SliceDataset(prepare_simulated(data).val, mask_kinds=("random1d",), accelerations=(8.0,), seed=1234,
                       fixed_mask=True)
    s = val[0]
    ref = s.target.abs()
    dss = psnr(ref, load("ldpm:steps=4").reconstruct(s))
    plain = psnr(ref, load("ldpm-no-dss:steps=4").reconstruct(s))
    assert dss > plain + 3.0
    root = resolve_pretrained("ldpm-small")
    x = (ref / ref.max()).unsqueeze(0)
    with torch.no_grad():
        mr = psnr(x[0], load_vae(root / SUBFOLDERS["vae"]).reconstruct(x)[0])
        non = psnr(x[0], load_vae(root / SUBFOLDERS["vae_nonmri"]).reconstruct(x)[0])
    assert mr > non + 3.0


# -- training: the LDPM recipes of the one trainer (every recipe under 2 processes: tests/test_train.py) -----------
def _tiny_ldpm_stages(tmp_path, out, *overrides):
    from mrrecon.train.config import load_stages

    gan = {"disc_start": 2, "disc_channels": 4, "disc_layers": 2, "adv_weight": 0.05}
    base = {
        "name": "tiny-ldpm",
        "data": {"cache_dir": str(tmp_path / "cache"), "crop": [32, 32], "accelerations": [4],
                 "simulation": {"subjects": 2, "val_subjects": 1, "size": 48, "coils": 3, "contrasts": ["T2"],
                                "slices": 2, "val_slices": 1}},
        "optim": {"lr": 1e-3, "scheduler": "constant", "betas": [0.5, 0.9]},
        "train": {"max_steps": 6, "batch_size": 2, "checkpoint_every": 3, "val_every": -1, "progress": False,
                  "tensorboard": False, "ema_decay": 0.0, "grad_clip": 0.0, "out_dir": str(tmp_path / out)},
        "stages": [
            {"name": "vae_nonmri", "recipe": {"name": "ldpm-vae", "params": {"images": "procedural",
                                                                             "measure_scaling": True, **gan}},
             "model": {"type": "ldpm-vae", "params": TINY_VAE}},
            {"name": "vae", "recipe": {"name": "ldpm-vae", "params": {"init": "vae_nonmri",
                                                                      "single_coil_fraction": 0.5, **gan}}},
        ],
    }
    return load_stages(None, list(overrides), base=base)


def test_vae_recipe_gan_resume_and_measured_scaling(tmp_path):
    """The eq. 5 + GAN recipe: the discriminator (second player) starts after disc_start, is checkpointed and
    resumed with its optimiser (an interrupted MR-VAE stage repeats the loss curve), the non-MRI VAE's latent
    scaling factor is measured into its exported config, and the MR-VAE is fine-tuned from it."""
    import csv
    import json

    from mrrecon.train.stages import run_stages

    full = run_stages(_tiny_ldpm_stages(tmp_path, "full"), echo=lambda *a: None)
    part = run_stages(_tiny_ldpm_stages(tmp_path, "part"), stop_after=("vae", 4), echo=lambda *a: None)
    assert part[-1].result.stopped_early
    run_stages(_tiny_ldpm_stages(tmp_path, "part"), resume=True, echo=lambda *a: None)
    rows = {k: list(csv.DictReader(open(tmp_path / k / "vae" / "train_log.csv"))) for k in ("full", "part")}
    for col in ("loss", "g_adv", "d_loss"):
        a = [float(r[col] or "nan") for r in rows["full"]]
        b = [float(r[col] or "nan") for r in rows["part"]]
        assert a == pytest.approx(b, abs=1e-6, rel=0, nan_ok=True), col
    assert [r["d_loss"] == "" for r in rows["full"]] == [True, True, False, False, False, False]  # disc_start 2
    nonmri = json.loads((tmp_path / "full" / "vae_nonmri" / "final" / "config.json").read_text())
    measured = nonmri["metadata"]["measured"]["scaling_factor"]
    assert measured != 1.0 and nonmri["config"]["scaling_factor"] == pytest.approx(measured, rel=1e-4)
    mr = json.loads((tmp_path / "full" / "vae" / "final" / "config.json").read_text())
    assert mr["config"]["scaling_factor"] == nonmri["config"]["scaling_factor"]  # kept from the initialisation
    assert "fine-tuned" in mr["metadata"]["measured"]["init"]
    assert math.isfinite(full[-1].result.last_validation["psnr_autoencoder"])
    # the cards state the latent statistics of the training images and the factor
    for stage, meta in (("vae_nonmri", nonmri), ("vae", mr)):
        card = (tmp_path / "full" / stage / "final" / "README.md").read_text()
        m = meta["metadata"]["measured"]
        assert f"latent_std = {m['latent_std']}" in card and f"scaling_factor = {m['scaling_factor']}" in card
    assert nonmri["metadata"]["measured"]["scaled_latent_std"] == pytest.approx(1.0, abs=2e-3)


def test_vae_latent_statistics_and_measured_scaling_on_the_card():
    """``export_metadata``: the latent std of the training images always (the card states it); with
    ``measure_scaling`` the factor becomes 1 / std (scaled latents of std 1), without it the factor is kept."""
    from mrrecon.methods.ldpm.recipes import VAERecipe
    from mrrecon.train.config import load_config
    from mrrecon.train.recipe import RecipeEnv
    from mrrecon.train.trainer import model_card

    for measure in (True, False):
        cfg = load_config(None, ["recipe.name=ldpm-vae", "recipe.params.images=procedural",
                                 "recipe.params.adv_weight=0", f"recipe.params.measure_scaling={str(measure).lower()}",
                                 "recipe.params.measure_batches=2", "data.crop=[16, 16]", "model.type=ldpm-vae",
                                 "train.batch_size=2"],
                          base={"model": {"params": {**TINY_VAE, "scaling_factor": 0.5}}})
        recipe = VAERecipe(cfg)
        recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0, batch_size=2))
        torch.manual_seed(0)
        model = recipe.build_model().eval()
        meas = recipe.export_metadata(model)
        std = meas["latent_std"]
        assert std > 0 and "4 training procedural images" in meas["latent_statistics_of"]
        if measure:
            assert model.config.scaling_factor == pytest.approx(1 / std, rel=1e-4)
            assert meas["scaled_latent_std"] == pytest.approx(1.0, abs=1e-3)
            z = model.encode(recipe._images(None, "measure", 0))
            assert model.vae.config.scaling_factor == model.config.scaling_factor and z.std() > 0.5
        else:
            assert model.config.scaling_factor == 0.5 and meas["scaled_latent_std"] == pytest.approx(0.5 * std,
                                                                                                     abs=1e-3)
        meta = {"which": "final", "weights": "raw", "step": 0, "samples_seen": 0, "wall_time_s": 0.0,
                "world_size": 1, "measured": meas, "recipe": recipe.describe()}
        card = model_card(cfg, meta, model.num_parameters())
        assert f"latent_std = {std}" in card and f"scaling_factor = {meas['scaling_factor']}" in card


def test_generator_step_leaves_the_discriminator_alone():
    """During the generator's step the discriminator's parameters get no gradient (its own step trains it)."""
    from mrrecon.methods.ldpm.recipes import VAERecipe
    from mrrecon.train.config import load_config
    from mrrecon.train.recipe import BatchInfo, RecipeEnv

    cfg = load_config(None, ["recipe.name=ldpm-vae", "recipe.params.images=procedural", "recipe.params.disc_start=0",
                             "recipe.params.disc_channels=4", "recipe.params.disc_layers=2", "data.crop=[16, 16]",
                             "model.type=ldpm-vae"], base={"model": {"params": TINY_VAE}})
    recipe = VAERecipe(cfg)
    recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0, batch_size=2))
    model, player = recipe.build_model(), recipe.player()
    player.module.requires_grad_(False)  # what the trainer does for the generator's step
    x = recipe.transform(None, BatchInfo(step=0, micro=0, epoch=0, rank=0, world=1, base_seed=0))
    out = recipe.loss(model, x, None)
    out["loss"].backward()
    assert "_player" in out and float(out["g_adv"]) != 0.0
    assert all(p.grad is None for p in player.module.parameters())
    assert any(p.grad is not None for p in model.parameters())
    d = player.loss(player.module.requires_grad_(True), out["_player"])["loss"]
    d.backward()
    assert all(p.grad is not None for p in player.module.parameters())


def test_a_sketcher_grown_by_warm_start_starts_as_the_one_it_grew_from(tmp_path):
    """model.init_from from a shallower SwinIR: the copied RSTBs keep their weights and the new ones start as the
    identity (zero output convolution), so the grown R equals the base R before any step; then it can train."""
    from mrrecon.train.trainer import _warm_start

    torch.manual_seed(0)
    base = SketcherModel({**TINY_SWIN, "depths": [2], "heads": [2]})
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a "trained" base: its output is not the identity
    base.save_pretrained(tmp_path / "base")
    grown = SketcherModel({**TINY_SWIN, "depths": [2, 2], "heads": [2, 2]})
    _warm_start(grown, str(tmp_path / "base"))
    x = torch.rand(2, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(base.repair(x), x, atol=1e-3)
        torch.testing.assert_close(grown.repair(x), base.repair(x))
    assert grown.swinir.layers[1].conv.weight.abs().sum() == 0
    assert grown.swinir.layers[0].conv.weight.abs().sum() > 0  # copied, not zeroed
    grown.repair(x).square().mean().backward()
    assert grown.swinir.layers[1].conv.weight.grad.abs().sum() > 0  # the new block learns from the first step
