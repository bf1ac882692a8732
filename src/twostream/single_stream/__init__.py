"""Single-stream (cross-encoder) model, k-test re-ranking, and VLDeformer's decomposition of it."""
from twostream.single_stream.decomposed import DecomposedEncoder
from twostream.single_stream.module import SingleStreamModel
from twostream.single_stream.transformer import VLTransformer

__all__ = ["DecomposedEncoder", "SingleStreamModel", "VLTransformer"]
