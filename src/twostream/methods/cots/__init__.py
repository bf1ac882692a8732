"""COTS (arXiv 2204.07441): collaborative two-stream pre-training, as objectives and training state.

Instance level: :class:`MomentumQueue` (state) + :class:`MomentumContrastive` (head); token level:
:class:`MaskedLanguageModeling`, :class:`MaskedVisionModeling` (targets from the VQ-VAE in
:mod:`.tokenizer`); task level: :class:`KLAlignment`; noisy pairs: :class:`AdaptiveMomentumFilter`
(state). Paper vs our choices: docs/cots.md.
"""
from twostream.methods.cots.kl_alignment import KLAlignment
from twostream.methods.cots.masked_language_modeling import MaskedLanguageModeling
from twostream.methods.cots.masked_vision_modeling import MaskedVisionModeling
from twostream.methods.cots.momentum_contrastive import MomentumContrastive
from twostream.methods.cots.momentum_queue import MomentumQueue, ema_update_, momentum_keys
from twostream.methods.cots.noise_filter import AdaptiveMomentumFilter

__all__ = ["AdaptiveMomentumFilter", "KLAlignment", "MaskedLanguageModeling", "MaskedVisionModeling",
           "MomentumContrastive", "MomentumQueue", "ema_update_", "momentum_keys"]
