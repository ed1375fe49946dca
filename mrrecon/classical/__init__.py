"""Classical reconstructions: CG-SENSE, L1-wavelet, TV, GRAPPA, SPIRiT, LORAKS, and the BART/sigpy peers.

Importing this package registers them as methods, in this order."""
# ruff: noqa: I001  (the import order is the registration order)

from mrrecon.classical import sense, grappa, spirit, slr, peers  # noqa: F401
