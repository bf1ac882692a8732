"""Model-input transforms: a PIL image -> a normalised tensor, a video's frames -> a clip tensor.

Why here and not in ``formats``: the format readers return what is on disk (a PIL image, uint8
frames [T, H, W, 3]); sizing, cropping and normalising are choices of the DataModule (its
``image_size``, ``mean``/``std``, ``train_augment``). No transform flips: captions say "left of"
and "moves left".
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from twostream.data.formats.video_io import read_clip

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Transform = Callable[[Image.Image], torch.Tensor]


# ----------------------------------------------------------------------------- images
class ResizeCenterCrop:
    """Resize the shorter side to ``size`` and centre-crop a square; a no-op for images that
    already are ``size`` x ``size`` (the synthetic data), so they are not resampled needlessly."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._resize = T.Compose([T.Resize(size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(size)])

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.size == (self.size, self.size) else self._resize(image)


def build_image_transform(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool = False
) -> Transform:
    """PIL image -> normalised float tensor [3, H, W].

    The optional augmentation is deliberately light and never flips: captions say "left of".
    """
    if augment:
        geometry: list[Any] = [
            T.RandomResizedCrop(
                image_size, scale=(0.9, 1.0), ratio=(0.95, 1.05), interpolation=InterpolationMode.BICUBIC
            ),
            T.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    else:
        geometry = [ResizeCenterCrop(image_size)]
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])


# ----------------------------------------------------------------------------- video clips
class ClipTransform:
    """uint8 frames [T, H, W, 3] -> normalised float [T, 3, S, S], the same geometry for every frame.

    Resize the shorter side to S and centre-crop (a no-op for S x S input). ``augment`` takes a
    random crop (90-100 % of the area) drawn from the caller's rng — the sample key — so it is
    reproducible too; never a flip: captions say "moves left".
    """

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool = False):
        self.size, self.augment = int(image_size), augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255

    def __call__(self, frames: np.ndarray, rng: random.Random | None = None) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        if self.augment and rng is not None:
            x = _crop(x, *_random_box(x.shape[-2], x.shape[-1], rng))
        x = self._resize_crop(x.float())
        return (x - self.mean) / self.std

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) == (self.size, self.size):
            return x
        scale = self.size / min(h, w)
        size = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
        top, left = (size[0] - self.size) // 2, (size[1] - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]


def _random_box(h: int, w: int, rng: random.Random) -> tuple[int, int, int, int]:
    area = rng.uniform(0.9, 1.0)
    ch, cw = max(1, round(h * area ** 0.5)), max(1, round(w * area ** 0.5))
    return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw


def _crop(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    return x[..., top:top + h, left:left + w]


class ClipReader:
    """path (+ the sample's rng) -> clip tensor [T, 3, S, S]; picklable for DataLoader workers."""

    def __init__(self, num_frames: int, transform: ClipTransform, threads: int = 1) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames, self.transform, self.threads = int(num_frames), transform, int(threads)

    def __call__(self, path: str | os.PathLike, rng: random.Random | None = None) -> torch.Tensor:
        return self.transform(read_clip(path, self.num_frames, rng, threads=self.threads), rng)
