"""Peak memory of a block of code, for the benchmark.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensor memory only).
- Linux CPU: the process's peak resident set (VmHWM) after resetting it through ``/proc/self/clear_refs``
  (value 5, Linux >= 4.0), minus the resident set before; ``malloc_trim(0)`` first returns freed heap
  pages to the OS, since mrrecon keeps freed buffers in the heap for speed (``mrrecon._runtime``) and
  their reuse would otherwise hide a method's allocations. Includes every allocation of the process
  (numpy, BART's subprocess is not counted).
- Elsewhere: None (not measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.peak_mb`` (None when it cannot be measured)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak_mb: float | None = None
        self._base_kb: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base_kb = torch.cuda.memory_allocated(self.device) // 1024
        elif sys.platform.startswith("linux"):
            _malloc_trim()
            try:
                _CLEAR_REFS.write_text("5")
                self._base_kb = _status_kb("VmRSS")
            except OSError:
                self._base_kb = None
        return self

    def __exit__(self, *exc) -> None:
        if self._base_kb is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak_kb = torch.cuda.max_memory_allocated(self.device) // 1024
        else:
            peak_kb = _status_kb("VmHWM")
        if peak_kb is not None:
            self.peak_mb = max(peak_kb - self._base_kb, 0) / 1024.0
