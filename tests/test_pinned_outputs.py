"""Pinned reconstructions: every registered method, on tiny inputs, gives its pinned output.

``tests/tiny_methods.py`` builds each method (tiny seeded models, few steps) and two tiny deterministic samples
(32 x 32 single-coil with a 2-D mask, 4-coil with a 1-D mask); ``fixtures/pinned_outputs.npz`` holds the
outputs of the code before the physics refactor (commit 2ca2665), except the sampled LDPM keys,
regenerated deliberately when LDPM gained its final data consistency (their ``final_dc=none`` output equals the
old pin exactly, tests/test_ldpm.py). A reconstruction must stay within relative L2 error 1e-5
(``||out - ref|| / ||ref||``). A registered method without a pinned output fails, unless it is in
``tiny_methods.EXCLUDED`` (the external peers).

Regenerate the fixture only deliberately, when a change of output is intended (and say why in the commit),
from the code whose outputs are to be pinned (here: a worktree of that commit, so that nobody's uncommitted
edits end up in the reference):

    git worktree add /tmp/pin-base <commit>
    PYTHONPATH=/tmp/pin-base:tests .venv/bin/python tests/fixtures/make_pinned_outputs.py \\
        tests/fixtures/pinned_outputs.npz
    git worktree remove /tmp/pin-base

One thread, torch seeded before each reconstruction; the whole file takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_methods as tm
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "pinned_outputs.npz"
RTOL = 1e-5
_NOT_OUTPUTS = ("input|", "weights|", "meta|")


def _load() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


PINNED = _load()
OUTPUT_KEYS = [k for k in PINNED if not k.startswith(_NOT_OUTPUTS)]
METHODS = {m.spec: m for m in tm.tiny_methods()}


@pytest.fixture(autouse=True)
def _one_thread(_seed_and_threads):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Tiny checkpoints, written once per spec for the whole module."""
    return tmp_path_factory.mktemp("tiny-weights")


@pytest.mark.parametrize("key", OUTPUT_KEYS)
def test_output_matches_pinned(key, workdir):
    spec, kind = key.rsplit("|", 1)
    assert spec in METHODS, f"{spec!r} is pinned but no longer in tiny_methods.tiny_methods()"
    method = METHODS[spec]
    ref = PINNED[key]
    out = tm.reconstruct(method, kind, workdir)
    assert out.shape == ref.shape
    rel = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    if rel > RTOL:
        note = ""
        if tm.weights_fingerprint(method, workdir) != str(PINNED.get(f"weights|{spec}", "")):
            note = " (the tiny model's initial weights changed too: model construction, not only reconstruction)"
        pytest.fail(f"{key}: relative L2 error {rel:.3e} > {RTOL:g}{note}")


def test_inputs_are_unchanged():
    """The tiny samples are plain torch / numpy; if they drift, every output above does."""
    arrays = tm.sample_arrays()
    stored = {k: v for k, v in PINNED.items() if k.startswith("input|")}
    assert sorted(arrays) == sorted(stored)
    for k, v in arrays.items():
        np.testing.assert_allclose(v, stored[k], rtol=0, atol=1e-6 * float(np.abs(stored[k]).max()), err_msg=k)


def test_every_registered_method_is_pinned():
    registered = tm.registered_names()
    pinned = {k.rsplit("|", 1)[0].split(":", 1)[0] for k in OUTPUT_KEYS}
    missing = [n for n in registered if n not in pinned and n not in tm.EXCLUDED]
    assert not missing, (f"registered but not pinned: {missing}; add them to tests/tiny_methods.py and regenerate "
                         "the fixture (see this module's docstring)")
    assert set(tm.EXCLUDED) <= set(registered), "tiny_methods.EXCLUDED names a method that is not registered"


def test_every_tiny_spec_is_pinned():
    wanted = {tm.key(m.spec, kind) for m in METHODS.values() for kind in m.kinds}
    assert not wanted - set(OUTPUT_KEYS), f"not pinned yet: {sorted(wanted - set(OUTPUT_KEYS))}"
