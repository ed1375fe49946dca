"""Reconstruction methods. Importing this package registers the built-in ones, in a stable order
(``zero-filled`` first), so listings and reports keep the same order.

``mrrecon.methods.load("zero-filled")`` builds a method by name; ``available()`` lists them."""
# ruff: noqa: I001  (the import order below is the registration order)

from mrrecon.core.reconstructor import MethodInfo, Reconstructor, available, get_info, load, parse_method_spec, register
from mrrecon.methods import zero_filled  # noqa: F401
from mrrecon import classical  # noqa: F401
from mrrecon.methods import unet, varnet  # noqa: F401
from mrrecon.methods import ima, ssdm, ldpm, akdiff  # noqa: F401  (registration order = listing order)

__all__ = ["MethodInfo", "Reconstructor", "available", "get_info", "load", "parse_method_spec", "register"]
