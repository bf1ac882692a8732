"""`make tables` in its CI-sized mode: every row of every table runs end to end and is reused after."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "tables" / "make_tables.py"


def test_fast_tables_run_every_row_and_reuse_finished_runs(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--fast", "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (tmp_path / "tables.md").read_text()
    assert "FAST RUN CHECK, NOT RESULTS" in report
    data = json.loads((tmp_path / "tables.json").read_text())
    assert set(data["image_text"]) == {"clip", "cots", "cookie", "single_stream", "vldeformer"}
    for key, runs in data["image_text"].items():  # keyed by seed
        assert list(runs) == ["0"] and 0 <= runs["0"]["rsum"] <= 600, key
    assert list(data["video"]) == ["0"] and "t2i_medr" in data["video"]["0"]
    assert set(data["rsum_vs_clip"]) == {"cots", "cookie"}  # the rows on the CLIP baseline's test split
    assert "± n/a" in report and "Δ RSUM vs CLIP-style baseline [95 % CI]" in report  # one seed: no CI, said so
    assert "not compared (other test split)" in report
    for title in ("CLIP-style baseline", "COTS", "COOKIE", "Single-stream", "VLDeformer", "VLDeformer vs. the single-stream",
                  "Text-to-video", "COTS ablation", "Retrieval efficiency"):
        assert title in report, title
    assert (tmp_path / "tables.png").stat().st_size > 0
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("[reuse]") == 6 and "[run]" not in again.stdout
