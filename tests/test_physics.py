"""FFT unitarity, the operator contract (adjointness, A_dagger, prox_l2) and data consistency."""

import math

import numpy as np
import pytest
import torch

from mrrecon.errors import ConfigError, ShapeError
from mrrecon.physics import (
    KSpaceMask,
    LinearOperator,
    MaskedFourier,
    SenseOperator,
    SingleCoilCartesian,
    conjugate_gradient,
    data_fidelity,
    data_fidelity_grad,
    dc_image,
    fft1c,
    fft2c,
    hard_dc,
    ifft1c,
    ifft2c,
    soft_dc,
    weight_from_lambda,
)


def crandn(*shape, dtype=torch.complex64):
    return torch.randn(*shape, dtype=dtype)


def inner(a, b):
    return (a.conj() * b).sum()


def numpy_fft2c(x):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 40, 26), (2, 31, 32), (1, 33, 17), (4, 2, 30, 18)])
def test_fft2c_matches_numpy_shift_definition(shape):
    x = crandn(*shape, dtype=torch.complex128)
    k = fft2c(x)
    np.testing.assert_allclose(k.numpy(), numpy_fft2c(x.numpy()), atol=1e-12)
    np.testing.assert_allclose(ifft2c(k).numpy(), x.numpy(), atol=1e-12)


def test_fft2c_unitary_and_centred():
    x = crandn(2, 64, 48)
    k = fft2c(x)
    assert torch.allclose(k.norm(), x.norm(), rtol=1e-5)
    assert torch.allclose(ifft2c(k), x, atol=1e-5)
    # A constant image has all its energy at the centre sample (H//2, W//2).
    k1 = fft2c(torch.ones(64, 48, dtype=torch.complex64))
    assert torch.argmax(k1.abs()).item() == 32 * 48 + 24
    # Real input promotes to complex64.
    assert fft2c(torch.ones(8, 8)).dtype == torch.complex64


def test_fft1c_is_the_1d_case_of_fft2c():
    x = crandn(3, 20, 16)
    assert torch.allclose(ifft1c(fft1c(x, dim=-2), dim=-2), x, atol=1e-5)
    both = fft1c(fft1c(x, dim=-1), dim=-2)
    assert torch.allclose(both, fft2c(x), atol=1e-4)


def _masks(h, w):
    g = torch.Generator().manual_seed(1)
    return {
        "1d": (torch.rand(1, 1, 1, w, generator=g) > 0.6),
        "2d": (torch.rand(1, 1, h, w, generator=g) > 0.7).float(),
    }


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_operators_are_adjoint(kind):
    b, c, h, w = 2, 4, 24, 20
    mask = _masks(h, w)[kind]
    maps = crandn(b, c, h, w)
    ops = {
        "single": (SingleCoilCartesian(mask), crandn(b, h, w), crandn(b, 1, h, w)),
        "masked-fourier": (MaskedFourier(mask), crandn(b, c, h, w), crandn(b, c, h, w)),
        "sense": (SenseOperator(maps, mask), crandn(b, h, w), crandn(b, c, h, w)),
        "sense-full": (SenseOperator(maps), crandn(b, h, w), crandn(b, c, h, w)),
        "sense-full-odd": (SenseOperator(maps[..., 1:, :]), crandn(b, h - 1, w), crandn(b, c, h - 1, w)),
        "kspace-mask": (KSpaceMask(mask), crandn(b, c, h, w), crandn(b, c, h, w)),
    }
    for name, (op, x, y) in ops.items():
        lhs, rhs = inner(op.A(x), y), inner(x, op.A_adjoint(y))
        assert abs(lhs - rhs) / abs(lhs) < 1e-5, name
        assert op.A(x).shape == y.shape and op.A_adjoint(y).shape == x.shape, name
        assert op.normal(x).shape == x.shape, name  # no silent broadcasting
        assert torch.allclose(op.normal(x), op.A_adjoint(op.A(x)), atol=1e-5), name


def test_sense_with_unit_map_is_single_coil():
    mask = _masks(16, 16)["2d"]
    x = crandn(2, 16, 16)
    s = SenseOperator(torch.ones(2, 1, 16, 16, dtype=torch.complex64), mask)
    assert torch.allclose(s.A(x), SingleCoilCartesian(mask).A(x), atol=1e-6)


def test_hard_dc_keeps_measured_samples_exactly():
    mask = _masks(16, 12)["1d"]
    y = crandn(2, 3, 16, 12) * mask
    k_pred = crandn(2, 3, 16, 12)
    k = hard_dc(k_pred, y, mask)
    m = mask.expand_as(k)
    assert torch.equal(k[m], y[m])
    assert torch.equal(k[~m], k_pred[~m])


