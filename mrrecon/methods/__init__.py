"""Reconstruction methods. Importing this package registers the built-in ones.

``mrrecon.methods.load("zero-filled")`` builds a method by name; ``available()`` lists them."""

from mrrecon.methods import zero_filled  # noqa: F401  (registers)
from mrrecon.methods.base import MethodInfo, Reconstructor, available, get_info, load, parse_method_spec, register

__all__ = ["MethodInfo", "Reconstructor", "available", "get_info", "load", "parse_method_spec", "register"]
