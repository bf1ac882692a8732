"""Discrete visual tokenizer (VQ-VAE) whose code ids are the targets of masked vision modeling.

``VisualTokenizer`` is a plain ``nn.Module`` (load a trained one with ``VisualTokenizer.from_file``);
``VisualTokenizerTrainer`` is the LightningModule that trains and exports it (``make tokenizer``).
"""
from twostream.tokenizer.module import VisualTokenizerTrainer
from twostream.tokenizer.vqvae import VectorQuantizer, VisualTokenizer, perplexity

__all__ = ["VectorQuantizer", "VisualTokenizer", "VisualTokenizerTrainer", "perplexity"]
