"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for a :class:`~twostream.encoder.TwoStreamEncoder`.

Called from ``TwoStreamEncoder.configure_model`` under Lightning's ``ModelParallelStrategy``. Units:

* each transformer block of each tower (the children of the tower's outermost ``nn.ModuleList``s:
  open_clip ``resblocks``, HF ``layer``), resharded after forward: only one block is whole at a time;
* each tower (``vision``, ``text``, ``shared``) for the rest of its parameters (patch/token embeddings,
  norms, in-tower projections), kept whole from forward to backward (``reshard_after_forward=False``):
  heads read some of them outside the tower's forward (the MLM decoder is tied to the text token
  embedding; MLM/MVM re-run the towers on masked inputs), and a resharded one would be a DTensor shard;
* copies of a tower held by training state (COTS's momentum towers: ``state.<name>.vision`` ...),
  cut into the same units (resharded after forward: they run under ``no_grad`` inside ``encode``);
* the root: projections (online and momentum), heads' parameters (frozen tokenizer/teachers too).
  FSDP2 keeps the root whole from forward to backward, so heads and training state's ``annotate``
  (which run after ``forward`` inside ``training_step``) see plain tensors.

FSDP2 shards every parameter on dim 0 over the mesh, independently of the unit it belongs to, so a
momentum parameter and its online twin have identical local shards (same shape, same padding).
``MomentumQueue.momentum_update``'s ``torch._foreach_lerp_`` over the sharded DTensors is therefore a
purely local elementwise op (DTensor keeps ``Shard(0)`` through pointwise foreach ops; tests/test_fsdp.py
counts zero collectives and gets DDP's momentum weights): the EMA code needs no ``to_local()``.

Replicated, not sharded: buffers (queues, pointer, filter statistics: every rank applies the same
update to the same gathered keys) and 0-dim parameters, which FSDP2 refuses to shard (the learnable
``log_temperature``). Those are left to the root as ignored parameters, and their gradient is
averaged over the mesh by a hook, as DDP would (FSDP does not reduce ignored parameters).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from twostream.errors import ConfigError

TOWERS = ("vision", "text", "shared")


def _blocks(tower: nn.Module) -> list[nn.Module]:
    """Children of the outermost ``nn.ModuleList``s of a tower: its transformer blocks."""
    lists: dict[str, nn.ModuleList] = {}
    for name, module in tower.named_modules():
        if isinstance(module, nn.ModuleList) and not any(name.startswith(outer + ".") for outer in lists):
            lists[name] = module
    return [block for blocks in lists.values() for block in blocks if any(True for _ in block.parameters())]


def _shard_tower(tower: nn.Module, mesh, reshard_tower: bool, ignored: set[nn.Parameter]) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(tower):
        fully_shard(block, mesh=mesh, reshard_after_forward=True, ignored_params=ignored)
    fully_shard(tower, mesh=mesh, reshard_after_forward=reshard_tower, ignored_params=ignored)


def _average_grad_hook(mesh):
    group, size = mesh.get_group(), mesh.size()

    def hook(param: torch.Tensor) -> None:
        # after every accumulation into .grad: the part averaged at earlier micro-batches is the same
        # on all ranks, so averaging the running sum again still gives the mean gradient
        dist.all_reduce(param.grad, group=group)  # gloo has no AVG: sum, then divide
        param.grad.div_(size)

    return hook


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_encoder(model: nn.Module, mesh) -> nn.Module:
    """Apply FSDP2 in place (see the module docstring); a no-op on an already sharded model."""
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return model
    if mesh.ndim != 1:
        raise ConfigError(f"shard_encoder: expected the 1-D data-parallel mesh, got a {mesh.ndim}-D one")
    if dist.get_world_size() != mesh.size():
        raise ConfigError(f"shard_encoder: the data-parallel mesh ({mesh.size()} ranks) must span all "
                          f"{dist.get_world_size()} ranks: keys, queues and contrastive logits are gathered over "
                          f"all ranks; set ModelParallelStrategy data_parallel_size = devices x num_nodes and "
                          f"tensor_parallel_size = 1")
    scalars = {p for p in model.parameters() if p.ndim == 0}  # FSDP2 cannot shard them: replicated
    for name in TOWERS:
        online = getattr(model, name, None)
        if online is None:
            continue
        _shard_tower(online, mesh, reshard_tower=False, ignored=scalars)
        for state in model.state.values():  # copies of the tower held by training state (momentum copies)
            if isinstance(getattr(state, name, None), nn.Module):
                _shard_tower(getattr(state, name), mesh, reshard_tower=True, ignored=scalars)
    fully_shard(model, mesh=mesh, ignored_params=scalars)
    for p in scalars:
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(_average_grad_hook(mesh))
    return model
