"""PSNR / SSIM / NMSE against scikit-image and numpy, metric conventions, folder evaluation, atomic writes."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from mrrecon.errors import ConfigError, DataError, ShapeError
from mrrecon.eval.evaluate import evaluate_folders
from mrrecon.eval.evaluate import main as evaluate_main
from mrrecon.metrics import (
    METRIC_CONVENTIONS,
    MetricAccumulator,
    compute_metrics,
    data_range_for,
    nmse,
    psnr,
    ssim,
)
from mrrecon.utils.io import atomic_write_json, atomic_write_text

TOL = 1e-6


def _random_pair(shape, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    t = rng.random(shape)
    return t, t + noise * rng.standard_normal(shape)


def _structured_pair(n_slices, size=64, seed=1):
    """Phantom-like slices (ellipse, ramp, stripes) of different brightness, and a blurred noisy copy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    slices, preds = [], []
    for s in range(n_slices):
        img = 0.8 * ((xx / 0.7) ** 2 + (yy / 0.9) ** 2 < 1)
        img += 0.3 * ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.05)
        img += 0.1 * (xx + 1) + 0.05 * np.sin(12 * np.pi * yy) * (s + 1)
        img *= 1.0 + s  # slices with different maxima, so volume and per-slice ranges differ
        blurred = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1)) / 3
        slices.append(img)
        preds.append(blurred + 0.02 * rng.standard_normal(img.shape))
    t, p = np.stack(slices), np.stack(preds)
    return (t[0], p[0]) if n_slices == 1 else (t, p)


def _sk_volume(t, p, ranges, win_size=7):
    t3, p3 = t.reshape(-1, *t.shape[-2:]), p.reshape(-1, *p.shape[-2:])
    ranges = np.broadcast_to(np.asarray(ranges, dtype=float), (t3.shape[0],))
    return float(
        np.mean([sk_ssim(a, b, data_range=float(r), win_size=win_size) for a, b, r in zip(t3, p3, ranges, strict=True)])
    )


PAIRS = {
    "random-slice": lambda: _random_pair((64, 64)),
    "random-volume": lambda: _random_pair((3, 48, 40), seed=3),
    "structured-slice": lambda: _structured_pair(1),
    "structured-volume": lambda: _structured_pair(3),
}


# --------------------------------------------------------------------------------------------------
# agreement with scikit-image / numpy (fastMRI convention)


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_matches_skimage_fastmri_convention(case):
    t, p = PAIRS[case]()
    vol_max = t.max()
    assert psnr(t, p) == pytest.approx(sk_psnr(t, p, data_range=vol_max), abs=TOL)
    assert ssim(t, p) == pytest.approx(_sk_volume(t, p, vol_max), abs=TOL)
    np_nmse = np.linalg.norm(t - p) ** 2 / np.linalg.norm(t) ** 2
    assert nmse(t, p) == pytest.approx(np_nmse, rel=1e-10)
    m = compute_metrics(t, p)
    assert m == pytest.approx({"psnr": psnr(t, p), "ssim": ssim(t, p), "nmse": nmse(t, p)}, rel=1e-12)


def test_ssim_other_window_and_explicit_range_match_skimage():
    t, p = _structured_pair(2, size=40)
    assert ssim(t, p, data_range=5.0, win_size=5) == pytest.approx(_sk_volume(t, p, 5.0, win_size=5), abs=TOL)
    assert ssim(t, p, data_range=[2.0, 3.0]) == pytest.approx(_sk_volume(t, p, [2.0, 3.0]), abs=TOL)
    # float32 input: we compute in float64, like skimage on float64 copies
    t32, p32 = t.astype(np.float32), p.astype(np.float32)
    expected = _sk_volume(t32.astype(np.float64), p32.astype(np.float64), float(t32.max()))
    assert ssim(t32, p32) == pytest.approx(expected, abs=1e-9)


