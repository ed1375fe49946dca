"""SSDM-MRI: network layer budget, v/x0/eps algebra, Alg. 1 / Alg. 2 objectives, sampling, DC, multi-coil, registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mrrecon.core.pretrained import from_pretrained, save_pretrained
from mrrecon.data.sample import Batch, Sample, SampleMeta
from mrrecon.diffusion.schedules import eps_from_v, v_target, x0_from_v
from mrrecon.errors import ConfigError, ShapeError
from mrrecon.methods.ssdm.distill import distillation_loss, distillation_targets
from mrrecon.methods.ssdm.model import SSDMModel
from mrrecon.methods.ssdm.network import SSDMUNet, from_channels, to_channels
from mrrecon.methods.ssdm.sampler import reconstruct_kspace, sample_x0
from mrrecon.nn.attention import SelfAttention2d
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.masks import make_mask

H = W = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest (and the conftest's two spin-wait on a busy machine)."""
    torch.set_num_threads(1)
    yield


def tiny(**kw) -> SSDMModel:
    torch.manual_seed(0)
    return SSDMModel({"width": 2, "emb_dim": 8, **kw}).eval()


def phantom(b: int = 2, h: int = H, w: int = W, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    disc = ((yy ** 2 + xx ** 2) < 0.6).float()
    return disc * (0.5 + 0.5 * torch.rand(b, h, w, generator=g))


def batch_of(x0: torch.Tensor, accel: float = 4.0, kind: str = "gaussian1d") -> Batch:
    m = make_mask(kind, tuple(x0.shape[-2:]), accel, seed=1).mask.reshape(1, 1, *make_mask(
        kind, tuple(x0.shape[-2:]), accel, seed=1).mask.shape[-2:])
    masks = m.expand(x0.shape[0], 1, *m.shape[-2:]).clone()
    k = fft2c(x0.to(torch.complex64).unsqueeze(1)) * masks
    return Batch(kspace=k, mask=masks, target=x0, meta=[SampleMeta() for _ in range(x0.shape[0])])


# -- network --------------------------------------------------------------------------------------------------
def test_network_reproduces_paper_layer_counts():
    net = SSDMUNet(3, 1, width=2, emb_dim=8)
    mods = list(net.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in mods) == 52
    assert sum(isinstance(m, nn.MaxPool2d) for m in mods) == 3
    assert sum(isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (2, 2) for m in mods) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in mods) == 51
    assert sum(isinstance(m, nn.ReLU) for m in mods) == 77
    assert sum(isinstance(m, SelfAttention2d) for m in mods) == 6
    # attention only at the lowest resolution: its input is 1/8 of the image
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-1]))
             for m in mods if isinstance(m, SelfAttention2d)]
    out = net(torch.randn(2, 3, 32, 24), torch.rand(2))
    assert out.shape == (2, 1, 32, 24) and set(seen) == {3}
    for h in hooks:
        h.remove()
    with pytest.raises(ShapeError):
        net(torch.randn(1, 3, 20, 20), torch.rand(1))


def test_noise_level_changes_output():
    net = SSDMUNet(3, 1, width=2, emb_dim=8).eval()
    x = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(net(x, torch.tensor([0.1])), net(x, torch.tensor([0.9])))


# -- parameterisations ----------------------------------------------------------------------------------------
def test_v_x0_eps_conversions_invert_each_other():
    model = tiny()
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(5, 1, 8, 8, generator=g), torch.randn(5, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 64, 127, 128])
    alpha, sigma = model.schedule.alpha_sigma(t)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones(5), atol=1e-6)
    assert torch.allclose(alpha[2] ** 2, torch.tensor(math.cos(math.pi / 4) ** 2), atol=1e-6)  # cos^2(pi/2 t/T)
    x_t = model.schedule.q_sample(x0, t, eps)
    v = v_target(x0, eps, alpha, sigma)
    assert torch.allclose(x0_from_v(x_t, v, alpha, sigma), x0, atol=1e-5)
    assert torch.allclose(eps_from_v(x_t, v, alpha, sigma), eps, atol=1e-5)


def test_channels_round_trip_complex_and_magnitude():
    z = torch.randn(2, 8, 8, dtype=torch.complex64)
    assert torch.equal(from_channels(to_channels(z, True)), z)
    r = torch.randn(2, 8, 8)
    assert torch.equal(from_channels(to_channels(r, False)).real, r)


