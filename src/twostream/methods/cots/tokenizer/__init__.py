"""Discrete visual tokenizer (VQ-VAE) whose code ids are the targets of COTS's masked vision modeling.

``VisualTokenizer`` is a plain ``nn.Module`` (load a trained one with ``VisualTokenizer.from_file``);
``VisualTokenizerTrainer`` is the LightningModule that trains and exports it (``make tokenizer``).
"""
from twostream.methods.cots.tokenizer.trainer import VisualTokenizerTrainer
from twostream.methods.cots.tokenizer.vqvae import VectorQuantizer, VisualTokenizer, perplexity

__all__ = ["VectorQuantizer", "VisualTokenizer", "VisualTokenizerTrainer", "perplexity"]
