"""Frozen teachers for COOKIE's knowledge-sharing objectives.

A teacher is any tower (the same classes the encoder's ``vision``/``text`` take), with weights from
a twostream checkpoint (its ``vision.*`` or ``text.*`` tensors: e.g. an earlier ``make pretrain``
run) or already loaded by the tower itself (``HFTextTower(name_or_path=<local HF model dir>)``).
It never trains: no parameter requires grad, it stays in eval mode whatever ``train()`` asks, and
its forward runs under ``no_grad``. Its weights are part of the student's checkpoint, so a
checkpoint is self-contained (resuming does not need the teacher file again, only its config).
"""
from __future__ import annotations

import torch
from torch import nn

from twostream.checkpoints import load_prefixed
from twostream.towers.base import TowerOutput


class FrozenTeacher(nn.Module):
    def __init__(self, tower: nn.Module, checkpoint: str | None = None, prefix: str = "vision."):
        super().__init__()
        self.tower = tower
        if checkpoint:
            load_tower(tower, checkpoint, prefix)
        self.tower.requires_grad_(False)
        self.tower.eval()
        self.output_dim = int(tower.output_dim)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # dropout/normalisation statistics of a teacher never change

    @torch.no_grad()
    def forward(self, *args, **kwargs) -> TowerOutput:
        return self.tower(*args, **kwargs)


def load_tower(tower: nn.Module, path: str, prefix: str) -> None:
    """Copy the ``prefix``-ed tensors of a twostream checkpoint into ``tower``; every tower key must match."""
    load_prefixed(tower, path, prefix, what="teacher checkpoint", target="teacher tower",
                  hint="give the teacher the tower config of the run that wrote the checkpoint (a twostream checkpoint)",
                  missing_hint="`make teacher` writes runs/teacher/teacher.ckpt, the teachers of "
                               "experiments/pretrain/cookie.yaml")