class OracleTeacher(SSDMModel):
    """Predicts the v that corresponds to a fixed x0 at every step."""

    model_type = ""  # a test double, not a registered model type
    x0_star: torch.Tensor

    def forward(self, x_t, cond, t):
        alpha, sigma = self.schedule.alpha_sigma(t)
        a, s = alpha.reshape(-1, 1, 1, 1), sigma.reshape(-1, 1, 1, 1)
        return (a * x_t - self.x0_star) / s  # x0 = alpha x_t - sigma v


def test_distillation_target_reproduces_an_exact_teacher():
    teacher = OracleTeacher({"width": 2, "emb_dim": 8})
    teacher.x0_star = torch.randn(3, 1, 8, 8)
    x_t = torch.randn(3, 1, 8, 8)
    t = torch.tensor([128, 64, 8])  # multiples of 2 x (128 / 32)
    v = distillation_targets(teacher, x_t, torch.zeros(3, 2, 8, 8), t, teacher_steps=32)
    alpha, sigma = (a.reshape(-1, 1, 1, 1) for a in teacher.schedule.alpha_sigma(t))
    assert torch.allclose(alpha * x_t - sigma * v, teacher.x0_star, atol=1e-4)  # the student's x0 = teacher's


# -- objectives -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("complex_data", [False, True])
def test_training_loss_is_finite_and_differentiable(complex_data):
    model = tiny(complex_data=complex_data).train()
    out = model.training_loss(batch_of(phantom()), torch.nn.functional.mse_loss)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    out["loss"].backward()
    assert all(p.grad is not None for p in model.net.conv_in.parameters())


def test_training_pair_follows_forward_model():
    model = tiny()
    b = batch_of(phantom(), accel=4)
    x0, cond, scale = model.simulate_pair(b)
    zf = from_channels(cond)
    assert torch.allclose(zf.abs().flatten(1).amax(1), torch.ones(2), atol=1e-6)  # normalised by max |A^H y|
    k = fft2c(zf.unsqueeze(1))
    assert torch.all(k.abs()[~b.mask.expand_as(k)] < 1e-5)  # A^H y has no energy outside the mask (eq. 1)
    assert torch.allclose(fft2c(from_channels(x0).unsqueeze(1)) * b.mask, k, atol=1e-5)


def test_one_distillation_step_reduces_student_teacher_gap():
    teacher = tiny()
    student = SSDMModel({**teacher.config_dict(), "sampling_steps": 64})
    student.load_state_dict(teacher.state_dict())
    student.train()
    batch = batch_of(phantom(4), accel=8)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)

    def gap():
        return distillation_loss(student, teacher, batch, 128, generator=torch.Generator().manual_seed(5))["loss"]

    before = gap()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = gap()
    assert after < before


def test_distill_recipe_starts_the_student_as_its_teacher_with_half_the_steps(tmp_path):
    """Alg. 2 l. 2 as the ``ssdm-distill`` recipe of the one trainer: a frozen teacher (stage name or folder), the
    student a copy of it that samples with half its steps, the step's loss ``distillation_loss``."""
    from mrrecon.train.config import load_config
    from mrrecon.train.recipe import RecipeEnv, recipe_class

    teacher = tiny(sampling_steps=8)
    save_pretrained(teacher, tmp_path / "teacher")
    cfg = load_config(None, ["recipe.name=ssdm-distill", f"recipe.params.teacher={tmp_path / 'teacher'}"])
    recipe = recipe_class("ssdm-distill")(cfg)
    recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))
    student = recipe.build_model()
    assert student.config.sampling_steps == 4 and recipe.teacher_steps == 8
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values(),
                                                  strict=True))
    assert not any(p.requires_grad for p in recipe.teacher.parameters()) and not recipe.teacher.training
    out = recipe.loss(student.train(), batch_of(phantom()), torch.nn.functional.mse_loss)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and student.net.conv_in.weight.grad is not None
    save_pretrained(tiny(sampling_steps=1), tmp_path / "one")
    bad = load_config(None, ["recipe.name=ssdm-distill", f"recipe.params.teacher={tmp_path / 'one'}"])
    with pytest.raises(ConfigError, match="cannot halve"):
        recipe_class("ssdm-distill")(bad).setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))
    with pytest.raises(ConfigError, match="unknown key"):
        recipe_class("ssdm-distill")(load_config(None, ["recipe.name=ssdm-distill", "recipe.params.tacher=x"]))


