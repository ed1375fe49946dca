"""Tissue relaxation parameters (1.5 T), the signal equations, and the randomised training contrast.

Brain, fat and muscle values are BrainWeb's tissue MR parameters at 1.5 T
(https://brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt; Kwan et al., IEEE TMI 18:1085, 1999;
Cocosco et al., NeuroImage 5:S425, 1997). BrainWeb gives no usable values for cortical bone's weak signal,
marrow, dura or flowing blood (its skull is PD 0; its "skin" and "dura" reuse CSF's numbers), so those are
our estimates, marked ``source="estimate"`` and justified in docs/simulator.md.

The contrast ``"random"`` (:func:`draw_random_contrast`) is domain randomisation for training, in the spirit of
SynthSeg (Billot et al., Medical Image Analysis 86:102789, 2023): per subject, widely jittered tissue parameters
under a randomly drawn sequence, or (a share of draws) a random intensity per tissue. Ranges: docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mrrecon.errors import ConfigError

FIELD_STRENGTH_T = 1.5


@dataclass(frozen=True)
class Tissue:
    pd: float  # proton density relative to water
    t1: float  # ms
    t2: float  # ms
    source: str


TISSUES: dict[str, Tissue] = {
    "csf": Tissue(1.00, 2569.0, 329.0, "BrainWeb"),
    "gm": Tissue(0.86, 833.0, 83.0, "BrainWeb"),
    "wm": Tissue(0.77, 500.0, 70.0, "BrainWeb"),
    "fat": Tissue(1.00, 350.0, 70.0, "BrainWeb"),
    "muscle": Tissue(1.00, 900.0, 47.0, "BrainWeb (muscle/skin)"),
    "skin": Tissue(1.00, 900.0, 47.0, "BrainWeb (muscle/skin)"),
    # Cortical bone: T2 ~ 0.4 ms (ultrashort-TE studies), so no spin-echo signal at TE >= 10 ms.
    "bone": Tissue(0.00, 1000.0, 1.0, "BrainWeb (skull: no signal)"),
    # Adult calvarial diploe is mostly fatty (yellow) marrow: fat-like but with some water.
    "marrow": Tissue(0.90, 400.0, 65.0, "estimate"),
    # Dura mater: dense collagen, low water content, short T2.
    "dura": Tissue(0.60, 1000.0, 40.0, "estimate"),
    # Blood at 1.5 T: T1 ~ 1.2-1.4 s, T2 ~ 150-250 ms (oxygenation dependent); the vessel's flow factor
    # (per vessel, see anatomy.py) then models the spin-echo flow void.
    "blood": Tissue(0.90, 1350.0, 180.0, "estimate"),
}
TISSUE_NAMES = tuple(TISSUES)


@dataclass(frozen=True)
class Sequence:
    """An acquisition, by its two optional parts: an inversion (``ti``) and a gradient-echo readout
    (``flip_deg``). Neither: spin echo ("SE"); ``ti``: inversion-recovery spin echo ("IR"); ``flip_deg``: spoiled
    gradient echo ("GRE"); both: inversion-prepared gradient echo, MPRAGE-like ("IR-GRE"). Times in ms."""

    name: str
    tr: float
    te: float
    ti: float | None = None
    acquisition: str = ""  # fastMRI-style acquisition name, written to the h5 attrs
    flip_deg: float | None = None

    @property
    def kind(self) -> str:
        if self.flip_deg is None:
            return "SE" if self.ti is None else "IR"
        return "GRE" if self.ti is None else "IR-GRE"


def flair_null_ti(tr: float, t1: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation ``t1``:
    1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0  =>  TI = T1 ln(2 / (1 + exp(-TR/T1)))."""
    return t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1)))


_FLAIR_TR = 9000.0
SEQUENCES: dict[str, Sequence] = {
    "T1": Sequence("T1", tr=500.0, te=12.0, acquisition="AXT1"),
    "T2": Sequence("T2", tr=4000.0, te=100.0, acquisition="AXT2"),
    "PD": Sequence("PD", tr=3000.0, te=15.0, acquisition="AXPD"),
    "FLAIR": Sequence("FLAIR", tr=_FLAIR_TR, te=120.0, ti=round(flair_null_ti(_FLAIR_TR, TISSUES["csf"].t1), 1),
                      acquisition="AXFLAIR"),
}
CONTRASTS = tuple(SEQUENCES)  # the named contrasts (the default set)
RANDOM_CONTRAST = "random"  # the randomised training contrast (drawn per subject)
RANDOM_ACQUISITION = "AXRANDOM"  # its fastMRI-style acquisition name
ALL_CONTRASTS = (*CONTRASTS, RANDOM_CONTRAST)  # an index into this keys each contrast's random streams
_ALIASES = {"T1W": "T1", "T2W": "T2", "PDW": "PD", "T2FLAIR": "FLAIR", "T2-FLAIR": "FLAIR"}


