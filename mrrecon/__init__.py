"""mrrecon: reconstruct MR images from undersampled k-space."""

from mrrecon._runtime import configure_allocator

configure_allocator()

__version__ = "0.1.0"
