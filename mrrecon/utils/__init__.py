"""Small general helpers (atomic file writes)."""

from mrrecon.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
