"""`make tables` in its CI-sized mode: every row of every table runs end to end and is reused after."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "tables" / "make_tables.py"


def test_fast_tables_run_every_row_and_reuse_finished_runs(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--fast", "--jobs", "2", "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (tmp_path / "tables.md").read_text()
    assert "FAST RUN CHECK, NOT RESULTS" in report
    data = json.loads((tmp_path / "tables.json").read_text())
    runs = data["runs"]  # the reuse records, as experiments/restore_runs.py reads them
    assert set(runs) == {"clip", "cots", "cookie", "single_stream", "vldeformer", "video"}
    for key in ("clip", "cots", "cookie", "single_stream", "vldeformer"):  # keyed by seed
        assert list(runs[key]) == ["0"] and 0 <= runs[key]["0"]["rsum"] <= 600 and "run_key" in runs[key]["0"], key
    assert list(runs["video"]) == ["0"] and "t2i_medr" in runs["video"]["0"]
    assert data["partial"] is None and data["jobs"] == 2
    assert set(data["rsum_vs_clip"]) == {"cots", "cookie"}  # the rows on the CLIP baseline's test split
    assert "± n/a" in report and "Δ RSUM vs CLIP-style baseline [95 % CI]" in report  # one seed: no CI, said so
    assert "not compared (other test split)" in report
    assert report.count("*oracle ceiling*") == 2  # one per test split (the full one, the 100-image rows' subset)
    assert "RSUM % of oracle" in report
    for title in ("CLIP-style baseline", "COTS", "COOKIE", "Single-stream", "VLDeformer", "VLDeformer vs. the single-stream",
                  "Text-to-video", "COTS ablation", "Retrieval efficiency"):
        assert title in report, title
    assert (tmp_path / "tables.png").stat().st_size > 0
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("[reuse]") == 6 and "[run]" not in again.stdout

    # another clone: only the committed tables.json is left; restore_runs.py puts the records back, and the
    # VLDeformer run still to do (its record dropped here) gets its single-stream checkpoint trained again
    restore = ROOT / "experiments" / "restore_runs.py"
    shutil.rmtree(tmp_path / "runs")
    restored = subprocess.run([sys.executable, str(restore), str(tmp_path / "tables.json"), "--workdir", str(tmp_path / "runs")],
                              capture_output=True, text=True)
    assert restored.returncode == 0 and "6 record(s) written" in restored.stdout, restored.stdout + restored.stderr
    shutil.rmtree(tmp_path / "runs" / "vldeformer_seed0")
    third = subprocess.run(cmd, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[rerun] single_stream_seed0: VLDeformer needs its checkpoint" in third.stdout
    assert third.stdout.count("[run]") == 2 and third.stdout.count("[reuse]") == 5  # + single_stream before its rerun
    # the report alone, runs asked for but not there: it runs nothing and says which rows are short
    shutil.rmtree(tmp_path / "runs" / "cots_seed0")
    only = subprocess.run([*cmd, "--report-only"], capture_output=True, text=True)
    assert only.returncode == 0 and "[run]" not in only.stdout, only.stderr[-3000:]
    assert "Incomplete: seeds finished so far, of those asked for: cots 0 of 1." in (tmp_path / "tables.md").read_text()