def test_soft_dc_weights():
    mask = _masks(8, 8)["2d"]
    y, k_pred = crandn(1, 1, 8, 8) * mask, crandn(1, 1, 8, 8)
    assert torch.allclose(soft_dc(k_pred, y, mask, 1.0), hard_dc(k_pred, y, mask))
    assert torch.equal(soft_dc(k_pred, y, mask, 0.0), k_pred)
    half = soft_dc(k_pred, y, mask, 0.5)
    m = mask.bool().expand_as(half)
    assert torch.allclose(half[m], 0.5 * (k_pred[m] + y[m]))
    lam = 3.0
    assert torch.allclose(soft_dc(k_pred, y, mask, weight_from_lambda(lam))[m], (k_pred[m] + lam * y[m]) / (1 + lam))


def test_dc_image_single_and_multicoil():
    h, w = 20, 16
    mask = _masks(h, w)["1d"]
    truth = crandn(1, h, w)
    maps = crandn(1, 4, h, w)
    for m in (None, maps):
        op = SingleCoilCartesian(mask) if m is None else SenseOperator(m, mask)
        y = op.A(truth)
        x = dc_image(crandn(1, h, w), y, mask, m)
        # After DC, the estimate reproduces every measured sample (A x = y for SENSE when the maps
        # are used consistently; exact for single-coil).
        if m is None:
            assert torch.allclose(op.A(x), y, atol=1e-5)
        # DC applied to the truth changes nothing.
        assert torch.allclose(dc_image(truth, y, mask, m), truth, atol=1e-4)


def test_data_fidelity_gradient_matches_autograd():
    mask = _masks(12, 10)["2d"]
    maps = crandn(2, 3, 12, 10)
    op = SenseOperator(maps, mask)
    y = op.A(crandn(2, 12, 10))
    x = crandn(2, 12, 10).requires_grad_(True)
    data_fidelity(x, y, op).sum().backward()
    # torch's gradient of a real loss w.r.t. complex x is conj of the Wirtinger derivative times 2: dL/dRe + i dL/dIm
    assert torch.allclose(x.grad, data_fidelity_grad(x.detach(), y, op), atol=1e-4)


def test_batched_cg_solves_tikhonov_sense():
    torch.manual_seed(3)
    h, w = 16, 12
    mask = _masks(h, w)["2d"]
    maps = crandn(3, 4, h, w)
    op = SenseOperator(maps, mask)
    b = crandn(3, h, w)
    lam = 0.05
    res = conjugate_gradient(op.normal, b, lam=lam, max_iter=200, tol=1e-7)
    # Compare with a dense solve per batch element.
    for i in range(3):
        cols = []
        for j in range(h * w):
            e = torch.zeros(1, h * w, dtype=torch.complex64)
            e[0, j] = 1
            cols.append(SenseOperator(maps[i : i + 1], mask).normal(e.view(1, h, w)).flatten())
        a = torch.stack(cols, dim=1).to(torch.complex128) + lam * torch.eye(h * w)
        x_ref = torch.linalg.solve(a, b[i].flatten().to(torch.complex128))
        assert torch.allclose(res.x[i].flatten().to(torch.complex128), x_ref, atol=1e-4)
    assert (res.residual_norm < 1e-5).all()


def test_prox_l2_interpolates_between_prior_and_data():
    """prox_l2(z, y, gamma) = argmin (gamma/2)||Ax - y||^2 + 1/2||x - z||^2: the base class's CG form (through
    A_dagger) and the single-coil closed form (soft DC with weight gamma / (1 + gamma)) agree."""
    h, w = 16, 16
    mask = _masks(h, w)["1d"]
    op = SingleCoilCartesian(mask)
    truth, prior = crandn(1, h, w), crandn(1, h, w)
    y = op.A(truth)
    by_cg = lambda z, g: LinearOperator.prox_l2(op, z, y, g, max_iter=50)  # noqa: E731
    # Small gamma: stay at the prior. Large gamma: match the data at sampled locations.
    assert torch.allclose(by_cg(prior, 1e-6), prior, atol=1e-4)
    assert torch.equal(LinearOperator.prox_l2(op, prior, y, 0.0), prior)
    assert torch.allclose(op.prox_l2(prior, y, 0.0), prior, atol=1e-6)
    assert torch.allclose(op.A(by_cg(prior, 1e6)), y, atol=1e-3)
    assert torch.allclose(op.A(op.prox_l2(prior, y, math.inf)), y, atol=1e-5)
    gamma = 2.0
    closed = ifft2c(soft_dc(fft2c(prior.unsqueeze(1)), y, mask, gamma / (1 + gamma))).squeeze(1)
    assert torch.allclose(by_cg(prior, gamma), closed, atol=1e-4)
    assert torch.allclose(op.prox_l2(prior, y, gamma), closed, atol=1e-6)
    with pytest.raises(ConfigError, match="gamma"):
        op.prox_l2(prior, y, -1.0)


