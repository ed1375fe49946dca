"""The embedded brain simulator: determinism, shared anatomy, contrast, detail, ground truth, h5 round trip."""

import json

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


def test_dataset_in_worker_processes_writes_the_same_files(tmp_path):
    """Subjects simulated in spawned processes (prepare_simulated's parallel path) are the files one process
    writes: each subject depends only on its seed."""
    kw = dict(subjects=4, size=32, coils=(2, 4), contrasts=("T2", "random"), seed=7, noise_level=(0.01, 0.05))
    serial = simulate_dataset(tmp_path / "one", **kw)
    parallel = simulate_dataset(tmp_path / "many", workers=2, **kw)
    assert [p.name for p in parallel] == [p.name for p in serial]
    for a, b in zip(serial, parallel, strict=True):
        with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
            assert sorted(ha) == sorted(hb)
            for key in ha:
                np.testing.assert_array_equal(ha[key][()], hb[key][()], err_msg=f"{b.name}: {key}")
            assert ha.attrs["coils"] == hb.attrs["coils"]
    with pytest.raises(ConfigError, match="workers"):
        simulate_dataset(tmp_path / "bad", subjects=2, size=32, workers=0)


def test_single_coil_dataset(tmp_path):
    (path,) = simulate_dataset(tmp_path, subjects=1, size=32, coils=1, contrasts=("T2",), seed=1)
    with h5py.File(path, "r") as hf:
        assert hf["kspace"].shape == (1, 32, 32)
        assert "reconstruction_esc" in hf and "reconstruction_true" in hf and "coil_maps" not in hf
    f = FastMRIFile(path)
    assert not f.is_multicoil
    ref = simulate_subject(subject_seed(1, 0), size=32, coils=1, contrasts=("T2",))["T2"]
    assert torch.equal(f.kspace(0), ref.kspace[0])


# ----------------------------------------------------------------------------------------------------------
# Training sets: the randomised contrast and per-subject acquisitions
# ----------------------------------------------------------------------------------------------------------
ALL = ("T1", "T2", "PD", "FLAIR", "random")


@pytest.fixture(scope="module")
def with_random():
    return simulate_subject(11, size=SIZE, coils=4, slices=2, contrasts=ALL)


def _tissue_means(d, tissues=("csf", "gm", "wm", "fat", "muscle", "marrow")) -> np.ndarray:
    return np.array([float(d.rss_true[d.labels == LABELS.index(t)].mean()) for t in tissues])


def test_random_contrast_leaves_the_others_unchanged(subject, with_random):
    assert list(with_random) == list(ALL)
    for name in ("T1", "T2", "PD", "FLAIR"):
        assert torch.equal(with_random[name].kspace, subject[name].kspace), name
        assert with_random[name].meta["TR_ms"] == subject[name].meta["TR_ms"]
    # same anatomy, masks and coil maps under the random contrast
    r = with_random["random"]
    assert torch.equal(r.labels, subject["T1"].labels) and torch.equal(r.maps, subject["T1"].maps)


def test_random_contrast_reproducible_from_the_seed(with_random):
    alone = simulate_subject(11, size=SIZE, coils=4, slices=2, contrasts=("RANDOM",))
    assert list(alone) == ["random"]
    assert torch.equal(alone["random"].kspace, with_random["random"].kspace)
    assert alone["random"].meta["random"] == with_random["random"].meta["random"]


def test_random_contrast_differs_from_named_and_between_subjects(with_random):
    r = with_random["random"]
    shape = _tissue_means(r) / _tissue_means(r).mean()
    for name in ("T1", "T2", "PD", "FLAIR"):
        named = _tissue_means(with_random[name]) / _tissue_means(with_random[name]).mean()
        assert np.abs(shape - named).max() > 0.1, name
    # other subjects: other draws, other tissue contrast (relative tissue means)
    shapes, draws = [shape], [r.meta["random"]]
    for seed in (12, 13, 14):
        o = simulate_subject(seed, size=SIZE, coils=1, contrasts=("random",), noise_level=0.0)["random"]
        shapes.append(_tissue_means(o) / _tissue_means(o).mean())
        draws.append(o.meta["random"])
    for i in range(len(shapes)):
        for j in range(i):
            assert draws[i] != draws[j]
            assert np.abs(shapes[i] - shapes[j]).max() > 0.1, (i, j)


