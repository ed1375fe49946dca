"""Sample validation, the method registry, install hygiene, and the README <-> CI contract."""

import importlib.metadata as md
import re
import subprocess
from pathlib import Path

import pytest
import torch

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
