"""Captions of synthetic-shapes scenes, each with a *meaning* that can be checked against any scene.

Why meanings: many captions are true of more than one image ("two shapes on a dark background"),
so a perfect model cannot reach R@1 = 100 %. Every template below returns the caption together with
what it asserts, in canonical attributes (synonyms resolved), so :func:`is_true_of` can decide for
every (caption, scene) pair whether the caption describes the scene, and the oracle ceiling of a
split can be computed (:func:`twostream.metrics.oracle.oracle_recall`).

The truth conditions are those of the generator's own language [choice]: a position phrase names one
grid cell ("at the top" is only ever said of the top-centre cell, "on the left" of middle-left), a
listing ("a picture of X and Y") names every object of the scene, a noun phrase names the shape and
whichever of size and colour it mentions, and relations compare grid cells ("left of": a smaller
column; "above": a smaller row; "next to": edge-adjacent cells). A caption is true of a scene exactly
when the generator could have produced it for that scene.
"""
from __future__ import annotations

import itertools
import random
from typing import Any

from twostream.errors import ConfigError

SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
               "star": ("star",), "cross": ("cross", "plus sign"), "diamond": ("diamond", "rhombus")}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
COLUMNS = ("left", "centre", "right")
ROWS = ("top", "middle", "bottom")

# A meaning is a plain tuple (JSON-able as a list):
#   ("at", np, row, col)       an object matching np in that cell
#   ("on_bg", np, background)  an object matching np, on that background
#   ("count_bg", n, background)
#   ("all", [np, ...])         exactly these objects (a bijection between phrases and objects)
#   ("rel", np_a, rel, np_b)   two different objects in that relation; rel in RELATIONS
# with np = (shape, colour or None, size or None).
_REL_PHRASES = {"left": ("to the left of", "left of"), "right": ("to the right of", "right of"),
                "above": ("above",), "below": ("below", "underneath"), "next": ("next to", "beside")}
RELATIONS = tuple(_REL_PHRASES)


def relations(a, b) -> list[str]:
    """Every relation phrase that is true of "a <phrase> b"."""
    return [phrase for rel in _true_relations(a, b) for phrase in _REL_PHRASES[rel]]


def _true_relations(a, b) -> list[str]:
    rels = []
    if a.col != b.col:
        rels.append("left" if a.col < b.col else "right")
    if a.row != b.row:
        rels.append("above" if a.row < b.row else "below")
    if abs(a.col - b.col) + abs(a.row - b.row) == 1:
        rels.append("next")
    return rels


# ----------------------------------------------------------------------------- phrases
def _article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _vague_phrase(o, rng: random.Random, p_size: float = 0.6, p_colour: float = 0.85) -> tuple[str, tuple]:
    # the draw order is generator version 1's, so its stored captions are reproduced exactly
    size_words = [rng.choice(SIZE_WORDS[o.size])] if rng.random() < p_size else []
    colour_words = [o.colour] if rng.random() < p_colour else []
    text = _article(" ".join(size_words + colour_words + [rng.choice(SHAPE_WORDS[o.shape])]))
    return text, (o.shape, o.colour if colour_words else None, o.size if size_words else None)


def _full_phrase(o, rng: random.Random) -> tuple[str, tuple]:
    """A noun phrase that always names size and colour (``specific_captions``)."""
    return _vague_phrase(o, rng, 1.0, 1.0)


def _phrase_maker(specific: bool):
    return _full_phrase if specific else _vague_phrase


def _where(o, rng: random.Random) -> str:
    col, row = COLUMNS[o.col], ROWS[o.row]
    if (col, row) == ("centre", "middle"):
        return rng.choice(("in the centre", "in the center", "in the middle"))
    if col == "centre":
        return rng.choice((f"at the {row}", f"at the {row} centre", f"at the {row} of the image"))
    if row == "middle":
        return rng.choice((f"on the {col}", f"on the {col} side", f"at the {col}"))
    return rng.choice((f"in the {row} {col} corner", f"in the {row} {col}", f"at the {row} {col}"))


def _short_where(o) -> str:
    words = [w for w in (ROWS[o.row], COLUMNS[o.col]) if w not in ("middle", "centre")]
    return " ".join(words) or "centre"


