"""The embedded brain simulator: determinism, shared anatomy, contrast, detail, ground truth, h5 round trip."""

import h5py
import numpy as np
import pytest
import torch

from mrrecon.data.fastmri import FastMRIFile
from mrrecon.data.phantom.contrast import SEQUENCES, TISSUES, flair_null_ti, signal
from mrrecon.data.phantom.template import load_template
from mrrecon.data.simulate import LABELS, simulate_dataset, simulate_subject, subject_seed
from mrrecon.errors import ConfigError
from mrrecon.physics.fft import fft2c, ifft2c

SIZE = 64


def _rss(x: torch.Tensor) -> torch.Tensor:
    return x.abs().square().sum(dim=-3).sqrt()


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(11, size=SIZE, coils=4, slices=2)


@pytest.fixture(scope="module")
def clean():
    return simulate_subject(11, size=SIZE, coils=4, slices=2, noise_level=0.0)


def test_shapes_and_dtypes(subject):
    assert list(subject) == ["T1", "T2", "PD", "FLAIR"]
    for name, d in subject.items():
        assert d.contrast == name
        assert d.kspace.shape == (2, 4, SIZE, SIZE) and d.kspace.dtype == torch.complex64
        assert d.rss.shape == d.rss_true.shape == (2, SIZE, SIZE) and d.rss.dtype == torch.float32
        assert d.image.shape == (2, SIZE, SIZE) and d.image.dtype == torch.complex64
        assert d.maps.shape == (2, 4, SIZE, SIZE) and d.maps.dtype == torch.complex64
        assert d.brain_mask.dtype == torch.bool and d.labels.dtype == torch.uint8
        assert torch.isfinite(torch.view_as_real(d.kspace)).all()
        assert d.meta["slice_z_mm"][1] - d.meta["slice_z_mm"][0] == pytest.approx(3.0)


def test_same_seed_bit_identical_and_independent_of_options(subject):
    again = simulate_subject(11, size=SIZE, coils=4, slices=2)
    for name in subject:
        assert torch.equal(subject[name].kspace, again[name].kspace)
    # Asking for fewer contrasts (in another order, another case) changes nothing in those asked for.
    part = simulate_subject(11, size=SIZE, coils=4, slices=2, contrasts=("flair", "t2"))
    assert list(part) == ["FLAIR", "T2"]
    assert torch.equal(part["T2"].kspace, subject["T2"].kspace)
    assert torch.equal(part["FLAIR"].kspace, subject["FLAIR"].kspace)


def test_different_seed_different_anatomy(subject):
    other = simulate_subject(12, size=SIZE, coils=4, slices=2, contrasts=("T1",))
    a, b = subject["T1"], other["T1"]
    assert (a.brain_mask ^ b.brain_mask).float().mean() > 0.02
    ra, rb = a.rss_true.flatten(), b.rss_true.flatten()
    assert torch.corrcoef(torch.stack([ra, rb]))[0, 1] < 0.9


def _edges(x: torch.Tensor) -> np.ndarray:
    x = (x / x.mean()).numpy()
    return np.hypot(np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1]).ravel()


def test_contrasts_share_anatomy(subject):
    """One anatomy under four contrasts: the masks are the same object and the edges coincide; edges of
    another subject do not."""
    other = simulate_subject(12, size=SIZE, coils=4, slices=1, noise_level=0.0)
    t1 = subject["T1"]
    for name in ("T2", "PD", "FLAIR"):
        assert torch.equal(subject[name].brain_mask, t1.brain_mask)
        assert torch.equal(subject[name].labels, t1.labels)
        same = np.corrcoef(_edges(t1.image[0].abs()), _edges(subject[name].image[0].abs()))[0, 1]
        diff = np.corrcoef(_edges(t1.image[0].abs()), _edges(other[name].image[0].abs()))[0, 1]
        assert same > 0.4 and same > diff + 0.3, (name, same, diff)


