"""Bad input through the command line: every case ends in one clear line that names the file (or the option)
and the problem, a non-zero exit where nothing could be done, and outputs already written left intact; a seeded
fuzz test corrupts good h5 / mat / cfl files and checks that every failure is an mrrecon error, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from mrrecon.cli import main
from mrrecon.data.fastmri import write_fastmri_h5, write_reconstruction
from mrrecon.data.formats import write_cfl
from mrrecon.data.simulate import simulate_dataset

W = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A good simulated file (4 coils, 2 slices, 32 x 32), its k-space, and the same k-space as .mat and .cfl."""
    root = tmp_path_factory.mktemp("bad_inputs")
    (good,) = simulate_dataset(root / "sim", subjects=1, size=W, coils=4, contrasts=("T2",), slices=2, seed=1)
    with h5py.File(good) as f:
        kspace, rss = f["kspace"][()], f["reconstruction_rss"][()]
    scipy.io.savemat(root / "good.mat", {"kdata": np.transpose(kspace[0], (1, 2, 0))})  # (H, W, coils)
    write_cfl(root / "good", np.transpose(kspace[0], (1, 2, 0))[None])  # BART: (1, H, W, coils)
    return {"root": root, "good": good, "kspace": kspace, "rss": rss}


def _h5(path: Path, **datasets) -> Path:
    """An h5 file with exactly these datasets (written raw, bypassing the validating writer)."""
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def _mask_cols(n_every: int = 4) -> np.ndarray:
    m = np.zeros(W, bool)
    m[::n_every] = True
    m[W // 2 - 2:W // 2 + 2] = True
    return m


@dataclass
class Case:
    name: str
    build: Callable[[Path, dict], list[str]]  # (case folder, data) -> mrrecon arguments
    names: str  # what every error line must mention (a file name or an option)
    problem: str  # regex the error line must match
    code: tuple[int, ...] = (1, 2)


def _recon(*inputs, out: str = "OUT", extra: tuple[str, ...] = ()) -> list[str]:
    return ["reconstruct", "--method", "zero-filled", *map(str, inputs), "--out", out, *extra]


def _raw(name, content: bytes):
    def build(d, data):
        p = d / name
        p.write_bytes(content)
        return _recon(p)
    return build


def _h5_case(name, make):
    def build(d, data):
        return _recon(_h5(d / name, **make(data)))
    return build


def _npy(name, make, opts=""):
    def build(d, data):
        np.save(d / name, make(data))
        return _recon(f"{d / name}{opts}")
    return build


def _truncated(d, data):
    p = d / "truncated.h5"
    p.write_bytes(data["good"].read_bytes()[:3000])
    return _recon(p)


def _undersampled(kind_args: tuple[str, ...], with_mask: bool):
    def build(d, data):
        m = _mask_cols()
        p = d / "under.h5"
        write_fastmri_h5(p, data["kspace"] * m, mask=m if with_mask else None)
        return _recon(p, extra=kind_args)
    return build


def _mat_many(d, data):
    scipy.io.savemat(d / "two.mat", {"a": np.ones((4, 4)), "b": np.zeros((4, 4))})
    return _recon(d / "two.mat")


def _cfl_short(d, data):
    write_cfl(d / "short", np.ones((8, 8), np.complex64))
    (d / "short.cfl").write_bytes((d / "short.cfl").read_bytes()[:100])
    return _recon(d / "short.cfl")


def _cfl_header(d, data):
    write_cfl(d / "hdr", np.ones((8, 8), np.complex64))
    (d / "hdr.hdr").write_text("# Dimensions\nnot numbers\n")
    return _recon(d / "hdr.cfl")


def _duplicate_names(d, data):
    scipy.io.savemat(d / "same.mat", {"kdata": np.ones((8, 8))})
    np.save(d / "same.npy", np.ones((8, 8)))
    return _recon(d / "same.mat", d / "same.npy", out=str(d / "out_dir"))


def _file_as_parent(command):
    def build(d, data):
        (d / "afile").write_text("x")
        out = str(d / "afile" / "sub")
        return {"reconstruct": _recon(data["good"], out=out + ".h5"),
                "benchmark": ["benchmark", "--data", str(data["good"]), "--methods", "zero-filled", "--out", out],
                "simulate": ["simulate", "--out", out, "--subjects", "1", "--size", "32"]}[command]
    return build


def _read_only(command):
    def build(d, data):
        import os

        ro = d / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):  # root ignores permission bits: use a folder that refuses even root
            ro = Path("/sys")
            if os.access(ro, os.W_OK) and _can_write(ro):
                pytest.skip("no read-only folder available")
        out = str(ro / "sub")
        return {"reconstruct": _recon(data["good"], out=out + ".h5"),
                "benchmark": ["benchmark", "--data", str(data["good"]), "--methods", "zero-filled", "--out", out],
                "simulate": ["simulate", "--out", out, "--subjects", "1", "--size", "32"]}[command]
    return build


