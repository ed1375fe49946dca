"""The MNI ICBM152 2009a nonlinear symmetric templates (1 mm) that ship inside the nilearn wheel.

Files (in ``nilearn/datasets/data/``): the skull-stripped T1 average and the grey- and white-matter
probability maps, each 197 x 233 x 189 voxels of 1 mm, uint8 scaled to 0..255, RAS+ (x: left -> right,
y: posterior -> anterior, z: inferior -> superior). Fonov et al., NeuroImage 54:313 (2011) and 47:S102 (2009).

No CSF map is shipped, so CSF is derived: CSF = brain - GM - WM, where ``brain`` is the skull-strip mask
(T1 > 0) extended by the GM/WM partial-volume voxels that lie just outside it (max(mask, GM + WM)).

The package directory is located with ``importlib.util.find_spec`` so that nilearn (a heavy import) is never
executed; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from mrrecon.errors import DataError

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# Part of the volume kept in memory: MNI z from -30 mm to +80 mm covers every slice the simulator draws
# (z in [0, 55] mm) plus the through-plane tilt (<= 6 deg over a 120 mm radius, i.e. +-13 mm).
_Z_KEEP_MM = (-30.0, 80.0)


def template_dir() -> Path:
    """The folder of nilearn's bundled data files, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the brain simulator needs the MNI ICBM152 templates bundled with the 'nilearn' "
                        "package, which is not installed (pip install nilearn)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def template_path(name: str) -> Path:
    path = template_dir() / TEMPLATE_FILES[name]
    if not path.is_file():
        raise DataError("MNI ICBM152 template not found in the installed nilearn package "
                        "(a nilearn version >= 0.10 bundles it)", path)
    return path


@dataclass(frozen=True)
class Template:
    """Tissue maps on the template grid (cropped to the slab the simulator uses), float32 in [0, 1].

    ``gm``, ``wm``: tissue probabilities; ``brain``: max(skull-strip mask, GM + WM).
    ``mm_to_voxel``: 3 x 4 matrix taking RAS mm (homogeneous) to (cropped) voxel indices.
    """

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    mm_to_voxel: np.ndarray

    def sample(self, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, ...]:
        """Trilinear samples (gm, wm, brain) at RAS mm positions; zero outside the template box."""
        pts = np.stack([np.ravel(x_mm), np.ravel(y_mm), np.ravel(z_mm)]).astype(np.float64)
        vox = self.mm_to_voxel[:, :3] @ pts + self.mm_to_voxel[:, 3:]
        out = []
        for vol in (self.gm, self.wm, self.brain):
            s = ndimage.map_coordinates(vol, vox, order=1, mode="constant", cval=0.0, prefilter=False,
                                        output=np.float32)
            out.append(s.reshape(np.shape(x_mm)))
        return tuple(out)


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    path = template_path(name)
    try:
        img = nib.load(str(path))
        return np.asarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"cannot read the MNI template: {exc}", path) from exc


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Load, crop and cache the templates (about 0.2 s once per process, ~25 MB)."""
    t1, affine = _load("t1")
    gm, affine_gm = _load("gm")
    wm, affine_wm = _load("wm")
    same_grid = np.allclose(affine, affine_gm) and np.allclose(affine, affine_wm)
    if not (t1.shape == gm.shape == wm.shape) or not same_grid:
        raise DataError("the MNI T1, GM and WM templates do not share one grid", template_dir())
    voxel_to_mm = affine
    mm_to_voxel = np.linalg.inv(voxel_to_mm)
    # z slab to keep (voxel indices), then crop x/y to the brain's bounding box (+2 voxels).
    z_lo, z_hi = (int(np.clip(round(mm_to_voxel[2, 2] * z + mm_to_voxel[2, 3]), 0, t1.shape[2] - 1))
                  for z in _Z_KEEP_MM)
    mask = t1[:, :, z_lo:z_hi + 1] > 0
    xs, ys = np.flatnonzero(mask.any(axis=(1, 2))), np.flatnonzero(mask.any(axis=(0, 2)))
    x_lo, x_hi = max(xs[0] - 2, 0), min(xs[-1] + 3, t1.shape[0])
    y_lo, y_hi = max(ys[0] - 2, 0), min(ys[-1] + 3, t1.shape[1])
    crop = (slice(x_lo, x_hi), slice(y_lo, y_hi), slice(z_lo, z_hi + 1))
    gm_f = gm[crop].astype(np.float32) / 255.0
    wm_f = wm[crop].astype(np.float32) / 255.0
    brain = np.maximum((t1[crop] > 0).astype(np.float32), np.minimum(gm_f + wm_f, 1.0))
    shift = np.array([x_lo, y_lo, z_lo], dtype=np.float64)
    m = mm_to_voxel[:3].copy()
    m[:, 3] -= shift
    for arr in (gm_f, wm_f, brain):
        arr.setflags(write=False)
    return Template(gm=gm_f, wm=wm_f, brain=brain, mm_to_voxel=m)