def test_contrast_behaviour(clean):
    """CSF bright in T2, dark in T1 and FLAIR; WM above GM in T1, below it in T2; fat bright in T1."""
    lab = clean["T1"].labels
    mean = {n: {t: float(d.rss_true[lab == LABELS.index(t)].mean()) for t in ("csf", "gm", "wm", "fat")}
            for n, d in clean.items()}
    assert mean["T2"]["csf"] > 1.5 * mean["T2"]["wm"] and mean["T2"]["gm"] > mean["T2"]["wm"]
    assert mean["T1"]["csf"] < 0.7 * mean["T1"]["wm"] and mean["T1"]["wm"] > mean["T1"]["gm"]
    assert mean["FLAIR"]["csf"] < 0.5 * mean["FLAIR"]["wm"]
    assert mean["T1"]["fat"] > 1.2 * mean["T1"]["wm"]


def test_flair_nulls_csf():
    ti = SEQUENCES["FLAIR"].ti
    assert ti == pytest.approx(flair_null_ti(SEQUENCES["FLAIR"].tr, TISSUES["csf"].t1), abs=0.1)
    csf = TISSUES["csf"]
    s = signal(SEQUENCES["FLAIR"], np.float32(csf.pd), np.float32(csf.t1), np.float32(csf.t2))
    assert float(s) < 1e-4


