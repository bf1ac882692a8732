"""Deprecation alias: COTS's training state moved to ``twostream.methods.cots`` (contract: ``twostream.heads``)."""
from twostream._alias import lazy_aliases

__getattr__ = lazy_aliases(__name__, {"MomentumQueue": "twostream.methods.cots", "AdaptiveMomentumFilter": "twostream.methods.cots",
                                      "ema_update_": "twostream.methods.cots"})
