"""The user's entry point, end to end: `twostream fit` on the default config (tiny sizes), offline."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twostream.cli import run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "experiments" / "pretrain" / "default.yaml")


def tiny_args(tmp: Path, *extra: str) -> list[str]:
    return ["--config", DEFAULT, f"--data.init_args.root={tmp / 'data'}", "--data.init_args.num_train=128",
            "--data.init_args.num_val=24", "--data.init_args.num_test=30", "--data.init_args.batch_size=32",
            "--trainer.max_epochs=1", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}", *extra]


class NoNetwork:
    """Records (and refuses) every attempt to resolve a host name or connect a socket."""

    def __init__(self, monkeypatch):
        self.attempts: list[str] = []
        real_connect = socket.socket.connect

        def connect(sock, address):
            if sock.family == socket.AF_UNIX:
                return real_connect(sock, address)
            self.attempts.append(f"connect {address}")
            raise OSError("network disabled in this test")

        def getaddrinfo(host, *args, **kwargs):
            self.attempts.append(f"getaddrinfo {host}")
            raise OSError("network disabled in this test")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", lambda *a, **k: getaddrinfo(a[0][0]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    guard = NoNetwork(mp)
    try:
        cli = run(["fit", *tiny_args(tmp, "--trainer.check_val_every_n_epoch=1")])
    finally:
        mp.undo()
    return tmp, cli, guard.attempts


def test_fit_then_test_writes_metrics_checkpoint_and_logs(finished_run, capsys):
    tmp, cli, _ = finished_run
    run_dir = Path(cli.trainer.logger.log_dir)
    assert run_dir.parent.parent == tmp / "runs"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert 0.0 <= metrics[key] <= 100.0 or key == "rsum"
    assert metrics["rsum"] == pytest.approx(sum(metrics[k] for k in
                                                ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")), abs=1e-3)
    assert metrics["i2t_r1"] <= metrics["i2t_r5"] <= metrics["i2t_r10"]
    # the synthetic test split's oracle ceiling, and the result as a share of it
    assert 0 < metrics["oracle"]["t2i_r1"] <= 100 and metrics["oracle"]["t2i_r10"] >= metrics["oracle"]["t2i_r1"]
    assert metrics["pct_of_oracle"]["rsum"] == pytest.approx(100 * metrics["rsum"] / metrics["oracle"]["rsum"], abs=0.01)
    # the last validation pass, for sweeps that pick settings on validation and report test
    val = metrics["val"]
    assert val["rsum"] == pytest.approx(sum(val[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")),
                                        abs=1e-3)
    assert val["i2t_r1"] <= val["i2t_r5"] <= val["i2t_r10"] and val != {k: metrics[k] for k in val if k in metrics}
    from twostream.callbacks.run_summary import format_table

    assert "| oracle ceiling |" in format_table(metrics) and "| % of ceiling |" in format_table(metrics)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (run_dir / "config.yaml").is_file()


def test_default_config_opens_no_network_socket(finished_run):
    _, _, attempts = finished_run
    assert attempts == []


def test_test_subcommand_from_checkpoint_reproduces_metrics(finished_run):
    tmp, cli, _ = finished_run
    run_dir = Path(cli.trainer.logger.log_dir)
    first = json.loads((run_dir / "metrics.json").read_text())
    again = run(["test", *tiny_args(tmp), f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    second = json.loads((Path(again.trainer.logger.log_dir) / "metrics.json").read_text())
    for key in ("i2t_r1", "t2i_r1", "rsum"):
        assert second[key] == pytest.approx(first[key], abs=1e-4)


def _stderr_of_failed_run(args, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code != 0
    return capsys.readouterr().err


def test_unknown_model_key_lists_valid_arguments(tmp_path, capsys):
    err = _stderr_of_failed_run(["fit", *tiny_args(tmp_path), "--model.init_args.embedd_dim=3"], capsys)
    assert "'embedd_dim' is not an argument of twostream.encoder.TwoStreamEncoder" in err
    assert "embed_dim" in err.split("valid:")[-1]


def test_unknown_head_lists_valid_heads(tmp_path, capsys):
    err = _stderr_of_failed_run(["fit", *tiny_args(tmp_path), "--model.init_args.heads=[{class_path: NoSuchHead}]"],
                                capsys)
    assert "unknown class NoSuchHead" in err
    assert "InBatchContrastive" in err.split("objectives (heads):")[-1].splitlines()[0]


def test_missing_config_file_is_named(tmp_path, capsys):
    err = _stderr_of_failed_run(["fit", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml" in err


def test_python_dash_m_entry_point_prints_help():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "twostream", "fit", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--test_after_fit" in out.stdout
