"""The Reconstructor contract, checked on every registered method.

Every spec of ``tests/tiny_methods.py`` (each registered method with tiny seeded weights and fast options, plus
variants that take other paths) and the external peers (``bart-pics``, ``sigpy-l1wavelet``: where their program
or package is installed) runs on the tiny single-coil and multi-coil samples it can take (``MethodInfo``'s
``multicoil_only`` / ``singlecoil_only`` / ``needs_reference``: the kinds it cannot take are skipped, as the
benchmark skips them), and must:

* be a ``Reconstructor`` (every protocol member), named as registered, on the CPU, with ``num_parameters()`` an
  int > 0 for learned methods and None for the others;
* return an (H, W) float32 magnitude: finite, >= 0; and leave the sample unchanged (every method of a benchmark
  receives the same Sample objects);
* report ``last_nfe == MethodInfo.expected_nfe(method)`` (None for methods without a network);
* keep the measured k-space samples where ``MethodInfo.hard_dc`` claims it, checked on complex data, never on
  the FFT of the returned magnitude (which has lost the phase):

  - ``"kspace"``: ``reconstruct_kspace(sample)`` is the (C, H, W) k-space the image is made from (its RSS equals
    the output) and equals the input at every measured sample;
  - ``"image"``: ``reconstruct_complex(sample)`` is the image before its magnitude (``|x|`` equals the output) and
    ``fft2c(x)`` equals the single-coil input at every measured sample;

  to ``DC_RTOL`` of the largest measured magnitude (float32 FFT round trips and the methods' scale / unscale);
* sample a posterior (``reconstruct_with_uncertainty``: mean and std maps) where ``supports_uncertainty``, and
  raise ConfigError otherwise.

A registered method that neither ``tiny_methods`` nor the peers cover fails ``test_every_registered_method_is_covered``:
a new method needs its tiny weights there. One thread; the whole file takes about 15 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_methods as tm
import torch

from mrrecon.classical.peers import bart_available, sigpy_available
from mrrecon.core.reconstructor import (
    MULTI_COIL,
    PROTOCOL_MEMBERS,
    SINGLE_COIL,
    Reconstructor,
    get_info,
    load,
    parse_method_spec,
    sample_kind,
)
from mrrecon.errors import ConfigError
from mrrecon.methods import available
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c

DC_RTOL = 1e-5  # measured samples: max |k_out - y| / max |y| over the mask
OUT_RTOL = 1e-5  # the k-space / complex image the claim is checked on vs the returned magnitude
# External peers: run when their tool is installed (not mrrecon code, so not in tiny_methods).
PEERS = {"bart-pics": bart_available, "sigpy-l1wavelet": sigpy_available}
SPECS = [m.spec for m in tm.tiny_methods()] + list(PEERS)
TINY = {m.spec: m for m in tm.tiny_methods()}
KINDS = {"single": SINGLE_COIL, "multi": MULTI_COIL}  # tiny_methods' sample kinds -> MethodInfo's


@pytest.fixture(autouse=True)
def _one_thread(_seed_and_threads):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """spec -> the built method (tiny weights written once per spec), cached for the module."""
    workdir: Path = tmp_path_factory.mktemp("contract-weights")
    built: dict[str, Reconstructor] = {}

    def get(spec: str) -> Reconstructor:
        if spec not in built:
            if spec in PEERS:
                if not PEERS[spec]():
                    pytest.skip(f"{spec}: its external tool is not installed")
                built[spec] = load(spec)
            else:
                built[spec] = TINY[spec].build(workdir)
        return built[spec]

    return get


def _relative(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return float((a - b).abs().max() / scale.abs().max().clamp_min(torch.finfo(torch.float32).tiny))


def _check_hard_dc(method: Reconstructor, where: str, sample, out: torch.Tensor) -> None:
    y = sample.kspace
    if where == "kspace":
        k = method.reconstruct_kspace(sample).detach().cpu()
        assert k.shape == y.shape, f"reconstruct_kspace gave {tuple(k.shape)} for k-space {tuple(y.shape)}"
        image = rss(ifft2c(k)).float()
    else:
        x = method.reconstruct_complex(sample).detach().cpu()
        assert x.shape == sample.shape and x.is_complex(), f"reconstruct_complex gave {tuple(x.shape)} {x.dtype}"
        assert y.shape[0] == 1, "the 'image' check is for single-coil samples (multi-coil: declare 'kspace')"
        k, image = fft2c(x.unsqueeze(0)), x.abs().float()
    assert _relative(image, out, out) <= OUT_RTOL, f"the {where} checked is not what reconstruct returned"
    measured = torch.broadcast_to(sample.mask.to(torch.bool), y.shape)
    err = _relative(k[measured], y[measured], y[measured])
    assert err <= DC_RTOL, f"hard DC claimed ({where}) but measured samples differ by {err:.2e} (relative)"


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("spec", SPECS)
def test_contract(spec: str, kind: str, build):
    name, options = parse_method_spec(spec)
    info = get_info(name)
    sample = tm.make_sample(kind, reference=info.needs_reference)
    why = info.incompatibility(sample)
    if why:
        pytest.skip(f"{spec} on {kind}-coil data: {why}")
    assert sample_kind(sample) == KINDS[kind]
    method = build(spec)

    assert isinstance(method, Reconstructor), [m for m in PROTOCOL_MEMBERS if not hasattr(method, m)]
    assert method.name == name and torch.device(method.device) == torch.device("cpu")
    n_params = method.num_parameters()
    assert (isinstance(n_params, int) and n_params > 0) if info.needs_weights else n_params is None

    before = {k: getattr(sample, k).clone() for k in ("kspace", "mask", "coil_maps", "reference", "target")
              if getattr(sample, k) is not None}
    with torch.no_grad():
        out = method.reconstruct(sample)
    assert out.shape == sample.shape and out.dtype == torch.float32, f"{tuple(out.shape)} {out.dtype}"
    out = out.detach().cpu()
    assert torch.isfinite(out).all() and (out >= 0).all(), "not a finite magnitude"
    for k, v in before.items():
        assert torch.equal(getattr(sample, k), v), f"reconstruct changed sample.{k}"
    assert method.last_nfe == info.expected_nfe(method), (
        f"last_nfe {method.last_nfe!r}, declared {info.expected_nfe(method)!r} (MethodInfo.nfe)")

    where = info.hard_dc_of(method).get(sample_kind(sample))
    if where is not None:
        with torch.no_grad():
            _check_hard_dc(method, where, sample, out)

    if method.supports_uncertainty:
        mean, std = method.reconstruct_with_uncertainty(sample, 2)
        assert mean.shape == std.shape == sample.shape and torch.isfinite(mean).all() and (std >= 0).all()
    else:
        with pytest.raises(ConfigError, match="does not sample"):
            method.reconstruct_with_uncertainty(sample, 2)


def test_every_registered_method_is_covered():
    covered = {parse_method_spec(s)[0] for s in SPECS}
    missing = [n for n in available() if n not in covered]
    assert not missing, (f"registered but not in the contract test: {missing}; add tiny weights and fast options "
                         f"to tests/tiny_methods.py")


def test_the_hard_dc_check_catches_a_method_that_breaks_it():
    """The check above is not vacuous: zero-filled k-space with one measured sample changed fails it."""
    sample = tm.make_sample("multi")
    zf = load("zero-filled")
    broken = sample.kspace.clone()
    idx = tuple(int(i[0]) for i in torch.nonzero(torch.broadcast_to(sample.mask, broken.shape), as_tuple=True))
    broken[idx] *= 1.01

    class Broken(type(zf)):
        def reconstruct_kspace(self, s):
            return broken

        def reconstruct(self, s):
            return rss(ifft2c(broken)).float()

    method = Broken()
    with pytest.raises(AssertionError, match="hard DC claimed"):
        _check_hard_dc(method, "kspace", sample, method.reconstruct(sample))
