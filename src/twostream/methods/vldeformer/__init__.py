"""VLDeformer (arXiv 2110.11338): decompose a single-stream VL transformer into two encoders.

Stage 1: :class:`SingleStreamModel` (a ViLT-style cross-encoder, :class:`VLTransformer`, trained
by image-text matching with mined negatives). Stage 2: :class:`DecomposedEncoder` runs that
transformer on each modality alone, trained contrastively with :class:`BimodalHardNegatives`
(near-miss captions and images, :mod:`.near_miss`). Paper vs our choices: docs/cookie_vldeformer.md.
"""
from twostream.methods.vldeformer.bimodal_hard_negatives import BimodalHardNegatives
from twostream.methods.vldeformer.decomposed import DecomposedEncoder
from twostream.methods.vldeformer.single_stream import SingleStreamModel
from twostream.methods.vldeformer.vl_transformer import VLTransformer

__all__ = ["BimodalHardNegatives", "DecomposedEncoder", "SingleStreamModel", "VLTransformer"]
