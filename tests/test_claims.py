"""experiments/tables/claims.py: verdicts from results files (supported / contradicted / not distinguishable / not run)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "tables"))
import claims  # noqa: E402


def runs(values: list[float], metric: str = "rsum") -> dict:
    return {str(s): {metric: v, "i2i_r1": v / 10, "t2t_r1": v / 10} for s, v in enumerate(values)}


def write(folder: Path, name: str, data: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_verdicts_follow_the_paired_ci(tmp_path):
    base = [100.0, 110.0, 120.0, 105.0, 115.0]
    write(tmp_path, "cots_ablation", {"runs": {
        "1_itc": runs(base),
        "2_queue": runs([b + 10 + (s % 2) for s, b in enumerate(base)]),   # always better: supported
        "3_mlm": runs([b + 8 - 3 * s for s, b in enumerate(base)]),         # noisy queue-relative gain
        "4_mvm": runs([b - 5 for b in base]),                               # worse than the queue row
    }})
    write(tmp_path, "tables", {"runs": {"single_stream": runs([200.0, 210.0, 190.0]),
                                              "vldeformer": runs([100.0, 105.0, 95.0])}})
    lines = claims.claims_lines(tmp_path)
    by_claim = {line.split(" | ")[1]: line for line in lines[2:]}
    instance = next(v for k, v in by_claim.items() if k.startswith("instance level"))
    assert instance.endswith("| **supported** |") and "5 paired seeds" in instance
    assert next(v for k, v in by_claim.items() if "masked vision" in k).endswith("| **contradicted** |")
    assert next(v for k, v in by_claim.items() if "KL alignment" in k).endswith("| not measured yet |")
    assert next(v for k, v in by_claim.items() if "equal-budget" in k).endswith("| not measured yet |")
    drop = next(v for k, v in by_claim.items() if k.startswith("decomposing"))
    assert "RSUM drop 50.0 %" in drop and drop.endswith("| **contradicted** |")
    assert next(v for k, v in by_claim.items() if "10,800" in k).endswith("| not measured yet |")


def test_drop_reads_the_controlled_experiment_and_flags_a_weak_cross_encoder(tmp_path):
    write(tmp_path, "tables", {"runs": {"single_stream": runs([200.0, 210.0]), "vldeformer": runs([100.0, 105.0])}})
    write(tmp_path, "vldeformer_controlled", {"runs": {"stage1_subset": runs([100.0, 120.0, 110.0]),
                                                       "decomposed_subset": runs([150.0, 170.0, 168.0]),
                                                       "stage1_two_stream_subset": runs([160.0, 180.0, 165.0])}})
    drop = next(line for line in claims.claims_lines(tmp_path) if "decomposing" in line)
    assert "`vldeformer_controlled`" in drop and "3 seeds" in drop  # the controlled runs win over tables.json
    assert "(`stage1_two_stream`) already reach 153.3 %" in drop
    assert drop.endswith("| **supported**, against a cross-encoder weaker than its own unimodal passes |")
    write(tmp_path, "vldeformer_controlled", {"runs": {"stage1_subset": runs([200.0, 210.0, 190.0]),
                                                       "decomposed_subset": runs([199.9, 209.9, 189.9]),
                                                       "stage1_two_stream_subset": runs([100.0, 105.0, 95.0])}})
    drop = next(line for line in claims.claims_lines(tmp_path) if "decomposing" in line)
    assert "already reach 50.0 % of the cross-encoder's RSUM |" in drop and drop.endswith("| **supported** |")
    # without a decomposed row the drop comes from tables.json, whose seeds are not the controlled runs'
    write(tmp_path, "vldeformer_controlled", {"runs": {"stage1_two_stream_subset": runs([160.0, 180.0])}})
    drop = next(line for line in claims.claims_lines(tmp_path) if "decomposing" in line)
    assert "`tables`" in drop and "stage1_two_stream" not in drop and "RSUM drop 50.0 %" in drop


def test_speed_claims_and_the_script(tmp_path):
    rows = [{"key": "two-stream", "name": "two", "formula": "f", "speedup": 500.0},
            {"key": "decomposed", "name": "dec", "formula": "g", "speedup": 2000.0}]
    write(tmp_path, "efficiency_paper", {"derived": {"COCO 5K": {"rows": rows}, "Flickr30K 1K": {"rows": rows}}})
    claims.main(["--results", str(tmp_path), "--out", str(tmp_path / "claims")])
    md = (tmp_path / "claims.md").read_text()
    cots = next(line for line in md.splitlines() if "10,800" in line)
    cookie = next(line for line in md.splitlines() if "333" in line)
    vld = next(line for line in md.splitlines() if "1000+" in line)
    assert "**contradicted** (as a cost ratio)" in cots and "**supported** (as a cost ratio)" in cookie
    assert "2,000×" in vld and "**supported**" in vld
    data = json.loads((tmp_path / "claims.json").read_text())
    assert len(data["claims"]) == len(claims.GAINS) + 1 + len(claims.SPEEDS)
    assert {c["verdict"] for c in data["claims"]} >= {"not measured yet", "**supported** (as a cost ratio)"}


def test_readme_shows_the_claims_table_claims_py_wrote():
    """README's claims table is the committed claims.md table, line for line (regenerate both together)."""
    table = [line for line in (ROOT / "experiments" / "results" / "claims.md").read_text().splitlines()
             if line.startswith("|")]
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(table) > 3 and [line for line in table if line not in readme] == []