def _can_write(folder: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _evaluate_wrong_shape(d, data):
    (d / "t").mkdir()
    (d / "p").mkdir()
    write_fastmri_h5(d / "t" / "x.h5", reconstruction_rss=data["rss"])
    write_reconstruction(d / "p" / "x.h5", np.ones((2, 8, 8), np.float32))
    return ["evaluate", "--target", str(d / "t"), "--pred", str(d / "p")]


def _evaluate_corrupt(d, data):
    (d / "t").mkdir()
    (d / "p").mkdir()
    write_fastmri_h5(d / "t" / "x.h5", reconstruction_rss=data["rss"])
    (d / "p" / "x.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    return ["evaluate", "--target", str(d / "t"), "--pred", str(d / "p")]


def _benchmark_all_bad(d, data):
    (d / "bad.h5").write_text("not hdf5")
    return ["benchmark", "--data", str(d / "bad.h5"), "--methods", "zero-filled", "--out", str(d / "bench")]


def _nan(data):
    k = data["kspace"].copy()
    k[1, 0, 3, 3] = np.nan
    return {"kspace": k}


def _inf(data):
    k = data["kspace"].copy()
    k[0, 2, 5, 5] = np.inf
    return {"kspace": k}


CASES = [
    # unreadable files
    Case("truncated h5", _truncated, "truncated.h5", r"unreadable HDF5|truncated|corrupt|not an HDF5"),
    Case("empty file", _raw("empty.h5", b""), "empty.h5", r"not an HDF5 file"),
    Case("text named .h5", _raw("text.h5", b"hello, not hdf5\n" * 10), "text.h5", r"not an HDF5 file"),
    Case("garbage .npy", _raw("junk.npy", b"\x93NUMPY garbage"), "junk.npy", r"cannot read as npy"),
    Case("garbage .mat", _raw("junk.mat", b"MATLAB 5.0 MAT-file" + b"\xff" * 200), "junk.mat", r"cannot read as mat"),
    Case("garbage NIfTI", _raw("junk.nii", b"\0" * 400), "junk.nii", r"cannot read as nifti"),
    Case("garbage DICOM", _raw("junk.dcm", b"DICM" * 50), "junk.dcm", r"cannot read as dicom|DICOM"),
    Case("truncated PNG", _raw("junk.png", b"\x89PNG\r\n\x1a\n\0\0"), "junk.png", r"cannot read as image"),
    Case("unknown suffix", _raw("scan.xyz", b"data"), "scan.xyz", r"unknown file type '\.xyz'"),
    Case("missing file", lambda d, data: _recon(d / "nowhere.h5"), "nowhere.h5", r"file not found"),
    Case("empty folder", lambda d, data: (d / "empty_dir").mkdir() or _recon(d / "empty_dir", out=str(d / "o")),
         "empty_dir",
         r"holds no data files"),
    # missing keys, image-only files
    Case("h5 without kspace or image", _h5_case("nokeys.h5", lambda data: {"data": np.ones((2, 4, 4))}),
         "nokeys.h5", r"no 'kspace' and no reconstruction dataset; the file has \['data'\]"),
    Case("image-only h5", lambda d, data: _recon(write_fastmri_h5(d / "image_only.h5", reconstruction_rss=data["rss"])),
         "image_only.h5", r"no 'kspace' dataset.*domain=image"),
    Case("mat with two variables, no key", _mat_many, "two.mat", r"holds 2 variables.*key="),
    Case("mat key missing", lambda d, data: _recon(f"{data['root'] / 'good.mat'}::key=nope,domain=kspace"),
         "good.mat", r"missing key 'nope'; the file has \['kdata'\]"),
    Case("mat without coil_axis", lambda d, data: _recon(f"{data['root'] / 'good.mat'}::key=kdata,domain=kspace"),
         "good.mat", r"non-singleton image axes.*coil_axis"),
    # NaN / inf
    Case("NaN in k-space", _h5_case("nan.h5", _nan), "nan.h5", r"NaN or inf"),
    Case("inf in k-space", _h5_case("inf.h5", _inf), "inf.h5", r"NaN or inf"),
    Case("NaN in an image", _npy("nan.npy", lambda data: np.full((8, 8), np.nan)), "nan.npy", r"NaN or inf"),
    # wrong shapes and dtypes
    Case("real-valued k-space", _h5_case("real.h5", lambda data: {"kspace": data["kspace"].real.copy()}),
         "real.h5", r"kspace is float32, expected complex"),
    Case("integer k-space", _h5_case("int.h5", lambda data: {"kspace": np.ones((2, 4, W, W), np.int16)}),
         "int.h5", r"kspace is int16, expected complex"),
    Case("string k-space", _h5_case("str.h5", lambda data: {"kspace": np.array([b"abc", b"def"])}),
         "str.h5", r"kspace must be \(slices|expected complex"),
    Case("2-D k-space", _h5_case("flat.h5", lambda data: {"kspace": data["kspace"][0, 0]}),
         "flat.h5", r"kspace must be \(slices, coils, H, W\)"),
    Case("5-D k-space", _h5_case("five.h5", lambda data: {"kspace": data["kspace"][None]}),
         "five.h5", r"kspace must be \(slices, coils, H, W\)"),
    Case("no slices", _h5_case("noslice.h5", lambda data: {"kspace": data["kspace"][:0]}),
         "noslice.h5", r"kspace is empty"),
    Case("all-zero k-space", _h5_case("zeros.h5", lambda data: {"kspace": np.zeros_like(data["kspace"])}),
         "zeros.h5", r"all zero"),
    Case("slice counts disagree", _h5_case("counts.h5", lambda data: {"kspace": data["kspace"],
                                                                      "reconstruction_rss": data["rss"][:1]}),
         "counts.h5", r"disagree on the number of slices"),
    Case("header not XML", _h5_case("hdr.h5", lambda data: {"kspace": data["kspace"],
                                                            "ismrmrd_header": np.bytes_(b"<not xml")}),
         "hdr.h5", r"ismrmrd_header is not valid XML"),
    Case("4-D image without axes", _npy("vol4d.npy", lambda data: np.ones((2, 3, 8, 8))), "vol4d.npy",
         r"non-singleton image axes"),
    Case("BART data truncated", _cfl_short, "short.cfl", r"truncated"),
    Case("BART header garbage", _cfl_header, "hdr.hdr", r"no dimension line"),
    # mask / k-space mismatch and already undersampled data
    Case("stored mask of the wrong length", _h5_case("mask_len.h5", lambda data: {
        "kspace": data["kspace"] * _mask_cols(), "mask": np.ones(W + 3, bool)}), "mask_len.h5",
         r"stored mask \(35,\) does not fit k-space"),
    Case("stored mask not 0/1", _h5_case("mask_val.h5", lambda data: {
        "kspace": data["kspace"], "mask": np.full(W, 2.0)}), "mask_val.h5", r"'mask' must hold only 0/1"),
    Case("--mask file on fully sampled data", lambda d, data: _recon(data["good"], extra=("--mask", "file")),
         "sub000_T2.h5", r"no 'mask' dataset and its k-space is fully sampled"),
    Case("already undersampled, retrospective mask", _undersampled(("--mask", "random1d"), True), "under.h5",
         r"already undersampled \(the file has a 'mask' dataset: 11 of 32 lines, effective 2\.91x\).*--mask file"),
    Case("already undersampled (no stored mask), retrospective mask", _undersampled(("--mask", "poisson2d"), False),
         "under.h5", r"already undersampled \(11 of 32 phase-encode lines measured"),
    # bad options and accelerations
    Case("unknown loader option", lambda d, data: _recon(f"{data['good']}::foo=1"), "foo",
         r"unknown data option\(s\) \['foo'\]"),
    Case("coil_axis out of range", lambda d, data: _recon(f"{data['root'] / 'good.mat'}::domain=kspace,coil_axis=9"),
         "good.mat", r"coil_axis=9 is out of range"),
    Case("bad domain", lambda d, data: _recon(f"{data['root'] / 'good.mat'}::domain=bogus"), "good.mat",
         r"domain must be 'auto', 'image' or 'kspace'"),
    Case("acceleration 0", lambda d, data: _recon(data["good"], extra=("--accel", "0")), "--accel",
         r"must be a finite number >= 1"),
    Case("acceleration nan", lambda d, data: _recon(data["good"], extra=("--accel", "nan")), "--accel",
         r"must be a finite number >= 1"),
    Case("negative acceleration", lambda d, data: _recon(data["good"], extra=("--accel", "-2")), "--accel",
         r"must be a finite number >= 1"),
    Case("acceleration beyond the matrix", lambda d, data: _recon(data["good"], extra=("--accel", "1000")),
         "sub000_T2.h5", r"random1d"),
    Case("unknown mask kind", lambda d, data: _recon(data["good"], extra=("--mask", "bogus")), "--mask",
         r"unknown mask kind"),
    Case("centre fraction > 1", lambda d, data: _recon(data["good"], extra=("--center-fraction", "2")),
         "--center-fraction", r"must be in \[0, 1\]"),
    Case("unknown method", lambda d, data: ["reconstruct", "--method", "nope", str(data["good"]), "--out", "OUT"],
         "nope", r"unknown method 'nope'"),
    Case("two inputs, one output name", _duplicate_names, "same", r"would both be written to"),
    # unwritable outputs (checked before any work)
    *[Case(f"{cmd}: a file as the output's parent", _file_as_parent(cmd), "afile", r"--out .*is a file, not a folder",
           (2,)) for cmd in ("reconstruct", "benchmark", "simulate")],
    *[Case(f"{cmd}: a read-only output folder", _read_only(cmd), "--out", r"cannot write in .*(Permission denied|"
           r"Read-only)", (2,)) for cmd in ("reconstruct", "benchmark", "simulate")],
    # batch commands where every input failed
    Case("evaluate: prediction of the wrong size", _evaluate_wrong_shape, "x.h5", r"smaller than target size"),
    Case("evaluate: corrupt prediction", _evaluate_corrupt, "x.h5", r"cannot read prediction file|unreadable"),
    Case("benchmark: every input failed", _benchmark_all_bad, "bad.h5", r"not an HDF5 file|no method produced"),
]


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if re.match(r"^(mrrecon: )?error: ", ln)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(case, data, tmp_path):
    args = case.build(tmp_path, data)
    previous = tmp_path / "previous.h5"  # an output a former run wrote: a failed run must leave it intact
    write_reconstruction(previous, np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8))
    before = previous.read_bytes()
    args = [str(previous) if a == "OUT" else a for a in args]
    res = CliRunner().invoke(main, args)
    out = res.output
    assert res.exit_code in case.code, f"exit {res.exit_code}\n{out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out, out
    lines = _error_lines(out)
    assert lines, f"no error line:\n{out}"
    assert any(case.names in ln and re.search(case.problem, ln) for ln in lines), f"{case.problem}:\n{out}"
    for ln in lines:  # each error names what it is about
        assert len(ln) < 600, ln
    assert previous.read_bytes() == before  # outputs already written are left intact


def test_a_batch_keeps_going_and_keeps_its_good_outputs(data, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data["good"].read_bytes()[:1000])
    nan = _h5(tmp_path / "nan.h5", **_nan(data))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, _recon(bad, data["good"], nan, tmp_path / "none.h5", out=str(out)))
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = _error_lines(res.output)
    assert len(lines) == 3 and all(any(n in ln for n in ("bad.h5", "nan.h5", "none.h5")) for ln in lines)
    assert "3 of 4 input(s) failed" in res.output
    assert (out / "sub000_T2.h5").is_file() and not (out / "bad.h5").exists() and not (out / "nan.h5").exists()


