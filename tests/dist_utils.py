"""Run a function on N gloo processes on this machine (for exactness tests under DDP)."""
from __future__ import annotations

import os
import socket
import traceback

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, fn, args) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    code = 0
    try:
        fn(rank, world_size, *args)
    except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
        traceback.print_exc()
        code = 1
    try:
        dist.barrier()
        dist.destroy_process_group()
    finally:
        # gloo's C++ teardown at interpreter exit sometimes aborts ("terminate called without an
        # active exception") after all work is done; the results are already on disk, so leave
        # without running those destructors and report only what fn did.
        os._exit(code)


def spawn(fn, world_size: int = 2, *args) -> None:
    """``fn(rank, world_size, *args)`` must be a module-level function (it is pickled)."""
    mp.spawn(_entry, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True)
