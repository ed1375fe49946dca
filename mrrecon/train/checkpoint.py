"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``<out_dir>/checkpoints/step-<NNNNNNN>/``:

* ``config.json`` + ``model.safetensors``: the evaluation weights (the EMA average when EMA is on, else
  the raw weights), a complete pretrained folder (``from_pretrained`` / ``--checkpoint`` accept it);
* ``train_config.yaml``: the resolved training config;
* ``trainer/weights.safetensors``: the raw (optimised) weights;
* ``trainer/ema.safetensors``: the EMA shadow weights (when EMA is on);
* ``trainer/optimizer.safetensors`` + ``optimizer.json``: optimiser state tensors (``state/<param>/<name>``)
  and the rest of its state dict (param groups, scalar state);
* ``trainer/scheduler.json``, ``trainer/scaler.json`` (fp16 loss scaler, when used);
* ``trainer/player.safetensors`` + ``player_optimizer.safetensors`` / ``.json``: a recipe's second player
  (e.g. the GAN discriminator) and its optimiser, when the recipe has one;
* ``trainer/rng-rank<R>.safetensors`` + ``.json``: torch (CPU and CUDA), numpy and Python RNG states of
  process R;
* ``trainer/state.json``: step, epoch, best validation score, wall time, validation history.

Folders are written under a temporary name and renamed when complete, then ``checkpoints/latest`` (a text
file holding the folder name) is replaced atomically, so a run killed at any moment leaves the previous
checkpoint intact. Reading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from mrrecon.errors import DataError
from mrrecon.utils.io import atomic_write_json, atomic_write_text, save_state_dict

__all__ = [
    "CheckpointManager",
    "get_rng_state",
    "load_json",
    "load_optimizer_state",
    "optimizer_state_to_files",
    "optimizer_state_from_files",
    "read_tensors",
    "save_optimizer_state",
    "set_rng_state",
    "write_json",
    "write_tensors",
]

TRAINER_DIR = "trainer"
LATEST = "latest"


# --------------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------------
def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> Path:
    return save_state_dict(tensors, path)


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataError("missing checkpoint file", path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 -- safetensors raises several types for a damaged file
        raise DataError(f"unreadable safetensors file: {exc}", path) from exc


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_json(path, _encode(obj))


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError("missing checkpoint file", path)
    try:
        return _decode(json.loads(path.read_text()))
    except ValueError as exc:
        raise DataError(f"unreadable JSON: {exc}", path) from exc


def _encode(obj: Any) -> Any:
    """JSON-safe form that keeps tuples (optimisers compare e.g. ``betas`` as tuples)."""
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        if obj.numel() != 1:
            raise TypeError("only scalar tensors can go to JSON")
        return obj.item()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v) for v in obj["__tuple__"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------
# optimiser state
# --------------------------------------------------------------------------------------------------
def optimizer_state_to_files(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state/<param id>/<name>``) and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars,
            "param_ids": [str(p) for p in state_dict["state"]]}
    return tensors, meta


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid in meta["param_ids"]:
        state[int(pid)] = dict(meta["scalars"].get(pid, {}))
    for key, value in tensors.items():
        _, pid, name = key.split("/", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_optimizer_state(directory: Path, optimizer: torch.optim.Optimizer, name: str = "optimizer") -> None:
    tensors, meta = optimizer_state_to_files(optimizer.state_dict())
    write_tensors(directory / f"{name}.safetensors", tensors)
    write_json(directory / f"{name}.json", meta)


def load_optimizer_state(directory: Path, optimizer: torch.optim.Optimizer, name: str = "optimizer") -> None:
    tensors = read_tensors(directory / f"{name}.safetensors")
    meta = load_json(directory / f"{name}.json")
    optimizer.load_state_dict(optimizer_state_from_files(tensors, meta))


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------
def get_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch (CPU + every CUDA device), numpy and Python RNG states as tensors + JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("torch_cuda/")), key=lambda k: int(k.split("/")[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    n = meta["numpy"]
    np.random.set_state((n["kind"], tensors["numpy_keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# --------------------------------------------------------------------------------------------------
# checkpoint folders
# --------------------------------------------------------------------------------------------------
class CheckpointManager:
    """Names, commits, finds and prunes the checkpoint folders of one run."""

    def __init__(self, out_dir: str | os.PathLike, keep: int = 2):
        self.root = Path(out_dir) / "checkpoints"
        self.keep = int(keep)

    @staticmethod
    def folder_name(step: int) -> str:
        return f"step-{step:07d}"

    def partial_dir(self, step: int) -> Path:
        """Where a checkpoint is assembled before it is committed (deterministic: every rank agrees)."""
        return self.root / f".{self.folder_name(step)}.partial"

    def begin(self, step: int) -> Path:
        """(Main process) a fresh, empty assembly folder."""
        tmp = self.partial_dir(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / TRAINER_DIR).mkdir(parents=True)
        return tmp

    def commit(self, step: int) -> Path:
        """(Main process) rename the assembled folder into place, point ``latest`` at it, prune old ones."""
        tmp, final = self.partial_dir(step), self.root / self.folder_name(step)
        if final.exists():  # the same step written again (e.g. after a resume): replace it
            old = self.root / f".{final.name}.old"
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        atomic_write_text(self.root / LATEST, final.name + "\n")
        self.prune()
        return final

    def all(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-")
                 and (p / TRAINER_DIR / "state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, else the highest complete one, else None."""
        pointer = self.root / LATEST
        if pointer.is_file():
            cand = self.root / pointer.read_text().strip()
            if (cand / TRAINER_DIR / "state.json").is_file():
                return cand
        found = self.all()
        return found[-1] if found else None

    def prune(self) -> None:
        if self.keep <= 0:
            return
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".step-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
