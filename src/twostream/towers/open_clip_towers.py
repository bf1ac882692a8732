"""open_clip vision and text towers, built separately so each stream is configured on its own.

A tower is either a built-in open_clip model name (``ViT-B-16``...) whose config open_clip ships,
an inline config dict (fields of open_clip's ``CLIPVisionCfg`` / ``CLIPTextCfg``), or both (the
dict overrides the named config). Weights: ``pretrained`` is an open_clip tag (looked up in local
caches only) or a local file; default random init.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.towers.base import MaskedLMSpec, TowerOutput
from twostream.checkpoints import load_prefixed, read_state_dict
from twostream.towers.weights import resolve_open_clip_weights


def _tower_config(model_name: str | None, config: dict[str, Any] | None, part: str,
                  embed_dim: int | None) -> tuple[dict[str, Any], int, bool]:
    """Merge a named open_clip config with inline overrides; return (cfg, embed_dim, quick_gelu)."""
    import open_clip

    base: dict[str, Any] = {}
    quick_gelu = False
    if model_name is not None:
        full = open_clip.get_model_config(model_name)
        if full is None:
            raise ConfigError(f"model_name: {model_name!r} is not an open_clip model; "
                              f"valid names: {', '.join(open_clip.list_models())}")
        base = dict(full[part])
        embed_dim = embed_dim or full["embed_dim"]
        quick_gelu = bool(full.get("quick_gelu", False))
    elif not config:
        raise ConfigError(f"{part}: give `model_name` (an open_clip model) or an inline `config` dict")
    base.update(config or {})
    if embed_dim is None:
        raise ConfigError(f"{part}: `embed_dim` is required with an inline config")
    return base, int(embed_dim), quick_gelu


def _build(kind: str, embed_dim: int, cfg: dict[str, Any], quick_gelu: bool) -> nn.Module:
    from open_clip import model as oc

    cls = oc.CLIPVisionCfg if kind == "vision" else oc.CLIPTextCfg
    valid = set(cls.__dataclass_fields__)
    unknown = sorted(set(cfg) - valid)
    if unknown:
        raise ConfigError(f"{kind} config: unknown key(s) {unknown}; valid keys: {sorted(valid)}")
    cfg = {**cfg, "output_tokens": True}
    build = oc._build_vision_tower if kind == "vision" else oc._build_text_tower
    return build(embed_dim, cls(**cfg), quick_gelu=quick_gelu)


class ConvStem(nn.Sequential):
    """A patch embedding made of stride-2 3x3 convolutions (Xiao et al. 2021, "Early convolutions
    help transformers see better"): the same [B, width, grid, grid] output as a ViT's single
    patch-sized convolution, with the locality bias that makes small ViTs trained from scratch learn
    much sooner (measured in docs/testbed.md). GroupNorm, not BatchNorm [choice]: no statistics
    shared across a batch, so contrastive negatives cannot leak through it and momentum copies
    and DDP ranks need no synchronised statistics."""

    def __init__(self, patch_size: int, width: int, channels: int = 32):
        stages = patch_size.bit_length() - 1
        if patch_size < 2 or 2**stages != patch_size:
            raise ConfigError(f"stem: 'conv' needs a power-of-two patch_size >= 2, got {patch_size}")
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(stages):
            c_out = min(channels * 2**i, width)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(1, c_out), nn.GELU()]
            c_in = c_out
        super().__init__(*layers, nn.Conv2d(c_in, width, 1))


class OpenCLIPVisionTower(nn.Module):
    """open_clip image encoder; exposes its patch grid so visual tokenizers can be checked against it.

    ``stem``: "patch" (open_clip's patch-sized convolution) or "conv" (:class:`ConvStem`, replacing
    it; ``stem_channels`` for its first stage). Either way the tower gives one token per patch.
    ``image_size`` overrides ``config["image_size"]``; the CLI sets it from ``data.init_args.image_size``
    (and ``embed_dim`` from ``model.init_args.embed_dim``), so the two can never disagree.
    """

    def __init__(self, model_name: str | None = None, config: dict[str, Any] | None = None,
                 embed_dim: int | None = None, pretrained: str | None = None,
                 stem: Literal["patch", "conv"] = "patch", stem_channels: int = 32, image_size: int | None = None):
        super().__init__()
        if image_size is not None and (model_name is not None or config):
            config = {**(config or {}), "image_size": int(image_size)}
        cfg, self.output_dim, quick_gelu = _tower_config(model_name, config, "vision_cfg", embed_dim)
        self.net = _build("vision", self.output_dim, cfg, quick_gelu)
        size = cfg.get("image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        self.grid_size = tuple(getattr(self.net, "grid_size", ()))
        self.token_dim = int(cfg.get("width", 768))
        if stem == "conv":
            self.net.conv1 = ConvStem(int(cfg.get("patch_size", 16)), self.token_dim, stem_channels)
        elif stem != "patch":
            raise ConfigError(f"stem: {stem!r}; valid: 'patch', 'conv'")
        if pretrained:
            _load_pretrained(self.net, model_name, pretrained, "visual.", "vision tower")

    def forward(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None,
                mask_token: torch.Tensor | None = None) -> TowerOutput:
        """``patch_mask`` [B, gh*gw] bool: those patch embeddings are replaced by ``mask_token``
        [width] before position embeddings are added (masked vision modeling)."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise ConfigError(f"vision tower expects {self.image_size} images, got {tuple(images.shape[-2:])}: "
                             f"set the datamodule's image_size to match the tower config")
        if patch_mask is None:
            pooled, tokens = self.net(images)
            return TowerOutput(pooled=pooled, tokens=tokens)
        if mask_token is None:
            raise ValueError("patch_mask given without mask_token")
        # open_clip's ViT has no masking argument: swap patches at the output of its patch embedding.
        mask = patch_mask.view(images.shape[0], 1, *self.grid_size)
        token = mask_token.view(1, -1, 1, 1)
        handle = self.net.conv1.register_forward_hook(lambda mod, inp, out: torch.where(mask, token.to(out.dtype), out))
        try:
            pooled, tokens = self.net(images)
        finally:
            handle.remove()
        return TowerOutput(pooled=pooled, tokens=tokens)


