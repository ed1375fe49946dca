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


# --------------------------------------------------------------------------------------------------
# Issue 20: what a new user hits first
# --------------------------------------------------------------------------------------------------
def _undersampled_copy(sim_dir, tmp_path, name="test_file.h5", with_mask=True):
    """A fastMRI test-set-like file: k-space already undersampled (every 4th line + 4 centre lines)."""
    from mrrecon.data.fastmri import write_fastmri_h5

    with h5py.File(sim_dir / "sub000_T2.h5") as f:
        k = f["kspace"][()]
    cols = np.zeros(k.shape[-1], bool)
    cols[::4] = True
    cols[k.shape[-1] // 2 - 2:k.shape[-1] // 2 + 2] = True
    path = write_fastmri_h5(tmp_path / name, k * cols, mask=cols if with_mask else None)
    return path, k * cols, cols


def _zero_filled_rss(kspace):
    import torch

    from mrrecon.physics.coils import rss
    from mrrecon.physics.fft import ifft2c

    return rss(ifft2c(torch.from_numpy(kspace)), dim=-3).numpy()


def test_reconstruct_with_the_files_own_sampling(sim_dir, tmp_path):
    path, under, cols = _undersampled_copy(sim_dir, tmp_path)
    eff = f"effective {cols.size / cols.sum():.2f}x"
    for mask in ("file", "auto"):  # --mask file, and the default (auto) on an already undersampled file
        out = tmp_path / f"{mask}.h5"
        res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(path), "--out", str(out),
                                        "--mask", mask])
        assert res.exit_code == 0, res.output
        assert "its own sampling" in res.output and eff in res.output
        with h5py.File(out) as f:  # undersampled once, not twice: the zero-filled image of the file's own data
            np.testing.assert_allclose(f["reconstruction"][()], _zero_filled_rss(under), rtol=1e-4,
                                       atol=1e-4 * float(np.abs(_zero_filled_rss(under)).max()))
    # A retrospective mask would undersample it a second time: refused, naming the file and the way out.
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(path), "--out",
                                    str(tmp_path / "again.h5"), "--mask", "random1d"])
    assert res.exit_code == 1 and "already undersampled" in res.output and "--mask file" in res.output
    assert not (tmp_path / "again.h5").exists()
    # Without a stored mask the measured (non-zero) lines are the file's sampling.
    path2, _, _ = _undersampled_copy(sim_dir, tmp_path, "no_mask.h5", with_mask=False)
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(path2), "--out",
                                    str(tmp_path / "nm.h5")])
    assert res.exit_code == 0 and "measured: 1-D pattern" in res.output and eff in res.output, res.output


def test_reconstruct_takes_a_folder_and_inline_loader_options(sim_dir, tmp_path):
    import scipy.io

    out = tmp_path / "folder_out"
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(sim_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.h5")) == sorted(p.name for p in sim_dir.glob("*.h5"))
    with h5py.File(sim_dir / "sub000_T2.h5") as f:
        k = f["kspace"][()]
    scipy.io.savemat(tmp_path / "scan.mat", {"kdata": np.transpose(k[0], (1, 2, 0))})  # (H, W, coils)
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled",
                                    f"{tmp_path / 'scan.mat'}::key=kdata,domain=kspace,coil_axis=-1",
                                    "--out", str(tmp_path / "scan.h5")])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "scan.h5") as f:
        assert f["reconstruction"].shape == (1, *k.shape[-2:])
    # The error that asks for loader options says how to pass them.
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", f"{tmp_path / 'scan.mat'}",
                                    "--out", str(tmp_path / "scan2.h5")])
    assert res.exit_code == 1 and "FILE::coil_axis=-1" in res.output


