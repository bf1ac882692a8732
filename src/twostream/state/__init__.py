"""Training state that is not trained by gradient: momentum towers, queues, filter statistics.

Each is an ``nn.Module`` with persistent buffers, so it is in every checkpoint and moves with the
model; :class:`twostream.callbacks.MomentumQueueCallback` decides when it changes (once per
optimizer step), never ``forward``.
"""
from twostream.state.filter import AdaptiveMomentumFilter
from twostream.state.momentum_queue import MomentumQueue, ema_update_

__all__ = ["AdaptiveMomentumFilter", "MomentumQueue", "ema_update_"]
