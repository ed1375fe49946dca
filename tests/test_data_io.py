"""File I/O: fastMRI h5 (write/read/errors), array formats, BART cfl, and load_sample_source rules."""

from __future__ import annotations

import pickle
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
import torch

from mrrecon.data.fastmri import (
    FastMRIFile,
    center_crop,
    ismrmrd_header_xml,
    parse_ismrmrd_header,
    read_fastmri_volume,
    write_fastmri_h5,
    write_reconstruction,
)
from mrrecon.data.formats import load_sample_source, read_array, read_cfl, write_array, write_cfl
from mrrecon.errors import DataError, ShapeError


def _complex(rng, *shape) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------------------------------
# fastMRI h5
# --------------------------------------------------------------------------------------------------
def test_multicoil_round_trip_and_header(tmp_path, rng):
    k = _complex(rng, 3, 4, 32, 24)
    rss = rng.random((3, 16, 16), dtype=np.float32)
    mask = np.zeros(24, bool)
    mask[::3] = True
    path = write_fastmri_h5(tmp_path / "vol.h5", k, reconstruction_rss=rss, mask=mask,
                            attrs={"acquisition": "CORPD_FBK", "patient_id": "p1"})
    f = FastMRIFile(path)
    assert f.num_slices == 3 and f.is_multicoil and f.num_coils == 4
    assert f.kspace_shape == (32, 24)
    assert f.recon_size == (16, 16)  # from the header's reconSpace, not the k-space size
    assert f.header.encoded_size == (32, 24, 1)
    assert f.header.center_line == 12 and f.header.max_line == 23
    np.testing.assert_array_equal(f.kspace(2).numpy(), k[2])
    np.testing.assert_array_equal(f.target(1).numpy(), rss[1])
    np.testing.assert_array_equal(f.mask.numpy(), mask)
    assert f.attrs["acquisition"] == "CORPD_FBK" and f.attrs["patient_id"] == "p1"
    assert f.attrs["max"] == pytest.approx(float(rss.max()))
    assert f.attrs["norm"] == pytest.approx(float(np.linalg.norm(rss)), rel=1e-6)
    # stored as fastMRI does: raw datasets with these dtypes
    with h5py.File(path, "r") as hf:
        assert hf["kspace"].dtype == np.complex64 and hf["reconstruction_rss"].dtype == np.float32
        ET.fromstring(hf["ismrmrd_header"][()])  # parses as XML bytes, like fastMRI's loader does
    vol = read_fastmri_volume(path)
    np.testing.assert_array_equal(vol.kspace.numpy(), k)
    np.testing.assert_array_equal(vol.targets["reconstruction_rss"].numpy(), rss)
    assert vol.recon_size == (16, 16) and vol.is_multicoil
    # no open handle is kept: the object pickles (an h5py.File would not)
    assert pickle.loads(pickle.dumps(f)).kspace(0).shape == (4, 32, 24)


def test_singlecoil_round_trip(tmp_path, rng):
    k = _complex(rng, 2, 20, 18)
    esc = rng.random((2, 20, 18), dtype=np.float32)
    path = write_fastmri_h5(tmp_path / "sc.h5", k, reconstruction_esc=esc)
    f = FastMRIFile(path)
    assert not f.is_multicoil and f.num_coils == 1
    assert f.kspace(1).shape == (1, 20, 18)  # C = 1 for single-coil
    np.testing.assert_array_equal(f.kspace(1)[0].numpy(), k[1])
    assert f.target_keys == ("reconstruction_esc",)
    np.testing.assert_array_equal(f.target(0).numpy(), esc[0])
    assert f.recon_size == (20, 18)
    vol = read_fastmri_volume(path)
    assert vol.kspace.shape == (2, 1, 20, 18) and not vol.is_multicoil


def test_header_options_and_parse(tmp_path, rng):
    xml = ismrmrd_header_xml((640, 368), (320, 320), num_coils=15, center_line=180, max_line=366,
                             field_strength_T=1.5)
    root = ET.fromstring(xml)
    tags = [c.tag.split("}")[1] for c in root]
    assert tags == ["acquisitionSystemInformation", "experimentalConditions", "encoding"]  # xsd order
    h = parse_ismrmrd_header(xml)
    assert h.encoded_size == (640, 368, 1) and h.recon_size == (320, 320, 1)
    assert (h.center_line, h.max_line, h.field_strength_T) == (180, 366, 1.5)
    f = FastMRIFile(write_fastmri_h5(tmp_path / "a.h5", _complex(rng, 1, 2, 24, 20),
                                     header={"recon_size": (12, 10)}))
    assert f.recon_size == (12, 10)
    with pytest.raises(DataError, match="not valid XML"):
        write_fastmri_h5(tmp_path / "b.h5", _complex(rng, 1, 2, 8, 8), header="<broken")


