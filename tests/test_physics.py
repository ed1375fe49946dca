"""FFT unitarity, operator adjointness and data consistency."""

import numpy as np
import pytest
import torch

from mrrecon.physics import (
    KSpaceMask,
    MaskedFourier,
    SenseOperator,
    SingleCoilCartesian,
    cg_dc,
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


def test_cg_dc_interpolates_between_prior_and_data():
    h, w = 16, 16
    mask = _masks(h, w)["1d"]
    op = SingleCoilCartesian(mask)
    truth, prior = crandn(1, h, w), crandn(1, h, w)
    y = op.A(truth)
    # Large lambda: stay at the prior. Small lambda: match the data at sampled locations.
    assert torch.allclose(cg_dc(prior, y, op, lam=1e6), prior, atol=1e-4)
    x = cg_dc(prior, y, op, lam=1e-6, max_iter=50)
    assert torch.allclose(op.A(x), y, atol=1e-3)
    # Single-coil Cartesian: the closed form is soft DC with weight 1/(1+lam) at sampled points.
    lam = 0.5
    x = cg_dc(prior, y, op, lam=lam, max_iter=50)
    closed = ifft2c(soft_dc(fft2c(prior.unsqueeze(1)), y, mask, 1 / (1 + lam))).squeeze(1)
    assert torch.allclose(x, closed, atol=1e-4)


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
