"""Perceptual metrics (LPIPS, rFID, KID) and their pure-torch feature networks.

The real weights cannot be downloaded here, so the networks run on random weights saved to safetensors:
the tests check the mathematics (FID closed form, KID unbiasedness, LPIPS identities), the checkpoint
layouts (key names, shapes, parameter counts of the public checkpoints), the strict loaders, the .pth
converter and the benchmark plumbing with and without weights."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from mrrecon.cli import main
from mrrecon.data.simulate import simulate_dataset
from mrrecon.errors import DataError, ShapeError
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark
from mrrecon.metrics import perceptual
from mrrecon.metrics.perceptual import (
    LPIPS,
    PerceptualMetrics,
    fid_from_features,
    frechet_distance,
    gaussian_fit,
    kid_from_features,
    mmd2_unbiased,
)
from mrrecon.nn import feature_nets as fn


def _save(module_or_state, path):
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    return path


def _lpips_linear(channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = fn.LPIPSLinear(channels)
    for k, c in enumerate(channels):
        lin.state_dict()[f"lin{k}.model.1.weight"].copy_(torch.rand(1, c, 1, 1, generator=g))  # non-negative
    return lin


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A --feature-weights folder with randomly initialised AlexNet, LPIPS-alex and FID Inception weights."""
    d = tmp_path_factory.mktemp("feature-weights")
    torch.manual_seed(0)
    _save(fn.AlexNetFeatures(), d / "alexnet.safetensors")
    _save(_lpips_linear(fn.AlexNetFeatures.channels), d / "lpips_alex.safetensors")
    _save(_kaiming(fn.InceptionFID()), d / "inception_fid.safetensors")
    return d


