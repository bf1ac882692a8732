"""Random masks for the token-level objectives, drawn from an explicit generator.

Why a generator: the encoder seeds one (on the CPU) per training step from (seed, step, batch, rank),
so masks are reproducible across a resume, whatever else consumed the global RNG. Masks are drawn
on the CPU and moved: they are tiny, and the draw is then identical on every device type.
"""
from __future__ import annotations

import math

import torch


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, mask_token_id: int, random_ids: tuple[int, int],
                generator: torch.Generator, prob: float = 0.15, replace_mask: float = 0.8,
                replace_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's recipe: pick ``prob`` of the maskable tokens; of those, ``replace_mask`` become [MASK],
    ``replace_random`` a random id, the rest stay. Returns (masked ids, selected bool mask)."""
    device = input_ids.device
    draw = torch.rand(input_ids.shape, generator=generator).to(device)
    selected = (draw < prob) & maskable
    action = torch.rand(input_ids.shape, generator=generator).to(device)
    to_mask = selected & (action < replace_mask)
    to_random = selected & (action >= replace_mask) & (action < replace_mask + replace_random)
    random_tokens = torch.randint(*random_ids, input_ids.shape, generator=generator).to(device)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    out = torch.where(to_random, random_tokens, out)
    return out, selected


def random_patch_mask(batch: int, grid: tuple[int, int], ratio: float, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Exactly ``round(ratio * patches)`` patches per image, uniformly at random. [B, gh*gw] bool."""
    n = grid[0] * grid[1]
    count = max(1, round(ratio * n))
    order = torch.rand(batch, n, generator=generator).argsort(dim=1).argsort(dim=1)
    return (order < count).to(device)


def block_patch_mask(batch: int, grid: tuple[int, int], ratio: float, generator: torch.Generator,
                     device: torch.device | str = "cpu", min_block: int = 4) -> torch.Tensor:
    """BEiT-style block-wise masking: add random rectangles (aspect 0.3-3.3, area >= ``min_block``)
    until ``round(ratio * patches)`` are covered, then top up at random. [B, gh*gw] bool."""
    gh, gw = grid
    target = max(1, round(ratio * gh * gw))
    masks = torch.zeros(batch, gh, gw, dtype=torch.bool)
    for b in range(batch):
        for _ in range(10 * target):
            covered = int(masks[b].sum())
            if covered >= target:
                break
            u = torch.rand(3, generator=generator).tolist()
            area = min_block + u[0] * max(0, target - covered - min_block)
            aspect = math.exp(math.log(0.3) + u[1] * (math.log(1 / 0.3) - math.log(0.3)))
            h = max(1, min(gh, round(math.sqrt(area * aspect))))
            w = max(1, min(gw, round(math.sqrt(area / aspect))))
            top = int(u[2] * (gh - h + 1))
            left = int(torch.randint(0, gw - w + 1, (1,), generator=generator))
            masks[b, top:top + h, left:left + w] = True
    masks = masks.view(batch, -1)
    # top up (or trim) to the exact count so every image contributes the same number of targets
    noise = torch.rand(batch, gh * gw, generator=generator)
    score = masks.float() * 2 + noise
    order = score.argsort(dim=1, descending=True)
    exact = torch.zeros_like(masks)
    exact.scatter_(1, order[:, :target], True)
    return exact.to(device)
