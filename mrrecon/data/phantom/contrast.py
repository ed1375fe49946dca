"""Tissue relaxation parameters (1.5 T) and the spin-echo / inversion-recovery signal equations.

Brain, fat and muscle values are BrainWeb's tissue MR parameters at 1.5 T
(https://brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt; Kwan et al., IEEE TMI 18:1085, 1999;
Cocosco et al., NeuroImage 5:S425, 1997). BrainWeb gives no usable values for cortical bone's weak signal,
marrow, dura or flowing blood (its skull is PD 0; its "skin" and "dura" reuse CSF's numbers), so those are
our estimates, marked ``source="estimate"`` and justified in docs/simulator.md.
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
    """A 2-D acquisition: spin echo (``ti`` is None) or inversion-recovery spin echo. Times in ms."""

    name: str
    tr: float
    te: float
    ti: float | None = None
    acquisition: str = ""  # fastMRI-style acquisition name, written to the h5 attrs

    @property
    def kind(self) -> str:
        return "SE" if self.ti is None else "IR"


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
CONTRASTS = tuple(SEQUENCES)
_ALIASES = {"T1W": "T1", "T2W": "T2", "PDW": "PD", "T2FLAIR": "FLAIR", "T2-FLAIR": "FLAIR"}


def canonical_contrast(name: str) -> str:
    """'t1' -> 'T1' etc. (case-insensitive; T1w/T2w/PDw accepted); anything else raises ConfigError."""
    if not isinstance(name, str):
        raise ConfigError(f"contrast names must be strings, got {name!r}")
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key not in SEQUENCES:
        raise ConfigError(f"unknown contrast {name!r}; choose from {', '.join(CONTRASTS)} (case-insensitive)")
    return key


def signal(seq: Sequence, pd: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Magnitude signal relative to the equilibrium magnetisation of water.

    Spin echo (TE << TR): S = PD (1 - exp(-TR/T1)) exp(-TE/T2).
    Inversion recovery (180 - TI - 90 - TE, ideal pulses): S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2).
    Tissues with T1 or T2 <= 0 give no signal.
    """
    t1 = np.maximum(t1, 1e-3)
    t2 = np.maximum(t2, 1e-3)
    decay = np.exp(-seq.te / t2)
    if seq.ti is None:
        recovery = 1.0 - np.exp(-seq.tr / t1)
    else:
        recovery = np.abs(1.0 - 2.0 * np.exp(-seq.ti / t1) + np.exp(-seq.tr / t1))
    return (pd * recovery * decay).astype(np.float32)