def _listing(scene, rng: random.Random, specific: bool) -> tuple[str, tuple]:
    phrase = _phrase_maker(specific)
    pairs = [phrase(o, rng) for o in rng.sample(scene.objects, len(scene.objects))]
    texts = [t for t, _ in pairs]
    text = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]
    return text, ("all", tuple(np for _, np in pairs))


def _count(scene, rng: random.Random) -> str:
    n = len(scene.objects)
    if n == 1:
        return rng.choice(("a single shape", "one shape", "one object", "a single object"))
    return f"{('two', 'three')[n - 2]} {rng.choice(('shapes', 'objects', 'figures'))}"


# ----------------------------------------------------------------------------- templates
def _object_templates(scene, o, rng: random.Random, specific: bool) -> list:
    """Templates about one object (and the scene's background)."""
    _noun_phrase = _phrase_maker(specific)

    def at():
        text, np = _noun_phrase(o, rng)
        return f"{text} {_where(o, rng)}", ("at", np, o.row, o.col)

    def there_is():
        text, np = _noun_phrase(o, rng)
        return f"there is {text} {_where(o, rng)}", ("at", np, o.row, o.col)

    def on_background():
        text, np = _noun_phrase(o, rng)
        return f"{text} on a {scene.background} background", ("on_bg", np, scene.background)

    def attributes():
        text = f"{rng.choice(SHAPE_WORDS[o.shape])}, {o.colour}, {rng.choice(SIZE_WORDS[o.size])}, {_short_where(o)}"
        return text, ("at", (o.shape, o.colour, o.size), o.row, o.col)

    return [at, there_is, on_background, attributes]


def _scene_templates(scene, rng: random.Random, specific: bool) -> list:
    """Templates about the whole scene: listings and counts."""
    def picture():
        prefix = rng.choice(("a picture of", "an image of", "a drawing of"))
        text, meaning = _listing(scene, rng, specific)
        return f"{prefix} {text}", meaning

    def counted():
        count = _count(scene, rng)
        text, meaning = _listing(scene, rng, specific)
        return f"{count}: {text}", meaning

    def count_background():
        return f"{_count(scene, rng)} on a {scene.background} background", ("count_bg", len(scene.objects), scene.background)

    return [picture, counted] + ([] if specific else [count_background])


def _relation_templates(scene, rng: random.Random, specific: bool) -> list:
    _noun_phrase = _phrase_maker(specific)
    if len(scene.objects) < 2:
        return []
    a, b = rng.sample(scene.objects, 2)
    phrase = rng.choice(relations(a, b))
    rel = next(r for r, phrases in _REL_PHRASES.items() if phrase in phrases)

    def plain():
        (ta, na), (tb, nb) = _noun_phrase(a, rng), _noun_phrase(b, rng)
        return f"{ta} {phrase} {tb}", ("rel", na, rel, nb)

    def is_rel():
        (ta, na), (tb, nb) = _noun_phrase(a, rng), _noun_phrase(b, rng)
        return f"{ta} is {phrase} {tb}", ("rel", na, rel, nb)

    def with_it():
        (tb, nb), (ta, na) = _noun_phrase(b, rng), _noun_phrase(a, rng)
        return f"{tb} with {ta} {phrase} it", ("rel", na, rel, nb)

    def attributes():
        size_word = rng.choice(SIZE_WORDS[a.size])
        tb, nb = _noun_phrase(b, rng)
        text = f"{a.shape}, {a.colour}, {size_word}, {phrase} {tb}"
        return text, ("rel", (a.shape, a.colour, a.size), rel, nb)

    return [plain, is_rel, with_it, attributes]


def random_caption(scene, rng: random.Random, specific: bool = False) -> tuple[str, tuple]:
    """One (caption, meaning) true of ``scene``. ``specific``: every noun phrase names size and
    colour, and the two background templates ("two shapes on a dark background", "a circle on a
    light background") are dropped, so a caption is true of few scenes (see ``docs/testbed.md``)."""
    o = rng.choice(scene.objects)
    at, there_is, on_background, attributes = _object_templates(scene, o, rng, specific)
    picture, counted, *count_background = _scene_templates(scene, rng, specific)
    # version 1's template order (so its captions are reproduced exactly when not specific)
    templates = [at, there_is, picture, counted] + ([] if specific else [on_background]) + count_background
    templates += [attributes] + _relation_templates(scene, rng, specific)
    return rng.choice(templates)()