def test_an_image_only_h5_is_refused_unless_asked_for(sim_dir, tmp_path):
    from mrrecon.data.fastmri import write_fastmri_h5

    with h5py.File(sim_dir / "sub000_T2.h5") as f:
        rss_img = f["reconstruction_rss"][()]
    path = write_fastmri_h5(tmp_path / "image_only.h5", reconstruction_rss=rss_img)
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(path), "--out",
                                    str(tmp_path / "o.h5")])
    assert res.exit_code == 1 and "image_only.h5: no 'kspace' dataset" in res.output and "domain=image" in res.output
    assert not (tmp_path / "o.h5").exists()
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", f"{path}::domain=image", "--out",
                                    str(tmp_path / "o.h5")])
    assert res.exit_code == 0, res.output


def test_docs_python_snippets_import_what_they_use():
    """The README's and docs/training.md's Python snippets bind every name they use (no NameError), and import every
    mrrecon module they reach through attributes."""
    import ast
    import builtins
    import importlib.util
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for doc in (root / "README.md", root / "docs" / "training.md"):
        blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
        assert blocks, doc
        for code in blocks:
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue  # a sketch of a class body, not a program
            bound, modules = set(dir(builtins)), set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        bound.add(a.asname or a.name.split(".")[0])
                        parts = a.name.split(".")
                        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                elif isinstance(node, ast.ImportFrom):
                    bound.update(a.asname or a.name for a in node.names)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bound.add(node.id)
                elif isinstance(node, (ast.arg, ast.FunctionDef, ast.ClassDef)):
                    bound.add(node.arg if isinstance(node, ast.arg) else node.name)
            missing = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                       and n.id not in bound}
            for node in ast.walk(tree):  # mrrecon.a.b.f(...): the module mrrecon.a.b must be imported
                chain, n = [], node
                while isinstance(n, ast.Attribute):
                    chain.append(n.attr)
                    n = n.value
                if chain and isinstance(n, ast.Name) and n.id == "mrrecon":
                    dotted = ["mrrecon", *reversed(chain)]
                    for i in range(len(dotted), 1, -1):
                        try:
                            spec = importlib.util.find_spec(".".join(dotted[:i]))
                        except ImportError:  # an attribute of a module, not a module
                            spec = None
                        if spec is not None:
                            if ".".join(dotted[:i]) not in modules:
                                missing.add(".".join(dotted[:i]))
                            break
            assert not missing, f"{doc.name}: the snippet uses {sorted(missing)} without importing it:\n{code}"


