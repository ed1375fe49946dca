"""Shared test settings: offline hub, allocator tuning, shared-data and BART fixtures, seeded RNG."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# `mrrecon methods --details` caches GMAC counts; tests never touch the user's cache.
os.environ["MRRECON_CACHE_DIR"] = tempfile.mkdtemp(prefix="mrrecon-test-cache-")
atexit.register(shutil.rmtree, os.environ["MRRECON_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

import mrrecon  # noqa: E402,F401  (applies the allocator settings)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared real-data folder: $MRRECON_SHARED_DATA or ../shared/data beside the checkout."""
    env = os.environ.get("MRRECON_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def accelerate_launch(*flags: str) -> list[str]:
    """``python -m accelerate.commands.launch FLAGS`` on one machine and a free local port, without mixed precision
    or dynamo; the caller appends ``-m MODULE ARGS``."""
    import socket
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "--main_process_port", str(port)]


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared real data not found (set MRRECON_SHARED_DATA)")
    return d


@pytest.fixture
def bart_bin() -> str:
    b = shutil.which("bart")
    if b is None:
        pytest.skip("BART binary not installed (Debian package `bart`)")
    return b


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
