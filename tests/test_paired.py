"""Paired comparisons (mrrecon.eval.paired): statistics against hand-computed values, pairing by unit, the
benchmark's --compare-to; and multi-contrast pairs held in one file (key / reference_key)."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mrrecon.cli import main
from mrrecon.core.runner import SliceResult, VolumeResult
from mrrecon.data.simulate import simulate_dataset
from mrrecon.errors import ConfigError, DataError
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark
from mrrecon.eval.paired import paired_differences, summarise_differences


def test_summary_of_differences_matches_hand_values():
    s = summarise_differences([1, 2, 3, 4, 5, 6])
    # t_{0.975, 5} = 2.570582 (tables); sample std of 1..6 = sqrt(3.5)
    half = 2.570582 * math.sqrt(3.5) / math.sqrt(6)
    assert s["n"] == 6 and s["mean"] == pytest.approx(3.5)
    assert s["ci95"] == pytest.approx([3.5 - half, 3.5 + half], abs=1e-5)
    assert s["p_wilcoxon"] == pytest.approx(2 / 64)  # exact: all six signs positive, two-sided
    assert (s["wins"], s["losses"]) == (6, 0)
    # ranks 1..4, W- = 1 + 3 = 4; sign subsets of {1, 2, 3, 4} with rank sum <= 4: 7 of 16, two-sided 14/16
    mixed = summarise_differences([-1.0, 2.0, -3.0, 4.0])
    assert mixed["p_wilcoxon"] == pytest.approx(14 / 16) and (mixed["wins"], mixed["losses"]) == (2, 2)
    assert summarise_differences([0.0, 0.0])["p_wilcoxon"] == 1.0
    one = summarise_differences([0.5])
    assert one["n"] == 1 and all(math.isnan(x) for x in one["ci95"])


def _vol(method, file, psnrs, error=None, mask="random1d"):
    v = VolumeResult(method=method, file=file, mask=mask, accel=4.0, effective_accel=4.0, n_slices=len(psnrs),
                     data="single-coil", psnr=sum(psnrs) / len(psnrs), ssim=0.5, error=error)
    v.slices = [SliceResult(slice=i, psnr=p, ssim=0.5, nmse=0.1, seconds=0.0, peak_mem_mb=None, nfe=None)
                for i, p in enumerate(psnrs)]
    return v


def test_pairing_matches_units_and_drops_failures():
    vols = [_vol("ref", "a", [30, 32]), _vol("ref", "b", [28, 28]), _vol("ref", "c", [20, 20]),
            _vol("new", "a", [31, 34]), _vol("new", "b", [27, 28]), _vol("new", "c", [0, 0], error="boom"),
            _vol("new", "d", [40, 40]),  # no reference for d: not paired
            _vol("ref", "a", [10, 10], mask="radial2d")]  # another setting without the method: no row
    (row,) = paired_differences(vols, "ref", metrics=("psnr",))
    assert (row["method"], row["mask"], row["n"]) == ("new", "random1d", 2)
    assert row["mean"] == pytest.approx(((32.5 - 31) + (27.5 - 28)) / 2)  # method - reference
    (by_slice,) = paired_differences(vols, "ref", metrics=("psnr",), unit="slice")
    assert by_slice["n"] == 4 and by_slice["mean"] == pytest.approx((1 + 2 - 1 + 0) / 4)
    assert (by_slice["wins"], by_slice["losses"]) == (2, 1)
    with pytest.raises(ConfigError, match="unit"):
        paired_differences(vols, "ref", unit="subject")
    with pytest.raises(ConfigError, match="psnr and ssim"):
        paired_differences(vols, "ref", metrics=("nmse",))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("paired")
    simulate_dataset(out, subjects=3, size=48, coils=4, contrasts=("T2",), slices=1, seed=3)
    return out


def test_benchmark_compare_to_writes_paired_rows_and_report(sim, tmp_path):
    cfg = BenchmarkConfig(methods=["zero-filled", "cg-sense"], masks=("random1d",), accels=(4.0,), figures=0,
                          center_fraction=0.1, compare_to="zero-filled")
    res = run_benchmark([DataSpec(p) for p in sorted(sim.glob("*.h5"))], cfg, tmp_path, progress=False,
                        echo=lambda m: None)
    rows = {r["metric"]: r for r in res["paired"]}
    assert set(rows) == {"psnr", "ssim"} and rows["psnr"]["method"] == "cg-sense" and rows["psnr"]["n"] == 3
    s = {r["method"]: r["psnr_mean"] for r in res["summary"]}
    assert rows["psnr"]["mean"] == pytest.approx(s["cg-sense"] - s["zero-filled"])  # mean of diffs = diff of means
    psnr = {(v["method"], v["file"]): v["psnr"] for v in res["volumes"]}
    diffs = [psnr[("cg-sense", f)] - psnr[("zero-filled", f)] for f in {f for _, f in psnr}]
    assert (rows["psnr"]["wins"], rows["psnr"]["losses"]) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
    assert json.loads((tmp_path / "results.json").read_text())["paired"] == res["paired"]
    assert "## Paired differences" in (tmp_path / "report.md").read_text()
    assert "<h2>Paired differences</h2>" in (tmp_path / "report.html").read_text()


def test_compare_to_an_absent_method_fails_before_writing(sim, tmp_path):
    out = tmp_path / "out"
    cfg = BenchmarkConfig(methods=["zero-filled"], compare_to="cg-sense")
    with pytest.raises(ConfigError, match="cg-sense"):
        run_benchmark([DataSpec(sim / "sub000_T2.h5")], cfg, out, progress=False, echo=lambda m: None)
    assert not out.exists()
    res = CliRunner().invoke(main, ["benchmark", "--data", str(sim), "--methods", "zero-filled", "--compare-to",
                                    "unet", "--out", str(out)])
    assert res.exit_code == 2 and "not one of the benchmark's methods" in res.output and not out.exists()


def test_one_file_with_both_contrasts_is_a_pair(tmp_path):
    from scipy.io import savemat

    from mrrecon.eval.benchmark import collect_data, load_volume

    yy, xx = np.mgrid[:32, :32]
    t2, flair = (1 + xx).astype(np.uint16), (100 + yy).astype(np.uint16)
    savemat(tmp_path / "brain.mat", {"T2": t2, "FLAIR": flair})
    cfg = BenchmarkConfig(masks=("random1d",), accels=(4.0,))
    (spec,), problems = collect_data([f"{tmp_path / 'brain.mat'}::key=T2,reference_key=FLAIR"], cfg)
    assert not problems and spec.reference == spec.path
    (sample,) = load_volume(spec, "random1d", 4.0, cfg)
    assert torch.allclose(sample.reference, torch.from_numpy(flair / flair.max()).float(), atol=1e-6)
    target = sample.target.abs() * sample.meta.scale
    assert torch.allclose(target, torch.from_numpy(t2.astype(np.float32)), rtol=1e-4, atol=1e-3)
    (bad,), _ = collect_data([f"{tmp_path / 'brain.mat'}::key=T2,reference_key=T1"], cfg)
    with pytest.raises(DataError, match="T1"):
        load_volume(bad, "random1d", 4.0, cfg)
    with pytest.raises(ConfigError, match="needs key"):
        collect_data([f"{tmp_path / 'brain.mat'}::reference_key=FLAIR"], cfg)
    (crop,), _ = collect_data([f"{tmp_path / 'brain.mat'}::key=T2,reference_key=FLAIR,kspace_crop=16x16"], cfg)
    with pytest.raises(DataError, match="kspace_crop"):
        load_volume(crop, "random1d", 4.0, cfg)


def test_seed_paired_differences_pair_by_seed_and_volume():
    """Two variants x two seeds on three volumes: per-seed differences, the seed-averaged difference, the spread
    between seeds and the reference's own run-to-run row, against hand values."""
    from mrrecon.eval.paired import seed_paired_differences

    psnr = {("ima", 0): [30.0, 31.0, 32.0], ("ima", 1): [30.5, 31.0, 31.5],
            ("single", 0): [29.0, 30.5, 31.0], ("single", 1): [30.5, 30.0, 30.5]}
    rows = [{"method": f"{v}-s{s}", "file": f"f{i}", "data": "single-coil", "mask": "radial2d", "accel": 8.0,
             "psnr": x, "ssim": 0.5, "error": None} for (v, s), xs in psnr.items() for i, x in enumerate(xs)]
    rows.append({**rows[0], "method": "zero-filled"})  # not a seeded variant: ignored
    rows.append({**rows[-1], "method": "single-s1", "file": "f3", "error": "failed"})  # errors never pair
    seeds_of = {f"{v}-s{s}": (v, s) for v, s in psnr}
    out = {r["variant"]: r for r in seed_paired_differences(rows, "ima", seeds_of)}
    single = out["single"]
    assert single["seeds"] == [0, 1]
    assert single["per_seed"][0]["mean"] == pytest.approx((-1.0 - 0.5 - 1.0) / 3)
    assert single["per_seed"][1]["mean"] == pytest.approx((0.0 - 1.0 - 1.0) / 3)
    # per volume, averaged over seeds: (-1 + 0)/2, (-0.5 - 1)/2, (-1 - 1)/2
    assert single["seed_mean"]["mean"] == pytest.approx((-0.5 - 0.75 - 1.0) / 3)
    assert single["seed_mean"]["n"] == 3 and single["seed_mean"]["losses"] == 3
    assert single["spread"] == pytest.approx(2.5 / 3 - 2.0 / 3)
    noise = out["ima"]
    assert noise["reference_seed"] == 0 and noise["per_seed"][1]["mean"] == pytest.approx(0.0)
    assert noise["per_seed"][1]["wins"] == 1 and noise["per_seed"][1]["losses"] == 1
    with pytest.raises(ConfigError):
        seed_paired_differences(rows, "ima", seeds_of, metric="nmse")
