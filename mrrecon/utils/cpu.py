"""What this machine's CPU is, from /proc/cpuinfo (Linux; elsewhere nothing is known): its model name and whether
it computes bf16 natively. Read once per process; light enough for any entry point to import."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["cpu_has_native_bf16", "cpu_model"]


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    flags = _cpuinfo()
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_model() -> str | None:
    """The CPU's model name, None where /proc/cpuinfo does not say."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                None)
