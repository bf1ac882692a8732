"""experiments/diagnostics/queue_false_negatives.py: exact expectations, and the script on a generated split."""
import json
import math
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "diagnostics"))
sys.path.insert(0, str(ROOT / "experiments"))
import queue_false_negatives as qfn  # noqa: E402


def test_binomial_expectations_match_sampling():
    n, p = 300, 0.004
    mean, floor, hit = qfn.binomial_expectations(n, p)
    rng = random.Random(0)
    draws = [sum(rng.random() < p for _ in range(n)) for _ in range(20000)]
    assert mean == pytest.approx(n * p)
    assert floor == pytest.approx(sum(math.log1p(x) for x in draws) / len(draws), abs=0.01)
    assert hit == pytest.approx(sum(1 / (1 + x) for x in draws) / len(draws), abs=0.01)
    assert qfn.binomial_expectations(50, 0.0) == (0.0, 0.0, 1.0)


def test_rows_grow_with_the_queue_and_count_only_other_images():
    # 4 images; caption 0 is true of images 0 and 1, the others of their own image only
    truth = [[0, 1], [1], [2], [3]]
    rows = qfn.false_negative_rows(truth, num_images=4, batch=2, steps=10, queues=(0, 2))
    assert [r["negatives"] for r in rows] == [1, 3]
    # one caption in four has a false-negative probability of 1/3 per negative
    assert rows[0]["false_negatives"] == pytest.approx(0.25 * 1 / 3)
    assert rows[1]["false_negatives"] == pytest.approx(0.25 * 3 / 3)
    assert rows[1]["oldest_key_steps"] == 1 and rows[1]["span_of_run"] == pytest.approx(0.1)
    assert rows[0]["loss_floor"] < rows[1]["loss_floor"] < rows[1]["chance_loss"]


def test_script_on_a_generated_split(tmp_path):
    qfn.main(["--root", str(tmp_path / "data"), "--num-train", "60", "--batch", "8", "--queues", "0", "16",
              "--out", str(tmp_path / "fn")])
    data = json.loads((tmp_path / "fn.json").read_text())
    assert data["stats"]["images"] == 60 and data["stats"]["mean_m"] >= 1
    assert [r["queue"] for r in data["rows"]] == [0, 16]
    assert "| 16 | 23 |" in (tmp_path / "fn.md").read_text()
