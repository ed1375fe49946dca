"""Learned baselines: U-Net and E2E-VarNet modules, save/from_pretrained, shipped weights beat zero-filled."""

from __future__ import annotations

import json

import pytest
import torch

import mrrecon.methods as methods
from mrrecon.core.pretrained import from_pretrained, model_class, save_pretrained
from mrrecon.core.weights import weights_dir
from mrrecon.data.datasets import make_slice_sample
from mrrecon.data.sample import SampleMeta, collate_samples
from mrrecon.data.simulate import simulate_subject
from mrrecon.errors import ConfigError, DataError
from mrrecon.methods import unet as unet_module  # noqa: F401  (registers "unet")
from mrrecon.methods import varnet as varnet_module  # noqa: F401  (registers "varnet")
from mrrecon.methods.unet import UnetModel, zero_filled_magnitude
from mrrecon.methods.varnet import VarNetCascade, VarNetModel
from mrrecon.metrics.image import compute_metrics, ssim
from mrrecon.nn.losses import ssim_loss
from mrrecon.nn.unet import NormUnet, Unet
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import acs_mask
from mrrecon.physics.masks import make_mask
from mrrecon.physics.operators import SenseOperator

TINY_VARNET = {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2}


def _batch(coils: int = 4, size: int = 32, acceleration: float = 4.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, coils, size, size, dtype=torch.complex64, generator=g)
    k_full = fft2c(images)
    samples = []
    for b in range(2):
        mask = make_mask("random1d", (size, size), acceleration, seed=seed + b)
        samples.append(make_slice_sample(k_full[b], mask, meta=SampleMeta(file=f"synthetic{b}")))
    return collate_samples(samples)



@pytest.fixture(autouse=True)
def _one_thread(_seed_and_threads):
    """One intra-op thread: on a shared 2-core machine two threads can be 100x slower for these tiny models."""
    torch.set_num_threads(1)

# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 32), (33, 45), (20, 17)])
def test_unet_any_size_and_normunet_complex(shape):
    net = Unet(1, 2, chans=4, num_pool_layers=3)
    assert net(torch.randn(2, 1, *shape)).shape == (2, 2, *shape)
    nu = NormUnet(4, 2)
    x = torch.randn(3, *shape, dtype=torch.complex64)
    y = nu(x)
    assert y.shape == x.shape and y.dtype == torch.complex64


def test_unet_model_is_scale_equivariant():
    torch.manual_seed(0)
    model = UnetModel({"chans": 4, "num_pool_layers": 2}).eval()
    x = torch.rand(2, 24, 24)
    with torch.no_grad():
        assert torch.allclose(model(7.5 * x), 7.5 * model(x), rtol=1e-4, atol=1e-5)


def test_ssim_loss_matches_metric():
    torch.manual_seed(0)
    t = torch.rand(1, 40, 40, dtype=torch.float64)
    p = t + 0.1 * torch.randn(1, 40, 40, dtype=torch.float64)
    loss = ssim_loss(p, t)
    assert float(1 - loss) == pytest.approx(ssim(t, p, data_range=float(t.max())), abs=1e-10)
    p.requires_grad_(True)
    ssim_loss(p, t).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# VarNet pieces
# --------------------------------------------------------------------------------------------------
def test_acs_mask_finds_the_fully_sampled_centre():
    m = torch.zeros(1, 1, 1, 32, dtype=torch.bool)
    m[..., 13:20] = True  # centre column 16: 3 on the left (13-15), 4 on the right (16-19)
    m[..., 2] = True
    acs = acs_mask(m, (8, 32), rule="symmetric")
    assert acs.shape == (1, 1, 8, 32)
    cols = acs[0, 0, 0].nonzero().flatten().tolist()
    assert cols == [13, 14, 15, 16, 17, 18]  # 2 * min(3, 4), symmetric about 16
    assert bool(acs[0, 0, :, 14].all())  # 1-D mask: every row
    m2 = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    m2[..., 6:10, 5:11] = True  # 4 x 6 box around (8, 8)
    acs2 = acs_mask(m2, (16, 16), rule="symmetric")[0, 0]
    assert acs2.sum() == 4 * 6 and bool(acs2[6:10, 5:11].all())


