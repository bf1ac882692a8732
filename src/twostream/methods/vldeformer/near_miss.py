"""Near-miss captions and images: how VLDeformer's bi-modal hard negatives (arXiv 2110.11338) are made.

Why: in-batch negatives mostly differ from the positive in many ways at once, so the contrastive
loss can succeed on coarse cues. A caption with ~30 % of its attribute/object words swapped, or an
image with half its patch cells pasted from another image, differs in details; appended to the
InfoNCE softmax as extra negatives, they force the encoders to bind attributes. Pure functions:
captions draw from ``random.Random`` seeded by a hash-free mix of (seed, sample key), images from an
explicit (CPU) ``torch.Generator`` and are moved, so negatives are identical after a resume.
"""
from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

import torch

from twostream.seeding import stable_seed

WordGroups = Mapping[str, Sequence[str]]
_ARTICLE = re.compile(r"(?<!\w)(an?)(\s+)$", re.IGNORECASE)


def _norm(entry: str) -> str:
    return "|".join(dict.fromkeys(" ".join(w.lower().split()) for w in entry.split("|") if w.strip()))


def _validate(groups: Mapping[str, Sequence[str]], where: str) -> dict[str, tuple[str, ...]]:
    if not groups:
        raise ValueError(f"{where}: no word groups given")
    out: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for name, words in groups.items():
        if isinstance(words, str) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{where}: group {name!r} must be a list of strings, got {words!r}")
        unique = tuple(dict.fromkeys(w for w in map(_norm, words) if w))  # dedupe, keep order
        if not unique:
            raise ValueError(f"{where}: group {name!r} is empty")
        if len(unique) < 2:
            raise ValueError(f"{where}: group {name!r} has only {unique[0]!r}: nothing to replace it by")
        for w in (w for entry in unique for w in entry.split("|")):
            if w in owner:  # ambiguous: which group (or meaning) would its replacement come from?
                raise ValueError(f"{where}: word {w!r} is in group {owner[w]!r} and again in group {name!r}")
            owner[w] = name
        out[str(name)] = unique
    return out


