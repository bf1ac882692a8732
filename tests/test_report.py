"""experiments/report.py: the one writer of every experiment's <out>.json + <out>.md, its machine facts and command."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import report  # noqa: E402


def test_write_report_writes_json_and_markdown(tmp_path):
    md, js = report.write_report(tmp_path / "sub" / "bench", {"path": tmp_path, "x": 1.5}, ["# title", "", "| a |", ""])
    assert (md, js) == (tmp_path / "sub" / "bench.md", tmp_path / "sub" / "bench.json")
    assert md.read_text() == "# title\n\n| a |\n"  # exactly one trailing newline
    assert json.loads(js.read_text()) == {"path": str(tmp_path), "x": 1.5} and js.read_text().endswith("}\n")
    md, js = report.write_report(tmp_path / "only_md", None, "text")
    assert md.read_text() == "text\n" and js is None and not (tmp_path / "only_md.json").exists()


def test_machine_facts_line_and_command():
    m = report.machine(threads=3, PyAV="1.0")
    assert {"nproc", "cpu", "threads", "torch", "python", "loadavg", "date", "PyAV"} <= set(m) and m["threads"] == 3
    line = report.machine_line(m)
    assert line.startswith(f"nproc={m['nproc']}, {m['cpu']}") and "PyAV 1.0" in line and "3 torch thread(s)" in line
    script = ROOT / "experiments" / "benchmarks" / "efficiency.py"
    assert report.command(["--out", "a b"], script) == "python experiments/benchmarks/efficiency.py --out 'a b'"