def test_kspace_mask_prox_is_soft_dc_and_hard_dc_at_infinity():
    mask = _masks(8, 8)["2d"]
    z, y = crandn(2, 3, 8, 8), crandn(2, 3, 8, 8) * mask
    op = KSpaceMask(mask)
    assert torch.equal(op.prox_l2(z, y, math.inf), hard_dc(z, y, mask))
    gamma = 0.7
    assert torch.equal(op.prox_l2(z, y, gamma), soft_dc(z, y, mask, weight_from_lambda(gamma)))
    assert torch.allclose(LinearOperator.prox_l2(op, z, y, gamma), op.prox_l2(z, y, gamma), atol=1e-5)
    assert weight_from_lambda(math.inf) == 1.0 and weight_from_lambda(0.0) == 0.0


def test_sense_prox_l2_solves_its_normal_equations():
    torch.manual_seed(5)
    h, w, gamma = 12, 10, 3.0
    mask = _masks(h, w)["1d"]
    op = SenseOperator(crandn(2, 4, h, w), mask)
    z, y = crandn(2, h, w), op.A(crandn(2, h, w))
    x = op.prox_l2(z, y, gamma, max_iter=200, tol=1e-7)
    # (A^H A + I / gamma) x = A^H y + z / gamma
    lhs, rhs = op.normal(x) + x / gamma, op.A_adjoint(y) + z / gamma
    assert ((lhs - rhs).norm() / rhs.norm()).item() < 1e-4
    # and it beats small perturbations of itself on the objective
    def objective(v):
        return 0.5 * gamma * (op.A(v) - y).abs().pow(2).sum() + 0.5 * (v - z).abs().pow(2).sum()
    for _ in range(3):
        assert objective(x) <= objective(x + 1e-2 * crandn(2, h, w))


# -- adjointness_test -------------------------------------------------------------------------------------------
def _operators(kind: str, b: int = 2, c: int = 4, h: int = 24, w: int = 20):
    """Every operator of the package, constructed the way users do (x_shape only where a 1-D mask needs it)."""
    mask = _masks(h, w)[kind]
    maps = crandn(b, c, h, w)
    one_d = kind == "1d"
    return {
        "single": SingleCoilCartesian(mask, x_shape=(b, h, w) if one_d else None),
        "masked-fourier": MaskedFourier(mask, x_shape=(b, c, h, w) if one_d else None),
        "sense": SenseOperator(maps, mask),
        "sense-full": SenseOperator(maps),
        "kspace-mask": KSpaceMask(mask, x_shape=(b, c, h, w) if one_d else None),
        "sense-odd": SenseOperator(crandn(b, c, h - 1, w + 1), torch.rand(1, 1, 1, w + 1) > 0.5),
    }


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_adjointness_test_passes_for_every_operator(kind):
    g = torch.Generator().manual_seed(7)
    for name, op in _operators(kind).items():
        assert op.x_shape is not None, name
        err = op.adjointness_test(generator=g)
        assert 0 <= err < 1e-5, (name, err)
    # the inputs follow x_shape / A(x): a 2-D mask gives the grid, the maps give the batch
    assert _operators("2d")["single"].x_shape == (1, 24, 20)
    assert _operators("2d")["sense"].x_shape == (2, 24, 20)


def test_adjointness_test_takes_given_inputs_and_reports_unknown_shapes():
    mask = _masks(16, 12)["1d"]
    op = SingleCoilCartesian(mask)
    assert op.x_shape is None  # a 1-D mask does not give H
    with pytest.raises(ConfigError, match="x_shape"):
        op.adjointness_test()
    x, y = crandn(3, 16, 12), crandn(3, 1, 16, 12)
    assert op.adjointness_test(x=x) < 1e-5
    assert op.adjointness_test(x=x, y=y) < 1e-5
    with pytest.raises(ShapeError):
        op.adjointness_test(x=x, y=crandn(3, 2, 16, 12))
    # same generator seed, same inputs, same number
    a = SingleCoilCartesian(mask, x_shape=(2, 16, 12))
    assert a.adjointness_test(generator=torch.Generator().manual_seed(1)) == \
        a.adjointness_test(generator=torch.Generator().manual_seed(1))


class _NoConjSense(SenseOperator):
    """A classic bug: the adjoint combines the coils with S instead of conj(S)."""

    def A_adjoint(self, y):  # noqa: N802
        return (self.maps * ifft2c(self._masked(y))).sum(dim=-3)


class _ForwardTwice(MaskedFourier):
    """Another: the adjoint applies the forward FFT again."""

    def A_adjoint(self, y):  # noqa: N802
        return fft2c(y * self.mask)