def _energy_outside_centre(img: torch.Tensor) -> float:
    e = fft2c(img.to(torch.complex64)).abs().square()
    h, w = e.shape[-2:]
    centre = e[..., h // 2 - h // 4:h // 2 + h // 4, w // 2 - w // 4:w // 2 + w // 4].sum()
    return float(1 - centre / e.sum())


def _bare_template(z_mm: float, contrast: str, size: int) -> torch.Tensor:
    """The template as is (no warp, shells, sulci, vessels or texture) through the same signal equations."""
    c = (np.arange(size) - size // 2) * (240.0 / size)
    u, v = np.meshgrid(c, c, indexing="ij")
    gm, wm, brain = load_template().sample(-v, -17.0 - u, np.full_like(u, z_mm))
    seq = SEQUENCES[contrast]
    s = {t: signal(seq, np.float32(TISSUES[t].pd), np.float32(TISSUES[t].t1), np.float32(TISSUES[t].t2))
         for t in ("gm", "wm", "csf")}
    return torch.from_numpy(gm * s["gm"] + wm * s["wm"] + np.clip(brain - gm - wm, 0, 1) * s["csf"])


def test_fine_detail_beyond_the_bare_template():
    """The share of k-space energy outside the central quarter (|ky| < H/4, |kx| < W/4): measured at 128 on
    seeds 0-3: 0.028-0.046 (T1) and 0.035-0.059 (T2) against 0.002 and 0.017-0.019 for the bare template."""
    size = 128
    for seed in (0, 3):
        d = simulate_subject(seed, size=size, coils=1, contrasts=("T1", "T2"), noise_level=0.0)
        z = d["T1"].meta["slice_z_mm"][0]
        for name, factor in (("T1", 5.0), ("T2", 1.5)):
            sim = _energy_outside_centre(d[name].image[0].abs())
            bare = _energy_outside_centre(_bare_template(z, name, size))
            assert sim > factor * bare, (seed, name, sim, bare)


def test_ground_truth_consistency(clean, subject):
    for d in clean.values():
        coil_images = ifft2c(d.kspace)
        # Noise-free: k-space is exactly the coil images maps * image, and both targets are their RSS.
        torch.testing.assert_close(coil_images, d.maps * d.image.unsqueeze(1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(d.rss, _rss(coil_images), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(d.rss_true, d.rss)
        assert d.noise_sigma == 0.0
    for name, d in subject.items():
        # Noisy: fastMRI convention, the target is the RSS of the (noisy) fully sampled k-space ...
        torch.testing.assert_close(d.rss, _rss(ifft2c(d.kspace)), atol=1e-5, rtol=1e-4)
        # ... and rss_true is the noise-free one (same anatomy as the noise-free run).
        torch.testing.assert_close(d.rss_true, clean[name].rss_true)


def test_noise_level(subject, clean):
    for name, d in subject.items():
        noise = d.kspace - clean[name].kspace
        sigma = d.meta["noise_level"] * float(clean[name].rss_true[clean[name].head_mask].mean())
        assert d.noise_sigma == pytest.approx(sigma, rel=1e-5)
        measured = float(noise.abs().square().mean().sqrt())  # E|n|^2 = 2 sigma^2
        assert measured == pytest.approx(sigma * 2**0.5, rel=0.03)
        # white: real and imaginary parts each carry half the power, no correlation between coils
        assert float(noise.real.var() / noise.imag.var()) == pytest.approx(1.0, abs=0.05)
        flat = noise.transpose(0, 1).reshape(d.kspace.shape[1], -1)
        cov = (flat @ flat.conj().T) / flat.shape[1]
        off = cov - torch.diag(torch.diagonal(cov))
        assert float(off.abs().max()) < 0.1 * sigma**2


def test_single_coil():
    d = simulate_subject(5, size=48, coils=1, contrasts=("PD",), noise_level=0.0)["PD"]
    assert d.kspace.shape == (1, 1, 48, 48)
    assert torch.equal(d.maps, torch.ones_like(d.maps))
    torch.testing.assert_close(ifft2c(d.kspace)[:, 0], d.image, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(d.rss, d.image.abs(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"contrasts": ("T1", "T3")}, {"contrasts": ()}, {"contrasts": ("T1", "t1")}, {"seed": -1}, {"size": 8},
    {"coils": 0}, {"slices": 0}, {"noise_level": -0.1}, {"noise_level": float("nan")}, {"slices": 40},
    {"seed": 1.5},
])
def test_bad_options_raise_config_error(kwargs):
    args = {"seed": 0, "size": 32, "coils": 2, **kwargs}
    seed = args.pop("seed")
    with pytest.raises(ConfigError):
        simulate_subject(seed, **args)


def test_dataset_round_trip(tmp_path):
    paths = simulate_dataset(tmp_path, subjects=2, size=32, coils=3, contrasts=("t1", "FLAIR"), slices=2, seed=4)
    assert [p.name for p in paths] == ["sub000_T1.h5", "sub000_FLAIR.h5", "sub001_T1.h5", "sub001_FLAIR.h5"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    ref = simulate_subject(subject_seed(4, 1), size=32, coils=3, contrasts=("FLAIR",), slices=2)["FLAIR"]
    f = FastMRIFile(tmp_path / "sub001_FLAIR.h5")
    assert f.is_multicoil and f.num_coils == 3 and len(f) == 2
    for i in range(2):
        assert torch.equal(f.kspace(i), ref.kspace[i])
        assert torch.equal(f.target(i, "reconstruction_rss"), ref.rss[i])
    assert f.attrs["acquisition"] == "AXFLAIR" and f.attrs["patient_id"] == "sub001"
    assert f.attrs["max"] == pytest.approx(float(ref.rss.max()))
    assert f.attrs["subject_seed"] == subject_seed(4, 1)
    with h5py.File(tmp_path / "sub001_FLAIR.h5", "r") as hf:
        np.testing.assert_array_equal(hf["reconstruction_true"][()], ref.rss_true.numpy())
        np.testing.assert_array_equal(hf["coil_maps"][()], ref.maps.numpy())
    # different subjects differ
    assert not torch.equal(FastMRIFile(paths[0]).kspace(0), FastMRIFile(paths[2]).kspace(0))


def test_single_coil_dataset(tmp_path):
    (path,) = simulate_dataset(tmp_path, subjects=1, size=32, coils=1, contrasts=("T2",), seed=1)
    with h5py.File(path, "r") as hf:
        assert hf["kspace"].shape == (1, 32, 32)
        assert "reconstruction_esc" in hf and "reconstruction_true" in hf and "coil_maps" not in hf
    f = FastMRIFile(path)
    assert not f.is_multicoil
    ref = simulate_subject(subject_seed(1, 0), size=32, coils=1, contrasts=("T2",))["T2"]
    assert torch.equal(f.kspace(0), ref.kspace[0])
