"""Process start-up settings that make large torch ops fast on glibc systems.

glibc's allocator serves buffers above a (dynamic) threshold with mmap and returns them to the OS
on free, so every large FFT page-faults its output buffer again (measured here: ~12,000 faults and
3-4x slower fft2c on 15x320x320). Raising the mmap threshold to its maximum (32 MiB on 64-bit) and
disabling heap trimming keeps freed buffers in the heap for reuse. Users can still override with the
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ environment variables, which we then leave alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 1 << 30

_configured = False


def configure_allocator() -> bool:
    """Apply the mallopt settings once per process; returns True if they were applied."""
    global _configured
    if _configured or not sys.platform.startswith("linux"):
        return _configured
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        _configured = True
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _configured = bool(ok)
    return _configured