class _ScaledAdjoint(KSpaceMask):
    """A subtle one: the adjoint is off by a factor 1.001."""

    def A_adjoint(self, y):  # noqa: N802
        return 1.001 * super().A_adjoint(y)


class _BroadcastingAdjoint(SingleCoilCartesian):
    """A shape bug: the adjoint forgets to drop the coil dim."""

    def A_adjoint(self, y):  # noqa: N802
        return self._op.A_adjoint(y)


def test_adjointness_test_catches_wrong_adjoints():
    mask = _masks(16, 16)["2d"]
    g = torch.Generator().manual_seed(3)
    assert _NoConjSense(crandn(2, 3, 16, 16), mask).adjointness_test(generator=g) > 1e-1
    assert _ForwardTwice(mask).adjointness_test(generator=g) > 1e-1
    assert _ScaledAdjoint(mask).adjointness_test(generator=g) > 5e-4
    with pytest.raises(ShapeError, match="A\\^H y"):
        _BroadcastingAdjoint(mask).adjointness_test(generator=g)


# -- A_dagger ------------------------------------------------------------------------------------------------------
def _dense(op, x_shape):
    """The matrix of a linear operator (complex128), column j = A e_j."""
    n = math.prod(x_shape)
    cols = []
    for j in range(n):
        e = torch.zeros(n, dtype=torch.complex64)
        e[j] = 1
        cols.append(op.A(e.view(x_shape)).flatten())
    return torch.stack(cols, dim=1).to(torch.complex128)


def test_a_dagger_recovers_x_for_fully_sampled_single_coil():
    x = crandn(2, 16, 12)
    op = SingleCoilCartesian(torch.ones(1, 1, 1, 12, dtype=torch.bool))
    assert torch.allclose(op.A_dagger(op.A(x)), x, atol=1e-5)
    assert torch.allclose(op.A_dagger(op.A(x), lam=1.0), x / 2, atol=1e-5)  # (I + I) x' = x


def test_a_dagger_is_least_squares_for_undersampled_sense():
    torch.manual_seed(11)
    h, w, c = 8, 8, 3
    mask = torch.zeros(1, 1, 1, w, dtype=torch.bool)
    mask[..., ::2] = True
    mask[..., w // 2 - 1:w // 2 + 1] = True  # R < C: A has full column rank, the LS solution is unique
    maps = crandn(1, c, h, w)
    op = SenseOperator(maps, mask)
    y = crandn(1, c, h, w) * mask  # noisy data, not in the range of A: ||A x - y|| > 0 at the optimum
    x = op.A_dagger(y, max_iter=300, tol=1e-8)
    a = _dense(op, (1, h, w))
    yv = y.flatten().to(torch.complex128)
    x_ref = torch.linalg.solve(a.mH @ a, a.mH @ yv)  # the normal equations
    assert torch.allclose(x.flatten().to(torch.complex128), x_ref, atol=1e-4)
    assert op.A_adjoint(op.A(x) - y).abs().max() < 1e-4  # gradient of ||Ax - y||^2 vanishes
    resid = (op.A(x) - y).norm()
    assert resid > 0.1
    for _ in range(3):
        assert resid <= (op.A(x + 1e-2 * crandn(1, h, w)) - y).norm()
    # Tikhonov: (A^H A + lam I) x = A^H y
    lam = 0.3
    x_lam = op.A_dagger(y, max_iter=300, tol=1e-8, lam=lam)
    x_ref = torch.linalg.solve(a.mH @ a + lam * torch.eye(h * w), a.mH @ yv)
    assert torch.allclose(x_lam.flatten().to(torch.complex128), x_ref, atol=1e-4)


def test_a_dagger_gives_minimum_norm_solution_when_underdetermined():
    mask = _masks(12, 12)["1d"]
    op = SingleCoilCartesian(mask)
    y = op.A(crandn(1, 12, 12))
    x = op.A_dagger(y)
    # A^H A is a projection: the minimum-norm solution is A^H y itself, and A x = y
    assert torch.allclose(x, op.A_adjoint(y), atol=1e-5)
    assert torch.allclose(op.A(x), y, atol=1e-5)


def test_fused_sense_normal_matches_explicit_composition():
    """SenseOperator.normal folds fft2c's checkerboard into the maps on even grids; it must equal
    combine(ifft2c(M fft2c(expand(x)))) exactly, for float and double precision."""
    for dtype in (torch.complex64, torch.complex128):
        maps = crandn(2, 4, 32, 40, dtype=dtype)
        mask = torch.rand(2, 1, 1, 40) > 0.5
        op = SenseOperator(maps, mask)
        x = crandn(2, 32, 40, dtype=dtype)
        explicit = op.combine(ifft2c(fft2c(op.expand(x)) * mask))
        fused = op.normal(x)
        assert fused.dtype == dtype
        assert ((fused - explicit).norm() / explicit.norm()).item() < 1e-5
