"""One output folder, one run: the folder-reuse rule of the resumable batch commands (``mrrecon benchmark``,
``mrrecon reconstruct``) and the per-item records that let a re-run skip the finished items.

The rule (``RunFolder.prepare``):

- A folder holds the run its manifest describes (``<state>/run.json``: the command and its settings, plus a
  run id).
- The same command again **resumes** it: an item whose record is complete and verified is not redone, so a
  killed job loses at most the items in flight.
- Different settings are **refused** (``ConfigError`` naming the settings that differ) unless ``overwrite=True``.
- A folder that holds the command's outputs but no manifest (written by an older mrrecon, or by hand) is refused
  unless ``overwrite=True``: it cannot be resumed, and mixing would leave results beside reports they do not
  describe.
- ``overwrite=True`` replaces the run: the command's own outputs are removed first (only the names it writes,
  never other files), then a new manifest is written, then the old records go. An interruption at any point
  leaves either the old run or the new one. ``overwrite=None`` resumes when the settings match and replaces the
  run otherwise (``mrrecon demo``, whose folder is its own).

Records: one JSON file per item, ``<state>/<id>.json``, where ``id`` is a hash of the item's key; an optional
``<id>.npz`` of arrays (written first). Both are written atomically (temp file + rename), and the JSON is the
commit point: a record counts only when it parses, carries the current run id and its key, and its arrays are
readable. Several processes may write records into one folder at once (each item has one writer); on several
nodes the folder must be on a shared file system.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrrecon.errors import ConfigError
from mrrecon.utils.io import atomic_output, atomic_write_json

__all__ = ["FolderLock", "RunFolder", "record_id"]

FORMAT = 1
MANIFEST = "run.json"


def _canonical(obj: Any) -> Any:
    """JSON-normalised value (tuples -> lists, paths -> str), for comparison and hashing."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def record_id(key: Any) -> str:
    """The file name (without suffix) of an item's record: a hash of its canonical key."""
    return hashlib.sha1(json.dumps(_canonical(key), sort_keys=True).encode()).hexdigest()[:24]


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]


