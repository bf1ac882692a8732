"""Lightning callbacks: they decide *when* state changes and what a run writes out."""
from twostream.callbacks.data_health import DataHealth
from twostream.callbacks.interruption import Interruption
from twostream.callbacks.momentum_queue import MomentumQueueCallback
from twostream.callbacks.nonfinite import NonFiniteGuard
from twostream.callbacks.run_summary import RunSummary
from twostream.callbacks.step_timer import StepTimer
from twostream.callbacks.training_state import TrainingStateCallback

__all__ = ["DataHealth", "Interruption", "MomentumQueueCallback", "NonFiniteGuard", "RunSummary",
           "StepTimer", "TrainingStateCallback"]