def _kaiming(net):
    """He-initialised convolutions keep activations O(1) through the 94 conv layers (PyTorch's default init
    shrinks the pool3 features to ~1e-8, which would make every FID ~0)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


@pytest.fixture(scope="module")
def lpips_only_dir(weights_dir, tmp_path_factory):
    """The same folder without the Inception file: LPIPS only."""
    d = tmp_path_factory.mktemp("only-lpips")
    for name in ("alexnet.safetensors", "lpips_alex.safetensors"):
        (d / name).write_bytes((weights_dir / name).read_bytes())
    return d


def _smooth_image(seed, size=48):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size + 6, size + 6, generator=g), 7, stride=1)[0, 0]
    return (x - x.min()) / (x.max() - x.min())


# ---------------------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d", [(10, 32), (60, 8)])  # fewer images than dimensions, and more
def test_fid_of_a_feature_set_with_itself_is_zero(n, d):
    f = np.random.default_rng(0).normal(size=(n, d)) * np.linspace(0.1, 3, d)
    assert abs(fid_from_features(f, f)) < 1e-8
    assert fid_from_features(f, f + 0.5) == pytest.approx(d * 0.25, rel=1e-9)  # pure mean shift


def test_frechet_distance_matches_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 9.0])
    # Commuting (diagonal) covariances: FID = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2.
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in ("eigh", "sqrtm"):
        assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(closed, rel=1e-10)
    # Non-commuting covariances: the eigen route agrees with scipy's matrix square root.
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    assert frechet_distance(mu1[:1].repeat(5), s1, mu2[:1].repeat(5), s2) == pytest.approx(
        frechet_distance(mu1[:1].repeat(5), s1, mu2[:1].repeat(5), s2, method="sqrtm"), rel=1e-8)
    # From samples of the two Gaussians the estimate converges to the closed form.
    x = rng.normal(size=(40000, 3)) * np.sqrt(a) + mu1
    y = rng.normal(size=(40000, 3)) * np.sqrt(b) + mu2
    assert fid_from_features(x, y) == pytest.approx(closed, rel=0.02)


def test_fid_low_rank_route_equals_the_covariance_route():
    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(7, 20)), rng.normal(size=(9, 20)) * 2 + 0.3
    mu1, s1 = gaussian_fit(f1)
    mu2, s2 = gaussian_fit(f2)
    # (eigen factors of rank-deficient covariances carry sqrt(round-off) terms: agreement to ~1e-9)
    assert fid_from_features(f1, f2) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-7)
    with pytest.raises(DataError):
        fid_from_features(f1[:1], f2)


# ---------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------
def test_mmd2_unbiased_matches_the_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(6, 4)) + 1

    def k(a, b):
        return (a @ b / 4 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / 30
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(6)) / 30
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_a_shift(monkeypatch):
    rng = np.random.default_rng(4)
    # Unbiased: over many independent same-distribution pairs the estimates average to ~0 (within 4 SE).
    vals = np.array([mmd2_unbiased(rng.normal(size=(30, 8)), rng.normal(size=(30, 8))) for _ in range(300)])
    assert abs(vals.mean()) < 4 * vals.std() / np.sqrt(vals.size)
    x, y = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, same_std, m = kid_from_features(x, y, num_subsets=20, subset_size=100, seed=0)
    shifted, _, _ = kid_from_features(x, y + 0.5, num_subsets=20, subset_size=100, seed=0)
    assert m == 100 and same_std > 0
    assert abs(same) < 3 * same_std and shifted > 10 * max(abs(same), same_std)
    assert kid_from_features(x, y, num_subsets=5, subset_size=100, seed=0) == kid_from_features(
        x, y, num_subsets=5, subset_size=100, seed=0)  # reproducible from the seed
    # Per-subset kernels (large sets) give the same numbers as the precomputed kernel matrices.
    precomputed = kid_from_features(x, y, num_subsets=5, subset_size=100, seed=3)
    monkeypatch.setattr(perceptual, "_KID_PRECOMPUTE_MAX", 0)
    assert kid_from_features(x, y, num_subsets=5, subset_size=100, seed=3) == pytest.approx(precomputed, rel=1e-10)
    # Fewer images than the subset size: every subset is the whole set.
    _, std_all, m_all = kid_from_features(x[:50], y[:60], num_subsets=5, subset_size=1000)
    assert m_all == 50


# ---------------------------------------------------------------------------------------------------------
# Networks and loaders
# ---------------------------------------------------------------------------------------------------------
def test_vgg_and_alexnet_stages_have_torchvision_layouts():
    x = fn.imagenet_normalise(torch.rand(2, 3, 48, 40))
    vgg = fn.VGG16Features()
    assert [tuple(f.shape) for f in vgg(x)] == [(2, 64, 48, 40), (2, 128, 24, 20), (2, 256, 12, 10),
                                                (2, 512, 6, 5), (2, 512, 3, 2)]
    conv_idx = sorted({int(k.split(".")[1]) for k in vgg.state_dict()})
    assert conv_idx == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sum(p.numel() for p in vgg.parameters()) == 14_714_688  # torchvision vgg16 features
    alex = fn.AlexNetFeatures()
    assert [tuple(f.shape) for f in alex(x)] == [(2, 64, 11, 9), (2, 192, 5, 4), (2, 384, 2, 1), (2, 256, 2, 1),
                                                 (2, 256, 2, 1)]
    assert sorted({int(k.split(".")[1]) for k in alex.state_dict()}) == [0, 3, 6, 8, 10]
    assert sum(p.numel() for p in alex.parameters()) == 2_469_696  # torchvision alexnet features
    with pytest.raises(ShapeError):
        alex(torch.rand(1, 3, 24, 24))


def test_inception_fid_gives_2048_features_with_the_pytorch_fid_layout():
    net = fn.InceptionFID().eval()
    sd = net.state_dict()
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert tuple(sd["Mixed_6e.branch7x7dbl_5.conv.weight"].shape) == (192, 192, 1, 7)
    assert tuple(sd["fc.weight"].shape) == (1008, 2048) and not any("AuxLogits" in k for k in sd)
    # torchvision inception_v3: 27,161,264 parameters, of which the aux classifier holds 3,326,696; the FID
    # graph has 1008 classes instead of 1000 (8 x 2049 more).
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049
    with torch.no_grad():
        f = net(torch.rand(2, 3, 40, 56))
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    # The FID-specific pools: a padding-excluding average in 7b, a max pool in 7c.
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


def test_loaders_round_trip_and_reject_wrong_files_naming_them(tmp_path, weights_dir):
    alex = fn.load_alexnet_features(weights_dir / "alexnet.safetensors")
    assert not alex.training and not any(p.requires_grad for p in alex.parameters())
    ref = fn.AlexNetFeatures()
    ref.load_state_dict(alex.state_dict())
    bad = _save({"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.1.weight": torch.zeros(2, 2)},
                tmp_path / "wrong_keys.safetensors")
    with pytest.raises(DataError, match="wrong_keys.safetensors"):
        fn.load_alexnet_features(bad)
    state = dict(fn.VGG16Features().state_dict())
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(DataError, match="wrong_shape.safetensors.*shapes"):
        fn.load_vgg16_features(_save(state, tmp_path / "wrong_shape.safetensors"))
    with pytest.raises(DataError, match=r"vgg\.pth.*safetensors"):
        fn.load_vgg16_features(tmp_path / "vgg.pth")
    with pytest.raises(DataError, match="absent.safetensors"):
        fn.load_inception_fid(tmp_path / "absent.safetensors")
    neg = _lpips_linear(fn.AlexNetFeatures.channels)
    neg.lin2.model[1].weight.data[0, 0] = -1.0
    with pytest.raises(DataError, match="negative.safetensors.*non-negative"):
        fn.load_lpips_linear(_save(neg, tmp_path / "negative.safetensors"), "alex")
    # Inception files with or without BatchNorm counters both load.
    inc = {k: v for k, v in fn.InceptionFID().state_dict().items() if not k.endswith("num_batches_tracked")}
    fn.load_inception_fid(_save(inc, tmp_path / "inception_no_counters.safetensors"))


class _NotATensor:
    pass


def test_converter_reads_pth_weights_only_and_filters_prefixes(tmp_path):
    alex = fn.AlexNetFeatures()
    torch.save({**alex.state_dict(), "classifier.1.weight": torch.zeros(4096, 9216)}, tmp_path / "alexnet.pth")
    out = tmp_path / "alexnet.safetensors"
    assert fn.main(["convert", str(tmp_path / "alexnet.pth"), str(out), "--keep-prefix", "features.",
                    "--check", "alexnet"]) == 0
    loaded = fn.load_alexnet_features(out)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in alex.state_dict().items())
    # Without the filter the classifier keys stay and the strict check fails, naming the file.
    with pytest.raises(DataError, match="alexnet_all.safetensors"):
        fn.convert_checkpoint(tmp_path / "alexnet.pth", tmp_path / "alexnet_all.safetensors", check="alexnet")
    # A pickle that needs code (a custom class) is refused by weights_only loading.
    torch.save({"obj": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(DataError, match="evil.pth"):
        fn.convert_checkpoint(tmp_path / "evil.pth", tmp_path / "evil.safetensors")


# ---------------------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_for_identical_symmetric_and_growing_with_noise(net):
    torch.manual_seed(1)
    backbone = fn.AlexNetFeatures() if net == "alex" else fn.VGG16Features()
    model = LPIPS(backbone, _lpips_linear(backbone.channels)).eval()
    x = _smooth_image(0)[None, None].expand(1, 3, -1, -1) * 2 - 1
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        assert model(x, x).item() == pytest.approx(0.0, abs=1e-7)
        y = x + 0.1 * noise
        assert model(x, y).item() == pytest.approx(model(y, x).item(), rel=1e-5)
        d = [model(x, x + s * noise).item() for s in (0.02, 0.1, 0.4)]
    assert 0 < d[0] < d[1] < d[2]


def test_perceptual_metrics_from_folder_reports_what_is_available(weights_dir, lpips_only_dir):
    none = PerceptualMetrics.from_folder(None)
    assert none.available == [] and "no --feature-weights" in none.describe()
    assert "LPIPS, rFID, KID" in none.describe()
    full = PerceptualMetrics.from_folder(weights_dir)
    assert full.available == ["lpips", "fid", "kid"] and full.lpips_net == "alex" and full.skipped == {}
    part = PerceptualMetrics.from_folder(lpips_only_dir)
    assert part.available == ["lpips"] and "inception_fid.safetensors" in part.skipped["fid"]
    assert "rFID, KID" in part.describe()
    # Magnitude convention: identical slices score 0; the same error scores the same at any physical scale.
    t = torch.stack([_smooth_image(3), _smooth_image(4)])
    p = t + 0.05 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    base = part.lpips(t, p, float(t.max()))
    assert part.lpips(t, t, float(t.max())) == pytest.approx([0.0, 0.0], abs=1e-7)
    assert part.lpips(t * 1e4, p * 1e4, float(t.max()) * 1e4) == pytest.approx(base, rel=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Benchmark plumbing
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("perceptual-sim")
    simulate_dataset(out, subjects=1, size=48, coils=4, contrasts=("T2",), slices=2, seed=7)
    return out


def _bench(sim, out, **kw):
    cfg = BenchmarkConfig(methods=["zero-filled"], masks=("random1d",), accels=(4.0, 8.0), seed=0, figures=0,
                          center_fraction=0.1, warmup=False, **kw)
    log = []
    res = run_benchmark([DataSpec(sim / "sub000_T2.h5")], cfg, out, progress=False, echo=log.append)
    return res, log


def test_benchmark_reports_lpips_rfid_kid_with_weights(sim, weights_dir, tmp_path):
    res, log = _bench(sim, tmp_path, feature_weights=str(weights_dir))
    assert any("perceptual metrics: LPIPS (alex), rFID, KID" in m for m in log)
    assert res["perceptual"]["available"] == ["lpips", "fid", "kid"] and res["perceptual"]["skipped"] is None
    assert len(res["runs"]) == 4 and all(r["lpips"] > 0 for r in res["runs"])
    rows = {r["accel"]: r for r in res["summary"]}
    for r in rows.values():
        assert r["lpips_mean"] > 0 and r["fid_n"] == 2 and r["kid_subset_size"] == 2
        assert np.isfinite(r["fid"]) and r["fid"] > 0 and np.isfinite(r["kid_mean"])
        assert r["kid_std"] == pytest.approx(0, abs=1e-9)  # 2 images: every subset is the whole set
    # More undersampling, worse zero-filled images: LPIPS grows (random features still see the aliasing).
    assert rows[8.0]["lpips_mean"] > rows[4.0]["lpips_mean"]
    assert all("lpips" in v for v in res["volumes"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["summary"][0]["fid"] == res["summary"][0]["fid"]
    report = (tmp_path / "report.md").read_text()
    assert "## Perceptual metrics" in report and "| n images | LPIPS | rFID | KID |" in report
    assert "lpips" in (tmp_path / "results.csv").read_text().splitlines()[0]


def test_benchmark_without_weights_skips_with_a_clear_message(sim, tmp_path):
    res, log = _bench(sim, tmp_path)
    msg = [m for m in log if "perceptual" in m]
    assert len(msg) == 1 and "skipped: LPIPS, rFID, KID: no --feature-weights" in msg[0]
    assert "no --feature-weights" in res["perceptual"]["skipped"] and res["perceptual"]["available"] == []
    assert all("lpips" not in r for r in res["runs"]) and all("fid" not in r for r in res["summary"])
    report = (tmp_path / "report.md").read_text()
    assert "## Perceptual metrics" not in report and "Perceptual metrics skipped" in report


def test_cli_benchmark_feature_weights_option(sim, lpips_only_dir, tmp_path):
    res = CliRunner().invoke(main, ["benchmark", "--data", str(sim / "sub000_T2.h5"), "--methods", "zero-filled",
                                    "--accels", "4", "--figures", "0", "--feature-weights", str(lpips_only_dir),
                                    "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| n images | LPIPS | rFID | KID |" in res.output and "skipped: rFID, KID: no inception_fid" in res.output
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["config"]["feature_weights"] == str(lpips_only_dir)
    assert on_disk["perceptual"]["available"] == ["lpips"] and "lpips_mean" in on_disk["summary"][0]
    assert "fid" not in on_disk["summary"][0]