def _pure_tissue_means(d, tissues):
    """Mean noise-free intensity over pixels that are clearly one tissue (same label after a 3x3 erosion)."""
    lab = d.labels[0].numpy()
    out = []
    for t in tissues:
        core = lab == LABELS.index(t)
        core[1:-1, 1:-1] &= core[:-2, 1:-1] & core[2:, 1:-1] & core[1:-1, :-2] & core[1:-1, 2:]
        assert core.sum() >= 10, t
        out.append(float(d.rss_true[0].numpy()[core].mean()))
    return np.array(out)


def test_random_contrast_renders_what_its_meta_says():
    """Intensity mode: tissue means follow the drawn intensities; physics mode: they follow the signal equation
    applied to the drawn tissue parameters and sequence (bias field, texture, partial volume blur both)."""
    from mrrecon.data.phantom.contrast import Sequence

    tissues = ("csf", "gm", "wm", "fat")  # the others are too thin for pure pixels at this size
    for fraction in (1.0, 0.0):
        d = simulate_subject(21, size=128, coils=1, contrasts=("random",), noise_level=0.0,
                             random_intensity_fraction=fraction)["random"]
        m = d.meta
        if fraction == 1.0:
            assert m["sequence"] == "intensity" and m["random"]["mode"] == "intensity" and m["TR_ms"] is None
            expected = np.array([m["random"]["intensity"][t] for t in tissues])
        else:
            assert m["sequence"] in ("SE", "IR", "GRE", "IR-GRE") and m["random"]["mode"] == "physics"
            seq = Sequence("random", tr=m["TR_ms"], te=m["TE_ms"], ti=m["TI_ms"], flip_deg=m["flip_deg"])
            expected = np.array([float(signal(seq, *map(np.float32, m["random"]["tissues"][t]))) for t in tissues])
        measured = _pure_tissue_means(d, tissues)
        assert np.corrcoef(measured, expected)[0, 1] > 0.9, (fraction, measured, expected)


def test_random_draws_cover_every_kind():
    """The draws (no images): every sequence kind and the intensity mode occur at about their probability,
    the times are ordered (TE < TR, TI < TR), and the per-tissue parameters vary widely."""
    from mrrecon.data.phantom.contrast import RANDOM_KIND_PROB, RANDOM_KINDS, draw_random_contrast

    specs = [draw_random_contrast(np.random.default_rng(s), 0.2) for s in range(400)]
    kinds = [s.kind for s in specs]
    assert kinds.count("intensity") / 400 == pytest.approx(0.2, abs=0.06)
    for kind, p in zip(RANDOM_KINDS, RANDOM_KIND_PROB, strict=True):
        assert kinds.count(kind) / 400 == pytest.approx(0.8 * p / sum(RANDOM_KIND_PROB), abs=0.06), kind
    for s in specs:
        if s.sequence is not None:
            assert 0 < s.sequence.te < s.sequence.tr and (s.sequence.ti is None or s.sequence.ti < s.sequence.tr)
    gm_over_wm = np.array([s.tissues["gm"].t1 / s.tissues["wm"].t1 for s in specs])
    assert gm_over_wm.min() < 1.0 < 1.5 * TISSUES["gm"].t1 / TISSUES["wm"].t1 < gm_over_wm.max()
    assert all(s.tissues["bone"].pd == 0.0 for s in specs)


def test_gradient_echo_signal_equations():
    """Spoiled GRE peaks at the Ernst angle cos(a) = exp(-TR/T1); inversion-prepared GRE nulls a tissue at its
    null TI; a 90 degree GRE with TE -> 0 equals the spin echo's saturation recovery."""
    from mrrecon.data.phantom.contrast import Sequence

    pd, t1, t2 = np.float32(0.8), np.float32(800.0), np.float32(80.0)
    ernst = float(np.degrees(np.arccos(np.exp(-20.0 / 800.0))))
    angles = (ernst - 4, ernst, ernst + 4)
    s = {a: float(signal(Sequence("g", tr=20.0, te=3.0, flip_deg=a), pd, t1, t2)) for a in angles}
    assert s[ernst] > s[ernst - 4] and s[ernst] > s[ernst + 4]
    ti = flair_null_ti(2500.0, 800.0)
    assert float(signal(Sequence("m", tr=2500.0, te=3.0, ti=ti, flip_deg=9.0), pd, t1, t2)) < 1e-4
    se = float(signal(Sequence("s", tr=500.0, te=1e-6), pd, t1, t2))
    assert float(signal(Sequence("g", tr=500.0, te=1e-6, flip_deg=90.0), pd, t1, t2)) == pytest.approx(se, rel=1e-5)


