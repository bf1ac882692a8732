"""Run a function on N gloo processes on this machine (for exactness tests under DDP)."""
from __future__ import annotations

import socket

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, fn, args) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.barrier()  # without barrier + destroy, ~10 % of gloo runs abort at exit
        dist.destroy_process_group()


def spawn(fn, world_size: int = 2, *args) -> None:
    """``fn(rank, world_size, *args)`` must be a module-level function (it is pickled)."""
    mp.spawn(_entry, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True)
