"""Deprecation alias: the single-stream model and its decomposition moved to ``twostream.methods.vldeformer``."""
from twostream._alias import lazy_aliases

__getattr__ = lazy_aliases(__name__, {name: "twostream.methods.vldeformer" for name in
                                      ("DecomposedEncoder", "SingleStreamModel", "VLTransformer")})