class RunFolder:
    """The run held by ``root``: ``kind`` (the command) and ``config`` (the settings that must match to resume).

    ``outputs``: glob patterns (relative to ``root``) of the files the command writes, removed by an overwrite;
    ``foreign``: of these, the names whose presence without a manifest means results that cannot be resumed."""

    def __init__(self, root: str | os.PathLike, kind: str, config: dict, *, state: str = "records",
                 outputs: Sequence[str] = (), foreign: Sequence[str] = ()):
        self.root = Path(root)
        self.kind = kind
        self.config = _canonical(config)
        self.state = self.root / state
        self.outputs = tuple(outputs)
        self.foreign = tuple(foreign)
        self.run_id: str | None = None
        self.outcome: str | None = None  # "new" | "resumed" | "replaced", after prepare()

    # -- the rule ---------------------------------------------------------------------------------------------
    def manifest(self) -> dict | None:
        try:
            doc = json.loads((self.state / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None

    def check(self, overwrite: bool | None = False) -> str:
        """What ``prepare`` would do ("new", "resume" or "replace"), without touching the folder; raises
        ``ConfigError`` when the folder may not be reused."""
        old = self.manifest()
        if old is not None:
            if old.get("kind") == self.kind and old.get("config") == self.config:
                return "replace" if overwrite else "resume"
            if overwrite is not False:
                return "replace"
            if old.get("kind") != self.kind:
                raise ConfigError(f"{self.root} holds a `{old.get('kind')}` run, not a `{self.kind}` run; choose "
                                  f"another output folder or pass --overwrite to replace it")
            diff = _differences(old.get("config") or {}, self.config)
            raise ConfigError(f"{self.root} holds a {self.kind} run with different settings ({', '.join(diff)}); "
                              f"re-run its own command to resume it, choose another output folder, or pass "
                              f"--overwrite to replace it")
        present = self._existing(self.foreign)
        if present:
            if overwrite is not False:
                return "replace"
            names = ", ".join(sorted(str(p.relative_to(self.root)) for p in present)[:3])
            raise ConfigError(f"{self.root} already holds results ({names}) that no resumable {self.kind} run "
                              f"describes; choose another output folder or pass --overwrite to replace them")
        return "new"

    def prepare(self, overwrite: bool | None = False) -> str:
        """Apply the rule (see the module docstring): returns "new", "resumed" or "replaced"."""
        action = self.check(overwrite)
        old = self.manifest()
        if action == "resume":
            self.run_id = old["run"]
            self.outcome = "resumed"
            self._remove_temporaries()
            return self.outcome
        if action == "replace":
            self.remove_outputs()
        self.state.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex
        atomic_write_json(self.state / MANIFEST, {"format": FORMAT, "kind": self.kind, "config": self.config,
                                                  "run": self.run_id, "created": time.time()})
        for entry in os.scandir(self.state):  # the old run's records: their run id no longer counts anyway
            if entry.name != MANIFEST and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        self.outcome = "replaced" if action == "replace" else "new"
        return self.outcome

    def attach(self) -> None:
        """Use the run that another process prepared (its manifest is already written)."""
        doc = self.manifest()
        if doc is None or doc.get("config") != self.config:
            raise ConfigError(f"{self.root}: the run prepared by rank 0 has other settings than this process's; "
                              "every process must run the same command on the same files")
        self.run_id = doc["run"]

    def _existing(self, patterns: Iterable[str]) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for pattern in patterns for p in sorted(self.root.glob(pattern)) if p.exists()]

    def remove_outputs(self, patterns: Sequence[str] | None = None) -> None:
        """Remove the command's outputs (``patterns``, default ``outputs``) from ``root``."""
        for p in self._existing(self.outputs if patterns is None else patterns):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def _remove_temporaries(self) -> None:
        """Half-written records of a killed run (temp files never renamed)."""
        if self.state.is_dir():
            for entry in os.scandir(self.state):
                if entry.name.startswith(".") and ".tmp" in entry.name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    # -- records ----------------------------------------------------------------------------------------------
    def record_path(self, key: Any, suffix: str = ".json") -> Path:
        return self.state / f"{record_id(key)}{suffix}"

    def write_record(self, key: Any, data: dict, arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write an item's record (arrays first, then the JSON that commits it)."""
        if self.run_id is None:
            raise RuntimeError("RunFolder.prepare() or attach() first")
        arrays = {k: np.asarray(v) for k, v in (arrays or {}).items() if v is not None}
        if arrays:
            with atomic_output(self.record_path(key, ".npz")) as tmp:
                np.savez(tmp, **arrays)
        doc = {"format": FORMAT, "run": self.run_id, "key": _canonical(key), "arrays": sorted(arrays),
               "written": time.time(), **data}
        return atomic_write_json(self.record_path(key), doc)

    def record_ids(self) -> set[str]:
        """Ids of the committed record files present (not yet verified)."""
        if not self.state.is_dir():
            return set()
        return {e.name[:-5] for e in os.scandir(self.state)
                if e.name.endswith(".json") and not e.name.startswith(".") and e.name != MANIFEST}

    def read_record(self, key: Any) -> dict | None:
        """The item's record when it is complete and verified (this run, this key, arrays readable), else None."""
        try:
            doc = json.loads(self.record_path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("run") != self.run_id \
                or doc.get("key") != _canonical(key):
            return None
        if doc.get("arrays"):
            try:
                with np.load(self.record_path(key, ".npz"), allow_pickle=False) as z:
                    if not set(doc["arrays"]) <= set(z.files):
                        return None
            except Exception:  # noqa: BLE001 -- truncated or corrupt archive: not a finished record
                return None
        return doc

    def load_arrays(self, key: Any) -> dict[str, np.ndarray]:
        """The arrays of a record (empty when it has none)."""
        path = self.record_path(key, ".npz")
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host; an exited process its parent has not reaped yet (a zombie,
    state Z in /proc where there is one) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or it went meanwhile: the signal said it exists
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


class FolderLock:
    """One writer per folder: ``<folder>/<name>`` holds the owner's pid, host and start time while it works, so a
    second process started on the same folder (a command run twice, a queue started again) is refused with a
    one-line error instead of interleaving its checkpoints and logs with the first one's.

    A lock whose process is gone (killed, machine restarted) is stale and taken over (``acquire`` returns a note
    saying so). A lock held on another host cannot be checked from here and is refused; the message names the file
    to delete once that run is known to be dead. A lock file that cannot be read and is younger than ``grace_s``
    is taken for one being written and refused too.
    """

    def __init__(self, folder: str | os.PathLike, name: str = "training.lock", *, what: str = "trained",
                 grace_s: float = 10.0):
        self.path = Path(folder) / name
        self.what = what
        self.grace_s = grace_s
        self.held = False

    def _owner(self) -> dict | None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None

    def acquire(self) -> str | None:
        """Take the lock; raises ConfigError when another live process holds it. Returns a note when a stale lock
        was replaced, else None."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        note = None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except FileNotFoundError:
                        continue  # released meanwhile: try again
                    if age < self.grace_s:
                        raise ConfigError(f"{self.path.parent}: another process is starting on this folder "
                                          f"({self.path.name} is being written); wait for it or choose another "
                                          "output folder") from None
                    who = "an unreadable lock"
                elif owner.get("host") != me["host"]:
                    raise ConfigError(f"{self.path.parent} is being {self.what} by process {owner['pid']} on host "
                                      f"{owner.get('host')} (since {owner.get('started')}); if that run is dead, "
                                      f"delete {self.path}") from None
                elif owner["pid"] != me["pid"] and _process_alive(owner["pid"]):
                    raise ConfigError(f"{self.path.parent} is being {self.what} by process {owner['pid']} (since "
                                      f"{owner.get('started')}); wait for it to end or choose another output "
                                      f"folder (if process {owner['pid']} is not that run, delete {self.path})"
                                      ) from None
                else:
                    who = f"process {owner['pid']} (since {owner.get('started')}), which has ended"
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                note = f"{self.path.parent}: took over the stale lock of {who}"
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return note
        raise ConfigError(f"{self.path.parent}: could not take {self.path.name} (other processes keep taking it)")

    def live_owner(self) -> dict | None:
        """The lock's owner while it is a live process on this host other than this one (pid, host, started),
        else None: free, stale, unreadable, or held on another host (which ``acquire`` refuses with its own
        message)."""
        owner = self._owner()
        if (owner is None or owner.get("host") != socket.gethostname() or owner["pid"] == os.getpid()
                or not _process_alive(owner["pid"])):
            return None
        return owner

    def wait_until_free(self, *, poll_s: float = 60.0, echo=print) -> float:
        """Block while a live process on this host holds the lock (a queue started again while one of its runs
        is training: wait for it, then resume or skip the run, instead of failing on it). Returns the seconds
        waited."""
        t0 = time.monotonic()
        owner = self.live_owner()
        if owner is not None:
            echo(f"{self.path.parent} is being {self.what} by process {owner['pid']} (since "
                 f"{owner.get('started')}): waiting for it to end")
        while owner is not None:
            time.sleep(poll_s)
            owner = self.live_owner()
        return time.monotonic() - t0

    def release(self) -> None:
        """Remove the lock if this process holds it (never another process's)."""
        if not self.held:
            return
        self.held = False
        owner = self._owner()
        if owner is not None and owner["pid"] == os.getpid() and owner.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