def test_dc_step_keeps_measured_samples_with_large_weight():
    torch.manual_seed(0)
    cascade = VarNetCascade(chans=4, pools=2, dc_weight_init=1.0)
    k = torch.randn(2, 3, 16, 16, dtype=torch.complex64)
    y = torch.randn(2, 3, 16, 16, dtype=torch.complex64)
    mask = torch.zeros(2, 1, 1, 16, dtype=torch.bool)
    mask[..., ::3] = True
    out = cascade.data_consistency(k, y, mask)
    m = mask.expand_as(k)
    assert torch.allclose(out[m], y[m])  # measured: replaced by y
    assert torch.equal(out[~m], k[~m])  # not measured: untouched
    with torch.no_grad():
        cascade.dc_weight.fill_(0.25)
    out = cascade.data_consistency(k, y, mask)
    assert torch.allclose(out[m], (0.75 * k + 0.25 * y)[m], atol=1e-6)


def test_sensitivity_maps_are_normalised_and_varnet_runs_single_and_multicoil():
    torch.manual_seed(0)
    model = VarNetModel(TINY_VARNET).eval()
    for coils in (4, 1):
        batch = _batch(coils=coils)
        with torch.no_grad():
            image, maps = model(batch.kspace, batch.mask, return_maps=True)
        assert image.shape == (2, 32, 32) and torch.isfinite(image).all()
        assert torch.allclose(rss(maps, dim=1), torch.ones(2, 32, 32), atol=1e-4)


def test_residual_varnet_starts_at_the_zero_filled_image_with_acs_maps():
    model = VarNetModel({**TINY_VARNET, "residual": True}).eval()
    batch = _batch()
    with torch.no_grad():
        image, maps = model(batch.kspace, batch.mask, return_maps=True)
        assert torch.allclose(image, zero_filled_magnitude(batch.kspace), atol=1e-5)
        acs_images = ifft2c(batch.kspace * acs_mask(batch.mask, (32, 32), rule="symmetric"))
        assert torch.allclose(maps, acs_images / rss(acs_images, dim=1).unsqueeze(1), atol=1e-5)
    with pytest.raises(ConfigError, match="unknown key"):
        VarNetModel({**TINY_VARNET, "refinement": "other"})


def test_final_hard_dc_keeps_every_measured_sample_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    batch = _batch()
    soft = VarNetModel(TINY_VARNET).eval()
    hard = VarNetModel({**TINY_VARNET, "final_dc": "hard"}).eval()
    hard.load_state_dict(soft.state_dict())
    m = batch.mask.to(torch.bool).expand_as(batch.kspace)
    with torch.no_grad():
        k_soft, _ = soft.final_kspace(batch.kspace, batch.mask)
        k_hard, _ = hard.final_kspace(batch.kspace, batch.mask)
        image = hard(batch.kspace, batch.mask)
    assert not torch.allclose(k_soft[m], batch.kspace[m], atol=1e-3)  # the paper's output moves measured samples
    assert torch.equal(k_hard[m], batch.kspace[m]) and torch.equal(k_hard[~m], k_soft[~m])
    assert torch.allclose(image, rss(ifft2c(k_hard), dim=1))
    with pytest.raises(ConfigError, match="final_dc"):
        VarNetModel({**TINY_VARNET, "final_dc": "soft"})
    save_pretrained(soft, tmp_path / "soft")  # the reconstruction-time option switches it on for any checkpoint
    assert methods.load("varnet:final_dc=hard", checkpoint=str(tmp_path / "soft")).model.config.final_dc == "hard"
    assert methods.load("varnet", checkpoint=str(tmp_path / "soft")).model.config.final_dc == "none"
    with pytest.raises(ConfigError, match="final_dc"):
        methods.load("varnet:final_dc=soft", checkpoint=str(tmp_path / "soft"))


def test_final_prox_dc_solves_the_sense_proximal_problem_around_the_cascades_output():
    """final_dc=prox: x = argmin gamma/2 ||M F E x - y||^2 + 1/2 ||x - z||^2 with z = R(F^-1 k^T) and the model's own
    maps: the normal equations hold, the measured samples move toward the data, and gamma sets how far."""
    torch.manual_seed(0)
    batch = _batch()
    plain = VarNetModel(TINY_VARNET).eval()
    with torch.no_grad():
        k_plain, maps = plain.final_kspace(batch.kspace, batch.mask)
        op = SenseOperator(maps, batch.mask)
        z = op.combine(ifft2c(k_plain))
        misfit = {}
        for gamma in (1.0, 100.0):
            prox = VarNetModel({**TINY_VARNET, "final_dc": "prox", "final_dc_gamma": gamma,
                                "final_dc_iters": 200}).eval()
            prox.load_state_dict(plain.state_dict())
            k, _ = prox.final_kspace(batch.kspace, batch.mask)
            x = op.combine(ifft2c(k))
            residual = gamma * op.A_adjoint(op.A(x) - batch.kspace) + (x - z)
            assert residual.abs().norm() < 1e-3 * (x - z).abs().norm()
            assert torch.allclose(prox(batch.kspace, batch.mask), rss(ifft2c(k), dim=1), atol=1e-5)
            misfit[gamma] = (op.A(x) - batch.kspace).abs().norm()
    assert misfit[100.0] < misfit[1.0] < (op.A(z) - batch.kspace).abs().norm()
    assert methods.load("varnet:final_dc=prox:gamma=3", checkpoint=None).model.config.final_dc_gamma == 3.0
    with pytest.raises(ConfigError, match="gamma"):
        methods.load("varnet:final_dc=prox:gamma=0")


