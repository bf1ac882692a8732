"""Hard-negative generators: valid near-miss captions/images, deterministic by (seed, key)."""
import random

import pytest
import torch

from twostream.methods.vldeformer.near_miss import (near_miss_captions, load_word_groups, mix_patches,
                                                 replace_words)

GROUPS = {"colour": ["red", "blue", "green"], "shape": ["circle", "square", "star"], "size": ["small", "large"]}
GROUP_OF = {w: g for g, ws in GROUPS.items() for w in ws}
CAPTION = "a small red circle at the top left"
LONG = "a small red circle, a large blue square; a green star and red circle, big"  # 10 vocab words


def _diff(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.split(), new.split()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


@pytest.mark.parametrize("seed", range(20))
def test_replaced_caption_stays_valid(seed):
    new, n = replace_words(CAPTION, GROUPS, 0.3, rng=random.Random(seed))
    diff = _diff(CAPTION, new)
    assert n == 1 == len(diff)  # 3 vocab words x 0.3 -> round(0.9) = 1
    (old, rep), = diff
    assert rep != old and GROUP_OF[rep] == GROUP_OF[old]


def test_fraction_of_ten_words_and_at_least_one():
    for seed in range(30):
        new, n = replace_words(LONG, GROUPS, 0.3, rng=random.Random(seed))
        diff = _diff(LONG, new)
        assert n == 3 == len(diff)
        for old, rep in diff:  # punctuation stays attached, words stay in their group
            old_w, rep_w = old.strip(",;"), rep.strip(",;")
            assert old[len(old_w):] == rep[len(rep_w):]
            assert rep_w != old_w and GROUP_OF[rep_w] == GROUP_OF[old_w]
        assert new.endswith(", big")  # "big" is not vocabulary
        one, n1 = replace_words("there is one star", GROUPS, 0.3, rng=random.Random(seed))
        assert n1 == 1 and one in {"there is one circle", "there is one square"}
        tiny, n0 = replace_words("a red star", GROUPS, 0.0, rng=random.Random(seed))
        assert n0 == 1 and len(_diff("a red star", tiny)) == 1


def test_whole_words_case_and_articles():
    groups = {"colour": ["orange", "red"], "shape": ["cross", "plus sign", "circle"]}
    new, n = replace_words("Circles, reddish REDS.", groups, rng=random.Random(0))
    assert (new, n) == ("Circles, reddish REDS.", 0)  # no whole-word match
    new, n = replace_words("Red. then red!", {"c": ["red", "blue"]}, 1.0, rng=random.Random(0))
    assert (new, n) == ("Blue. then blue!", 2)
    new, n = replace_words("A red dot", groups, 1.0, rng=random.Random(0))
    assert (new, n) == ("An orange dot", 1)
    new, n = replace_words("an orange dot", groups, 1.0, rng=random.Random(0))
    assert (new, n) == ("a red dot", 1)
    seen = {replace_words("a plus sign here", groups, 1.0, rng=random.Random(s))[0] for s in range(40)}
    assert seen == {"a cross here", "a circle here"}  # multi-word entries are one unit


def test_synonyms_never_replace_each_other():
    groups = load_word_groups({"shape": ["circle|disc", "square|box", "cross|plus sign"],
                               "size": ["small|tiny", "big"]})
    assert groups["shape"] == ("circle|disc", "square|box", "cross|plus sign")
    seen = set()
    for seed in range(60):
        new, n = replace_words("a tiny disc", groups, 1.0, rng=random.Random(seed))
        assert n == 2 and new.startswith("a big ") and new[6:] in {"square", "box", "cross", "plus sign"}
        seen.add(new)
    assert len(seen) == 4


def test_no_vocabulary_words_unchanged_and_flagged():
    plain = "two objects on a dark background"
    assert replace_words(plain, GROUPS, rng=random.Random(0)) == (plain, 0)
    out, valid = near_miss_captions([CAPTION, plain, LONG], GROUPS, 0.3, 7, [0, 1, 2])
    assert out[1] == plain and valid.dtype == torch.bool and valid.tolist() == [True, False, True]
    assert out[0] != CAPTION and out[2] != LONG


def test_batched_deterministic_by_seed_and_key():
    caps = [f"a {s} {c} {sh} at the top left" for s in GROUPS["size"] for c in GROUPS["colour"]
            for sh in GROUPS["shape"]] * 4
    keys = list(range(len(caps)))
    a, _ = near_miss_captions(caps, GROUPS, 0.3, 5, keys)
    b, _ = near_miss_captions(caps, GROUPS, 0.3, 5, keys)
    assert a == b
    # per-caption result depends only on (seed, key): reordering the batch reorders the output
    rev, _ = near_miss_captions(caps[::-1], GROUPS, 0.3, 5, keys[::-1])
    assert rev[::-1] == a
    single, _ = near_miss_captions([caps[10]], load_word_groups(GROUPS), 0.3, 5, [10])
    assert single == [a[10]]
    other_keys, _ = near_miss_captions(caps, GROUPS, 0.3, 5, [k + 1000 for k in keys])
    other_seed, _ = near_miss_captions(caps, GROUPS, 0.3, 6, keys)
    assert sum(x != y for x, y in zip(a, other_keys)) > len(caps) // 3
    assert sum(x != y for x, y in zip(a, other_seed)) > len(caps) // 3
    with pytest.raises(ValueError, match="one key per caption"):
        near_miss_captions(caps, GROUPS, 0.3, 5, keys[:-1])


def test_load_word_groups_sources(tmp_path):
    assert load_word_groups(GROUPS) == {g: tuple(ws) for g, ws in GROUPS.items()}
    assert load_word_groups(["Red", "blue", "red"]) == {"words": ("red", "blue")}
    path = tmp_path / "words.txt"
    path.write_text("# vocabulary\ncolour: red\ncolour:blue  # inline\n\nshape: plus  sign|Cross\nshape: star\n"
                    "tiny\nsmall\n")
    assert load_word_groups(str(path)) == {"colour": ("red", "blue"), "shape": ("plus sign|cross", "star"),
                                           "words": ("tiny", "small")}
    assert load_word_groups(path) == load_word_groups(str(path))


@pytest.mark.parametrize("source, match", [
    ({}, "no word groups"),
    ({"colour": []}, "'colour' is empty"),
    ({"colour": ["red", "Red "]}, "'colour' has only 'red'"),
    ({"colour": "red blue"}, "list of strings"),
    ({"a": ["red", "blue"], "b": ["red", "green"]}, "'red' is in group 'a' and again in group 'b'"),
    ({"a": ["red", "blue|red"]}, "'red' is in group 'a' and again in group 'a'"),
    ({"shape": ["circle|disc", "Disc "]}, "'shape' has only 'circle|disc'"),
    (["red"], "'words' has only"),
])
def test_load_word_groups_errors(source, match):
    with pytest.raises(ValueError, match=match):
        load_word_groups(source)


def test_word_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_word_groups(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    for text, match in [("colour: red\ncolour: blue\n: green\n", r"bad.txt:3: expected"),
                        ("colour: red\ncolour:\n", r"bad.txt:2: expected"),
                        ("a: b: c\n", r"bad.txt:1: expected"),
                        ("# only comments\n\n", "no word groups"),
                        ("colour: red\nshape: circle\nshape: star\n", r"bad.txt.*'colour' has only 'red'")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_word_groups(str(bad))


def _cells(x: torch.Tensor, p: int) -> torch.Tensor:  # [B, C, H, W] -> [B, cells, C*p*p]
    b, c, h, w = x.shape
    return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_mix_patches_cells_from_partner(dtype):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (6, 3, 16, 24), generator=g).to(dtype)  # distinct, 2x3 grid of 8px cells
    before = images.clone()
    mixed, partner = mix_patches(images, 8, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, before) and mixed.shape == images.shape and mixed.dtype == dtype
    assert partner.dtype == torch.long and sorted(partner.tolist()) == list(range(6))
    assert not (partner == torch.arange(6)).any()
    orig, mix, part = _cells(images, 8), _cells(mixed, 8), _cells(images[partner], 8)
    changed = (mix != orig).any(-1)
    assert changed.sum(1).tolist() == [3] * 6  # round(0.5 x 6)
    assert torch.equal(mix[changed], part[changed]) and torch.equal(mix[~changed], orig[~changed])
    mixed2, partner2 = mix_patches(images, 8, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mixed, mixed2) and torch.equal(partner, partner2)
    mixed3, _ = mix_patches(images, 8, 0.5, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(mixed, mixed3)


def test_mix_patches_partner_and_derangement():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        _, partner = mix_patches(torch.zeros(2 + _ % 5, 1, 4, 4), 2, generator=g)
        assert not (partner == torch.arange(len(partner))).any()
    images = torch.arange(3 * 16, dtype=torch.float32).view(3, 1, 4, 4)
    mixed, partner = mix_patches(images, 2, 1.0, partner=torch.tensor([2, 0, 1]))
    assert partner.tolist() == [2, 0, 1] and torch.equal(mixed, images[[2, 0, 1]])
    with pytest.raises(ValueError, match="partner"):
        mix_patches(images, 2, partner=torch.tensor([0, 2, 1]))


def test_mix_patches_errors():
    with pytest.raises(ValueError, match="at least 2 images"):
        mix_patches(torch.zeros(1, 3, 8, 8), 4)
    with pytest.raises(ValueError, match="10x8 is not a multiple of patch_size 4"):
        mix_patches(torch.zeros(2, 3, 10, 8), 4)
    with pytest.raises(ValueError, match="B, C, H, W"):
        mix_patches(torch.zeros(2, 8, 8), 4)