# --------------------------------------------------------------------------------------------------
# Fuzz: corrupt good files at random offsets
# --------------------------------------------------------------------------------------------------
def _corrupt(raw: bytes, rng: np.random.Generator) -> bytes:
    """Truncate, overwrite a run of random bytes, or flip single bytes, at random offsets."""
    b = bytearray(raw)
    kind = rng.integers(3)
    if kind == 0:
        return bytes(b[: int(rng.integers(0, len(b)))])
    if kind == 1:
        start = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 64))
        b[start:start + n] = rng.integers(0, 256, size=len(b[start:start + n]), dtype=np.uint8).tobytes()
        return bytes(b)
    for off in rng.integers(0, len(b), size=int(rng.integers(1, 16))):
        b[int(off)] = int(rng.integers(0, 256))
    return bytes(b)


def test_fuzzed_files_fail_with_mrrecon_errors_never_tracebacks(data, tmp_path):
    rng = np.random.default_rng(20)
    sources = {"h5": (data["good"], ""), "mat": (data["root"] / "good.mat", "::key=kdata,domain=kspace,coil_axis=-1"),
               "cfl": (data["root"] / "good.cfl", "")}
    outcomes = {"ok": 0, "error": 0}
    for fmt, (src, opts) in sources.items():
        raw = src.read_bytes()
        # Header and index structures sit at the start of h5 and mat files: corrupt there more often.
        for i in range(60):
            bad = tmp_path / f"fuzz{i:02d}.{fmt}"
            if fmt == "cfl":
                (tmp_path / f"fuzz{i:02d}.hdr").write_bytes(
                    _corrupt(src.with_suffix(".hdr").read_bytes(), rng) if i % 3 == 0 else
                    src.with_suffix(".hdr").read_bytes())
            head = raw[:4096] if i % 2 else raw
            bad.write_bytes(_corrupt(head, rng) + (raw[4096:] if i % 2 else b""))
            res = CliRunner().invoke(main, _recon(f"{bad}{opts}", out=str(tmp_path / f"out{i}.h5")))
            assert res.exit_code in (0, 1), f"{fmt} #{i}: exit {res.exit_code}\n{res.output}"
            assert res.exception is None or isinstance(res.exception, SystemExit), (fmt, i, repr(res.exception))
            assert "Traceback" not in res.output
            if res.exit_code:
                lines = _error_lines(res.output)
                assert lines and all(bad.stem in ln for ln in lines), res.output
                outcomes["error"] += 1
            else:
                outcomes["ok"] += 1
    assert outcomes["error"] >= 60  # most corruptions are caught; the rest only changed sample values
