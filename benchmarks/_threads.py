"""Imported first by benchmark scripts: fix the thread counts from ``--threads`` before numpy and torch start
their thread pools (they read OMP/MKL/OPENBLAS_NUM_THREADS once, at import)."""

from __future__ import annotations

import argparse
import os


def pin_threads_from_argv(default: int = 1) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=default)
    threads = pre.parse_known_args()[0].threads
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads
