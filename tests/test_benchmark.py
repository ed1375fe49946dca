"""`mrrecon benchmark`: identical inputs for every method, robust to bad files and failing methods, partial
results on interruption, multi-contrast pairs, and reports that render."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mrrecon.eval.benchmark as bm
from mrrecon.cli import main
from mrrecon.core.reconstructor import MethodInfo, Reconstructor
from mrrecon.data.simulate import simulate_dataset
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, collect_data, incompatibility, run_benchmark
from mrrecon.eval.report import wrap_label, write_reports


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("bm")
    simulate_dataset(out, subjects=2, size=48, coils=4, contrasts=("T2", "PD"), slices=2, seed=5)
    return out


def _cfg(**kw):
    base = dict(methods=["zero-filled", "cg-sense"], masks=("random1d",), accels=(4.0,), seed=0, figures=1,
                center_fraction=0.1)  # 5 ACS lines at 48 columns: enough for ESPIRiT at 8x
    return BenchmarkConfig(**{**base, **kw})


def test_every_method_sees_the_same_input_and_a_corrupt_file_is_reported(sim, tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes((sim / "sub000_T2.h5").read_bytes()[:1500])
    specs = [DataSpec(sim / "sub000_T2.h5"), DataSpec(bad), DataSpec(sim / "sub001_T2.h5")]
    res = run_benchmark(specs, _cfg(accels=(4.0, 8.0)), tmp_path / "out", progress=False, echo=lambda m: None)
    # 2 good files x 2 slices x 2 methods x 2 accelerations, all complete.
    assert len(res["runs"]) == 16 and all(r["error"] is None for r in res["runs"])
    assert [e["file"] for e in res["errors"]] == [str(bad)] * 2  # once per acceleration
    report = (tmp_path / "out" / "report.md").read_text()
    assert "corrupt.h5" in report and "| cg-sense |" in report
    # Identical masks for every method: the same effective acceleration per file and slice.
    eff = {}
    for r in res["runs"]:
        eff.setdefault((r["file"], r["slice"], r["accel"]), set()).add(r["effective_accel"])
    assert all(len(v) == 1 for v in eff.values())
    s = {(r["method"], r["accel"]): r for r in res["summary"]}
    assert s[("cg-sense", 4.0)]["n"] == 2 and np.isfinite(s[("cg-sense", 4.0)]["psnr_mean"])
    assert s[("zero-filled", 4.0)]["psnr_mean"] > s[("zero-filled", 8.0)]["psnr_mean"]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["schema_version"] == 1 and len(on_disk["runs"]) == 16
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("method,file,mask,accel,effective_accel")


class _Explodes(Reconstructor):
    """A method that works once and then fails: the failure must be recorded, not abort the run."""

    name = "explodes"

    def __init__(self, exc):
        self.calls, self.exc = 0, exc

    def reconstruct(self, sample):
        self.calls += 1
        if self.calls > 2:  # after the warm-up and the first timed slice
            raise self.exc
        return sample.target.abs()


def _patch_method(monkeypatch, method):
    info = MethodInfo(name="explodes", factory=lambda device="cpu": method, description="test double")
    real_load, real_info = bm.load, bm.get_info
    monkeypatch.setattr(bm, "load", lambda spec, **kw: method if spec == "explodes" else real_load(spec, **kw))
    monkeypatch.setattr(bm, "get_info", lambda name: info if name == "explodes" else real_info(name))
    monkeypatch.setattr(bm, "select_methods", lambda m: (list(m), []))


def test_a_failing_method_is_recorded_and_the_others_complete(sim, tmp_path, monkeypatch):
    _patch_method(monkeypatch, _Explodes(RuntimeError("boom")))
    specs = [DataSpec(sim / "sub000_T2.h5"), DataSpec(sim / "sub001_T2.h5")]
    res = run_benchmark(specs, _cfg(methods=["explodes", "zero-filled"]), tmp_path, progress=False,
                        echo=lambda m: None)
    errs = [e for e in res["errors"] if e["method"] == "explodes"]
    assert len(errs) == 2 and "boom" in errs[0]["error"]
    assert sum(1 for r in res["runs"] if r["method"] == "zero-filled" and r["error"] is None) == 4
    assert "boom" in (tmp_path / "report.html").read_text()


def test_an_interrupted_run_keeps_what_it_finished(sim, tmp_path, monkeypatch):
    _patch_method(monkeypatch, _Explodes(KeyboardInterrupt()))
    specs = [DataSpec(sim / "sub000_T2.h5"), DataSpec(sim / "sub001_T2.h5")]
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(specs, _cfg(methods=["zero-filled", "explodes"]), tmp_path, progress=False,
                      echo=lambda m: None)
    done = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in done["runs"]} == {"zero-filled"} and len(done["runs"]) == 2
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2


def test_paired_data_carry_the_reference_and_methods_are_matched_to_data(sim, tmp_path):
    cfg = _cfg(methods=["zero-filled"], target_contrast="T2", reference_contrast="PD")
    specs, problems = collect_data([str(sim)], cfg)
    assert len(specs) == 2 and not problems and all(s.reference.name.endswith("_PD.h5") for s in specs)
    samples = bm.load_volume(specs[0], "random1d", 4.0, cfg)
    assert samples[0].reference is not None and samples[0].reference.shape == samples[0].target.shape
    paired = MethodInfo(name="p", factory=lambda device="cpu": None, description="", needs_reference=True)
    multi = MethodInfo(name="m", factory=lambda device="cpu": None, description="", multicoil_only=True)
    assert incompatibility(paired, samples[0]) is None and incompatibility(multi, samples[0]) is None
    single = bm.load_volume(DataSpec(sim / "sub000_T2.h5"), "random1d", 4.0, _cfg())[0]
    assert "reference" in incompatibility(paired, single)
    res = run_benchmark(specs, cfg, tmp_path, progress=False, echo=lambda m: None)
    assert len(res["volumes"]) == 2 and not res["errors"]


def test_inline_options_and_manifest(tmp_path, shared_data):
    specs, problems = collect_data(["x/y.mat::domain=kspace,key=DATA,coil_axis=-1,kspace_crop=320x168"], _cfg())
    assert problems and "not found" in problems[0]["error"]
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"root: {shared_data}\nfiles:\n  - path: fastmri_singlecoil_ssdm/knee1.npy\n"
                        "  - path: no/such.npy\n  - path: multicoil_brain8ch_kspace_espirit/brain_alias_8ch.mat\n"
                        "    key: DATA\n    domain: kspace\n    coil_axis: -1\n    kspace_crop: [320, 168]\n")
    specs, problems = collect_data([str(manifest)], _cfg())
    assert [s.path.name for s in specs] == ["knee1.npy", "brain_alias_8ch.mat"]
    assert specs[1].options["kspace_crop"] == (320, 168) and "such.npy" in problems[0]["file"]
    s = bm.load_volume(specs[1], "random1d", 4.0, _cfg())[0]
    assert s.kspace.shape == (8, 320, 168)


def test_reports_render_from_a_tiny_results_file(tmp_path):
    row = dict(method="zero-filled", mask="random1d", accel=4.0, data="multi-coil", effective_accel=4.1, n=2,
               n_slices=2, failed=0,
               psnr_mean=30.0, psnr_std=1.0, ssim_mean=0.8, ssim_std=0.01, nmse_mean=0.01, seconds_mean=0.01,
               peak_mem_mb=3.0, nfe=None)
    better = dict(row, method="cg-sense", psnr_mean=32.5, seconds_mean=0.5)
    results = {"summary": [row, better], "environment": {"device": "cpu", "python": "3.11"},
               "errors": [{"file": "bad.h5", "method": None, "error": "DataError: truncated"}],
               "skipped": [{"method": "grappa", "file": "knee.npy", "reason": "multi-coil method, single-coil data"}]}
    img = np.random.default_rng(0).random((32, 32))
    figs = [{"file": "a.h5", "name": "a.h5", "mask": "random1d", "accel": 4.0, "effective_accel": 4.1, "slice": 0,
             "target": img, "images": {"zero-filled": img * 0.9, "cg-sense": img}}]
    write_reports(tmp_path, results, figs)
    md = (tmp_path / "report.md").read_text()
    assert "| multi-coil | cg-sense | random1d | 4 | 4.10 | 2 | **32.50 ± 1.00** |" in md
    assert "bad.h5" in md and "grappa" in md and "psnr_vs_time.png" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("<table>") == 1 and page.count("data:image/png;base64,") == 2
    assert '<td class="best">32.50 ± 1.00</td>' in page


def test_cli_benchmark(sim, tmp_path):
    res = CliRunner().invoke(main, ["benchmark", "--data", str(sim / "sub000_PD.h5"), "--methods", "zero-filled",
                                    "--accels", "4", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| multi-coil | zero-filled | random1d | 4 |" in res.output and (tmp_path / "report.html").is_file()
    res = CliRunner().invoke(main, ["benchmark", "--data", str(sim), "--methods", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown method" in res.output



class _Sampler(Reconstructor):
    """A sampling method whose posterior spread is known (0.1 in the sample's normalised units)."""

    name = "sampler"
    supports_uncertainty = True

    def reconstruct(self, sample):
        return sample.target.abs()

    def reconstruct_with_uncertainty(self, sample, samples):
        g = torch.Generator().manual_seed(0)
        draws = sample.target.abs() + 0.1 * torch.randn((samples, *sample.shape), generator=g)
        return draws.mean(0), draws.std(0)


def test_uncertainty_maps_reach_the_report(sim, tmp_path, monkeypatch):
    method = _Sampler()
    info = MethodInfo(name="sampler", factory=lambda device="cpu": method, description="test double")
    real_load, real_info = bm.load, bm.get_info
    monkeypatch.setattr(bm, "load", lambda spec, **kw: method if spec == "sampler" else real_load(spec, **kw))
    monkeypatch.setattr(bm, "get_info", lambda name: info if name == "sampler" else real_info(name))
    monkeypatch.setattr(bm, "select_methods", lambda m: (list(m), []))
    cfg = _cfg(methods=["sampler", "zero-filled"], uncertainty_samples=8)
    run_benchmark([DataSpec(sim / "sub000_T2.h5")], cfg, tmp_path, progress=False, echo=lambda m: None)
    assert (tmp_path / "uncertainty_00_random1d_4x.png").is_file()
    assert "posterior mean and std" in (tmp_path / "report.md").read_text()
    sample = bm.load_volume(DataSpec(sim / "sub000_T2.h5"), "random1d", 4.0, cfg)[0]
    maps = bm._uncertainty({"sampler": method, "zero-filled": real_load("zero-filled")},
                           {"sampler": None, "zero-filled": None}, sample, cfg, echo=lambda m: None)
    assert set(maps) == {"sampler"}  # zero-filled does not sample
    std = float(np.median(maps["sampler"][1]))
    assert std == pytest.approx(0.1 * sample.meta.scale, rel=0.3)  # physical units, like the figure's target


def test_wrap_label_breaks_long_method_specs_at_separators():
    spec = "ima:weights=runs/ima-retrain/ima-single-s0/final"
    lines = wrap_label(spec, width=20).split("\n")
    assert "".join(lines) == spec  # nothing lost or added
    assert len(lines) > 1 and all(len(x) <= 20 for x in lines)
    assert all(x[-1] in ":,/=" for x in lines[:-1])  # breaks only after a separator
    assert wrap_label("zero-filled") == "zero-filled"