def load_word_groups(source: str | os.PathLike | list[str] | WordGroups) -> dict[str, tuple[str, ...]]:
    """Replacement vocabulary as {group: words}. Words are swapped only within their group, so
    "a red circle" becomes "a blue circle" (a plausible, wrong caption), never "a square circle".

    ``source``: a dict (used as is), a list (one group "words"), or a path to a text file with one
    word per line, optionally prefixed ``group: word`` (unprefixed lines go to group "words"); text
    after ``#`` and blank lines are ignored. Words are lower-cased and may be multi-word ("plus
    sign"): they are matched as one unit and may be replaced by a word of another length. An entry
    "circle|disc" lists synonyms: never replaced by each other, which would be a false negative.
    """
    if isinstance(source, Mapping):
        return _validate(source, "word groups")
    if isinstance(source, list):
        return _validate({"words": source}, "word list")
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:  # missing, a directory, unreadable
        raise ValueError(f"word file {path!r} not found or unreadable ({err.strerror})") from err
    groups: dict[str, list[str]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        group, sep, word = line.rpartition(":") if ":" in line else ("words", "", line)
        group, word = group.strip(), word.strip()
        if sep and (not group or not word or ":" in group):
            raise ValueError(f"{path}:{number}: expected 'word' or 'group: word', got {raw.strip()!r}")
        groups.setdefault(group, []).append(word)
    return _validate(groups, f"word file {path!r}")


@lru_cache(maxsize=32)
def _compile(frozen: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[re.Pattern, dict[str, list[list[str]]]]:
    """Regex of every word, and word -> the other meanings of its group (each a list of synonyms)."""
    others = {w: [e.split("|") for e in entries if e != entry] for _, entries in frozen for entry in entries
              for w in entry.split("|")}
    phrases = sorted(others, key=len, reverse=True)  # longest first: "plus sign" before "plus"
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE), others


def replace_words(caption: str, groups: WordGroups | list[str], fraction: float = 0.3, *,
                  rng: random.Random) -> tuple[str, int]:
    """Replace round(``fraction`` x n) (at least 1) of the caption's n vocabulary words, chosen at
    random, each by a word of another entry of its group. Matching is case-insensitive on whole words;
    punctuation, spacing and a capital first letter are kept, and an article "a"/"an" right before
    a replaced word is fixed to fit it (else the grammar error alone would give the negative away).

    Returns (new caption, number replaced); 0 means no vocabulary word was found and the caption is
    returned unchanged: it equals the positive and must not be used as a negative.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    pattern, others = _compile(tuple(load_word_groups(groups).items()))
    matches = list(pattern.finditer(caption))
    if not matches:
        return caption, 0  # nothing to replace
    count = min(len(matches), max(1, round(fraction * len(matches))))
    chosen = set(rng.sample(range(len(matches)), count))
    out, last = "", 0
    for i, m in enumerate(matches):
        out += caption[last:m.start()]
        last = m.end()
        if i not in chosen:
            out += m.group()
            continue
        new = rng.choice(rng.choice(others[_norm(m.group())]))  # another meaning, then one of its synonyms
        new = new[0].upper() + new[1:] if m.group()[0].isupper() else new
        if article := _ARTICLE.search(out):
            fixed = "an" if new[0].lower() in "aeiou" else "a"
            out = out[:article.start()] + (fixed.capitalize() if article.group(1)[0].isupper() else fixed) \
                + article.group(2)
        out += new
    return out + caption[last:], count


def near_miss_captions(captions: list[str], groups: WordGroups | list[str], fraction: float, seed: int,
                           keys: Sequence[int]) -> tuple[list[str], torch.Tensor]:
    """Negative caption per caption; caption i depends only on (seed, keys[i]) (e.g. the sample's
    dataset index), not on batch composition or order, so a resumed run draws the same negatives.
    Returns (captions, valid [B] bool): valid is False where nothing could be replaced."""
    if len(keys) != len(captions):
        raise ValueError(f"need one key per caption: {len(captions)} captions, {len(keys)} keys")
    groups = load_word_groups(groups)
    out, valid = [], []
    for caption, key in zip(captions, keys):
        new, replaced = replace_words(caption, groups, fraction, rng=random.Random(stable_seed("hard-negative", seed, key)))
        out.append(new)
        valid.append(replaced > 0)
    return out, torch.tensor(valid, dtype=torch.bool)


def _derangement(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform random permutation with no fixed point, by rejection (accepted w.p. ~1/e)."""
    while True:
        perm = torch.randperm(n, generator=generator, device=device).cpu()
        if not bool((perm == torch.arange(n)).any()):
            return perm


def mix_patches(images: torch.Tensor, patch_size: int, fraction: float = 0.5,
                generator: torch.Generator | None = None,
                partner: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative images: in each image, round(``fraction`` x cells) cells of its ``patch_size`` grid
    (chosen at random per image) are replaced by the same cells of a partner image, so about half
    the patches still match the positive caption. ``partner`` ([B] indices into the batch) defaults
    to a random derangement: no image is its own partner (it would not change).

    Returns (mixed [B, C, H, W], same dtype/device, a new tensor; partner indices [B] long, on the
    images' device). Identical images in a batch still give a mixed image equal to the original.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    if b < 2:
        raise ValueError(f"mix_patches needs a batch of at least 2 images (a partner per image), got {b}")
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size {patch_size}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    draw_on = generator.device if generator is not None else torch.device("cpu")
    if partner is None:
        partner = _derangement(b, generator, draw_on)
    partner = torch.as_tensor(partner).to(device="cpu", dtype=torch.long)
    if partner.shape != (b,) or bool(((partner < 0) | (partner >= b) | (partner == torch.arange(b))).any()):
        raise ValueError(f"partner must be {b} batch indices with partner[i] != i, got {partner.tolist()}")
    gh, gw = h // patch_size, w // patch_size
    order = torch.rand(b, gh * gw, generator=generator, device=draw_on).argsort(1).argsort(1)
    cells = (order < round(fraction * gh * gw)).view(b, 1, gh, gw)  # exactly that many cells each
    pixels = cells.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3).to(images.device)
    partner = partner.to(images.device)
    return torch.where(pixels, images[partner], images), partner
