"""The oracle ceiling: closed forms against a hand-computed split, and caption meanings against scenes."""
import random

import pytest

from twostream.data.synthetic.shapes import Scene, ShapeObject, ShapesConfig, generate_all, scene_from_description
from twostream.data.synthetic.shapes_captions import is_true_of, make_captions, true_meanings, truth_index
from twostream.metrics.oracle import oracle_recall


def test_oracle_recall_matches_a_hand_computed_split():
    # 3 images; captions 0,1 belong to image 0, caption 2 to image 1, caption 3 to image 2.
    # caption 0 is true of images {0, 1}; caption 1 only of {0}; caption 2 of {0, 1, 2}; caption 3 of {2}.
    truth = [[0, 1], [0], [0, 1, 2], [2]]
    out = oracle_recall(truth, [0, 0, 1, 2], num_images=3, ks=(1, 2))
    # t2i R@1 = mean(1/2, 1, 1/3, 1) = 17/24; R@2 = mean(1, 1, 2/3, 1) = 11/12
    assert out["t2i_r1"] == pytest.approx(100 * 17 / 24)
    assert out["t2i_r2"] == pytest.approx(100 * 11 / 12)
    # image 0: true captions {0, 1, 2} (m=3), own {0, 1} (p=2): R@1 = 2/3, R@2 = 1 - C(1,2)/C(3,2) = 1
    # image 1: true {0, 2} (m=2), own {2} (p=1): R@1 = 1/2, R@2 = 1
    # image 2: true {2, 3} (m=2), own {3} (p=1): R@1 = 1/2, R@2 = 1
    assert out["i2t_r1"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert out["i2t_r2"] == pytest.approx(100.0)
    assert out["rsum"] == pytest.approx(sum(out[k] for k in ("i2t_r1", "i2t_r2", "t2i_r1", "t2i_r2")))


def test_oracle_recall_of_unambiguous_captions_is_perfect_and_wrong_truth_is_refused():
    out = oracle_recall([[0], [0], [1]], [0, 0, 1], num_images=2, ks=(1,))
    assert out["i2t_r1"] == out["t2i_r1"] == 100.0
    with pytest.raises(ValueError, match="not true of its own image"):
        oracle_recall([[1]], [0], num_images=2)


def test_every_caption_is_true_of_its_scene_and_the_enumeration_equals_the_definition():
    records = generate_all(ShapesConfig(num_train=10, num_val=10, num_test=300, seed=3))["test"]
    scenes = [r.scene for r in records]
    meanings = [m for r in records for m in r.meanings]
    index = truth_index(scenes, meanings)
    rng = random.Random(0)
    for j in rng.sample(range(len(meanings)), 400):
        for i in rng.sample(range(len(scenes)), 40):
            assert is_true_of(meanings[j], scenes[i]) == (i in index[j])
    own = [i for i, r in enumerate(records) for _ in r.captions]
    assert all(i in truth for i, truth in zip(own, index))
    assert all(scene_from_description(s.description()).description() == s.description() for s in scenes)


def test_meanings_follow_the_words():
    a = ShapeObject("circle", "red", "large", col=0, row=0)
    b = ShapeObject("square", "blue", "small", col=2, row=0)
    scene = Scene((a, b), "dark")
    assert is_true_of(("rel", ("circle", "red", None), "left", ("square", None, "small")), scene)
    assert not is_true_of(("rel", ("circle", "red", None), "right", ("square", None, "small")), scene)
    assert is_true_of(("at", ("square", None, None), 0, 2), scene)
    assert not is_true_of(("at", ("square", None, None), 0, 1), scene)
    assert is_true_of(("all", (("square", "blue", "small"), ("circle", None, None))), scene)
    assert not is_true_of(("all", (("circle", None, None),)), scene)  # a listing names every object
    assert is_true_of(("count_bg", 2, "dark"), scene) and not is_true_of(("count_bg", 2, "light"), scene)
    assert ("rel", ("square", "blue", "small"), "next", ("circle", None, None)) not in true_meanings(scene)


def test_specific_captions_name_size_and_colour_of_every_object():
    rng = random.Random(1)
    scene = Scene((ShapeObject("star", "green", "small", 1, 1), ShapeObject("cross", "pink", "large", 0, 2)), "light")
    captions, meanings = make_captions(scene, rng, 12, specific=True)
    assert all("background" not in c for c in captions)
    for meaning in meanings:
        phrases = {"at": lambda m: [m[1]], "all": lambda m: list(m[1]), "rel": lambda m: [m[1], m[3]]}[meaning[0]](meaning)
        assert all(colour is not None and size is not None for _, colour, size in phrases), meaning