def test_unet_hard_dc_puts_back_the_measured_samples_of_a_single_coil_slice(tmp_path):
    """unet dc=hard: the output's k-space (magnitude x the low-resolution phase) holds the measured samples exactly,
    the unmeasured ones are the network's; dc=none is the network's magnitude; the option is checked."""
    from mrrecon.physics.lowres import lowres_phase, magnitude_dc

    torch.manual_seed(0)
    batch = _batch(coils=1)
    plain = UnetModel({"chans": 4, "num_pool_layers": 2}).eval()
    hard = UnetModel({"chans": 4, "num_pool_layers": 2, "dc": "hard"}).eval()
    hard.load_state_dict(plain.state_dict())
    m = batch.mask.to(torch.bool).expand_as(batch.kspace)
    with torch.no_grad():
        magnitude = plain.predict(batch)
        consistent = magnitude_dc(magnitude, batch.kspace, batch.mask)
        k = fft2c(consistent.unsqueeze(1))
        estimate = fft2c(torch.polar(magnitude, lowres_phase(batch.kspace, None, 24)).unsqueeze(1))
        assert torch.allclose(k[m], batch.kspace[m], atol=1e-4)
        assert torch.allclose(k[~m], estimate[~m], atol=1e-4)
        assert torch.allclose(hard.predict(batch), consistent.abs())
        assert not torch.allclose(hard.predict(batch), magnitude, atol=1e-2)
    with pytest.raises(ConfigError, match="unet dc"):
        UnetModel({"chans": 4, "num_pool_layers": 2, "dc": "soft"}).predict(batch)
    save_pretrained(plain, tmp_path / "plain")
    assert methods.load("unet:dc=hard", checkpoint=str(tmp_path / "plain")).model.config.dc == "hard"
    assert methods.load("unet", checkpoint=str(tmp_path / "plain")).model.config.dc == "none"


def test_magnitude_dc_of_fully_sampled_multicoil_data_is_the_coil_combined_image():
    """With every sample measured the estimate is replaced entirely: the result is the Walsh-combined image of the
    data whatever the magnitude estimate was."""
    from mrrecon.physics.coils import coil_combine
    from mrrecon.physics.lowres import estimate_coil_maps, magnitude_dc

    batch = _batch(coils=4, acceleration=1.0)
    maps = estimate_coil_maps(batch.kspace)
    expected = coil_combine(ifft2c(batch.kspace), maps)
    for estimate in (torch.zeros(2, 32, 32), torch.rand(2, 32, 32)):
        assert torch.allclose(magnitude_dc(estimate, batch.kspace, batch.mask), expected, atol=1e-4)


