"""TwoStreamEncoder: two towers, a shared embedding space, training state and a list of objectives.

The module wires plain ``nn.Module``s (towers, an optional shared neck, training states, heads) to
optimisation and logging; it knows no method. Which objectives and states run is configuration:
adding one is a new file plus a YAML entry, never a change here (contract: ``twostream.heads``).
"""
from __future__ import annotations

import copy
import inspect
import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import nn

from twostream import seeding
from twostream.contrastive import InBatchContrastive
from twostream.errors import ConfigError
from twostream.evaluation import RetrievalEvaluation
from twostream.heads import EncoderOutput, LossHead, S, TrainingState
from twostream.metrics import RetrievalRecall
from twostream.optim import AdamWImpl, adamw_warmup_cosine
from twostream.towers.base import TowerOutput

def _projection(kind: str, in_dim: int, out_dim: int, which: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    if kind == "none":
        if in_dim != out_dim:
            raise ConfigError(f"projection: 'none' needs the {which} tower's output_dim ({in_dim}) == embed_dim ({out_dim})")
        return nn.Identity()
    raise ConfigError(f"projection: {kind!r}; valid: 'linear', 'none'")


class TwoStreamEncoder(RetrievalEvaluation, L.LightningModule):
    """Dual encoder trained by a weighted sum of objectives, evaluated by exact recall@K.

    Args:
        vision / text: towers (``twostream.towers``); the text tower also tokenizes, so every
            caption, synthetic or real, goes through the tokenizer that matches the model.
        heads: objectives (:class:`~twostream.heads.LossHead`); default a single :class:`InBatchContrastive`.
        state: training state by name (:class:`~twostream.heads.TrainingState`, e.g. COTS's
            ``momentum`` queue and noise ``filter``; a ``null`` entry is left out, so
            ``--model.init_args.state.filter=null`` switches one off), annotated each step and updated
            after each optimizer step by :class:`~twostream.callbacks.TrainingStateCallback` (added
            automatically).
        embed_dim: shared embedding size; ``projection`` maps each tower's pooled output to it.
        temperature: initial softmax temperature, learnable unless ``learn_temperature=False``,
            clamped to ``>= min_temperature`` after each optimizer step (CLIP's 100 logit-scale cap).
        lr, weight_decay, betas, eps: AdamW; no decay on biases, norms, embeddings, temperature.
        warmup_steps, min_lr_ratio: linear warm-up then cosine decay over the run's optimizer steps
            (``total_steps`` if set, else the trainer's estimate: set it to keep one schedule across
            runs of different lengths, e.g. a run stopped and resumed).
        init_from: a checkpoint (Lightning ``.ckpt`` or a plain state dict) whose towers, projections
            and temperature initialise this model, e.g. ``make pretrain``'s for fine-tuning.
        shared: a neck applied with the same weights to both towers' token sequences before
            projection (e.g. COOKIE's weight-sharing transformer): ``bind(image_token_dim,
            text_token_dim)``, ``output_dim``, ``forward(tower_output, "image" | "text")``; its pooled
            output replaces the towers'.
        unimodal_eval: also report image→image recall (images of the same scene as positives, where
            the data knows scenes) and text→text recall (captions of the same image as positives).
        save_embeddings: write the test split's embeddings to ``<run dir>/test_embeddings.pt``
            (the shortlist a cross-encoder re-ranks, or for analysis).
        optimizer_impl: torch's AdamW implementation ("fused", "foreach", "for-loop"; see
            :mod:`twostream.optim`): the same update, fused is the fastest measured (docs/performance.md).
        compile: ``torch.compile`` the two towers (in place, so checkpoints keep their keys) when a
            trainer sets the model up; opt-in: where it pays is measured in docs/performance.md.
    """

    #: the modules of the encoding path, in order: a copy of exactly these encodes like the model
    encoding_modules: tuple[str, ...] = ("vision", "text", "shared", "image_proj", "text_proj")

    def __init__(self, vision: nn.Module, text: nn.Module, heads: list[LossHead] | None = None,
                 state: dict[str, TrainingState | None] | None = None, embed_dim: int = 256,
                 projection: Literal["linear", "none"] = "linear", temperature: float = 0.07,
                 learn_temperature: bool = True, min_temperature: float = 0.01, lr: float = 5e-4,
                 weight_decay: float = 0.2, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 warmup_steps: int = 100, min_lr_ratio: float = 0.0, total_steps: int | None = None,
                 init_from: str | None = None, shared: nn.Module | None = None, unimodal_eval: bool = True,
                 save_embeddings: bool = False, recall_ks: tuple[int, ...] = (1, 5, 10),
                 optimizer_impl: AdamWImpl = "fused", compile: bool = False):
        super().__init__()
        self._save_plain_hyperparameters(inspect.currentframe())
        if temperature <= 0 or (learn_temperature and temperature < min_temperature):
            raise ConfigError(f"temperature={temperature:g}: expected > 0 and, when learned, >= min_temperature="
                              f"{min_temperature:g} (the clamp after every step)")
        self.vision, self.text, self.shared, self.embed_dim = vision, text, shared, embed_dim
        dims = (vision.output_dim, text.output_dim)
        if shared is not None:
            shared.bind(vision.token_dim, text.token_dim)
            dims = (shared.output_dim, shared.output_dim)
        self.image_proj = _projection(projection, dims[0], embed_dim, "vision")
        self.text_proj = _projection(projection, dims[1], embed_dim, "text")
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self.heads = nn.ModuleList(heads if heads is not None else [InBatchContrastive()])
        _check_unique("heads", [h.name for h in self.heads])
        if init_from:
            from twostream.checkpoints import load_encoder_weights

            load_encoder_weights(self, init_from)
        self.state = nn.ModuleDict()
        self.val_recall = RetrievalRecall(ks=tuple(recall_ks), unimodal=unimodal_eval)
        self.test_recall = RetrievalRecall(ks=tuple(recall_ks), unimodal=unimodal_eval)
        if not self.defer_assembly:
            self.assemble(state)

    #: a subclass that registers more encoding modules after ``super().__init__`` sets this and
    #: calls :meth:`assemble` itself once they exist (state copies them, heads may read them)
    defer_assembly = False

    def assemble(self, state: dict[str, TrainingState | None] | None) -> None:
        """Build the training states by stage, then attach the heads (which may check for states).
        After ``init_from``: copies of the encoding path start from the loaded weights."""
        present = [(name, item) for name, item in (state or {}).items() if item is not None]
        for name, item in sorted(present, key=lambda pair: pair[1].stage):  # stable: ties keep config order
            item.name = name
            item.build(self)
            self.state[name] = item
        for head in self.heads:
            head.attach(self)

    def _save_plain_hyperparameters(self, frame) -> None:
        """Record every constructor argument (of this class and subclasses) except modules: those
        are in the state dict, and Lightning warns about (and pickles) module-valued hparams."""
        args: dict = {}
        for level in collect_init_args(frame, [], classes=(HyperparametersMixin,)):
            args.update(level)
        self.save_hyperparameters(ignore=[k for k, v in args.items() if _holds_module(v)], frame=frame)

    # ---------------------------------------------------------------- encoding
    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def encode_image(self, images: torch.Tensor, path: nn.Module | None = None) -> tuple[torch.Tensor, TowerOutput]:
        """Normalised image embeddings and the tower output. ``path``: any module holding the
        :attr:`encoding_modules` (a momentum copy) to encode with instead of this model's own."""
        m = self if path is None else path
        out = m.vision(images)
        if m.shared is not None:
            out = m.shared(out, "image")
        return F.normalize(m.image_proj(out.pooled), dim=-1), out

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    path: nn.Module | None = None) -> tuple[torch.Tensor, TowerOutput]:
        m = self if path is None else path
        out = m.text(input_ids, attention_mask)
        if m.shared is not None:
            out = m.shared(out, "text")
        return F.normalize(m.text_proj(out.pooled), dim=-1), out

    def encode(self, batch: dict, path: nn.Module | None = None) -> EncoderOutput:
        """Whatever modalities the batch has, through this model's (or ``path``'s) encoding modules."""
        image_emb = text_emb = image_out = text_out = None
        if "image" in batch:
            image_emb, image_out = self.encode_image(batch["image"], path)
        if "input_ids" in batch:
            text_emb, text_out = self.encode_text(batch["input_ids"], batch.get("attention_mask"), path)
        return EncoderOutput(image_emb, text_emb, image_out, text_out, self.temperature)

    def copy_encoding_modules(self) -> dict[str, nn.Module | None]:
        """Frozen deep copies of the :attr:`encoding_modules` (one ``deepcopy``, so modules that share
        a submodule still share its copy)."""
        copies = copy.deepcopy({name: getattr(self, name, None) for name in self.encoding_modules})
        for module in copies.values():
            if module is not None:
                module.requires_grad_(False)
        return copies

    def forward(self, batch: dict) -> EncoderOutput:
        return self.encode(batch)

    def find_state(self, kind: type[S]) -> S | None:
        """The first training state of type ``kind``, or None."""
        return next((s for s in self.state.values() if isinstance(s, kind)), None)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Tokenize captions with the text tower's own tokenizer (before the batch moves to device)."""
        if "caption" in batch and "input_ids" not in batch:
            batch.update(self.text.tokenize(list(batch["caption"])))
        if self.training:
            for head in self.heads:
                head.prepare_batch(batch)
        return batch

    # ---------------------------------------------------------------- training
    def step_generator(self, batch_idx: int) -> torch.Generator:
        """A CPU generator seeded from (run seed, optimizer step, batch, rank): reproducible masks."""
        return seeding.step_generator(self.global_step, batch_idx, self.global_rank)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self(batch)
        out.generator = self.step_generator(batch_idx)
        carried = self.annotate(out, batch)
        total, logs = self.objective(out, batch)
        bs = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=bs, sync_dist=False)
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log("train/temperature", self.temperature.detach(), batch_size=bs)
        result = {"loss": total}
        if carried:
            result["training_state"] = carried  # TrainingStateCallback: states' update after the optimizer step
        return result

    def annotate(self, out: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        """Every training state's ``annotate``, in stage order; what they carry to their ``update``."""
        carried: dict[str, torch.Tensor] = {}
        for item in self.state.values():
            carried.update(item.annotate(out, batch))
        if carried and out.pair_weight is not None:
            carried["pair_weight"] = out.pair_weight
        return carried

    def configure_callbacks(self) -> list[L.Callback]:
        """The callback that updates training state after each optimizer step, when there is state
        (unless the trainer already has one)."""
        from twostream.callbacks.training_state import TrainingStateCallback

        trainer = self._trainer
        if not len(self.state) or any(isinstance(cb, TrainingStateCallback) for cb in getattr(trainer, "callbacks", [])):
            return []
        return [TrainingStateCallback()]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.hparams.get("compile") and not getattr(self, "_towers_compiled", False):
            from twostream.compilation import compile_towers

            compile_towers(self, ("vision", "text"))
            self._towers_compiled = True

    def configure_model(self) -> None:
        """FSDP2 under Lightning's ModelParallelStrategy (which sets ``device_mesh``); otherwise, and
        when already sharded (Lightning calls this again for ``test`` after ``fit``), nothing."""
        if self.device_mesh is not None:
            from twostream.sharding import shard_encoder

            shard_encoder(self, self.device_mesh["data_parallel"])

    def objective(self, out: EncoderOutput, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of every head's ``*_loss`` entries, plus everything the heads report."""
        total = out.image_emb.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for head in self.heads:
            for key, value in head(out, batch).items():
                logs[key] = value.detach()
                if key.endswith("_loss"):
                    total = total + head.weight * value
        self.loss_terms = {k: v for k, v in logs.items() if k.endswith("_loss")}  # NonFiniteGuard names bad ones
        return total, logs

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if isinstance(self.log_temperature, nn.Parameter):
            with torch.no_grad():
                self.log_temperature.clamp_(min=math.log(self.hparams.min_temperature))

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self.named_parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                   hp.total_steps or int(self.trainer.estimated_stepping_batches), hp.min_lr_ratio,
                                   betas=hp.betas, eps=hp.eps, impl=hp.get("optimizer_impl", "fused"))

def _check_unique(what: str, names: list[str]) -> None:
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}: names must be unique, got {names}; set `name:` on duplicates")


def _holds_module(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_holds_module(v) for v in value)
    return isinstance(value, nn.Module)
