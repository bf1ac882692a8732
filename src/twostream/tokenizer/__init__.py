"""Deprecation alias: the VQ-VAE visual tokenizer moved to ``twostream.methods.cots.tokenizer``."""
from twostream._alias import lazy_aliases

__getattr__ = lazy_aliases(__name__, {name: "twostream.methods.cots.tokenizer" for name in
                                      ("VectorQuantizer", "VisualTokenizer", "VisualTokenizerTrainer", "perplexity")})