def test_ssim_is_not_the_whole_image_average_of_a_padded_filter():
    # An image whose border differs strongly from its interior: the crop of (win-1)//2 pixels matters.
    rng = np.random.default_rng(5)
    t = rng.random((32, 32))
    p = t.copy()
    p[:3, :] = 0.0  # errors only in the cropped border rows
    assert ssim(t, p, data_range=1.0) == pytest.approx(_sk_volume(t, p, 1.0), abs=TOL)
    p2 = t.copy()
    p2[3, :] = 0.0  # first kept row: must lower SSIM
    assert ssim(t, p2, data_range=1.0) < 1.0 - 1e-3


# --------------------------------------------------------------------------------------------------
# hand-checked values


def test_identical_images():
    t, _ = _structured_pair(3)
    assert psnr(t, t) == math.inf
    assert ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    assert nmse(t, t) == 0.0
    assert psnr(t, t, convention="per-slice") == math.inf


def test_hand_computed_psnr_and_nmse():
    t = np.zeros((2, 16, 16))
    t[0, 4, 4] = 1.0  # volume max 1
    p = t + 0.1  # constant error 0.1 -> MSE 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(t, p) == pytest.approx(20.0, abs=1e-12)
    assert psnr(t, p, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2.0), abs=1e-12)
    assert nmse(t, p) == pytest.approx(2 * 16 * 16 * 0.01 / 1.0, rel=1e-12)


