"""Noise schedules, the eps / x0 / v algebra, DDIM steps and the shared embedding / attention blocks."""

import math

import pytest
import torch

from mrrecon.diffusion import NoiseSchedule, ddim_step, eps_from_v, eps_from_x0, v_target, x0_from_eps, x0_from_v
from mrrecon.errors import ConfigError
from mrrecon.nn.attention import SelfAttention2d
from mrrecon.nn.embeddings import GaussianFourierFeatures, sinusoidal_embedding


def test_cosine_schedule_matches_ssdm_definition():
    s = NoiseSchedule.cosine(128)
    assert s.num_timesteps == 129
    t = torch.tensor([0, 32, 64, 128])
    alpha, sigma = s.alpha_sigma(t)
    expected = torch.cos(0.5 * math.pi * t.double() / 128) ** 2
    expected[-1] = 0
    assert torch.allclose(alpha.double() ** 2, expected, atol=1e-6)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones(4))
    assert alpha[0] == 1 and sigma[0] == 0 and alpha[-1] == 0 and sigma[-1] == 1


def test_stable_diffusion_table_endpoints():
    s = NoiseSchedule.scaled_linear(1000)
    # 1 - beta_0 with beta_0 = 0.00085; the last value of SD's table is about 0.0047
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 0.00085)
    assert s.alphas_cumprod[-1].item() == pytest.approx(0.0047, abs=2e-4)
    alpha, sigma = s.alpha_sigma(torch.tensor([-1]))
    assert alpha.item() == 1 and sigma.item() == 0


@pytest.mark.parametrize("make", [lambda: NoiseSchedule.cosine(128), lambda: NoiseSchedule.linear(1000)])
def test_parameterisations_invert_each_other(make):
    s = make()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 2, 8, 8, generator=g), torch.randn(5, 2, 8, 8, generator=g)
    t = torch.randint(1, s.num_timesteps - 1, (5,), generator=g)
    alpha, sigma = s.alpha_sigma(t)
    xt = s.q_sample(x0, t, eps)
    v = v_target(x0, eps, alpha, sigma)
    assert torch.allclose(x0_from_v(xt, v, alpha, sigma), x0, atol=1e-5)
    assert torch.allclose(eps_from_v(xt, v, alpha, sigma), eps, atol=1e-5)
    assert torch.allclose(x0_from_eps(xt, eps, alpha, sigma), x0, atol=1e-4)
    assert torch.allclose(eps_from_x0(xt, x0, alpha, sigma), eps, atol=1e-4)


def test_spaced_timesteps():
    c = NoiseSchedule.cosine(128)
    assert c.spaced_timesteps(4).tolist() == [128, 96, 64, 32]
    assert c.spaced_timesteps(1, include_clean=True).tolist() == [128, 0]
    d = NoiseSchedule.scaled_linear(1000)
    assert d.spaced_timesteps(4).tolist() == [999, 749, 499, 249]
    assert d.spaced_timesteps(2, include_clean=True).tolist()[-1] == -1
    with pytest.raises(ConfigError):
        c.spaced_timesteps(0)


def test_ddim_with_true_x0_and_eps_lands_on_the_forward_process():
    s = NoiseSchedule.cosine(128)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t, t_next = torch.full((3,), 96), torch.full((3,), 32)
    a, s_ = s.alpha_sigma(t)
    an, sn = s.alpha_sigma(t_next)
    # deterministic DDIM with the exact x0 and eps gives exactly q_sample at the next level
    assert torch.allclose(ddim_step(x0, eps, an, sn), s.q_sample(x0, t_next, eps), atol=1e-6)
    # eta = 1: marginal variance is preserved (mean over many draws of the noise part)
    z = torch.randn(4000, 1, 1, 1, generator=g)
    out = ddim_step(torch.zeros(4000, 1, 1, 1), torch.zeros(4000, 1, 1, 1), an[:1].expand(4000),
                    sn[:1].expand(4000), eta=1.0, alpha=a[:1].expand(4000), sigma=s_[:1].expand(4000), noise=z)
    c2 = (sn[0] ** 2 / s_[0] ** 2) * (1 - a[0] ** 2 / an[0] ** 2)
    assert out.var().item() == pytest.approx(c2.item(), rel=0.1)
    with pytest.raises(ConfigError):
        ddim_step(x0, eps, an, sn, eta=0.5)


def test_embeddings_and_attention():
    e = sinusoidal_embedding(torch.tensor([0.0, 1.0, 5.0]), 7)
    assert e.shape == (3, 7) and torch.allclose(e[0, :3], torch.ones(3))
    f = GaussianFourierFeatures(16, scale=16.0)
    assert f(torch.rand(4)).shape == (4, 16)
    assert torch.equal(f.weight, GaussianFourierFeatures(16, scale=16.0).weight)  # seeded
    attn = SelfAttention2d(8, heads=2)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(attn(x), x)  # zero-initialised output projection: identity at init
    torch.nn.init.normal_(attn.proj.weight)
    y = attn(x)
    # permutation equivariance over pixels: attention has no positional bias
    perm = torch.randperm(16)
    xp = x.flatten(2)[..., perm].reshape_as(x)
    assert torch.allclose(attn(xp).flatten(2), y.flatten(2)[..., perm], atol=1e-5)