def test_acquisition_drawn_per_subject(tmp_path):
    from mrrecon.data.simulate import draw_acquisition

    ranges = dict(size=(32, 48), coils=(2, 5), noise_level=(0.01, 0.08), bias_std=(0.05, 0.3),
                  single_coil_fraction=0.3)
    paths = simulate_dataset(tmp_path, subjects=6, contrasts=("T2",), seed=3, store_coil_maps=False, **ranges)
    seen = []
    for i, path in enumerate(paths):
        acq = draw_acquisition(subject_seed(3, i), **ranges)
        with h5py.File(path, "r") as hf:
            a = dict(hf.attrs)
            assert "coil_maps" not in hf
            assert (a["size"], a["coils"]) == (acq.size, acq.coils)
            assert a["noise_level"] == pytest.approx(acq.noise_level) and a["bias_std"] == pytest.approx(acq.bias_std)
            assert a["size"] in (32, 48) and (a["coils"] == 1 or 2 <= a["coils"] <= 5)
            assert 0.01 <= a["noise_level"] <= 0.08 and 0.05 <= a["bias_std"] <= 0.3
            if a["coils"] == 1:  # fastMRI single-coil layout
                assert hf["kspace"].shape == (1, a["size"], a["size"]) and "reconstruction_esc" in hf
            else:
                assert hf["kspace"].shape == (1, a["coils"], a["size"], a["size"]) and "reconstruction_rss" in hf
        seen.append(acq)
    # the draws vary (this seed gives both sizes, single- and multi-coil subjects, several noise levels)
    assert {a.size for a in seen} == {32, 48}
    assert any(a.coils == 1 for a in seen) and len({a.coils for a in seen if a.coils > 1}) >= 2
    assert len({round(a.noise_level, 6) for a in seen}) == len(seen)
    # a file is the subject simulated with the same options
    ref = simulate_subject(subject_seed(3, 5), contrasts=("T2",), **ranges)["T2"]
    assert torch.equal(FastMRIFile(paths[5]).kspace(0), ref.kspace[0])
    # every subject single-coil; fixed values are used as given (no draw)
    for path in simulate_dataset(tmp_path / "single", subjects=2, size=32, coils=(4, 16), contrasts=("PD",),
                                 single_coil_fraction=1.0):
        assert not FastMRIFile(path).is_multicoil
    assert draw_acquisition(7) == draw_acquisition(7, size=[256], coils=(8, 8), noise_level=(0.03, 0.03))


def test_fixed_setting_keeps_the_other_draws():
    from mrrecon.data.simulate import draw_acquisition

    a = draw_acquisition(5, size=(192, 224, 256), coils=(4, 16), noise_level=(0.01, 0.08))
    b = draw_acquisition(5, size=256, coils=(4, 16), noise_level=(0.01, 0.08), single_coil_fraction=0.0)
    assert (a.coils, a.noise_level) == (b.coils, b.noise_level)


def test_coil_maps_kept_by_default_and_dropped_on_request(tmp_path):
    (kept,) = simulate_dataset(tmp_path / "a", subjects=1, size=32, coils=2, contrasts=("random",))
    (dropped,) = simulate_dataset(tmp_path / "b", subjects=1, size=32, coils=2, contrasts=("random",),
                                  store_coil_maps=False)
    assert kept.name == "sub000_random.h5"
    with h5py.File(kept, "r") as a, h5py.File(dropped, "r") as b:
        assert "coil_maps" in a and "coil_maps" not in b
        np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])
        assert a.attrs["contrast"] == "random" and a.attrs["acquisition"] == "AXRANDOM"
        assert "mode" in json.loads(a.attrs["random_contrast"])


@pytest.mark.parametrize("kwargs", [
    {"coils": (5, 2)}, {"coils": (1, 2, 3)}, {"coils": (0, 4)}, {"noise_level": (0.0, 0.1)},
    {"noise_level": (0.1, -1.0)}, {"size": []}, {"size": [64, 8]}, {"single_coil_fraction": 1.5},
    {"bias_std": -0.1}, {"bias_std": (0.3, 0.1)}, {"random_intensity_fraction": 2.0},
    {"contrasts": ("random", "Random")},
])
def test_bad_training_options_raise_config_error(kwargs):
    args = {"size": 32, "coils": 2, **kwargs}
    with pytest.raises(ConfigError) as err:
        simulate_subject(0, **args)
    assert "\n" not in str(err.value)


def test_bad_dataset_option_fails_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="store_coil_maps"):
        simulate_dataset(tmp_path, subjects=1, size=32, store_coil_maps="no")
    with pytest.raises(ConfigError, match="coils"):
        simulate_dataset(tmp_path, subjects=1, size=32, coils=(8, 4))
    assert not list(tmp_path.glob("*.h5"))