def canonical_contrast(name: str) -> str:
    """'t1' -> 'T1', 'Random' -> 'random' etc. (case-insensitive; T1w/T2w/PDw accepted); anything else raises
    ConfigError."""
    if not isinstance(name, str):
        raise ConfigError(f"contrast names must be strings, got {name!r}")
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key == RANDOM_CONTRAST.upper():
        return RANDOM_CONTRAST
    if key not in SEQUENCES:
        raise ConfigError(f"unknown contrast {name!r}; choose from {', '.join(ALL_CONTRASTS)} (case-insensitive)")
    return key


def signal(seq: Sequence, pd: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Magnitude signal relative to the equilibrium magnetisation of water (ideal pulses, TE << TR).

    Spin echo: S = PD (1 - exp(-TR/T1)) exp(-TE/T2).
    Inversion recovery (180 - TI - 90 - TE): S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2).
    Spoiled gradient echo (flip a): S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2), E1 = exp(-TR/T1).
    Inversion-prepared gradient echo (MPRAGE-like: one readout at TI after the inversion, TR = inversion
    interval, the readout train's own saturation ignored): S = PD sin(a) |1 - 2 exp(-TI/T1) + exp(-TR/T1)|
    exp(-TE/T2). The gradient echoes use T2 in place of T2* (not modelled; TE is short).
    Tissues with T1 or T2 <= 0 give no signal.
    """
    t1 = np.maximum(t1, 1e-3)
    t2 = np.maximum(t2, 1e-3)
    decay = np.exp(-seq.te / t2)
    if seq.ti is not None:
        recovery = np.abs(1.0 - 2.0 * np.exp(-seq.ti / t1) + np.exp(-seq.tr / t1))
    elif seq.flip_deg is None:
        recovery = 1.0 - np.exp(-seq.tr / t1)
    else:
        e1 = np.exp(-seq.tr / t1)
        recovery = (1.0 - e1) / (1.0 - math.cos(math.radians(seq.flip_deg)) * e1)
    if seq.flip_deg is not None:
        recovery = recovery * math.sin(math.radians(seq.flip_deg))
    return (pd * recovery * decay).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# The randomised contrast
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContrastSpec:
    """What one contrast's object is computed from: ``sequence`` and the tissue table ``tissues`` (physics
    mode), or, when ``intensity`` is set, a fixed intensity per tissue (SynthSeg-like mode, no sequence)."""

    name: str
    sequence: Sequence | None
    tissues: dict[str, Tissue]
    intensity: dict[str, float] | None = None

    @property
    def kind(self) -> str:
        return "intensity" if self.sequence is None else self.sequence.kind

    @property
    def acquisition(self) -> str:
        return RANDOM_ACQUISITION if self.sequence is None else self.sequence.acquisition


# Jitter of the tissue parameters, log-normal: a factor shared by all tissues (like a change of field strength)
# times one per tissue (breaks the tissues' order). Log-amplitude standard deviations:
RANDOM_GLOBAL_STD = {"pd": 0.0, "t1": 0.3, "t2": 0.2}
RANDOM_TISSUE_STD = {"pd": 0.2, "t1": 0.3, "t2": 0.3}
# Sequence kinds and their probabilities (physics mode).
RANDOM_KINDS = ("SE", "IR", "IR-GRE", "GRE")
RANDOM_KIND_PROB = (0.3, 0.25, 0.2, 0.25)
RANDOM_INTENSITY_FRACTION = 0.2  # default share of draws in the per-tissue intensity mode
# Inversion-recovery spin-echo variants (uniform choice): TI nulls CSF (FLAIR-like) or fat (STIR-like), within
# +-10 %, or lies in the T1-weighting range (T1-FLAIR-like). Ranges (ms): TR, TE and TI or the TI factor.
_IR_VARIANTS = {
    "csf-null": {"tr": (6000.0, 11000.0), "te": (80.0, 140.0)},
    "fat-null": {"tr": (3000.0, 6000.0), "te": (20.0, 80.0)},
    "t1": {"tr": (1500.0, 3000.0), "te": (8.0, 20.0), "ti": (500.0, 1000.0)},
}
_NULL_FACTOR = (0.9, 1.1)
_SE = {"tr": (300.0, 6000.0), "te": (8.0, 150.0)}  # log-uniform
_IR_GRE = {"tr": (1500.0, 3000.0), "ti": (600.0, 1300.0), "te": (2.0, 6.0), "flip": (6.0, 15.0)}
_GRE = {"tr": (10.0, 800.0), "te": (2.0, 30.0), "flip": (5.0, 90.0)}  # TR log-uniform, TE <= 0.8 TR


def _loguniform(lo: float, hi: float, u: float) -> float:
    return lo * (hi / lo) ** u


def _uniform(lo: float, hi: float, u: float) -> float:
    return lo + (hi - lo) * u


def _random_tissues(rng: np.random.Generator) -> dict[str, Tissue]:
    """Every tissue's PD, T1, T2 times exp(global + per-tissue normal draws); bone keeps PD 0 (no signal)."""
    glob = {p: RANDOM_GLOBAL_STD[p] * rng.standard_normal() for p in ("pd", "t1", "t2")}
    table = {}
    for name, base in TISSUES.items():
        z = rng.standard_normal(3)
        f = {p: math.exp(glob[p] + RANDOM_TISSUE_STD[p] * z[i]) for i, p in enumerate(("pd", "t1", "t2"))}
        table[name] = Tissue(base.pd * f["pd"], base.t1 * f["t1"], base.t2 * f["t2"], "random")
    return table


