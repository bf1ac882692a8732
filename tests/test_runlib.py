"""Sweep reuse (experiments/runlib.py): a finished run is handed back only if it was made of the same configs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import runlib  # noqa: E402


def fake_fit(calls):
    """Stands in for `python -m twostream fit`: writes the metrics.json RunSummary would write."""
    def run(cmd, **kwargs):
        version = next(a.split("=", 1)[1] for a in cmd if a.startswith("--trainer.logger.init_args.version="))
        root = Path(next(a.split("=", 1)[1] for a in cmd if a.startswith("--trainer.logger.init_args.save_dir=")))
        name = next(a.split("=", 1)[1] for a in cmd if a.startswith("--trainer.logger.init_args.name="))
        out = root / name / version
        out.mkdir(parents=True, exist_ok=True)
        calls.append(cmd)
        (out / "metrics.json").write_text(json.dumps({"rsum": float(len(calls))}))
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_reuse_only_when_configs_unchanged(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runlib.subprocess, "run", fake_fit(calls))
    row = tmp_path / "row.yaml"
    row.write_text("model: {init_args: {lr: 0.1}}\n")
    workdir = tmp_path / "runs" / "sweep"
    first, _ = runlib.run_fit([str(row)], "row_seed0", 0, workdir)
    again, _ = runlib.run_fit([str(row)], "row_seed0", 0, workdir)
    assert len(calls) == 1 and again["rsum"] == first["rsum"] == 1.0 and "[reuse] row_seed0" in capsys.readouterr().out
    # another seed or other extra arguments are other runs, even under the same name
    assert runlib.run_key([str(row)], 0) != runlib.run_key([str(row)], 1) != runlib.run_key([str(row)], 1, ["--x=1"])
    row.write_text("model: {init_args: {lr: 0.2}}\n")  # a tuned value written into the row
    changed, _ = runlib.run_fit([str(row)], "row_seed0", 0, workdir)
    assert len(calls) == 2 and changed["rsum"] == 2.0
    assert "[stale] row_seed0: its configs changed" in capsys.readouterr().out
    assert len(list(workdir.glob("row_seed0.stale-*"))) == 1  # the old run is kept aside, not deleted
    assert json.loads((workdir / "row_seed0" / "metrics.json").read_text())["run_key"] == runlib.run_key([str(row)], 0)


def test_records_from_before_keys_are_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runlib.subprocess, "run", fake_fit(calls))
    row = tmp_path / "row.yaml"
    row.write_text("{}\n")
    (tmp_path / "runs" / "sweep" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "sweep" / "old" / "metrics.json").write_text(json.dumps({"rsum": 7.0}))
    saved, _ = runlib.run_fit([str(row)], "old", 0, tmp_path / "runs" / "sweep")
    assert saved["rsum"] == 7.0 and not calls


def test_restored_records_are_reused_only_while_their_row_is_unchanged(tmp_path, monkeypatch, capsys):
    """A results JSON's run records, put back by restore_runs.py, spare the runs of unchanged rows."""
    import restore_runs
    calls = []
    monkeypatch.setattr(runlib.subprocess, "run", fake_fit(calls))
    same, edited = tmp_path / "a.yaml", tmp_path / "b.yaml"
    same.write_text("model: {init_args: {lr: 0.1}}\n")
    edited.write_text("model: {init_args: {lr: 0.1}}\n")
    records = {"a": {"0": {"rsum": 7.0, "run_key": runlib.run_key([str(same)], 0)}},
               "b": {"0": {"rsum": 8.0, "run_key": runlib.run_key([str(edited)], 0)}},
               "c": {"0": {"rsum": 9.0}}}  # no key: cannot be checked, not restored
    results = tmp_path / "sweep.json"
    results.write_text(json.dumps({"runs": records}))
    workdir = tmp_path / "runs" / "sweep"
    restore_runs.main([str(results), "--workdir", str(workdir)])
    assert "1 without a run_key skipped" in capsys.readouterr().out and not (workdir / "c_seed0").exists()
    edited.write_text("model: {init_args: {lr: 0.2}}\n")  # row b changed after its runs
    a, _ = runlib.run_fit([str(same)], "a_seed0", 0, workdir)
    b, _ = runlib.run_fit([str(edited)], "b_seed0", 0, workdir)
    assert a["rsum"] == 7.0 and b["rsum"] == 1.0 and len(calls) == 1  # only the edited row ran
    # a second restore leaves both alone: b's record is now the rerun's, not overwritten by the old one
    assert restore_runs.restore(results, workdir) == {"restored": 0, "kept": 2, "skipped": 1}
    assert json.loads((workdir / "b_seed0" / "metrics.json").read_text())["rsum"] == 1.0


def test_restore_names_a_file_that_is_not_a_sweep(tmp_path):
    import restore_runs
    bad = tmp_path / "tables.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match=r"tables.json: expected a sweep's results JSON"):
        restore_runs.restore(bad, tmp_path / "w")
