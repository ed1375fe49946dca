"""GMAC counting and its per-weights cache (``mrrecon methods --details``)."""

from __future__ import annotations

import os

import torch

from mrrecon.core.reconstructor import Reconstructor
from mrrecon.eval.complexity import cached_method_complexity, complexity_cache_path, count_macs


class _ConvMethod(Reconstructor):
    """A one-conv 'method': 3x3 conv, 1 -> 4 channels, on the magnitude of the zero-filled image."""

    name = "conv"

    def __init__(self):
        self.model = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)

    def reconstruct(self, sample):
        with torch.no_grad():
            return self.model(sample.kspace.abs()[None, :1].float())[0, 0]


def test_count_macs_of_a_convolution():
    x = torch.zeros(1, 1, 16, 16)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
    macs, _ = count_macs(conv, x)
    assert macs == 16 * 16 * 4 * 9


def test_cached_complexity_counts_once_per_weights_version(tmp_path, monkeypatch):
    monkeypatch.setenv("MRRECON_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"x")
    builds = []

    def build():
        builds.append(1)
        return _ConvMethod()

    first = cached_method_complexity("conv", weights, build, shape=(32, 32))
    assert first["gmacs"] * 1e9 == 32 * 32 * 4 * 9 and first["parameters"] == 36
    assert complexity_cache_path().is_file()
    assert cached_method_complexity("conv", weights, build, shape=(32, 32)) == first and len(builds) == 1
    st = (weights / "model.safetensors").stat()
    os.utime(weights / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # new weights
    cached_method_complexity("conv", weights, build, shape=(32, 32))
    assert len(builds) == 2
    cached_method_complexity("conv", weights, build, shape=(64, 64))  # another size is another entry
    assert len(builds) == 3
    complexity_cache_path().write_text("{not json")  # a corrupt cache is recomputed, not an error
    assert cached_method_complexity("conv", weights, build, shape=(32, 32)) == first and len(builds) == 4