def test_psnr_uses_volume_max_not_max_minus_min():
    t = np.full((8, 8), 10.0)
    t[0, 0] = 12.0  # max 12, min 10: fastMRI uses 12, minmax uses 2
    p = t + 0.5
    assert psnr(t, p) == pytest.approx(10 * math.log10(144 / 0.25), abs=1e-12)
    assert psnr(t, p, convention="minmax") == pytest.approx(10 * math.log10(4 / 0.25), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# conventions


def test_conventions_change_the_data_range():
    t, p = _structured_pair(3)
    t = t + 0.5  # non-zero minimum, so max and max - min differ
    p = p + 0.5
    slice_max = t.max(axis=(1, 2))
    slice_minmax = slice_max - t.min(axis=(1, 2))
    assert set(METRIC_CONVENTIONS) == {"fastmri", "per-slice", "minmax"}
    np.testing.assert_allclose(data_range_for(t, "fastmri").numpy(), np.full(3, t.max()))
    np.testing.assert_allclose(data_range_for(t, "per-slice").numpy(), slice_max)
    np.testing.assert_allclose(data_range_for(t, "minmax").numpy(), slice_minmax)

    for conv, ranges in (("per-slice", slice_max), ("minmax", slice_minmax)):
        m = compute_metrics(t, p, convention=conv)
        exp_psnr = np.mean([sk_psnr(a, b, data_range=r) for a, b, r in zip(t, p, ranges, strict=True)])
        assert m["psnr"] == pytest.approx(exp_psnr, abs=TOL)
        assert m["ssim"] == pytest.approx(_sk_volume(t, p, ranges), abs=TOL)
        assert m["nmse"] == pytest.approx(nmse(t, p), rel=1e-12)  # NMSE has no data range
    fm, ps, mm = (compute_metrics(t, p, c) for c in ("fastmri", "per-slice", "minmax"))
    assert fm["psnr"] != pytest.approx(ps["psnr"], abs=0.1)
    assert ps["psnr"] != pytest.approx(mm["psnr"], abs=0.1)
    assert fm["ssim"] != pytest.approx(mm["ssim"], abs=1e-4)


def test_metric_accumulator_mean_and_std():
    acc = MetricAccumulator("fastmri")
    acc.add({"psnr": 30.0, "ssim": 0.9, "nmse": 0.01}, key="a")
    acc.add({"psnr": 34.0, "ssim": 0.8, "nmse": 0.03}, key="b")
    t, p = _structured_pair(2)
    m = acc.update(t, p, key="c")
    assert m == compute_metrics(t, p)
    assert len(acc) == 3 and list(acc.per_item) == ["a", "b", "c"]
    vals = np.array([30.0, 34.0, m["psnr"]])
    assert acc.mean()["psnr"] == pytest.approx(vals.mean())
    assert acc.std()["psnr"] == pytest.approx(vals.std(ddof=1))
    assert acc.summary()["ssim"]["n"] == 3
    with pytest.raises(ValueError):
        acc.add({"psnr": 1.0}, key="a")
    single = MetricAccumulator()
    single.add({"psnr": 1.0})
    assert math.isnan(single.std()["psnr"])


# --------------------------------------------------------------------------------------------------
# input types and bad input


def test_torch_numpy_complex_and_batch_inputs_agree():
    t, p = _structured_pair(3)
    ref = compute_metrics(t, p)
    assert compute_metrics(torch.from_numpy(t), torch.from_numpy(p)) == pytest.approx(ref, rel=1e-12)
    assert compute_metrics(torch.from_numpy(t), p) == pytest.approx(ref, rel=1e-12)  # mixed
    tf, pf = torch.from_numpy(t).float(), torch.from_numpy(p).float()
    assert compute_metrics(tf, pf) == pytest.approx(compute_metrics(tf.numpy(), pf.numpy()), rel=1e-12)
    # complex input: metrics of the magnitude
    phase_t = np.exp(1j * np.linspace(0, 3, t.size)).reshape(t.shape)
    phase_p = np.exp(1j * np.linspace(1, -2, p.size)).reshape(p.shape)
    zt, zp = torch.from_numpy(t * phase_t).to(torch.complex64), torch.from_numpy(p * phase_p)
    ref_mag = compute_metrics(np.abs(zt.numpy().astype(np.complex128)), np.abs(p))
    assert compute_metrics(zt, zp) == pytest.approx(ref_mag, rel=1e-12)
    # leading dims are slices: (B, 1, H, W) == (B, H, W)
    assert compute_metrics(t[:, None], p[:, None]) == pytest.approx(ref, rel=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    t, p = _structured_pair(3)
    ref = compute_metrics(t, p)
    got = compute_metrics(torch.from_numpy(t).cuda(), torch.from_numpy(p).cuda())
    assert got == pytest.approx(ref, rel=1e-9)


def test_bad_input_raises_clear_errors():
    t, p = _random_pair((2, 16, 16))
    with pytest.raises(ShapeError, match="shape"):
        psnr(t, p[:, :, :15])
    bad = p.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compute_metrics(t, bad)
    with pytest.raises(DataError, match="NaN"):
        ssim(torch.from_numpy(t), torch.from_numpy(bad))
    with pytest.raises(DataError, match="zero"):
        nmse(np.zeros((8, 8)), np.ones((8, 8)))
    with pytest.raises(DataError, match="data_range"):
        psnr(np.zeros((8, 8)), np.ones((8, 8)))
    with pytest.raises(ConfigError, match="convention"):
        compute_metrics(t, p, convention="nope")
    with pytest.raises(ShapeError, match="window"):
        ssim(np.ones((5, 5)), np.ones((5, 5)))


# --------------------------------------------------------------------------------------------------
# folder evaluation


def _write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        f.attrs["acquisition"] = "CORPD_FBK"


def test_evaluate_folders(tmp_path):
    tdir, pdir = tmp_path / "targets", tmp_path / "preds"
    tdir.mkdir()
    pdir.mkdir()
    good_t, good_p = _structured_pair(3, size=32)
    good_t, good_p = good_t.astype(np.float32), good_p.astype(np.float32)
    # prediction larger (3, 41, 38): the target region sits at fastMRI's offset ((41-32)//2, (38-32)//2)
    big = np.zeros((3, 41, 38), np.float32)
    big[:, 4:36, 3:35] = good_p
    _write_h5(tdir / "good.h5", reconstruction_rss=good_t)
    _write_h5(pdir / "good.h5", reconstruction=big)
    # single-coil style target key, complex prediction of the same size
    esc_t, esc_p = _random_pair((2, 24, 24), seed=7)
    _write_h5(tdir / "esc.h5", reconstruction_esc=esc_t.astype(np.float32))
    _write_h5(pdir / "esc.h5", reconstruction=(esc_p * 1j).astype(np.complex64))
    # corrupt prediction
    _write_h5(tdir / "corrupt.h5", reconstruction_rss=good_t)
    (pdir / "corrupt.h5").write_bytes(b"this is not an HDF5 file")
    # prediction with the wrong number of slices
    _write_h5(tdir / "slices.h5", reconstruction_rss=good_t)
    _write_h5(pdir / "slices.h5", reconstruction=good_p[:2])
    # no prediction
    _write_h5(tdir / "missing.h5", reconstruction_rss=good_t)

    out = tmp_path / "res" / "metrics.json"
    res = evaluate_folders(tdir, pdir, out_json=out)
    assert res["n_files"] == 2
    assert sorted(res["per_file"]) == ["esc.h5", "good.h5"]
    assert res["missing"] == ["missing.h5"]
    assert sorted(os.path.basename(e["file"]) for e in res["errors"]) == ["corrupt.h5", "slices.h5"]
    assert all(e["error"] for e in res["errors"])
    assert res["target_keys"] == {"esc.h5": "reconstruction_esc", "good.h5": "reconstruction_rss"}

    exp_good = compute_metrics(good_t, good_p)
    exp_esc = compute_metrics(esc_t.astype(np.float32), np.abs(esc_p.astype(np.complex64)))
    assert res["per_file"]["good.h5"] == pytest.approx(exp_good, rel=1e-9)
    assert res["per_file"]["esc.h5"] == pytest.approx(exp_esc, rel=1e-9)
    for m in ("psnr", "ssim", "nmse"):
        assert res[m] == pytest.approx((exp_good[m] + exp_esc[m]) / 2, rel=1e-9)
    assert json.loads(out.read_text())["per_file"] == json.loads(json.dumps(res["per_file"]))

    # no cropping allowed -> the oversized prediction becomes an error, not a crash
    res2 = evaluate_folders(tdir, pdir, crop_to_target=False)
    assert "good.h5" in [os.path.basename(e["file"]) for e in res2["errors"]]
    assert res2["n_files"] == 1
    # acquisition filter: only files with the matching attribute are considered
    assert evaluate_folders(tdir, pdir, acquisition="CORPDFS_FBK")["n_files"] == 0
    with pytest.raises(DataError):
        evaluate_folders(tdir, tmp_path / "does-not-exist")
    # command line: exit status 1 because some files failed, full result written as JSON
    out2 = tmp_path / "cli.json"
    assert evaluate_main([str(tdir), str(pdir), "--out", str(out2)]) == 1
    assert json.loads(out2.read_text())["n_files"] == 2


# --------------------------------------------------------------------------------------------------
# atomic writes


def test_atomic_write_json_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": np.float32(1.5), "b": np.arange(3), "t": torch.tensor([1.0]), "inf": math.inf})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "t": [1.0], "inf": math.inf}
    atomic_write_json(path, {"inf": math.inf}, strict=True)
    assert json.loads(path.read_text()) == {"inf": None}
    before = path.read_text()
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == before  # old content intact after a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]
    atomic_write_text(path, "hello")
    assert path.read_text() == "hello"


# --------------------------------------------------------------------------------------------------
# real data


@pytest.mark.shared_data
def test_real_brain_slice_matches_skimage(shared_data):
    f = shared_data / "fastmri_singlecoil_ssdm" / "brain1.npy"
    if not f.exists():
        pytest.skip(f"{f.name} not in the shared data")
    t = np.abs(np.load(f))[96:224, 96:224]  # 128x128 crop keeps the test fast
    rng = np.random.default_rng(0)
    p = t + 0.03 * t.max() * rng.standard_normal(t.shape)
    assert psnr(t, p) == pytest.approx(sk_psnr(t, p, data_range=t.max()), abs=TOL)
    assert ssim(t, p) == pytest.approx(sk_ssim(t, p, data_range=t.max(), win_size=7), abs=TOL)
