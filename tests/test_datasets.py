"""Pairing, retrospective undersampling, SliceDataset / PairedSliceDataset, batching, samples_from_file."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from mrrecon.data.datasets import (
    PairedSliceDataset,
    SliceDataset,
    central_slices,
    derive_seed,
    samples_from_file,
    undersample,
)
from mrrecon.data.fastmri import FastMRIFile, center_crop, write_fastmri_h5
from mrrecon.data.formats import write_array
from mrrecon.data.paired import find_pairs, parse_contrast_name
from mrrecon.data.sample import collate_samples
from mrrecon.errors import DataError, ShapeError
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.masks import make_mask

H, W, C, S = 40, 32, 3, 4
RECON = (24, 24)


def _phantom_kspace(seed: int, slices: int = S, coils: int = C) -> torch.Tensor:
    """Smooth-ish coil images (a blob times smooth coil profiles) -> k-space (S, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    blob = (x**2 / 0.6 + y**2 / 0.8 < 1).float() * (1 + 0.3 * torch.rand(H, W, generator=g))
    out = []
    for s in range(slices):
        coils_img = torch.stack([blob * (1 + s) * torch.exp(1j * (c + 1) * (x + 0.5 * y))
                                 * torch.exp(-((x - c / coils) ** 2)) for c in range(coils)])
        out.append(coils_img)
    return fft2c(torch.stack(out).to(torch.complex64))


def _write_subject(folder, name: str, seed: int, with_target: bool = True):
    k = _phantom_kspace(seed)
    target = center_crop(rss(ifft2c(k)), RECON) if with_target else None
    return write_fastmri_h5(folder / name, k, reconstruction_rss=target,
                            attrs={"acquisition": name.split("_")[-1].split(".")[0]}), k


# --------------------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------------------
def test_parse_contrast_name():
    assert parse_contrast_name("IXI002-Guys-0828-T2.nii.gz") == ("IXI002-Guys-0828", "T2")
    assert parse_contrast_name("sub000_PD.h5") == ("sub000", "PD")
    assert parse_contrast_name("patientA_groundtruth_T1.png") == ("patientA_groundtruth", "T1")
    assert parse_contrast_name("file1000001.h5") is None
    assert parse_contrast_name("notes_T2.txt") is None


def test_ixi_pairing_reports_unpaired(tmp_path):
    for name in ["IXI002-Guys-0828-T2.nii.gz", "IXI002-Guys-0828-PD.nii.gz", "IXI002-Guys-0828-MRA.nii.gz",
                 "IXI012-HH-1211-T2.nii.gz", "IXI013-HH-1212-PD.nii.gz", "IXI014-IOP-1000-T1.nii.gz",
                 "README.txt"]:
        (tmp_path / name).write_bytes(b"")
    with pytest.warns(UserWarning, match="2 subject"):
        pairs = find_pairs(tmp_path, "T2", "PD")
    assert [(p.subject, p.target.name, p.reference.name) for p in pairs] == [
        ("IXI002-Guys-0828", "IXI002-Guys-0828-T2.nii.gz", "IXI002-Guys-0828-PD.nii.gz")]
    assert set(pairs.unpaired) == {"IXI012-HH-1211", "IXI013-HH-1212"}  # IXI014 has neither contrast
    assert any("IXI012-HH-1211: has T2 but no PD" in w for w in pairs.warnings)
    assert any("IXI013-HH-1212: has PD but no T2" in w for w in pairs.warnings)


def test_h5_contrast_pairing_case_insensitive_and_duplicates(tmp_path):
    for name in ["sub000_T2.h5", "sub000_PD.h5", "sub001_t2.h5", "sub001_pd.h5", "sub002_T1.h5",
                 "sub003_T2.h5", "sub003_PD.h5", "sub003_PD.nii.gz"]:
        (tmp_path / name).write_bytes(b"")
    with pytest.warns(UserWarning, match="sub003"):
        pairs = find_pairs(tmp_path, "T2", "PD")
    assert [p.subject for p in pairs] == ["sub000", "sub001"]
    assert pairs[1].target.name == "sub001_t2.h5" and pairs[1].reference.name == "sub001_pd.h5"
    assert list(pairs.unpaired) == ["sub003"] and "cannot choose" in pairs.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = find_pairs([tmp_path / "sub000_T2.h5", tmp_path / "sub000_PD.h5"], "T2", "PD")
    assert len(explicit) == 1 and not explicit.warnings


# --------------------------------------------------------------------------------------------------
# Undersampling
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random1d", "poisson2d"])
def test_undersample_zero_outside_equal_inside(kind):
    k = _phantom_kspace(0, slices=1)[0]
    mr = make_mask(kind, (H, W), 4, seed=3)
    under, mask = undersample(k, mr)
    full_mask = mask.expand(1, H, W)[0]
    assert mask.dtype == torch.bool and tuple(mask.shape) == tuple(mr.mask.shape)
    assert torch.equal(under[:, full_mask], k[:, full_mask])  # exactly the measured values
    assert torch.all(under[:, ~full_mask] == 0)
    assert 0 < int(full_mask.sum()) < H * W


def test_undersample_accepts_arrays_and_rejects_mismatch():
    k = _phantom_kspace(0, slices=2)  # batched (B, C, H, W)
    cols = np.zeros(W, np.float32)
    cols[::2] = 1
    under, mask = undersample(k, cols)
    assert mask.shape == (1, 1, W)
    assert torch.all(under[..., 1::2] == 0) and torch.equal(under[..., ::2], k[..., ::2])
    with pytest.raises(ShapeError):
        undersample(k, torch.ones(1, 1, W + 1, dtype=torch.bool))
    with pytest.raises(ShapeError):
        undersample(k, torch.full((W,), 0.5))


# --------------------------------------------------------------------------------------------------
# SliceDataset
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def subjects(tmp_path):
    _, k0 = _write_subject(tmp_path, "sub000_T2.h5", 0)
    _, k0pd = _write_subject(tmp_path, "sub000_PD.h5", 1)
    _, k1 = _write_subject(tmp_path, "sub001_T2.h5", 2)
    _, k1pd = _write_subject(tmp_path, "sub001_PD.h5", 3)
    return tmp_path, {"sub000_T2": k0, "sub000_PD": k0pd, "sub001_T2": k1, "sub001_PD": k1pd}


def test_slice_dataset_undersampling_target_and_scale(subjects):
    folder, ks = subjects
    ds = SliceDataset([folder / "sub000_T2.h5", folder / "sub001_T2.h5"], accelerations=(4,))
    assert len(ds) == 2 * S
    sample = ds[S + 1]  # file sub001, slice 1
    k_full = ks["sub001_T2"][1]
    assert sample.meta.file.endswith("sub001_T2.h5") and sample.meta.slice == 1
    assert sample.kspace.shape == (C, H, W) and sample.target.shape == (H, W)
    m = sample.mask.expand(1, H, W)[0]
    phys = sample.kspace * sample.meta.scale
    torch.testing.assert_close(phys[:, m], k_full[:, m], rtol=1e-6, atol=1e-6)
    assert torch.all(sample.kspace[:, ~m] == 0)
    # scale = max of the zero-filled RSS image; after normalisation that max is exactly 1
    zf = rss(ifft2c(undersample(k_full, sample.mask)[0]))
    assert sample.meta.scale == pytest.approx(float(zf.max()), rel=1e-6)
    assert float(rss(ifft2c(sample.kspace)).max()) == pytest.approx(1.0, rel=1e-5)
    # full-size target; cropping to the recorded recon size reproduces the file's reconstruction_rss
    assert sample.meta.extra["recon_size"] == RECON
    assert sample.meta.extra["target_source"] == "rss(ifft2c(kspace))"
    stored = FastMRIFile(folder / "sub001_T2.h5").target(1)
    torch.testing.assert_close(center_crop(sample.target * sample.meta.scale, RECON), stored,
                               rtol=1e-5, atol=1e-5)
    assert sample.meta.mask_type == "random1d" and sample.meta.acceleration == 4.0
    assert sample.meta.effective_acceleration == pytest.approx(W / int(sample.mask.sum()))
    assert sample.meta.contrast == "T2"  # from the file's acquisition attribute


def test_fixed_masks_are_reproducible_and_location_independent(subjects, tmp_path_factory):
    folder, _ = subjects
    files = [folder / "sub000_T2.h5", folder / "sub001_T2.h5"]
    a = SliceDataset(files, mask_kinds=("random1d", "equispaced1d"), accelerations=(4, 8), seed=7)
    b = SliceDataset(files, mask_kinds=("random1d", "equispaced1d"), accelerations=(4, 8), seed=7)
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        assert torch.equal(sa.mask, sb.mask) and sa.meta.seed == sb.meta.seed
        assert (sa.meta.mask_type, sa.meta.acceleration) == (sb.meta.mask_type, sb.meta.acceleration)
    assert torch.equal(a[0].mask, a[0].mask)  # fixed: same item, same mask
    random_masks = [a[i].mask for i in range(len(a)) if a[i].meta.mask_type == "random1d"]
    assert len(random_masks) >= 2 and any(not torch.equal(random_masks[0], m) for m in random_masks[1:])
    other = SliceDataset(files, mask_kinds="random1d", accelerations=4, seed=8)
    same_seed = SliceDataset(files, mask_kinds="random1d", accelerations=4, seed=7)
    assert any(not torch.equal(other[i].mask, same_seed[i].mask) for i in range(len(other)))
    # the mask depends on (seed, file name, slice), not on the folder or the file's position in the list
    moved = tmp_path_factory.mktemp("elsewhere") / "sub001_T2.h5"
    shutil.copy(files[1], moved)
    alone = SliceDataset([moved], mask_kinds="random1d", accelerations=4, seed=7)
    assert torch.equal(alone[2].mask, same_seed[S + 2].mask)
    # and the recorded seed regenerates it
    s = alone[2]
    assert torch.equal(make_mask("random1d", (H, W), 4, seed=s.meta.seed).mask, s.mask)


def test_training_masks_change_per_epoch(subjects):
    folder, _ = subjects
    ds = SliceDataset(folder / "sub000_T2.h5", fixed_mask=False, seed=1)
    epoch0 = [ds[i].mask for i in range(len(ds))]
    assert all(torch.equal(m, ds[i].mask) for i, m in enumerate(epoch0))  # reproducible within an epoch
    ds.set_epoch(1)
    epoch1 = [ds[i].mask for i in range(len(ds))]
    assert any(not torch.equal(m0, m1) for m0, m1 in zip(epoch0, epoch1, strict=True))


def test_crop_to_recon_uses_stored_target(subjects):
    folder, ks = subjects
    ds = SliceDataset(folder / "sub000_T2.h5", crop="recon", normalise="none")
    s = ds[2]
    assert s.kspace.shape == (C, *RECON) and s.meta.scale == 1.0
    assert s.meta.extra["target_source"] == "file:reconstruction_rss"
    assert s.meta.extra["cropped_from"] == (H, W)
    torch.testing.assert_close(s.target, FastMRIFile(folder / "sub000_T2.h5").target(2))
    # the cropped k-space is the FFT of the centre-cropped coil images
    expected = fft2c(center_crop(ifft2c(ks["sub000_T2"][2]), RECON))
    m = s.mask.expand(1, *RECON)[0]
    torch.testing.assert_close(s.kspace[:, m], expected[:, m], rtol=1e-5, atol=1e-5)


def test_coil_maps_from_extra_dataset(tmp_path):
    k = _phantom_kspace(4, slices=2)
    maps = torch.randn(2, C, H, W, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    path = write_fastmri_h5(tmp_path / "m_T1.h5", k, extra_datasets={"coil_maps": maps})
    s = SliceDataset(path, coil_maps_key="coil_maps")[1]
    assert s.meta.extra["coil_maps_source"] == "file:coil_maps"
    torch.testing.assert_close(s.coil_maps, maps[1])
    c = SliceDataset(path, coil_maps_key="coil_maps", crop=(20, 16))[1]
    torch.testing.assert_close(c.coil_maps, center_crop(maps[1], (20, 16)))
    with pytest.raises(DataError, match="clashes"):
        write_fastmri_h5(tmp_path / "x.h5", k, extra_datasets={"mask": np.ones(W)})
    with pytest.raises(DataError, match="missing key 'maps'"):
        SliceDataset(path, coil_maps_key="maps")[0]


def test_singlecoil_and_file_mask(tmp_path):
    k = _phantom_kspace(5, slices=2, coils=1)[:, 0]  # (S, H, W)
    stored_mask = np.zeros(W, bool)
    stored_mask[W // 2 - 3:W // 2 + 3] = True
    stored_mask[::4] = True
    under = k * torch.from_numpy(stored_mask)
    path = write_fastmri_h5(tmp_path / "test_file.h5", under, mask=stored_mask)
    ds = SliceDataset(path, mask_kinds=("file",))
    s = ds[1]
    assert s.kspace.shape == (1, H, W) and s.meta.mask_type == "file" and s.meta.seed is None
    np.testing.assert_array_equal(s.mask[0, 0].numpy(), stored_mask)
    assert s.meta.effective_acceleration == pytest.approx(W / stored_mask.sum())
    torch.testing.assert_close(s.kspace[0] * s.meta.scale, under[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(DataError, match="already undersampled .*13 of 32 lines.*mask 'file'"):
        SliceDataset(path)[0]  # a retrospective mask on already undersampled data would undersample it twice
    auto = SliceDataset(path, mask_kinds=("auto",))[1]  # 'auto' keeps the file's own sampling
    assert auto.meta.mask_type == "file" and auto.meta.effective_acceleration == pytest.approx(W / 13)
    # Without a stored mask the measured (non-zero) columns are the sampling, and the same rules apply.
    path2 = write_fastmri_h5(tmp_path / "no_mask.h5", under)
    with pytest.raises(DataError, match="13 of 32 phase-encode lines measured"):
        SliceDataset(path2)[0]
    s2 = SliceDataset(path2, mask_kinds=("file",))[1]
    np.testing.assert_array_equal(s2.mask[0, 0].numpy(), stored_mask)
    assert s2.meta.effective_acceleration == pytest.approx(W / 13)


def test_bad_files_raise_or_are_skipped(subjects):
    folder, _ = subjects
    bad = folder / "sub009_T2.h5"
    data = (folder / "sub000_T2.h5").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as err:
        SliceDataset([folder / "sub000_T2.h5", bad])
    assert err.value.file == str(bad)
    with pytest.warns(UserWarning, match="skipping"):
        ds = SliceDataset([folder / "sub000_T2.h5", bad], skip_bad_files=True)
    assert len(ds) == S and ds.skipped[0][0] == str(bad)


# --------------------------------------------------------------------------------------------------
# Paired data and batching
# --------------------------------------------------------------------------------------------------
def test_paired_dataset_reference(subjects):
    folder, ks = subjects
    ds = PairedSliceDataset(folder, "T2", "PD")
    assert len(ds) == 2 * S and [p.subject for p in ds.pairs] == ["sub000", "sub001"]
    s = ds[S + 3]
    assert s.meta.contrast == "T2" and s.meta.reference_contrast == "PD"
    assert s.meta.extra["subject"] == "sub001" and s.meta.extra["reference_file"].endswith("sub001_PD.h5")
    ref_full = rss(ifft2c(ks["sub001_PD"][3]))
    torch.testing.assert_close(s.reference * s.meta.extra["reference_scale"], ref_full, rtol=1e-5, atol=1e-5)
    assert float(s.reference.max()) == pytest.approx(1.0)
    m = s.mask.expand(1, H, W)[0]
    torch.testing.assert_close(s.kspace[:, m] * s.meta.scale, ks["sub001_T2"][3][:, m], rtol=1e-6, atol=1e-6)


def test_paired_dataset_slice_count_mismatch(tmp_path):
    _write_subject(tmp_path, "a_T2.h5", 0)
    write_fastmri_h5(tmp_path / "a_PD.h5", _phantom_kspace(1, slices=2))
    with pytest.raises(DataError, match="2 slices") as err:
        PairedSliceDataset(tmp_path, "T2", "PD")
    assert err.value.file == str(tmp_path / "a_PD.h5")


def test_paired_ixi_nifti_volumes(tmp_path):
    rng = np.random.default_rng(0)
    t2 = rng.random((H, W, 3), dtype=np.float32) + 0.5
    pd = rng.random((H, W, 3), dtype=np.float32) + 0.5
    write_array(tmp_path / "IXI002-Guys-0828-T2.nii.gz", t2)
    write_array(tmp_path / "IXI002-Guys-0828-PD.nii.gz", pd)
    ds = PairedSliceDataset(tmp_path, "T2", "PD", accelerations=(4,))
    assert len(ds) == 3
    s = ds[2]
    assert s.kspace.shape == (1, H, W) and s.meta.extra["kspace_synthesised"]
    torch.testing.assert_close(s.target * s.meta.scale, torch.from_numpy(t2[:, :, 2]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.reference, torch.from_numpy(pd[:, :, 2] / pd[:, :, 2].max()),
                               rtol=1e-5, atol=1e-5)


def test_collate_and_dataloader(subjects):
    folder, _ = subjects
    ds = PairedSliceDataset(folder, "T2", "PD", mask_kinds=("random1d", "poisson2d"), accelerations=(4,))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch.kspace.shape == (3, C, H, W) and batch.target.shape == (3, H, W)
    assert batch.reference.shape == (3, H, W) and len(batch) == 3 and batch.coil_maps is None
    kinds = {m.mask_type for m in batch.meta}
    assert batch.mask.shape == ((3, 1, H, W) if len(kinds) > 1 else (3, *ds[0].mask.shape))
    torch.testing.assert_close(batch.scale, torch.tensor([m.scale for m in batch.meta]))
    first = batch.sample(1)
    assert torch.equal(first.kspace, ds[1].kspace) and first.meta.slice == 1
    cropped = SliceDataset(folder / "sub000_T2.h5", crop=(16, 16))[0]
    with pytest.raises(ShapeError, match="different shapes"):
        collate_samples([ds[0], cropped])


# --------------------------------------------------------------------------------------------------
# samples_from_file
# --------------------------------------------------------------------------------------------------
def test_samples_from_h5_match_fixed_dataset_masks(subjects):
    folder, _ = subjects
    path = folder / "sub000_T2.h5"
    got = list(samples_from_file(path, mask_kind="random1d", acceleration=4, seed=7, max_slices=2))
    assert [s.meta.slice for s in got] == central_slices(S, 2) == [1, 2]
    ds = SliceDataset(path, mask_kinds="random1d", accelerations=4, seed=7)
    for s in got:
        assert torch.equal(s.mask, ds[s.meta.slice].mask)
        assert s.meta.seed == derive_seed(7, path.name, s.meta.slice, "mask")


def test_samples_from_image_file_synthesise_kspace(tmp_path):
    img = np.abs(np.random.default_rng(0).standard_normal((H, W))).astype(np.float32) + 1
    write_array(tmp_path / "slice.npy", img)
    (s,) = samples_from_file(tmp_path / "slice.npy", mask_kind="equispaced1d", acceleration=4)
    assert s.meta.extra["kspace_synthesised"] and s.meta.extra["hermitian_symmetric"]
    assert s.kspace.shape == (1, H, W)
    torch.testing.assert_close(s.target * s.meta.scale, torch.from_numpy(img), rtol=1e-5, atol=1e-5)
    k_full = fft2c(torch.from_numpy(img).to(torch.complex64))
    m = s.mask.expand(1, H, W)[0]
    torch.testing.assert_close(s.kspace[0, m] * s.meta.scale, k_full[m], rtol=1e-5, atol=1e-4)
    nifti = np.stack([img, 2 * img, 3 * img], axis=-1)
    write_array(tmp_path / "vol.nii.gz", nifti)
    vol = list(samples_from_file(tmp_path / "vol.nii.gz", mask_kind="random1d", acceleration=4, max_slices=1))
    assert len(vol) == 1 and vol[0].meta.slice == 1
    torch.testing.assert_close(vol[0].target * vol[0].meta.scale, torch.from_numpy(2 * img), rtol=1e-5,
                               atol=1e-4)


@pytest.mark.shared_data
def test_samples_from_shared_multicoil_mat(shared_data):
    path = shared_data / "multicoil_brain8ch_kspace_espirit" / "brain_alias_8ch.mat"
    (s,) = samples_from_file(path, mask_kind="random1d", acceleration=4, domain="kspace", coil_axis=-1)
    assert s.kspace.shape == (8, 320, 256) and s.meta.extra["input_zero_fraction"] < 0.5
    assert float(rss(ifft2c(s.kspace)).max()) == pytest.approx(1.0, rel=1e-5)