_TEXT_SKIP = ("visual.", "logit_scale", "logit_bias")


class OpenCLIPTextTower(nn.Module):
    """open_clip text transformer plus its tokenizer (BPE vocabulary ships in the wheel: offline)."""

    def __init__(self, model_name: str | None = None, config: dict[str, Any] | None = None,
                 embed_dim: int | None = None, pretrained: str | None = None):
        super().__init__()
        import open_clip

        cfg, self.output_dim, quick_gelu = _tower_config(model_name, config, "text_cfg", embed_dim)
        self.net = _build("text", self.output_dim, cfg, quick_gelu)
        self.context_length = int(cfg.get("context_length", 77))
        self.pad_id = int(cfg.get("pad_id", 0))
        self.token_dim = int(cfg.get("width", 512))
        if model_name is not None:
            self.tokenizer = open_clip.get_tokenizer(model_name, context_length=self.context_length)
        else:
            self.tokenizer = open_clip.SimpleTokenizer(context_length=self.context_length)
        if pretrained:
            _load_pretrained(self.net, model_name, pretrained, "text.", "text tower")

    def mlm_spec(self, mask_token_id: int | None = None) -> MaskedLMSpec:
        """open_clip's BPE vocabulary has no [MASK]: by default the first id past the tokenizer's
        vocabulary is used, which the text config must provide (``vocab_size`` one larger)."""
        tok = self.tokenizer
        n_regular = len(getattr(tok, "encoder", {})) or int(getattr(tok, "vocab_size", 0))
        specials = tuple(sorted({self.pad_id, getattr(tok, "sot_token_id", -1), getattr(tok, "eot_token_id", -1)} - {-1}))
        embedding = self.net.token_embedding
        if mask_token_id is None:
            if embedding.num_embeddings <= n_regular:
                raise ConfigError(f"masked language modeling on an open_clip text tower needs a [MASK] embedding row: "
                                  f"set the text config's vocab_size to {n_regular + 1} (the tokenizer has {n_regular} "
                                  f"ids), or give the MLM head a mask_token_id")
            mask_token_id = n_regular
        return MaskedLMSpec(mask_token_id=mask_token_id, special_ids=specials, random_ids=(1, min(n_regular, embedding.num_embeddings)),
                            embedding=embedding, token_dim=self.token_dim)

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(captions)
        return {"input_ids": ids, "attention_mask": ids != self.pad_id}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TowerOutput:
        pooled, tokens = self.net(input_ids)
        mask = attention_mask if attention_mask is not None else input_ids != self.pad_id
        return TowerOutput(pooled=pooled, tokens=tokens, mask=mask.bool())


def _load_pretrained(net: nn.Module, model_name: str | None, pretrained: str, prefix: str, target: str) -> None:
    """An open_clip weights file into one tower: its ``visual.*`` (or ``text.*``) tensors; CLIP files
    keep the text tower at the top level, so without ``text.*`` keys everything but the vision
    tower and the logit scale/bias is the text tower's."""
    path = resolve_open_clip_weights(model_name, pretrained)
    state = read_state_dict(path, "pretrained:", "resolved from the local open_clip cache")
    if prefix == "text." and not any(k.startswith(prefix) for k in state):
        prefix, exclude = "", _TEXT_SKIP
    else:
        exclude = ()
    load_prefixed(net, state, prefix, what="pretrained:", target=target, exclude=exclude,
                  hint=f"is it an open_clip checkpoint of {model_name or 'this tower config'}?")