@pytest.mark.parametrize("mode", ["running", "batch"])
def test_distill_recipe_batch_norm_mode(tmp_path, mode):
    """batch_norm: running normalises the student exactly as it samples (its loss at the start equals the loss of
    the eval-mode copy, and the running statistics stay the teacher's); batch is plain training mode."""
    from mrrecon.train.config import load_config
    from mrrecon.train.recipe import RecipeEnv, recipe_class

    teacher = tiny(sampling_steps=8)
    with torch.no_grad():  # give the running statistics values a mini-batch would not reproduce
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_pretrained(teacher, tmp_path / "teacher")
    cfg = load_config(None, ["recipe.name=ssdm-distill", f"recipe.params.teacher={tmp_path / 'teacher'}",
                             f"recipe.params.batch_norm={mode}"])
    recipe = recipe_class("ssdm-distill")(cfg)
    recipe.setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))
    student, copy = recipe.build_model().train(), recipe.build_model().eval()
    batch = batch_of(phantom(2), accel=8)
    torch.manual_seed(3)
    trained = recipe.loss(student, batch, torch.nn.functional.mse_loss)["loss"]
    torch.manual_seed(3)
    as_sampled = distillation_loss(copy, recipe.teacher, batch, 8, torch.nn.functional.mse_loss)["loss"]
    same_stats = all(torch.equal(a, b) for a, b in zip(student.state_dict().values(),
                                                       teacher.state_dict().values(), strict=True))
    if mode == "running":
        assert torch.allclose(trained, as_sampled, rtol=1e-5) and same_stats
    else:
        assert not torch.allclose(trained, as_sampled, rtol=1e-2) and not same_stats
    bad = load_config(None, ["recipe.name=ssdm-distill", f"recipe.params.teacher={tmp_path / 'teacher'}",
                             "recipe.params.batch_norm=frozen"])
    with pytest.raises(ConfigError, match="batch_norm"):
        recipe_class("ssdm-distill")(bad).setup(RecipeEnv(device=torch.device("cpu"), train_set=None, seed=0))


# -- sampling, DC ---------------------------------------------------------------------------------------------
def test_hard_dc_leaves_measured_kspace_exact_and_soft_dc_blends():
    model = tiny()
    b = batch_of(phantom(), accel=4)
    out = reconstruct_kspace(model, b.kspace, b.mask, steps=2, dc="hard")
    k_out = fft2c(out.unsqueeze(1))
    m = b.mask.expand_as(k_out)
    assert torch.allclose(k_out[m], b.kspace[m], atol=1e-5 * float(b.kspace.abs().max()))
    raw = reconstruct_kspace(model, b.kspace, b.mask, steps=2, dc="none")
    soft = fft2c(reconstruct_kspace(model, b.kspace, b.mask, steps=2, dc="soft").unsqueeze(1))
    k_raw = fft2c(raw.unsqueeze(1))
    assert torch.allclose(soft[m], 0.5 * (k_raw[m] + b.kspace[m]), atol=1e-5)
    assert torch.allclose(soft[~m], k_raw[~m], atol=1e-5)


def test_sampling_is_reproducible_from_a_seed():
    model = tiny()
    b = batch_of(phantom(), accel=8)
    a1 = reconstruct_kspace(model, b.kspace, b.mask, steps=4, seed=7, dc="none")
    a2 = reconstruct_kspace(model, b.kspace, b.mask, steps=4, seed=7, dc="none")
    a3 = reconstruct_kspace(model, b.kspace, b.mask, steps=4, seed=8, dc="none")
    assert torch.equal(a1, a2)
    assert not torch.allclose(a1, a3)
    cond = torch.randn(1, 2, 16, 16)
    n = torch.randn(1, 1, 16, 16)
    assert torch.equal(sample_x0(model, cond, 1, noise=n), sample_x0(model, cond, 1, noise=n))


