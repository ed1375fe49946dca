#!/usr/bin/env bash
# Install the peer tools that benchmarks and some tests compare against: BART (Debian package `bart`).
# sigpy comes from PyPI with the `test`/`peers` extras. Without root or apt, the BART comparisons skip.
set -u
if command -v bart >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bart) >/dev/null 2>&1 \
    && echo "installed BART: $(command -v bart)" && exit 0
fi
echo "note: BART not installed (needs apt-get as root); BART comparisons will be skipped." >&2
exit 0
