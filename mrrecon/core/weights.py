"""Where shipped weights live: ``weights/`` beside the package (or ``$MRRECON_WEIGHTS``).

Each checkpoint is a folder with ``config.json`` + ``model.safetensors`` + ``README.md``; a method made of
several networks (LDPM) or stages (SSDM) ships one folder whose sub-folders are such checkpoints."""

from __future__ import annotations

import os
from pathlib import Path


def weights_dir() -> Path:
    env = os.environ.get("MRRECON_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def shipped_weights() -> dict[str, Path]:
    """Checkpoint folders that hold a model.safetensors directly or in their sub-folders, by name."""
    root = weights_dir()
    if not root.is_dir():
        return {}

    def holds_weights(p: Path) -> bool:
        return (p / "model.safetensors").is_file() or any((c / "model.safetensors").is_file()
                                                          for c in p.iterdir() if c.is_dir())

    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and holds_weights(p)}