def test_refinement_uses_sense_expand_and_reduce():
    """G(k) = F E(CNN(R(F^-1 k))): with the CNN replaced by the identity, G is the SENSE projection F S S^H F^-1."""
    cascade = VarNetCascade(chans=4, pools=2)
    cascade.regulariser = torch.nn.Identity()
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(1, 3, 8, 8, dtype=torch.complex64, generator=g)
    maps = maps / rss(maps, dim=1).unsqueeze(1)
    k = torch.randn(1, 3, 8, 8, dtype=torch.complex64, generator=g)
    op = SenseOperator(maps, torch.ones(1, 1, 1, 8, dtype=torch.bool))
    expected = fft2c(maps * (maps.conj() * ifft2c(k)).sum(1, keepdim=True))
    assert torch.allclose(cascade.refinement(k, op), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, params", [("unet", {"chans": 4, "num_pool_layers": 2}), ("varnet", TINY_VARNET)])
def test_pretrained_round_trip_gives_identical_outputs(tmp_path, kind, params):
    torch.manual_seed(0)
    model = model_class(kind).from_config(params).eval()
    save_pretrained(model, tmp_path / kind, metadata={"note": "test"})
    info = json.loads((tmp_path / kind / "config.json").read_text())
    assert info["model_type"] == kind and info["config"]["chans"] == 4 and info["metadata"] == {"note": "test"}
    assert not (tmp_path / kind / "model.safetensors").read_bytes().startswith(b"\x80")  # not a pickle
    loaded = from_pretrained(tmp_path / kind)
    assert type(loaded) is type(model) and not loaded.training
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(model.predict(batch), loaded.predict(batch))
    with pytest.raises(ConfigError, match="expected"):
        from_pretrained(tmp_path / kind, expected_type="varnet" if kind == "unet" else "unet")


def test_from_pretrained_errors_name_the_file(tmp_path, monkeypatch):
    model = UnetModel({"chans": 4, "num_pool_layers": 2})
    save_pretrained(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["config"]["chans"] = 8  # weights no longer fit
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="do not match"):
        from_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match="no checkpoint folder"):
        from_pretrained(tmp_path / "missing")
    # a name resolves under the weights folder
    monkeypatch.setenv("MRRECON_WEIGHTS", str(tmp_path))
    save_pretrained(model, tmp_path / "tiny-unet")
    assert isinstance(from_pretrained("tiny-unet"), UnetModel)


# --------------------------------------------------------------------------------------------------
# training works for both models
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, params, loss", [
    ("unet", {"chans": 8, "num_pool_layers": 2}, "l1"),
    ("varnet", {**TINY_VARNET, "residual": True}, "ssim_l1"),
])
def test_tiny_models_train_and_loss_decreases(tmp_path, kind, params, loss):
    from mrrecon.train.config import load_config
    from mrrecon.train.trainer import train

    overrides = [f"model.type={kind}", f"train.loss={loss}", f"data.cache_dir={tmp_path / 'cache'}",
                 f"train.out_dir={tmp_path / kind}"]
    base = {
        "name": f"tiny-{kind}", "model": {"params": params},
        "data": {"simulation": {"subjects": 2, "val_subjects": 1, "size": 48, "coils": 4, "contrasts": ["T2"],
                                "slices": 2, "val_slices": 1},
                 "crop": None, "accelerations": [4], "flip": False},
        "optim": {"lr": 3e-3, "scheduler": "constant"},
        "train": {"max_steps": 36, "batch_size": 2, "checkpoint_every": 1000, "progress": False, "ema_decay": 0.0,
                  "tensorboard": False, "val_every": -1},
    }
    result = train(load_config(None, overrides, base=base))
    first, last = sum(result.losses[:6]) / 6, sum(result.losses[-6:]) / 6
    assert last < 0.8 * first, result.losses


# --------------------------------------------------------------------------------------------------
# the shipped weights
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def heldout_slice():
    """One slice of a simulated subject none of the shipped models saw (train seed 0, validation seed 1)."""
    data = simulate_subject(987654, size=256, coils=8, contrasts=["T2"], slices=1)["T2"]
    mask = make_mask("random1d", (256, 256), 4, seed=5)
    return make_slice_sample(data.kspace[0], mask, meta=SampleMeta(file="heldout", slice=0))


@pytest.mark.parametrize("name", ["unet", "varnet"])
def test_shipped_weights_load_and_beat_zero_filled(name, heldout_slice):
    if not (weights_dir() / f"{name}-small" / "model.safetensors").is_file():
        pytest.skip(f"weights/{name}-small not present")
    info = methods.get_info(name)
    assert info.needs_weights and info.default_weights == f"{name}-small"
    method = methods.load(name)
    zf = methods.load("zero-filled")
    target = heldout_slice.target
    ours = compute_metrics(target, method.reconstruct(heldout_slice))
    base = compute_metrics(target, zf.reconstruct(heldout_slice))
    assert ours["psnr"] > base["psnr"] + 1.0, (ours, base)
    assert ours["ssim"] > base["ssim"], (ours, base)
    # raw-unit input (not normalised) gives the same image up to the scale
    raw = heldout_slice.to("cpu")
    raw.kspace = heldout_slice.kspace * 1e6
    assert torch.allclose(method.reconstruct(raw) / 1e6, method.reconstruct(heldout_slice), rtol=1e-3, atol=1e-5)


def test_methods_listing_shows_learned_methods():
    names = methods.available()
    assert "unet" in names and "varnet" in names
    with pytest.raises(ConfigError):
        methods.load("unet:chans=3")  # learned methods take their architecture from the checkpoint
