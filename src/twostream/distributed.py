"""The few collective ops the objectives need, safe to call in a single process."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping the autograd graph.

    Why with grad: the backward of the differentiable all_gather sums, onto each rank's own slice,
    the gradients that every rank's loss sends it. With a *local* loss per rank (own queries vs
    all keys) and DDP's gradient averaging this reproduces single-process gradients exactly;
    a global loss on every rank would instead multiply gradients by the world size.
    All ranks must pass the same shape (training loaders use drop_last).
    """
    _, size = world()
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 in rank order (momentum keys, queue ids).

    No graph: keys come from momentum towers. Same-shape requirement as :func:`gather_with_grad`.
    """
    _, size = world()
    if size == 1:
        return x
    out = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)
