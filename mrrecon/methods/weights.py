"""Where shipped weights live: ``weights/`` beside the package (or ``$MRRECON_WEIGHTS``).

Each checkpoint is a folder with ``config.json`` + ``model.safetensors`` + ``README.md``."""

from __future__ import annotations

import os
from pathlib import Path


def weights_dir() -> Path:
    env = os.environ.get("MRRECON_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def shipped_weights() -> dict[str, Path]:
    """Checkpoint folders that hold a model.safetensors, by name."""
    root = weights_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "model.safetensors").is_file()}
