"""One simulated subject: geometry, tissue-fraction maps (brain + meninges, skull, scalp), texture and vessels.

Coordinates. Output images are axial, radiological display: row index grows towards the patient's posterior,
column index towards the patient's left; (u, v) are the row/column positions in mm from the image centre
(pixel ``n // 2``, the centre of the centred FFT). The template is RAS+ mm (MNI). A subject is the template
scaled, rotated, shifted and elastically warped in plane, cut by a slightly tilted slice; ``Geometry.to_template``
is the inverse map (output position -> template position), used for every pixel and every vessel seed.

All random draws come from numpy Generators seeded by the caller; low-frequency fields live on a fixed coarse
grid (``fields.CoarseField``), so the subject's shape does not depend on the image size. Every constant below
is listed with its rationale in docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import convex_hull_image

from mrrecon.data.phantom.contrast import TISSUE_NAMES
from mrrecon.data.phantom.fields import CoarseField, bandpass_noise
from mrrecon.data.phantom.template import Template, load_template

FOV_MM = 240.0
Z_RANGE_MM = (0.0, 55.0)  # MNI z of the drawn slices: basal ganglia / lateral ventricles up to the high convexity
BRAIN_CENTRE_MM = (0.0, -17.0)  # MNI (x, y) of the brain's centre in plane (mid-point of its A-P extent)

# Per-subject geometry (uniform ranges).
ROTATION_DEG = 10.0  # in-plane rotation, +-
PITCH_DEG = 6.0  # slice tilt about the left-right axis, +-
ROLL_DEG = 3.0  # slice tilt about the anterior-posterior axis, +-
SCALE_RANGE = (0.92, 1.04)  # isotropic head-size factor
ANISOTROPY = 0.03  # extra +- relative scaling between the two in-plane axes
SHIFT_MM = 4.0  # in-plane translation, +-
ELASTIC_STD_MM = 2.5  # std of each displacement component
ELASTIC_CORR_MM = 35.0  # correlation length of the displacement field

# Sharpening of the template's tissue probabilities (an average of 152 brains is blurrier than one brain):
# unsharp masking (p + amount (p - G_sigma p)) then a power law p^gamma / sum(p^gamma).
UNSHARP_SIGMA_MM = 1.5
UNSHARP_AMOUNT = 1.0
SHARPEN_GAMMA = 2.0

# Shells around the (closed) brain envelope, inside -> outside: (tissue, mean thickness mm, lognormal sigma).
LAYERS: tuple[tuple[str, float, float], ...] = (
    ("csf", 1.5, 0.35),  # subarachnoid CSF rim
    ("dura", 0.8, 0.20),
    ("bone", 1.5, 0.25),  # inner table
    ("marrow", 2.5, 0.30),  # diploe
    ("bone", 1.5, 0.25),  # outer table
    ("muscle", 1.0, 0.30),  # galea / pericranium; the temporalis muscle is added laterally
    ("fat", 4.0, 0.25),  # subcutaneous fat
    ("skin", 2.0, 0.20),
)
LAYER_CORR_MM = 30.0  # correlation length of the thickness variation
ENVELOPE_CLOSING_MM = 16.0  # closing radius that turns the brain mask into the inner skull surface
ENVELOPE_CONVEXITY = 0.5  # weight of the convex hull's signed distance in the envelope's
TEMPORALIS_MM = (6.0, 12.0)  # peak temporalis thickness, uniform
TEMPORALIS_ANGLE_DEG = (75.0, 30.0)  # centre (from anterior, each side) and Gaussian width of its extent
TEMPORALIS_Z_MM = (25.0, 50.0)  # full thickness below the first MNI z, tapering to zero at the second
FALX_WIDTH_MM = 1.0
FALX_WAVE_MM = (0.6, 10.0)  # std and correlation length of the falx's lateral waviness
# Sulci: the template's sulci are blurred away, so thin CSF lines are drawn along the ridges (medial axis) of
# the distance-to-white-matter map in the cortex: where two gyri's white-matter cores face each other.
SULCUS_WIDTH_MM = (0.6, 1.4)  # per-subject base width (uniform); x1.6 near the surface, lognormal 0.3 variation
SULCUS_DEPTH_MM = 15.0  # deepest point below the inner skull surface
SULCUS_SCALE_MM = 1.0  # Gaussian derivative scale of the ridge detector
SULCUS_MIN_STRENGTH = 0.3  # ridge strength threshold, relative to the 99th percentile in the brain

# Texture: multiplicative modulation of PD, T1, T2 (std, relative).
TEXTURE_FINE_MM = (1.0, 6.0)  # wavelength band of the fine texture
TEXTURE_FINE_STD = {"pd": 0.03, "t1": 0.04, "t2": 0.05}
TEXTURE_COARSE_CORR_MM = 12.0
TEXTURE_COARSE_STD = {"pd": 0.03, "t1": 0.05, "t2": 0.05}
SUBJECT_JITTER_STD = {"pd": 0.03, "t1": 0.05, "t2": 0.05}  # per tissue, per subject

# Thin curvilinear structures: (expected count, length mm, width mm, curvature std rad/mm, bend corr mm).
PVS = {"count": 10, "length": (2.0, 8.0), "width": (0.3, 0.8), "bend": 0.04, "corr": 4.0}
VESSELS = {"count": 12, "length": (4.0, 18.0), "width": (0.4, 1.3), "bend": 0.10, "corr": 5.0}
CURVE_STEP_MM = 0.2  # sampling step along the curves (fixed, so curves do not depend on the image size)
FLOW_VOID_PROB = 0.6  # fraction of vessels that are flow voids (signal x 0.05-0.2), the rest slow flow (x 0.6-1)


@dataclass
class Geometry:
    rotation: float
    pitch: float
    roll: float
    scale: tuple[float, float]  # (rows/AP, columns/LR)
    shift: tuple[float, float]  # mm, (u, v)
    elastic: tuple[CoarseField, CoarseField]

    @classmethod
    def draw(cls, rng: np.random.Generator, fov_mm: float) -> Geometry:
        deg = math.pi / 180.0
        rotation = rng.uniform(-ROTATION_DEG, ROTATION_DEG) * deg
        pitch = rng.uniform(-PITCH_DEG, PITCH_DEG) * deg
        roll = rng.uniform(-ROLL_DEG, ROLL_DEG) * deg
        s = rng.uniform(*SCALE_RANGE)
        a = rng.uniform(-ANISOTROPY, ANISOTROPY)
        shift = tuple(rng.uniform(-SHIFT_MM, SHIFT_MM, size=2))
        elastic = (CoarseField(rng, fov_mm, ELASTIC_CORR_MM), CoarseField(rng, fov_mm, ELASTIC_CORR_MM))
        return cls(rotation, pitch, roll, (s * (1 + a), s * (1 - a)), shift, elastic)

    def to_display_frame(self, u: np.ndarray, v: np.ndarray, axes=None) -> tuple[np.ndarray, np.ndarray]:
        """Output (u, v) mm -> template in-plane (a, b) mm: a posterior, b left of the brain centre.
        ``axes``: the 1-D (u, v) axes when (u, v) is their meshgrid (fast separable field evaluation)."""
        e = [f.grid(*axes) if axes is not None else f(u, v) for f in self.elastic]
        qu = u + ELASTIC_STD_MM * e[0] - self.shift[0]
        qv = v + ELASTIC_STD_MM * e[1] - self.shift[1]
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        a = (c * qu + s * qv) / self.scale[0]
        b = (-s * qu + c * qv) / self.scale[1]
        return a, b

    def to_template(self, u: np.ndarray, v: np.ndarray, z_mm: float, axes=None):
        """Output (u, v) mm on the slice at MNI height ``z_mm`` -> MNI (x, y, z) mm and the frame (a, b)."""
        a, b = self.to_display_frame(u, v, axes)
        x = BRAIN_CENTRE_MM[0] - b
        y = BRAIN_CENTRE_MM[1] - a
        z = z_mm - math.tan(self.pitch) * a + math.tan(self.roll) * b
        return x, y, z, a, b


@dataclass
class SubjectAnatomy:
    """Everything random about one subject that is shared by its slices and contrasts."""

    geometry: Geometry
    z_mm: tuple[float, ...]
    fov_mm: float
    layer_fields: list[CoarseField]
    temporalis_mm: float
    sulcus_width_mm: float
    sulcus_field: CoarseField
    falx_field: CoarseField
    texture_coarse: dict[str, CoarseField]
    tissue_jitter: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: np.random.Generator, slices: int, slice_spacing_mm: float,
             fov_mm: float = FOV_MM) -> SubjectAnatomy:
        extent = (slices - 1) * slice_spacing_mm
        z0 = rng.uniform(Z_RANGE_MM[0], Z_RANGE_MM[1] - extent)
        z_mm = tuple(float(z0 + i * slice_spacing_mm) for i in range(slices))
        geometry = Geometry.draw(rng, fov_mm)
        layer_fields = [CoarseField(rng, fov_mm, LAYER_CORR_MM) for _ in LAYERS]
        temporalis = rng.uniform(*TEMPORALIS_MM)
        sulcus_width = rng.uniform(*SULCUS_WIDTH_MM)
        sulcus_field = CoarseField(rng, fov_mm, LAYER_CORR_MM)
        falx_field = CoarseField(rng, fov_mm, FALX_WAVE_MM[1])
        texture_coarse = {p: CoarseField(rng, fov_mm, TEXTURE_COARSE_CORR_MM) for p in ("pd", "t1", "t2")}
        jitter = {}
        for name in TISSUE_NAMES:
            z = np.clip(rng.standard_normal(3), -3, 3)
            jitter[name] = {p: float(1 + SUBJECT_JITTER_STD[p] * zi)
                            for p, zi in zip(("pd", "t1", "t2"), z, strict=True)}
        return cls(geometry, z_mm, fov_mm, layer_fields, temporalis, sulcus_width, sulcus_field, falx_field,
                   texture_coarse, jitter)


@dataclass
class SliceTissues:
    """Tissue-fraction maps (sum <= 1; the rest is air) and parameter modulation maps on an n x n grid."""

    fractions: dict[str, np.ndarray]
    modulation: dict[str, np.ndarray]  # multipliers of pd, t1, t2 (texture)
    flow: np.ndarray  # signal factor of the 'blood' fraction (flow void < 1)
    brain: np.ndarray  # the template's brain mask (GM + WM + CSF of the skull-stripped brain) after the warp


def _grid(n: int, fov_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Pixel-centre positions (mm) of an n x n grid over the FOV: meshgrid (u, v), the 1-D axis, spacing."""
    px = fov_mm / n
    c = (np.arange(n) - n // 2) * px
    u, v = np.meshgrid(c, c, indexing="ij")
    return u, v, c, px


def _box_overlap(d: np.ndarray, half_width: np.ndarray | float, px: float) -> np.ndarray:
    """Fraction of a pixel of side ``px`` covered by a band of half-width ``half_width`` whose centre line is
    ``d`` from the pixel centre (1-D box overlap; integrates to the band's width, so thin bands are
    partial-volumed correctly)."""
    hi = np.minimum(d + half_width, px / 2)
    lo = np.maximum(d - half_width, -px / 2)
    return np.clip((hi - lo) / px, 0.0, 1.0).astype(np.float32)


def _signed_distance(mask: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (mm) to the boundary of a binary mask, negative inside, smoothed by ~1 mm."""
    out = ndimage.distance_transform_edt(~mask) * px - px / 2
    inside = ndimage.distance_transform_edt(mask) * px - px / 2
    d = np.where(mask, -inside, out)
    return ndimage.gaussian_filter(d, sigma=max(0.7, 1.0 / px)).astype(np.float32)


def _envelope_distance(brain: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (mm, negative inside) to the inner skull surface: the brain mask closed with a disc of
    ENVELOPE_CLOSING_MM (holes filled), pulled ENVELOPE_CONVEXITY of the way towards its convex hull (the
    skull does not follow the deep notches between the hemispheres)."""
    binary = brain > 0.5
    r = ENVELOPE_CLOSING_MM
    dilated = ndimage.distance_transform_edt(~binary) * px <= r
    closed = ndimage.binary_fill_holes((ndimage.distance_transform_edt(dilated) * px > r) | binary)
    if not closed.any():
        return _signed_distance(closed, px)
    hull = convex_hull_image(closed)
    return ((1 - ENVELOPE_CONVEXITY) * _signed_distance(closed, px)
            + ENVELOPE_CONVEXITY * _signed_distance(hull, px)).astype(np.float32)


def _sharpen(probs: list[np.ndarray], px: float) -> list[np.ndarray]:
    sigma = UNSHARP_SIGMA_MM / px
    boosted = [p + UNSHARP_AMOUNT * (p - ndimage.gaussian_filter(p, sigma)) for p in probs]
    powered = [np.power(np.clip(p, 0, None), SHARPEN_GAMMA) for p in boosted]
    total = np.maximum(sum(powered), 1e-12)
    return [p / total for p in powered]


def _sulcal_lines(wm: np.ndarray, brain: np.ndarray, depth: np.ndarray, width: np.ndarray, px: float) -> np.ndarray:
    """Coverage of thin sulcal CSF lines: the ridges of the distance to white matter (a medial axis between
    facing gyral cores), in grey matter no deeper than SULCUS_DEPTH_MM below the envelope (``depth`` is the
    signed distance to it, negative inside). The distance of each pixel to the ridge centre line is the Newton
    step |g . e| / |lambda| (gradient g along the Hessian eigenvector e of the most negative eigenvalue
    lambda), so the line is drawn anti-aliased with sub-pixel position and the requested width."""
    d = ndimage.distance_transform_edt(wm < 0.5) * px
    s = SULCUS_SCALE_MM / px
    hxx = ndimage.gaussian_filter(d, s, order=(2, 0))
    hyy = ndimage.gaussian_filter(d, s, order=(0, 2))
    hxy = ndimage.gaussian_filter(d, s, order=(1, 1))
    gx = ndimage.gaussian_filter(d, s, order=(1, 0))
    gy = ndimage.gaussian_filter(d, s, order=(0, 1))
    root = np.sqrt(0.25 * (hxx - hyy) ** 2 + hxy**2)
    lam_min = 0.5 * (hxx + hyy) - root
    lam_max = 0.5 * (hxx + hyy) + root
    ex, ey = hxy, lam_min - hxx
    flat = np.abs(ex) + np.abs(ey) < 1e-12
    ex, ey = np.where(flat, 1.0, ex), np.where(flat, 0.0, ey)
    norm = np.hypot(ex, ey)
    offset = np.abs(gx * ex + gy * ey) / norm / np.maximum(-lam_min, 1e-6) * px  # mm to the ridge line
    strength = -lam_min
    inside = brain > 0.5
    if not inside.any():
        return np.zeros_like(d, dtype=np.float32)
    ref = np.percentile(strength[inside], 99)
    zone = ((strength > SULCUS_MIN_STRENGTH * ref) & (-lam_min > 2 * np.abs(lam_max)) & (depth > -SULCUS_DEPTH_MM)
            & (d > 0.7) & inside)
    return (_box_overlap(offset, width / 2, px) * zone).astype(np.float32)


def _random_curve(rng: np.random.Generator, centre: np.ndarray, angle: float, length: float, step: float,
                  bend: float, corr: float) -> np.ndarray:
    """A smooth random curve (m, 2) in mm through ``centre``: heading angle(s) = angle + integral of a smooth
    Gaussian curvature process (std ``bend`` rad/mm, correlation ``corr`` mm)."""
    m = max(int(length / step) + 1, 3)
    kappa = ndimage.gaussian_filter1d(rng.standard_normal(m), sigma=max(corr / step, 1.0), mode="nearest")
    kappa *= bend / max(kappa.std(), 1e-12)
    heading = angle + np.cumsum(kappa * step)
    pts = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=1) * step, axis=0)
    return pts - pts[m // 2] + centre


def _seed_points(rng, geometry: Geometry, template: Template, z_mm: float, fov_mm: float, count: int,
                 accept) -> np.ndarray:
    """``count`` positions (u, v) mm, drawn uniformly over the FOV and kept with probability ``accept(gm, wm,
    csf, a, b)`` evaluated on the (un-sharpened) template ((a, b): position in the subject's frame):
    grid-independent, so vessels sit at the same place for any output size."""
    found: list[np.ndarray] = []
    have = 0
    for _ in range(50):
        cand = rng.uniform(-fov_mm / 2, fov_mm / 2, size=(512, 2))
        x, y, z, a, b = geometry.to_template(cand[:, 0], cand[:, 1], z_mm)
        gm, wm, brain = template.sample(x, y, z)
        csf = np.clip(brain - gm - wm, 0, 1)
        keep = rng.uniform(size=len(cand)) < accept(gm, wm, csf, a, b)
        found.append(cand[keep])
        have += int(keep.sum())
        if have >= count:
            break
    pts = np.concatenate(found) if found else np.zeros((0, 2))
    return pts[:count]


def _cortical_vessel_density(gm, wm, csf, a, b):
    """Vessel seeds: sulcal / cortical-surface positions (GM next to CSF), away from the ventricles."""
    peripheral = np.sqrt((a / 90.0) ** 2 + (b / 70.0) ** 2) > 0.55
    return np.clip(4 * gm * csf, 0, 1) * peripheral


def _rasterise(curves: list[np.ndarray], half_widths: list[np.ndarray], values: list[float], u: np.ndarray,
               v: np.ndarray, px: float, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage of a set of curves on the pixel grid, and the value of the nearest curve."""
    cover = np.zeros(u.shape, np.float32)
    value = np.zeros(u.shape, np.float32)
    if not curves:
        return cover, value
    pts = np.concatenate(curves)
    hw = np.concatenate(half_widths)
    val = np.concatenate([np.full(len(c), vv, np.float32) for c, vv in zip(curves, values, strict=True)])
    tree = cKDTree(pts)
    idx_pix = np.flatnonzero(region)
    q = np.stack([u.ravel()[idx_pix], v.ravel()[idx_pix]], axis=1)
    d, nearest = tree.query(q, distance_upper_bound=float(hw.max()) + px)
    hit = np.isfinite(d)
    c = _box_overlap(d[hit], hw[nearest[hit]], px)
    cover.ravel()[idx_pix[hit]] = c
    value.ravel()[idx_pix[hit]] = val[nearest[hit]]
    return cover, value


def _curves(rng, seeds: np.ndarray, spec: dict, step: float, radial_from: np.ndarray | None):
    curves, hws = [], []
    for p in seeds:
        if radial_from is not None:
            r = p - radial_from
            angle = math.atan2(r[1], r[0]) + rng.normal(0.0, 0.35)
        else:
            angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(*spec["length"])
        width = rng.uniform(*spec["width"])
        curve = _random_curve(rng, p, angle, length, step, spec["bend"], spec["corr"])
        s = np.linspace(0.0, 1.0, len(curve))
        taper = np.sqrt(0.35 + 0.65 * np.sin(np.pi * s))  # thinner ends
        curves.append(curve)
        hws.append(0.5 * width * taper)
    return curves, hws


def render_slice(anatomy: SubjectAnatomy, z_mm: float, n: int, rng: np.random.Generator) -> SliceTissues:
    """Tissue fractions of one axial slice at MNI height ``z_mm`` on an n x n grid over the FOV."""
    template = load_template()
    geo = anatomy.geometry
    u, v, axis, px = _grid(n, anatomy.fov_mm)
    axes = (axis, axis)
    x, y, z, a, b = geo.to_template(u, v, z_mm, axes)
    gm, wm, brain = template.sample(x, y, z)

    # Brain tissue: renormalised, sharpened probabilities times the (soft) brain mask.
    inside = brain > 1e-6
    denom = np.where(inside, brain, 1.0)
    p_gm, p_wm = gm / denom, wm / denom
    p_csf = np.clip(1.0 - p_gm - p_wm, 0.0, 1.0)
    p_gm, p_wm, p_csf = _sharpen([p_gm, p_wm, p_csf], px)
    frac = {name: np.zeros((n, n), np.float32) for name in TISSUE_NAMES}
    frac["gm"] = (p_gm * brain).astype(np.float32)
    frac["wm"] = (p_wm * brain).astype(np.float32)
    frac["csf"] = (p_csf * brain).astype(np.float32)

    # Intracranial envelope (inner skull surface) and the signed distance to it.
    d = _envelope_distance(brain, px)

    # Sulci: thin CSF lines replacing grey/white matter, wider near the surface.
    width = anatomy.sulcus_width_mm * np.exp(0.3 * anatomy.sulcus_field.grid(*axes) - 0.045)
    width = width * (1.0 + 0.6 * np.exp(np.minimum(d, 0.0) / 4.0))
    sulci = _sulcal_lines(frac["wm"], brain, d, width, px)
    moved = sulci * (frac["gm"] + frac["wm"])
    frac["gm"] *= 1 - sulci
    frac["wm"] *= 1 - sulci
    frac["csf"] += moved

    # Falx cerebri / septum pellucidum: a thin dural line in the mid-sagittal plane, replacing CSF only.
    near = np.flatnonzero((np.abs(x) < 3 * FALX_WAVE_MM[0] + FALX_WIDTH_MM + px).ravel() & (frac["csf"].ravel() > 0))
    falx = np.zeros((n, n), np.float32)
    wave = FALX_WAVE_MM[0] * anatomy.falx_field(y.ravel()[near], np.zeros(near.size))  # a function of MNI y
    falx.ravel()[near] = _box_overlap(np.abs(x.ravel()[near] - wave), FALX_WIDTH_MM / 2, px)
    falx *= frac["csf"]
    frac["csf"] -= falx
    frac["dura"] += falx

    # The shells outside the envelope.
    inside_env = np.clip(0.5 - d / px, 0.0, 1.0)
    frac["csf"] += np.clip(inside_env - brain, 0.0, 1.0)
    angle = np.arctan2(b, -a)  # 0 = anterior, +-pi/2 = lateral, in the subject's own frame
    centre, width = (np.deg2rad(t) for t in TEMPORALIS_ANGLE_DEG)
    lateral = np.exp(-0.5 * ((np.abs(angle) - centre) / width) ** 2)
    z_lo, z_hi = TEMPORALIS_Z_MM
    z_taper = float(np.clip((z_hi - z_mm) / (z_hi - z_lo), 0.0, 1.0))
    z_taper = 0.5 - 0.5 * math.cos(math.pi * z_taper)
    layers = np.zeros((len(LAYERS), n, n), np.float32)
    boundary = np.zeros((n, n), np.float32)
    covered_prev = np.clip(0.5 + (boundary - d) / px, 0.0, 1.0)
    for k, ((_, mean, sigma), fld) in enumerate(zip(LAYERS, anatomy.layer_fields, strict=True)):
        thick = mean * np.exp(sigma * fld.grid(*axes) - 0.5 * sigma**2)
        if LAYERS[k][0] == "muscle":
            thick = thick + anatomy.temporalis_mm * z_taper * lateral
        boundary = boundary + thick
        covered = np.clip(0.5 + (boundary - d) / px, 0.0, 1.0)
        layers[k] = covered - covered_prev
        covered_prev = covered
    interior = frac["gm"] + frac["wm"] + frac["csf"] + frac["dura"]
    room = np.clip(1.0 - interior, 0.0, 1.0)
    total_layers = layers.sum(axis=0)
    scale = np.where(total_layers > room, room / np.maximum(total_layers, 1e-12), 1.0)
    for k, (name, _, _) in enumerate(LAYERS):
        frac[name] += layers[k] * scale

    # Thin curvilinear structures inside the brain: perivascular spaces (CSF-like) and vessels.
    template_region = ndimage.binary_dilation(brain > 0.05, iterations=2)
    step = CURVE_STEP_MM
    centre_uv = np.array(geo.shift, dtype=np.float64)
    n_pvs = int(rng.poisson(PVS["count"]))
    pvs_seeds = _seed_points(rng, geo, template, z_mm, anatomy.fov_mm, n_pvs,
                             lambda g, w, c, a, b: np.clip((w - 0.6) / 0.3, 0, 1))
    curves, hws = _curves(rng, pvs_seeds, PVS, step, radial_from=centre_uv)
    pvs, _ = _rasterise(curves, hws, [1.0] * len(curves), u, v, px, template_region)
    moved = pvs * (frac["gm"] + frac["wm"])
    frac["gm"] *= 1 - pvs
    frac["wm"] *= 1 - pvs
    frac["csf"] += moved

    n_ves = int(rng.poisson(VESSELS["count"]))
    ves_seeds = _seed_points(rng, geo, template, z_mm, anatomy.fov_mm, n_ves,
                             _cortical_vessel_density)
    curves, hws = _curves(rng, ves_seeds, VESSELS, step, radial_from=None)
    flows = [float(rng.uniform(0.05, 0.2) if rng.uniform() < FLOW_VOID_PROB else rng.uniform(0.6, 1.0))
             for _ in curves]
    ves, flow = _rasterise(curves, hws, flows, u, v, px, template_region)
    host = frac["gm"] + frac["wm"] + frac["csf"]
    for name in ("gm", "wm", "csf"):
        frac[name] *= 1 - ves
    frac["blood"] += ves * host

    # Texture: fine band-limited noise (per slice) + coarse variation (per subject), multiplicative.
    modulation = {}
    for p in ("pd", "t1", "t2"):
        fine = bandpass_noise(rng, n, px, *TEXTURE_FINE_MM)
        coarse = anatomy.texture_coarse[p].grid(*axes)
        modulation[p] = (1.0 + TEXTURE_FINE_STD[p] * fine + TEXTURE_COARSE_STD[p] * coarse).astype(np.float32)

    return SliceTissues(fractions=frac, modulation=modulation, flow=np.where(flow > 0, flow, 1.0).astype(np.float32),
                        brain=brain)
