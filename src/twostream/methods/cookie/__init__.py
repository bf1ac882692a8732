"""COOKIE (arXiv 2108.07782): a weight-sharing transformer over both streams and knowledge sharing.

:class:`SharedTransformer` is the encoder's ``shared`` neck; :class:`VisualKnowledgeSharing` and
:class:`TextualKnowledgeSharing` distil frozen unimodal teachers (:class:`FrozenTeacher`) into the
student's embeddings; the cross-modal sharing is the in-batch contrastive loss of the core. Paper
vs our choices: docs/cookie_vldeformer.md.
"""
from twostream.methods.cookie.knowledge_sharing import KnowledgeSharing
from twostream.methods.cookie.shared_transformer import SharedTransformer
from twostream.methods.cookie.teacher import FrozenTeacher
from twostream.methods.cookie.textual_knowledge_sharing import TextualKnowledgeSharing
from twostream.methods.cookie.visual_knowledge_sharing import VisualKnowledgeSharing

__all__ = ["FrozenTeacher", "KnowledgeSharing", "SharedTransformer", "TextualKnowledgeSharing",
           "VisualKnowledgeSharing"]