def test_benchmark_and_evaluate_exit_nonzero_when_every_input_failed(sim_dir, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not an HDF5 file")
    res = CliRunner().invoke(main, ["benchmark", "--data", str(bad), "--methods", "zero-filled", "--accels", "4",
                                    "--out", str(tmp_path / "bench")])
    assert res.exit_code == 1 and "bad.h5: not an HDF5 file" in res.output and "no method produced" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["evaluate", "--target", str(sim_dir), "--pred", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "nothing evaluated" in res.output and "PSNR nan" not in res.output


def test_benchmark_rows_figures_and_report_agree(sim_dir, tmp_path):
    import csv
    import re

    out = tmp_path / "bench"
    res = CliRunner().invoke(main, ["benchmark", "--data", str(sim_dir), "--methods", "zero-filled,cg-sense",
                                    "--masks", "random1d", "--accels", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    results = json.loads((out / "results.json").read_text())
    # Per-slice rows carry the slice's own effective acceleration; the volume row is their mean.
    for vol in results["volumes"]:
        effs = [float(r["effective_accel"]) for r in rows if r["file"] == vol["file"] and r["method"] == vol["method"]]
        assert len(effs) == 2 and np.mean(effs) == pytest.approx(vol["effective_accel"])
    assert any(len({r["effective_accel"] for r in rows if r["file"] == f}) > 1 for f in {r["file"] for r in rows})
    # Figure headings give the table's effective acceleration.
    page = (out / "report.html").read_text()
    table_eff = re.findall(r"<h3>multi-coil random1d 4x \(effective ([\d.]+)x\)</h3>", page)
    figure_eff = re.findall(r"<h2[^>]*>multi-coil random1d 4x \(effective ([\d.]+)x\)</h2>", page)
    assert table_eff and figure_eff == table_eff
    # Best, median and worst of the first method across the 4 files, each with that slice's PSNR from the csv.
    caps = re.findall(r'<p class="cap">(\w+) of 4 files by zero-filled PSNR \(([\d.]+) dB\): (\S+) slice (\d+)', page)
    assert [c[0] for c in caps] == ["best", "median", "worst"]
    for _, psnr, name, s in caps:
        row = next(r for r in rows if r["method"] == "zero-filled" and r["file"].endswith(name) and r["slice"] == s)
        assert float(psnr) == pytest.approx(float(row["psnr"]), abs=0.006)
    assert [float(c[1]) for c in caps] == sorted((float(c[1]) for c in caps), reverse=True)
    assert "Elapsed: " in page and sorted(p.name for p in out.glob("figure_*.png")) == [
        "figure_00_random1d_4x.png", "figure_01_random1d_4x.png", "figure_02_random1d_4x.png"]


def test_report_lists_skips_once_without_repeats_or_backticks(tmp_path):
    from mrrecon.eval.report import write_reports

    reason = "sigpy-l1wavelet: sigpy is not importable; install it with `pip install sigpy`"
    results = {"summary": [], "environment": {}, "elapsed_seconds": 12.3, "errors": [
        {"file": "/d/bad.h5", "method": None, "error": "/d/bad.h5: not an HDF5 file (wrong format or empty)"}],
        "skipped": [{"method": "sigpy-l1wavelet", "file": None, "reason": reason}] + [
            {"method": "grappa", "file": f"/d/{n}.npy", "reason": "multi-coil method, single-coil data"}
            for n in ("a", "b", "c")]}
    write_reports(tmp_path, results)
    page = (tmp_path / "report.html").read_text()
    assert "<li><b>sigpy-l1wavelet</b>: sigpy is not importable; install it with <code>pip install sigpy</code></li>" \
        in page
    assert page.count("grappa") == 1 and "(a.npy, b.npy, c.npy)" in page and "`" not in page
    assert page.count("bad.h5") == 1 and "Elapsed: 12 s" in page
    md = (tmp_path / "report.md").read_text()
    assert "- **sigpy-l1wavelet**: sigpy is not importable; install it with `pip install sigpy`" in md


def test_espirit_kernel_fallback_is_no_python_warning(sim_dir, tmp_path, caplog):
    import logging
    import warnings

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, "mrrecon.physics.coils"):
        warnings.simplefilter("always")
        res = CliRunner().invoke(main, ["reconstruct", "--method", "cg-sense", str(sim_dir / "sub000_T2.h5"),
                                        "--out", str(tmp_path / "o.h5"), "--mask", "random1d", "--accel", "8"])
    assert res.exit_code == 0, res.output
    assert "using kernel_size" in caplog.text  # the fallback happened (a log record, silent by default)
    assert not [w for w in caught if "espirit" in str(w.message)] and "Warning" not in res.output


def test_reconstruct_and_simulate_show_progress_on_a_terminal_only(tmp_path):
    """On a terminal (a pty as stderr) both draw a tqdm bar; through a pipe (CliRunner) they print none."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    script = ("import sys; from mrrecon.cli import main\n"
              f"main(['simulate', '--out', {str(tmp_path / 's')!r}, '--subjects', '2', '--size', '32', '--coils', '2',"
              "'--contrasts', 'T2'], standalone_mode=False)\n"
              f"main(['reconstruct', '--method', 'zero-filled', {str(tmp_path / 's')!r}, '--out', "
              f"{str(tmp_path / 'r')!r}], standalone_mode=False)\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=follower,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(follower)
    err = b""
    while True:  # read while it runs (a full pty would block the writer); EOF/EIO once it has exited
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, err.decode(errors="replace")
    text = err.decode(errors="replace")
    assert "simulate: 100%" in text and "2/2" in text and "reconstruct: 100%" in text, text
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", str(tmp_path / "s"), "--out",
                                    str(tmp_path / "r2")])
    assert res.exit_code == 0 and "reconstruct:" not in res.output and "%|" not in res.output
