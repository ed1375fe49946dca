"""Sample validation, the method registry, install hygiene, and the README <-> CI contract."""

import functools
import importlib.metadata as md
import re
import subprocess
from pathlib import Path
from typing import Annotated

import pytest
import torch

from mrrecon.core.reconstructor import MethodInfo, Reconstructor, factory_options
from mrrecon.data.sample import Sample, SampleMeta
from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.methods import available, load, parse_method_spec
from mrrecon.physics import fft2c

REPO = Path(__file__).resolve().parents[1]


def _sample(c=2, h=16, w=12, **kw):
    k = torch.randn(c, h, w, dtype=torch.complex64)
    return Sample(kspace=k, mask=torch.ones(1, 1, w, dtype=torch.bool), meta=SampleMeta(file="x.h5"), **kw)


def test_sample_validate_accepts_good_and_names_file_on_bad():
    _sample().validate()
    bad = _sample()
    bad.kspace[0, 0, 0] = complex(float("nan"), 0)
    with pytest.raises(DataError, match=r"x\.h5: .*NaN"):
        bad.validate()
    s = _sample()
    s.mask = torch.ones(1, 1, 11, dtype=torch.bool)
    with pytest.raises(ShapeError, match=r"x\.h5: mask shape"):
        s.validate()
    with pytest.raises(ShapeError, match="target shape"):
        _sample(target=torch.zeros(15, 12)).validate()
    with pytest.raises(DataError, match="complex"):
        Sample(kspace=torch.zeros(1, 4, 4), mask=torch.ones(1, 4, 4)).validate()


def test_registry_parses_options_and_rejects_unknown():
    assert parse_method_spec("l1-wavelet:lam=0.005:iters=50") == ("l1-wavelet", {"lam": 0.005, "iters": 50})
    assert "zero-filled" in available()
    with pytest.raises(ConfigError, match="unknown method"):
        load("no-such-method")
    with pytest.raises(ConfigError, match="has no option"):
        load("zero-filled:foo=1")
    with pytest.raises(ConfigError, match="key=value"):
        parse_method_spec("zero-filled:foo")


def test_protocol_declares_the_optional_members_with_defaults():
    class Classical(Reconstructor):
        name = "classical"

        def reconstruct(self, sample):
            return sample.kspace.abs()[0]

    class Learned(Classical):
        def __init__(self):
            self.model = torch.nn.Linear(3, 2)  # 8 parameters

    c = Classical()
    assert isinstance(c, Reconstructor) and c.device == torch.device("cpu")
    assert c.model is None and c.num_parameters() is None and c.last_nfe is None and not c.supports_uncertainty
    with pytest.raises(ConfigError, match="does not sample"):
        c.reconstruct_with_uncertainty(_sample(), 3)
    assert Learned().num_parameters() == 8

    class DuckTyped:  # structural: all members present -> a Reconstructor; only name + reconstruct -> not
        name, device, model, last_nfe, supports_uncertainty = "duck", torch.device("cpu"), None, None, False

        def reconstruct(self, sample): ...

        def num_parameters(self): ...

        def reconstruct_with_uncertainty(self, sample, samples): ...

    assert isinstance(DuckTyped(), Reconstructor)
    del DuckTyped.last_nfe
    assert not isinstance(DuckTyped(), Reconstructor)


def test_load_rejects_a_factory_that_builds_no_reconstructor(monkeypatch):
    from mrrecon.core import reconstructor as core

    class Partial:  # the old, two-member protocol
        name = "partial"

        def reconstruct(self, sample): ...

    monkeypatch.setitem(core._REGISTRY, "partial", MethodInfo("partial", lambda device="cpu": Partial(), "test"))
    with pytest.raises(ConfigError, match=r"without \[.*'last_nfe'.*\]; subclass"):
        load("partial")


def test_options_are_the_factory_keyword_parameters_with_their_help():
    class Base(Reconstructor):
        def __init__(self, *, maps: Annotated[str, "coil maps"] = "auto", device="cpu"):
            self.device = torch.device(device)

    class Method(Base):
        name = "m"

        def __init__(self, lam: Annotated[float, "weight"] = 0.1, iters: Annotated[int | None, "iterations "
                                                                                    "(default: adaptive)"] = None,
                     flag: Annotated[bool, "a switch"] = True, **common):
            super().__init__(**common)

    opts = factory_options(Method)
    assert list(opts) == ["lam", "iters", "flag", "maps"]  # **common reaches the base class's parameters
    assert [str(o) for o in opts.values()] == ["weight (default 0.1)", "iterations (default: adaptive)",
                                               "a switch (default true)", "coil maps (default auto)"]
    assert list(factory_options(functools.partial(Method, lam=0.2))) == ["iters", "flag", "maps"]  # fixed

    def forwards(checkpoint=None, device="cpu", **options): ...

    def undocumented(device="cpu", lam: float = 0.1): ...

    def no_default(variant: Annotated[str, "which"], device="cpu"): ...

    for factory, message in ((forwards, r"takes \*\*options"), (undocumented, "'lam' .* has no help"),
                             (no_default, "'variant' .* is not an option")):
        with pytest.raises(ConfigError, match=message):
            MethodInfo("bad", factory, "test")


def test_every_registered_method_declares_its_options_once():
    """Options come from the factories' signatures: each has help, and a spec's unknown option is rejected
    with the list (akdiff-no-slr fixes ``correction``, so it is not an option there)."""
    for name, info in available().items():
        assert all(o.help and o.name == key for key, o in info.options.items()), name
    assert list(available()["cg-sense"].options) == ["lam", "iters", "tol", "maps", "calib", "scaling"]
    assert "correction" in available()["akdiff"].options and "correction" not in available()["akdiff-no-slr"].options
    assert str(available()["l1-wavelet"].options["lam"]) == "L1 weight (default 0.005)"
    with pytest.raises(ConfigError, match=r"no option\(s\) \['lamb'\]; options: \[.*'lam'"):
        load("l1-wavelet:lamb=0.1")


def test_zero_filled_is_rss_of_inverse_fft():
    img = torch.randn(3, 16, 12, dtype=torch.complex64)
    s = Sample(kspace=fft2c(img), mask=torch.ones(1, 1, 12))
    out = load("zero-filled").reconstruct(s)
    assert out.shape == (16, 12) and out.dtype == torch.float32
    assert torch.allclose(out, (img.abs() ** 2).sum(0).sqrt(), atol=1e-5)


def test_no_cuda_only_packages_installed():
    """torchvision's CUDA wheel breaks diffusers/torchmetrics imports here; nvidia-* means a CUDA torch got in."""
    names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
    assert "torchvision" not in names, "torchvision is installed: reinstall with -c constraints.txt"
    cuda = sorted(n for n in names if n.startswith("nvidia-"))
    assert not cuda, f"CUDA packages installed: {cuda}"


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    cmds = re.findall(r"^(python3 -m venv .*)  # (demo|tests)$", readme, flags=re.M)
    assert [tag for _, tag in cmds] == ["demo", "tests"]
    for cmd, _ in cmds:
        assert "torch==2.13.0" in cmd and "-c constraints.txt" in cmd
        assert cmd.index("torch==2.13.0") < cmd.index("-e ")
    ci = (REPO / ".ci" / "run").read_text()
    extracted = subprocess.run(["bash", "-c", re.search(r"cmd=\$\((.*)\)\n", ci).group(1)], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    assert extracted == cmds[1][0]


def test_allocator_is_configured():
    import sys

    from mrrecon._runtime import configure_allocator
    if sys.platform.startswith("linux"):
        assert configure_allocator()