def test_write_reconstruction(tmp_path, rng):
    vol = torch.rand(4, 10, 12, dtype=torch.float64)
    path = write_reconstruction(tmp_path / "sub" / "file1.h5", vol)
    with h5py.File(path, "r") as hf:
        assert list(hf.keys()) == ["reconstruction"]
        assert hf["reconstruction"].dtype == np.float32 and hf["reconstruction"].shape == (4, 10, 12)
    f = FastMRIFile(path)
    assert not f.has_kspace and f.num_slices == 4
    np.testing.assert_allclose(f.target(3, "reconstruction").numpy(), vol[3].numpy(), rtol=1e-6)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, rng):
    path = tmp_path / "x.h5"
    k = _complex(rng, 1, 2, 8, 8)
    write_fastmri_h5(path, k)
    bad = k.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        write_fastmri_h5(path, bad)
    np.testing.assert_array_equal(FastMRIFile(path).kspace(0).numpy(), k[0])
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]  # no temp file left behind


def test_truncated_h5_names_the_file(tmp_path, rng):
    path = write_fastmri_h5(tmp_path / "trunc.h5", _complex(rng, 2, 2, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        FastMRIFile(path).kspace(0)
    assert err.value.file == str(path) and str(path) in str(err.value)
    assert "truncated" in str(err.value)


def test_not_hdf5_and_missing_file(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("this is not HDF5")
    with pytest.raises(DataError, match="not an HDF5 file") as err:
        FastMRIFile(junk)
    assert err.value.file == str(junk)
    with pytest.raises(DataError, match="file not found"):
        FastMRIFile(tmp_path / "absent.h5")


def test_missing_key_lists_existing_keys(tmp_path, rng):
    path = write_fastmri_h5(tmp_path / "k.h5", _complex(rng, 1, 2, 8, 8),
                            reconstruction_rss=np.ones((1, 8, 8), np.float32))
    with pytest.raises(DataError) as err:
        FastMRIFile(path).target(0, "reconstruction_esc")
    msg = str(err.value)
    assert "reconstruction_esc" in msg and "'kspace'" in msg and "'reconstruction_rss'" in msg
    assert err.value.file == str(path)


def test_nan_kspace_and_wrong_ndim_in_file(tmp_path, rng):
    k = _complex(rng, 2, 3, 8, 8)
    k[1, 2, 4, 4] = np.inf
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as hf:  # written by another tool: our writer refuses NaN/inf
        hf.create_dataset("kspace", data=k)
    f = FastMRIFile(path)
    assert f.kspace(0).shape == (3, 8, 8)  # the clean slice reads
    with pytest.raises(DataError, match="NaN or inf") as err:
        f.kspace(1)
    assert err.value.file == str(path)
    with pytest.raises(DataError, match="NaN or inf"):
        read_fastmri_volume(path)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as hf:
        hf.create_dataset("kspace", data=k[0, 0])
    with pytest.raises(ShapeError, match=r"\(slices, coils, H, W\)"):
        FastMRIFile(flat)


def test_center_crop_fastmri_convention():
    x = torch.arange(7 * 6).reshape(7, 6)
    c = center_crop(x, (3, 2))  # start = (size - crop) // 2 -> rows 2..4, cols 2..3
    np.testing.assert_array_equal(c.numpy(), x[2:5, 2:4].numpy())
    batch = np.arange(2 * 640 * 368).reshape(2, 640, 368)
    out = center_crop(batch, (320, 320))
    assert out.shape == (2, 320, 320) and out[0, 0, 0] == batch[0, 160, 24]
    with pytest.raises(ShapeError):
        center_crop(x, (8, 2))


# --------------------------------------------------------------------------------------------------
# Array formats
# --------------------------------------------------------------------------------------------------
def test_npy_npz(tmp_path, rng):
    a = _complex(rng, 5, 6)
    write_array(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(read_array(tmp_path / "a.npy"), a)
    np.savez(tmp_path / "b.npz", img=a.real, ksp=a)
    with pytest.raises(DataError, match=r"\['img', 'ksp'\]"):
        read_array(tmp_path / "b.npz")
    np.testing.assert_array_equal(read_array(tmp_path / "b.npz", key="ksp"), a)
    with pytest.raises(DataError, match="missing key 'nope'"):
        read_array(tmp_path / "b.npz", key="nope")


def test_mat_v5_with_struct(tmp_path, rng):
    import scipy.io

    a = _complex(rng, 4, 5, 3)
    scipy.io.savemat(tmp_path / "s.mat", {"data": {"images": a, "TE": np.arange(3.0)}, "other": 1.0})
    np.testing.assert_array_equal(read_array(tmp_path / "s.mat", key="data.images"), a)
    with pytest.raises(DataError, match="no field 'nope'"):
        read_array(tmp_path / "s.mat", key="data.nope")
    with pytest.raises(DataError, match=r"\['data', 'other'\]"):
        read_array(tmp_path / "s.mat")
    write_array(tmp_path / "w.mat", a, key="K")
    np.testing.assert_array_equal(read_array(tmp_path / "w.mat"), a)


def test_mat_v73_complex_compound_transposed(tmp_path, rng):
    a = rng.standard_normal((3, 4, 5)) + 1j * rng.standard_normal((3, 4, 5))  # MATLAB-side shape
    path = tmp_path / "v73.mat"
    compound = np.dtype([("real", "<f8"), ("imag", "<f8")])
    stored = np.empty(a.T.shape, compound)  # MATLAB writes column-major: h5py sees reversed axes
    stored["real"], stored["imag"] = a.real.T, a.imag.T
    with h5py.File(path, "w", userblock_size=512) as hf:
        ds = hf.create_dataset("kdata", data=stored)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        hf.create_dataset("mask", data=np.ones((5, 4)).T)
    with open(path, "r+b") as fh:  # MATLAB's text header lives in the 512-byte user block
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    out = read_array(path, key="kdata")
    assert out.shape == (3, 4, 5) and np.iscomplexobj(out)
    np.testing.assert_array_equal(out, a)
    with pytest.raises(DataError, match=r"\['kdata', 'mask'\]"):
        read_array(path)


def test_png_gray_and_rgb(tmp_path):
    from PIL import Image

    img = (np.arange(6 * 7).reshape(6, 7) * 5).astype(np.uint8)
    write_array(tmp_path / "g.png", img)
    out = read_array(tmp_path / "g.png")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img.astype(np.float32))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 100
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(read_array(tmp_path / "c.png"), 29.9, rtol=1e-5)  # BT.601 luma of R=100
    src = load_sample_source(tmp_path / "g.png")
    assert src.kind == "image" and src.data.shape == (1, 1, 6, 7) and src.data.dtype == torch.complex64
    assert src.extra["real_valued"]


def test_nifti_volume_slices_along_last_axis(tmp_path, rng):
    vol = rng.random((6, 5, 3), dtype=np.float32)
    write_array(tmp_path / "IXI001-Site-0001-T2.nii.gz", vol)
    np.testing.assert_allclose(read_array(tmp_path / "IXI001-Site-0001-T2.nii.gz"), vol, rtol=1e-6)
    src = load_sample_source(tmp_path / "IXI001-Site-0001-T2.nii.gz")
    assert src.kind == "image" and src.data.shape == (3, 1, 6, 5)
    np.testing.assert_allclose(src.data[2, 0].real.numpy(), vol[:, :, 2], rtol=1e-6)


def _write_dicom(path, pixels: np.ndarray, instance: int, z: float, slope=2.0, intercept=-10.0):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_file_and_folder(tmp_path, rng):
    slices = [rng.integers(0, 1000, (6, 5)).astype(np.uint16) for _ in range(3)]
    folder = tmp_path / "series"
    folder.mkdir()
    # file names, instance numbers and positions disagree; geometry (z) decides the order: 0, 1, 2
    _write_dicom(folder / "a.dcm", slices[2], instance=1, z=20.0)
    _write_dicom(folder / "b.dcm", slices[0], instance=3, z=0.0)
    _write_dicom(folder / "c.dcm", slices[1], instance=2, z=10.0)
    (folder / "README.txt").write_text("not dicom")
    one = read_array(folder / "b.dcm")
    np.testing.assert_array_equal(one, slices[0].astype(np.float32) * 2 - 10)  # rescale applied
    stack = read_array(folder)
    assert stack.shape == (3, 6, 5)
    for i in range(3):
        np.testing.assert_array_equal(stack[i], slices[i].astype(np.float32) * 2 - 10)
    src = load_sample_source(folder)
    assert src.kind == "image" and src.data.shape == (3, 1, 6, 5)


def test_cfl_round_trip_fortran_order(tmp_path, rng):
    a = _complex(rng, 4, 3, 1, 2)
    base = write_cfl(tmp_path / "ksp", a)
    hdr = (tmp_path / "ksp.hdr").read_text().splitlines()
    assert hdr[0].startswith("#") and hdr[1].split() == ["4", "3", "1", "2"]
    raw = np.fromfile(tmp_path / "ksp.cfl", np.complex64)
    np.testing.assert_array_equal(raw, a.ravel(order="F"))  # column-major on disk, as BART writes
    np.testing.assert_array_equal(read_cfl(base), a)
    np.testing.assert_array_equal(read_array(tmp_path / "ksp.cfl"), a)
    src = load_sample_source(tmp_path / "ksp.cfl")  # BART dims [x, y, z, coil]: k-space by default
    assert src.kind == "kspace" and src.data.shape == (1, 2, 4, 3)
    np.testing.assert_array_equal(src.data[0, 1].numpy(), a[:, :, 0, 1])
    assert load_sample_source(tmp_path / "ksp.cfl", domain="image").kind == "image"
    (tmp_path / "ksp.cfl").write_bytes(raw.tobytes()[:-8])
    with pytest.raises(DataError, match="truncated"):
        read_cfl(base)


def test_unknown_missing_unreadable(tmp_path):
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(DataError, match="unknown file type '.xyz'") as err:
        read_array(tmp_path / "x.xyz")
    assert err.value.file == str(tmp_path / "x.xyz")
    with pytest.raises(DataError, match="file not found"):
        read_array(tmp_path / "none.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read as npy") as err:
        load_sample_source(tmp_path / "bad.npy")
    assert err.value.file == str(tmp_path / "bad.npy")


# --------------------------------------------------------------------------------------------------
# load_sample_source rules
# --------------------------------------------------------------------------------------------------
def test_sample_source_fastmri_and_axes(tmp_path, rng):
    k = _complex(rng, 2, 3, 8, 6)
    path = write_fastmri_h5(tmp_path / "f.h5", k, reconstruction_rss=np.ones((2, 4, 4), np.float32))
    src = load_sample_source(path)
    assert src.kind == "kspace" and src.data.shape == (2, 3, 8, 6) and src.extra["recon_size"] == (4, 4)
    img = load_sample_source(path, domain="image")
    assert img.kind == "image" and img.data.shape == (2, 1, 4, 4)

    coil_last = _complex(rng, 8, 6, 4)  # (H, W, C), e.g. a .mat of multi-coil k-space
    write_array(tmp_path / "c.npy", coil_last)
    with pytest.raises(ShapeError, match="coil_axis"):
        load_sample_source(tmp_path / "c.npy")  # three non-singleton axes: no guessing
    src = load_sample_source(tmp_path / "c.npy", domain="kspace", coil_axis=-1)
    assert src.kind == "kspace" and src.data.shape == (1, 4, 8, 6)
    np.testing.assert_array_equal(src.data[0, 3].numpy(), coil_last[..., 3])
    stack = _complex(rng, 2, 8, 6, 3)  # (slices, H, W, coils)
    write_array(tmp_path / "s.npy", stack)
    both = load_sample_source(tmp_path / "s.npy", slice_axis=0, coil_axis=-1)
    assert both.data.shape == (2, 3, 8, 6)
    np.testing.assert_array_equal(both.data[1, 2].numpy(), stack[1, :, :, 2])
    with pytest.raises(ShapeError, match="need exactly 2"):
        load_sample_source(tmp_path / "c.npy", coil_axis=0, slice_axis=2)  # leaves only one image axis
    nan = coil_last.copy()
    nan[0, 0, 0] = np.nan
    write_array(tmp_path / "n.npy", nan)
    with pytest.raises(DataError, match="NaN or inf"):
        load_sample_source(tmp_path / "n.npy", coil_axis=-1)


@pytest.mark.shared_data
def test_shared_data_loaders(shared_data):
    bart = load_sample_source(shared_data / "multicoil_brain8ch_kspace_bart" / "ksp")
    assert bart.kind == "kspace" and bart.data.shape == (1, 8, 180, 230)
    mat = load_sample_source(shared_data / "multicoil_brain8ch_kspace_espirit" / "brain_alias_8ch.mat",
                             domain="kspace", coil_axis=-1)
    assert mat.data.shape == (1, 8, 320, 256)
    # zero-padded outside phase-encode columns 44..211 (MANIFEST): the loader must keep the layout
    col_energy = mat.data.abs().sum(dim=(0, 1, 2))
    assert col_energy[:44].sum() == 0 and col_energy[44:212].min() > 0
    png = load_sample_source(shared_data / "multicontrast_brain_cdlmri" / "patientA_groundtruth_T1.png")
    assert png.kind == "image" and png.data.shape == (1, 1, 256, 256) and float(png.data.real.max()) > 1
