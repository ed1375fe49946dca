"""Multi-contrast pairing: find, for each subject, the file of the target contrast and of the reference.

Naming rule (one rule for all supported files): strip the file suffix (``.nii.gz``, ``.nii``, ``.h5`` ...),
then the contrast is the text after the last ``-`` or ``_`` and the subject is everything before it.

- IXI: ``IXI002-Guys-0828-T2.nii.gz`` -> subject ``IXI002-Guys-0828``, contrast ``T2``; it pairs with
  ``IXI002-Guys-0828-PD.nii.gz``.
- fastMRI-format files from the simulator: ``sub000_T2.h5`` -> subject ``sub000``, contrast ``T2``.

Contrasts compare case-insensitively (``t2`` == ``T2``); subjects compare exactly. Subjects with only one
of the two contrasts, or with two files of the same contrast, are not paired and are reported in
``Pairs.warnings`` / ``Pairs.unpaired`` (and one Python warning), never dropped silently.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from mrrecon.errors import DataError

PAIRABLE_SUFFIXES = (".nii.gz", ".nii", ".h5", ".hdf5", ".npy", ".mat", ".png", ".cfl")
_SPLIT = re.compile(r"^(?P<subject>.+)[-_](?P<contrast>[^-_]+)$")


class Pair(NamedTuple):
    subject: str
    target: Path
    reference: Path


class Pairs(list):
    """A list of :class:`Pair` with ``warnings`` (messages) and ``unpaired`` ({subject: contrasts found})."""

    def __init__(self, pairs: Iterable[Pair] = (), warnings: list[str] | None = None,
                 unpaired: dict[str, list[str]] | None = None):
        super().__init__(pairs)
        self.warnings: list[str] = list(warnings or [])
        self.unpaired: dict[str, list[str]] = dict(unpaired or {})


def _strip_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in PAIRABLE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: len(name) - len(suffix)]
    return None


def parse_contrast_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """(subject, contrast) from a file name by the module's naming rule, or None if it does not fit."""
    stem = _strip_suffix(Path(path).name)
    if stem is None:
        return None
    m = _SPLIT.match(stem)
    if m is None:
        return None
    return m.group("subject"), m.group("contrast")


def _list_files(folder_or_files, recursive: bool) -> list[Path]:
    if isinstance(folder_or_files, (str, os.PathLike)):
        root = Path(folder_or_files)
        if not root.exists():
            raise DataError("folder not found", root)
        if not root.is_dir():
            return [root]
        found = root.rglob("*") if recursive else root.iterdir()
        return sorted(p for p in found if p.is_file() and not p.name.startswith("."))
    files = [Path(p) for p in folder_or_files]
    missing = [p for p in files if not p.exists()]
    if missing:
        raise DataError(f"{len(missing)} file(s) not found", missing[0])
    return sorted(files)


def find_pairs(folder_or_files, target_contrast: str, reference_contrast: str, *,
               recursive: bool = False, warn: bool = True) -> Pairs:
    """Pair target- and reference-contrast files by subject.

    Returns a :class:`Pairs` list of ``Pair(subject, target_path, reference_path)`` sorted by subject.
    Files whose name does not fit the naming rule, or whose contrast is neither of the two, are ignored.
    Subjects with only one of the two contrasts, or with duplicates, are listed in ``.unpaired`` with a
    message each in ``.warnings``; with ``warn=True`` one ``UserWarning`` summarises them.
    """
    tc, rc = target_contrast.lower(), reference_contrast.lower()
    if tc == rc:
        raise DataError(f"target and reference contrast are both {target_contrast!r}")
    by_subject: dict[str, dict[str, list[Path]]] = {}
    for path in _list_files(folder_or_files, recursive):
        parsed = parse_contrast_name(path)
        if parsed is None:
            continue
        subject, contrast = parsed
        by_subject.setdefault(subject, {}).setdefault(contrast.lower(), []).append(path)

    pairs: list[Pair] = []
    messages: list[str] = []
    unpaired: dict[str, list[str]] = {}
    for subject in sorted(by_subject):
        contrasts = by_subject[subject]
        targets, references = contrasts.get(tc, []), contrasts.get(rc, [])
        if not targets and not references:
            continue  # only other contrasts (e.g. IXI MRA): not a candidate
        if len(targets) == 1 and len(references) == 1:
            pairs.append(Pair(subject, targets[0], references[0]))
            continue
        unpaired[subject] = sorted(contrasts)
        if not targets or not references:
            have, lack = (target_contrast, reference_contrast) if targets else (reference_contrast,
                                                                                  target_contrast)
            messages.append(f"{subject}: has {have} but no {lack} ({(targets or references)[0]})")
        else:
            dupes = targets if len(targets) > 1 else references
            messages.append(f"{subject}: {len(dupes)} files of one contrast, cannot choose: "
                            f"{[str(p) for p in dupes]}")
    if warn and messages:
        warnings.warn(f"{len(messages)} subject(s) not paired ({target_contrast}/{reference_contrast}): "
                      + "; ".join(messages[:5]) + (" ..." if len(messages) > 5 else ""), stacklevel=2)
    return Pairs(pairs, messages, unpaired)