def test_multicoil_pipeline_with_full_sampling_returns_the_image():
    model = tiny()
    x = phantom(1)[0].to(torch.complex64) * torch.polar(torch.ones(H, W), torch.linspace(0, 1, W).expand(H, W))
    yy = torch.linspace(-1, 1, H)[:, None]
    raw = torch.stack([torch.exp(-((yy - c) ** 2)) * torch.ones(1, W) for c in (-1.0, 0.0, 1.0)]).to(torch.complex64)
    maps = raw / (raw.abs() ** 2).sum(0, keepdim=True).sqrt()
    k = fft2c(maps * x).unsqueeze(0)
    mask = torch.ones(1, 1, 1, W, dtype=torch.bool)
    out = reconstruct_kspace(model, k, mask, steps=1, maps=maps.unsqueeze(0))
    assert torch.allclose(out[0], x, atol=1e-4)  # per-coil DC + recombination restores the measured image


def test_complex_instance_preserves_phase():
    model = tiny(complex_data=True)
    x = phantom(1) * torch.polar(torch.ones(1, H, W), torch.linspace(-2, 2, W).expand(1, H, W))
    k = fft2c(x.unsqueeze(1))
    full = torch.ones(1, 1, 1, W, dtype=torch.bool)
    out = reconstruct_kspace(model, k, full, steps=2)
    assert out.is_complex() and torch.allclose(out, x, atol=1e-5)  # phase included
    b = batch_of(phantom(1), accel=4)
    k = fft2c(b.target.to(torch.complex64).unsqueeze(1) * torch.polar(torch.ones(1, 1, H, W), torch.tensor(1.0)))
    part = reconstruct_kspace(model, k * b.mask, b.mask, steps=2)
    kk = fft2c(part.unsqueeze(1))
    m = b.mask.expand_as(kk)
    assert torch.allclose(kk[m], k[m], atol=1e-5)


# -- the registered method ------------------------------------------------------------------------------------
def test_method_loads_stages_and_reports_uncertainty(tmp_path):
    from mrrecon.methods import load

    teacher = tiny()
    save_pretrained(teacher, tmp_path / "teacher-128")
    student = SSDMModel({**teacher.config_dict(), "sampling_steps": 1})
    student.load_state_dict(teacher.state_dict())
    save_pretrained(student, tmp_path / "student-1")
    assert from_pretrained(tmp_path / "student-1").config.sampling_steps == 1
    x = phantom(1)[0] * 3.0
    mask = make_mask("gaussian1d", (H, W), 4, seed=0).mask.reshape(1, 1, W)
    sample = Sample(kspace=fft2c(x.to(torch.complex64)[None]) * mask, mask=mask, target=x)
    one = load("ssdm", checkpoint=str(tmp_path))
    assert one.steps == 1
    img = one.reconstruct(sample)
    assert img.shape == (H, W) and one.last_nfe == 1
    assert torch.equal(img, load("ssdm", checkpoint=str(tmp_path)).reconstruct(sample))
    eight = load("ssdm:steps=8", checkpoint=str(tmp_path))
    assert eight.steps == 8 and eight.stage.name == "teacher-128"
    eight.reconstruct(sample)
    assert eight.last_nfe == 8
    mean, std = one.reconstruct_with_uncertainty(sample, samples=3)
    assert mean.shape == std.shape == (H, W) and float(std.max()) > 0
    three = load("ssdm:samples=3", checkpoint=str(tmp_path))
    assert torch.allclose(three.reconstruct(sample), mean, atol=1e-6) and three.last_nfe == 3  # mean of 3 draws
    assert not torch.allclose(mean, img, atol=1e-4)
    with pytest.raises(ConfigError, match="samples"):
        load("ssdm:samples=0", checkpoint=str(tmp_path))
    zf = ifft2c(sample.kspace)[0]
    k_out = fft2c(one.reconstruct_complex(sample)[None])
    m = mask.expand_as(k_out)
    assert torch.allclose(k_out[m], fft2c(zf[None])[m], atol=1e-4)
    with pytest.raises(ConfigError):
        load("ssdm:dc=maybe", checkpoint=str(tmp_path)).reconstruct(sample)
    # the activations' layout is a speed choice only: both layouts give the same image
    assert one.model.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    contiguous = load("ssdm:memory_format=contiguous", checkpoint=str(tmp_path))
    assert not contiguous.model.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(contiguous.reconstruct(sample), img, rtol=1e-4, atol=1e-5 * float(img.abs().max()))
    with pytest.raises(ConfigError, match="memory_format"):
        load("ssdm:memory_format=nhwc", checkpoint=str(tmp_path))


