"""VisualTokenizer: a small VQ-VAE that turns image patches into discrete visual-token ids.

Why: COTS' masked vision modeling predicts, for each masked patch, a discrete id; this tokenizer
supplies those ids (one per ``downsample`` x ``downsample`` pixel cell, so with the default vision
tower, 64-px images and ``downsample=8`` give the tower's own 8x8 patch grid).

From the VQ-VAE paper (van den Oord et al. 2017, "Neural Discrete Representation Learning"):
strided-conv encoder + residual blocks, nearest-code quantisation, the straight-through estimator,
and the loss ``MSE(x, x_hat) + ||sg(z) - e||^2 + beta * ||z - sg(e)||^2``.

Our choices (after ViT-VQGAN, Yu et al. 2021, and the usual dead-code remedy): the encoder output
is projected to a *low-dimensional* code space and both it and the codebook are L2-normalised, so
the lookup is by cosine similarity; codes unused for many optimizer steps are restarted from
current encoder outputs; channels halve toward full resolution (``min_channels``) so a wide
network fits a CPU budget. Usage tracking and restarts are state changes and happen only in
:meth:`VectorQuantizer.mark_used` / :meth:`VectorQuantizer.restart_dead`, which the training
module calls once per step, never in ``forward``. No batch norm or dropout, so ``encode`` gives the
same ids in train and eval mode.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "twostream-visual-tokenizer"
VERSION = 1


class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` as in the VQ-VAE paper."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VectorQuantizer(nn.Module):
    """Cosine-similarity codebook with usage bookkeeping for dead-code restarts.

    Buffers (saved with the model, so a resumed run keeps counting): ``step`` (optimizer steps
    completed), ``last_used`` (step during which each code was last chosen, -1 = never) and
    ``born`` (first step after its last (re)initialisation). A code is dead once it went
    ``dead_after`` whole steps unchosen: ``step - max(last_used + 1, born) >= dead_after``.
    """

    def __init__(self, codebook_size: int, code_dim: int, beta: float) -> None:
        super().__init__()
        self.codebook_size, self.code_dim, self.beta = codebook_size, code_dim, beta
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, code_dim), dim=-1))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_used", torch.full((codebook_size,), -1, dtype=torch.long))
        self.register_buffer("born", torch.zeros(codebook_size, dtype=torch.long))

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Ids of the most cosine-similar codes for L2-normalised ``z`` [..., D] -> long [...]."""
        return (z @ self.normalized_codebook().t()).argmax(dim=-1)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``z``: [B, gh, gw, D] encoder outputs. Returns quantised (straight-through) and losses."""
        z = F.normalize(z, dim=-1)
        codes = self.lookup(z.detach())
        e = self.normalized_codebook()[codes]
        codebook_loss = F.mse_loss(e, z.detach())
        commit_loss = F.mse_loss(z, e.detach())
        quantized = z + (e - z).detach()  # straight-through: decoder gradients reach the encoder
        return {"quantized": quantized, "codes": codes, "latents": z.detach(),
                "codebook_loss": codebook_loss, "commit_loss": commit_loss,
                "vq_loss": codebook_loss + self.beta * commit_loss}

    # ------------------------------------------------------------ bookkeeping (state changes)
    @torch.no_grad()
    def used_mask(self, codes: torch.Tensor) -> torch.Tensor:
        """bool [K]: which codes occur in ``codes``."""
        return torch.bincount(codes.flatten(), minlength=self.codebook_size) > 0

    @torch.no_grad()
    def mark_used(self, used: torch.Tensor) -> None:
        """Record that the codes in bool mask ``used`` were chosen at the current step."""
        self.last_used[used.to(self.last_used.device)] = self.step

    @torch.no_grad()
    def dead_mask(self, dead_after: int) -> torch.Tensor:
        return self.step - torch.maximum(self.last_used + 1, self.born) >= dead_after

    @torch.no_grad()
    def usage(self, window: int) -> float:
        """Fraction of codes chosen in the last ``window`` steps (usage is recorded at the step
        that :meth:`restart_dead` then closes)."""
        return ((self.last_used >= 0) & (self.last_used >= self.step - window)).float().mean().item()

    @torch.no_grad()
    def restart_dead(self, latents: torch.Tensor, dead_after: int) -> int:
        """End an optimizer step: advance ``step`` and re-seed codes dead for ``dead_after`` steps
        with randomly chosen rows of ``latents`` [N, D] (global torch RNG, so seeded runs repeat).
        Returns how many codes were restarted."""
        self.step += 1
        dead = self.dead_mask(dead_after).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        latents = latents.reshape(-1, self.code_dim)
        n = latents.shape[0]
        pick = torch.randperm(n)[: dead.numel()] if n >= dead.numel() else torch.randint(n, (dead.numel(),))
        self.codebook.data[dead] = F.normalize(latents[pick.to(latents.device)].to(self.codebook.dtype), dim=-1)
        self.born[dead] = self.step
        return int(dead.numel())


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code histogram: the effective number of codes in use."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    return perplexity_of_counts(counts)


def perplexity_of_counts(counts: torch.Tensor) -> float:
    p = counts / counts.sum().clamp(min=1)
    return math.exp(-(p * torch.log(p.clamp(min=1e-12))).sum().item())


class VisualTokenizer(nn.Module):
    """VQ-VAE over CLIP-normalised images; ids on a grid of ``image_size // downsample`` cells.

    Args:
        in_channels: image channels.
        hidden: conv channels at the token grid (encoder end, decoder start).
        downsample: pixels per token side, a power of 2 >= 2 (one stride-2 conv per factor 2).
        codebook_size: number of visual-token ids.
        code_dim: dimension of the (L2-normalised) code space; low (e.g. 32) keeps codes alive.
        beta: commitment weight of the VQ-VAE loss.
        num_res_blocks: residual blocks after the encoder's and before the decoder's resampling.
        res_hidden: channels inside a residual block (default ``hidden // 2``).
        min_channels: the stride-2 stages halve ``hidden`` toward full resolution, down to this
            (``min_channels=hidden``: the paper's constant width, ~6x the compute at hidden=64).
    """

    def __init__(self, in_channels: int = 3, hidden: int = 64, downsample: int = 8, codebook_size: int = 512,
                 code_dim: int = 32, beta: float = 0.25, num_res_blocks: int = 2,
                 res_hidden: int | None = None, min_channels: int = 16) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, hidden=hidden, code_dim=code_dim, min_channels=min_channels)
        if downsample < 2 or downsample & (downsample - 1):
            raise ValueError(f"downsample: expected a power of 2 >= 2 (e.g. 8), got {downsample}")
        if codebook_size < 2:
            raise ValueError(f"codebook_size: expected >= 2, got {codebook_size}")
        if beta < 0 or num_res_blocks < 0:
            raise ValueError(f"beta and num_res_blocks: expected >= 0, got {beta} and {num_res_blocks}")
        res_hidden = res_hidden or max(1, hidden // 2)
        self.config = dict(in_channels=in_channels, hidden=hidden, downsample=downsample,
                           codebook_size=codebook_size, code_dim=code_dim, beta=beta,
                           num_res_blocks=num_res_blocks, res_hidden=res_hidden, min_channels=min_channels)
        self.in_channels, self.codebook_size, self.downsample = in_channels, codebook_size, downsample
        stages = int(math.log2(downsample))

        # widths[i]: channels after the i-th stride-2 stage; halving toward full resolution keeps
        # the cost of the many-pixel stages small (min_channels=hidden gives the paper's constant width)
        widths = [max(min(min_channels, hidden), hidden >> (stages - 1 - i)) for i in range(stages)]
        enc: list[nn.Module] = []
        for i, width in enumerate(widths):
            enc += [nn.Conv2d(in_channels if i == 0 else widths[i - 1], width, 4, stride=2, padding=1), nn.ReLU()]
        enc += [nn.Conv2d(hidden, hidden, 3, padding=1)]
        enc += [ResBlock(hidden, res_hidden) for _ in range(num_res_blocks)]
        enc += [nn.ReLU(), nn.Conv2d(hidden, code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(codebook_size, code_dim, beta)

        dec: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1)]
        dec += [ResBlock(hidden, res_hidden) for _ in range(num_res_blocks)]
        dec += [nn.ReLU()]
        for i in reversed(range(stages)):  # widths[i] -> widths[i - 1], the last one to pixels
            dec += [nn.ConvTranspose2d(widths[i], widths[i - 1] if i else in_channels, 4, stride=2, padding=1)]
            if i:
                dec += [nn.ReLU()]
        self.decoder = nn.Sequential(*dec)

    def grid_size(self, image_size: tuple[int, int] | int) -> tuple[int, int]:
        """Token grid (rows, cols) for an image of ``image_size`` (H, W) pixels."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % self.downsample or w % self.downsample or h <= 0 or w <= 0:
            raise ValueError(f"image_size: expected positive multiples of downsample={self.downsample}, "
                             f"got {(h, w)}")
        return h // self.downsample, w // self.downsample

    def _latents(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"images: expected float [B, {self.in_channels}, H, W], got shape {tuple(images.shape)}")
        self.grid_size(images.shape[-2:])
        return self.encoder(images).permute(0, 2, 3, 1)  # [B, gh, gw, D]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised images [B, C, H, W] -> long code ids [B, H/downsample, W/downsample]."""
        return self.quantizer.lookup(F.normalize(self._latents(images), dim=-1))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Code ids [B, gh, gw] -> images [B, C, gh*downsample, gw*downsample] (CLIP-normalised)."""
        if codes.ndim != 3 or codes.dtype != torch.long:
            raise ValueError(f"codes: expected long [B, gh, gw], got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes: ids must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return self._decode(self.quantizer.normalized_codebook()[codes])

    def _decode(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(quantized.permute(0, 3, 1, 2))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: ``recon``, ``codes`` [B,gh,gw], ``latents`` (normalised encoder outputs,
        for restarts), ``recon_loss``, ``vq_loss`` (codebook + beta*commitment), ``loss`` (their sum)."""
        q = self.quantizer(self._latents(images))
        recon = self._decode(q["quantized"])
        recon_loss = F.mse_loss(recon, images)
        return {"recon": recon, "codes": q["codes"], "latents": q["latents"], "recon_loss": recon_loss,
                "vq_loss": q["vq_loss"], "codebook_loss": q["codebook_loss"], "commit_loss": q["commit_loss"],
                "loss": recon_loss + q["vq_loss"]}

    # ------------------------------------------------------------ standalone file
    def save(self, path: str | Path) -> None:
        """Write a self-describing file that :meth:`from_file` rebuilds without any config."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save({"format": FORMAT, "version": VERSION, "config": dict(self.config), "state_dict": state}, path)

    @classmethod
    def from_file(cls, path: str | Path) -> VisualTokenizer:
        """Load a file written by :meth:`save`, frozen (eval mode, no gradients)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"visual tokenizer file {str(path)!r} not found; run `make tokenizer` first "
                                    "(it trains the tokenizer and writes this file)")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a torch file, or one with arbitrary pickled objects
            raise ValueError(f"{str(path)!r} is not a visual tokenizer file (torch.load failed: {exc})") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a visual tokenizer file (expected format {FORMAT!r}; "
                             f"a Lightning checkpoint? export one with VisualTokenizer.save)")
        if blob.get("version") != VERSION:
            raise ValueError(f"{str(path)!r}: tokenizer file version {blob.get('version')!r}, this code reads "
                             f"version {VERSION}")
        model = cls(**blob["config"])
        model.load_state_dict(blob["state_dict"])
        return model.eval().requires_grad_(False)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