def _pick(options: tuple[str, ...], probs: tuple[float, ...], u: float) -> str:
    """The option whose cumulative-probability interval holds ``u`` in [0, 1)."""
    edges = np.cumsum(probs) / sum(probs)
    return options[min(int(np.searchsorted(edges, u, side="right")), len(options) - 1)]


def _random_sequence(u: np.ndarray, tissues: dict[str, Tissue]) -> Sequence:
    """A sequence from 6 uniforms ``u`` (a fixed number, so the draw consumes the same stream whatever the kind);
    null TIs use the drawn tissues' T1. Times rounded to 0.1 ms, flip angles to 0.1 deg."""
    kind = _pick(RANDOM_KINDS, RANDOM_KIND_PROB, u[0])
    ti = flip = None
    if kind == "SE":
        tr, te = _loguniform(*_SE["tr"], u[1]), _loguniform(*_SE["te"], u[2])
    elif kind == "IR":
        variant = _pick(tuple(_IR_VARIANTS), (1.0,) * len(_IR_VARIANTS), u[3])
        v = _IR_VARIANTS[variant]
        tr, te = _uniform(*v["tr"], u[1]), _uniform(*v["te"], u[2])
        if variant == "t1":
            ti = _uniform(*v["ti"], u[4])
        else:
            nulled = tissues["csf" if variant == "csf-null" else "fat"].t1
            ti = flair_null_ti(tr, nulled) * _uniform(*_NULL_FACTOR, u[4])
    elif kind == "IR-GRE":
        tr, te = _uniform(*_IR_GRE["tr"], u[1]), _uniform(*_IR_GRE["te"], u[2])
        ti, flip = _uniform(*_IR_GRE["ti"], u[4]), _uniform(*_IR_GRE["flip"], u[5])
    else:
        tr = _loguniform(*_GRE["tr"], u[1])
        te = _uniform(_GRE["te"][0], min(_GRE["te"][1], 0.8 * tr), u[2])
        flip = _uniform(*_GRE["flip"], u[5])
    r = lambda x: None if x is None else round(float(x), 1)  # noqa: E731
    return Sequence(RANDOM_CONTRAST, tr=r(tr), te=r(te), ti=r(ti), acquisition=RANDOM_ACQUISITION,
                    flip_deg=r(flip))


def named_contrast(name: str) -> ContrastSpec:
    """The fixed spec of a named contrast: its sequence and the BrainWeb tissue table."""
    return ContrastSpec(name, SEQUENCES[name], TISSUES)


def draw_random_contrast(rng: np.random.Generator,
                         intensity_fraction: float = RANDOM_INTENSITY_FRACTION) -> ContrastSpec:
    """One random contrast. The stream is consumed the same way for every outcome (mode draw, tissue table,
    sequence uniforms, intensities), so changing ``intensity_fraction`` only flips the mode of some draws.

    Physics mode: jittered tissues (``_random_tissues``) under a random sequence (``_random_sequence``).
    Intensity mode (probability ``intensity_fraction``): every tissue a uniform random intensity in [0, 1]
    (bone stays 0), SynthSeg style; the texture and vessel flow factors still modulate it.
    """
    mode_u = rng.random()
    tissues = _random_tissues(rng)
    sequence = _random_sequence(rng.random(6), tissues)
    levels = rng.random(len(TISSUES))
    if mode_u < intensity_fraction:
        intensity = {n: 0.0 if TISSUES[n].pd == 0.0 else float(x) for n, x in zip(TISSUES, levels, strict=True)}
        return ContrastSpec(RANDOM_CONTRAST, None, tissues, intensity)
    return ContrastSpec(RANDOM_CONTRAST, sequence, tissues)