@pytest.mark.slow
def test_shipped_one_step_student_within_1db_of_the_teacher(tmp_path):
    """The issue's distillation claim on a held-out simulated subject (seed 7: neither training nor validation)."""
    from mrrecon.data.datasets import make_slice_sample
    from mrrecon.data.fastmri import FastMRIFile
    from mrrecon.data.simulate import simulate_dataset
    from mrrecon.methods import load
    from mrrecon.metrics import psnr

    files = simulate_dataset(tmp_path, subjects=1, slices=1, seed=7, size=256, coils=8, contrasts=("T2",))
    k_full = FastMRIFile(files[0]).kspace(0)
    mask = make_mask("gaussian1d", tuple(k_full.shape[-2:]), 8, seed=0)
    sample = make_slice_sample(k_full, mask, normalise="max")
    rng = float(sample.target.max())
    student = psnr(sample.target, load("ssdm").reconstruct(sample), data_range=rng)
    teacher = psnr(sample.target, load("ssdm:steps=128").reconstruct(sample), data_range=rng)
    assert student > teacher - 1.0


def test_cli_samples_writes_mean_and_std(tmp_path, monkeypatch):
    import h5py
    import numpy as np
    from click.testing import CliRunner

    from mrrecon.cli import main

    teacher = tiny()
    save_pretrained(teacher, tmp_path / "weights" / "ssdm-small" / "teacher-128")
    student = SSDMModel({**teacher.config_dict(), "sampling_steps": 1})
    student.load_state_dict(teacher.state_dict())
    save_pretrained(student, tmp_path / "weights" / "ssdm-small" / "student-1")
    monkeypatch.setenv("MRRECON_WEIGHTS", str(tmp_path / "weights"))
    np.save(tmp_path / "slice.npy", phantom(1, 32, 32)[0].numpy())
    out = tmp_path / "rec.h5"
    result = CliRunner().invoke(main, ["reconstruct", "--method", "ssdm", str(tmp_path / "slice.npy"), "--out",
                                       str(out), "--mask", "gaussian1d", "--accel", "4", "--samples", "3"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f, h5py.File(tmp_path / "rec_std.h5") as g:
        mean, std = f["reconstruction"][()], g["reconstruction"][()]
    assert mean.shape == std.shape == (1, 32, 32) and std.max() > 0 and np.all(std >= 0)


# -- data scale (config.normalise) ------------------------------------------------------------------------------
def test_rms_scale_puts_x0_on_the_noise_scale_and_max_rule_does_not():
    b = batch_of(phantom(4, 32, 32), accel=8.0)
    x0_max, _, _ = tiny().simulate_pair(b)
    x0_rms, cond_rms, scale = tiny(normalise="zero_filled_rms").simulate_pair(b)
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    assert rms(x0_max) < 0.7  # the paper's rule: x0 below the unit-variance noise (0.28 on simulated brains)
    assert 0.7 < rms(x0_rms) < 1.4 and abs(math.log(rms(x0_rms))) < abs(math.log(rms(x0_max)))
    assert abs(rms(cond_rms[:, :1]) - 1.0) < 0.05
    # the scale undoes it: x0 * scale is the target in the batch's units
    assert torch.allclose(x0_rms[:, 0] * scale[:, None, None], b.target, atol=1e-5)


def test_rms_scale_is_undone_before_data_consistency(monkeypatch):
    """With a network that returns its condition, the reconstruction without DC is A^H y in the caller's units
    whatever the rule (the gain applied to the condition is divided out of the output)."""
    import mrrecon.methods.ssdm.sampler as sampler

    monkeypatch.setattr(sampler, "sample_x0", lambda model, cond, steps, generator=None: cond[:, :1])
    b = batch_of(phantom(2, 32, 32), accel=4.0)
    outs = [reconstruct_kspace(tiny(normalise=n), b.kspace, b.mask, dc="none").abs()
            for n in ("zero_filled", "zero_filled_rms")]
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