def make_captions(scene, rng: random.Random, k: int, specific: bool = False) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    """``k`` distinct captions, all true of ``scene``, and their meanings."""
    captions: list[str] = []
    meanings: list[tuple] = []
    for _ in range(200 * k):
        caption, meaning = random_caption(scene, rng, specific)
        if caption not in captions:
            captions.append(caption)
            meanings.append(meaning)
            if len(captions) == k:
                return tuple(captions), tuple(meanings)
    raise ConfigError(f"could not find {k} distinct captions for {scene.description()!r}; lower captions_per_image")


# ----------------------------------------------------------------------------- truth
def _matches(np: Any, o) -> bool:
    shape, colour, size = np
    return o.shape == shape and colour in (None, o.colour) and size in (None, o.size)


def is_true_of(meaning: Any, scene) -> bool:
    """Whether a caption with ``meaning`` (a tuple, or the list JSON makes of it) describes ``scene``."""
    kind = meaning[0]
    objects = scene.objects
    if kind == "at":
        _, np, row, col = meaning
        return any(o.row == row and o.col == col and _matches(np, o) for o in objects)
    if kind == "on_bg":
        return scene.background == meaning[2] and any(_matches(meaning[1], o) for o in objects)
    if kind == "count_bg":
        return scene.background == meaning[2] and len(objects) == meaning[1]
    if kind == "all":
        nps = meaning[1]
        return len(nps) == len(objects) and any(
            all(_matches(np, o) for np, o in zip(nps, perm)) for perm in itertools.permutations(objects))
    if kind == "rel":
        _, na, rel, nb = meaning
        return any(_matches(na, a) and _matches(nb, b) and rel in _true_relations(a, b)
                   for a, b in itertools.permutations(objects, 2))
    raise ValueError(f"unknown caption meaning {meaning!r}")


def freeze(meaning: Any) -> tuple:
    """A meaning read back from JSON (nested lists) as the hashable tuple the generator made."""
    return tuple(freeze(x) if isinstance(x, list) else x for x in meaning)


def _canonical(meaning: tuple) -> tuple:
    """``meaning`` with a listing's phrases in a fixed order (a listing is order-free)."""
    if meaning[0] == "all":
        return ("all", tuple(sorted(meaning[1], key=lambda np: tuple(x or "" for x in np))))
    return meaning


def _phrases_of(o) -> list[tuple]:
    """Every noun-phrase meaning true of object ``o`` (size and colour each optional)."""
    return [(o.shape, c, s) for c in (o.colour, None) for s in (o.size, None)]


def true_meanings(scene) -> set[tuple]:
    """Every (canonical) meaning the generator's language can assert of ``scene``.

    The enumeration that makes the oracle fast (one dictionary look-up per caption instead of a
    check against every image); :func:`is_true_of` is the definition it is tested against.
    """
    objects = scene.objects
    out: set[tuple] = {("count_bg", len(objects), scene.background)}
    for o in objects:
        for np in _phrases_of(o):
            out.add(("at", np, o.row, o.col))
            out.add(("on_bg", np, scene.background))
    for combo in itertools.product(*(_phrases_of(o) for o in objects)):
        out.add(_canonical(("all", combo)))
    for a, b in itertools.permutations(objects, 2):
        for rel in _true_relations(a, b):
            out.update(("rel", na, rel, nb) for na in _phrases_of(a) for nb in _phrases_of(b))
    return out


def truth_index(scenes: list, meanings: list) -> list[list[int]]:
    """For each meaning, the positions of the scenes it is true of."""
    where: dict[tuple, list[int]] = {}
    for position, scene in enumerate(scenes):
        for key in true_meanings(scene):
            where.setdefault(key, []).append(position)
    return [where.get(_canonical(freeze(m)), []) for m in meanings]
