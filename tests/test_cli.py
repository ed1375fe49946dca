"""End-to-end CLI: simulate -> info -> reconstruct -> evaluate, demo, and bad files in a batch."""

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mrrecon.cli import main


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    res = CliRunner().invoke(main, ["simulate", "--out", str(out), "--subjects", "2", "--size", "64", "--coils", "4",
                                    "--contrasts", "T1,T2", "--slices", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    return out


def test_simulate_writes_one_file_per_subject_and_contrast(sim_dir):
    names = sorted(p.name for p in sim_dir.glob("*.h5"))
    assert names == ["sub000_T1.h5", "sub000_T2.h5", "sub001_T1.h5", "sub001_T2.h5"]


def test_info_describes_a_file(sim_dir):
    res = CliRunner().invoke(main, ["info", str(sim_dir / "sub000_T2.h5")])
    assert res.exit_code == 0, res.output
    assert "slices: 2" in res.output and "coils: 4" in res.output and "fully sampled" in res.output


def test_reconstruct_then_evaluate(sim_dir, tmp_path):
    pred = tmp_path / "pred"
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(sim_dir / "sub000_T2.h5"),
                                    str(sim_dir / "sub001_T2.h5"), "--out", str(pred), "--mask", "random1d",
                                    "--accel", "4", "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert "effective" in res.output
    with h5py.File(pred / "sub000_T2.h5") as f:
        rec = f["reconstruction"][()]
    with h5py.File(sim_dir / "sub000_T2.h5") as f:
        target = f["reconstruction_rss"][()]
    assert rec.shape == target.shape and rec.dtype == np.float32
    # Physical units: the zero-filled image is on the target's scale (not the normalised one).
    assert 0.5 < rec.max() / target.max() < 1.5
    # Evaluate only the T2 targets that have predictions; T1 files are reported as missing.
    out_json = tmp_path / "m.json"
    res = CliRunner().invoke(main, ["evaluate", "--target", str(sim_dir), "--pred", str(pred), "--json", str(out_json)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(out_json.read_text())
    assert metrics["n_files"] == 2 and 15 < metrics["psnr"] < 45 and 0 < metrics["ssim"] < 1


def test_reconstruct_skips_a_corrupt_file_and_keeps_the_good_one(sim_dir, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes((sim_dir / "sub000_T1.h5").read_bytes()[:2000])  # truncated h5
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(bad), str(sim_dir / "sub000_T1.h5"),
                                    "--out", str(out)])
    assert res.exit_code == 1
    assert "bad.h5" in res.output
    assert (out / "sub000_T1.h5").is_file() and not (out / "bad.h5").exists()


def test_unknown_method_is_a_clear_error(sim_dir, tmp_path):
    res = CliRunner().invoke(main, ["reconstruct", "--method", "nope", str(sim_dir / "sub000_T1.h5"),
                                    "--out", str(tmp_path / "o.h5")])
    assert res.exit_code == 2 and "unknown method 'nope'" in res.output


def test_methods_lists_zero_filled():
    res = CliRunner().invoke(main, ["methods"])
    assert res.exit_code == 0 and "zero-filled" in res.output
    res = CliRunner().invoke(main, ["methods", "--details", "zero-filled", "unet"])
    assert res.exit_code == 0 and "zero-filled" in res.output
    assert "GMACs per 256x256 1-coil slice: 2.30" in res.output and "cg-sense" not in res.output
    res = CliRunner().invoke(main, ["methods", "nope"])
    assert res.exit_code == 2 and "unknown method 'nope'" in res.output


def test_demo_writes_table_report_and_figures(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--subjects", "1", "--size", "64", "--coils", "4", "--slices", "1",
            "--methods", "zero-filled"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["accel"]): r for r in results["summary"]}
    assert set(rows) == {("zero-filled", 4.0), ("zero-filled", 8.0)}
    # More undersampling, worse zero-filled image.
    assert rows[("zero-filled", 4.0)]["psnr_mean"] > rows[("zero-filled", 8.0)]["psnr_mean"]
    assert rows[("zero-filled", 4.0)]["effective_accel"] > 3.5
    report = (out / "report.md").read_text()
    assert "| zero-filled |" in report and "figure_00_random1d_4x.png" in report
    assert (out / "figure_00_random1d_4x.png").stat().st_size > 1000 and (out / "report.html").is_file()
    # A second run reuses the simulated data.
    sim = next((out / "data").iterdir())
    mtime = {p: p.stat().st_mtime_ns for p in sim.iterdir()}
    assert CliRunner().invoke(main, args).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in sim.iterdir()} == mtime
