"""Faults and bad input through the user's entry point (issue 14): interrupted runs resume exactly,
``--ckpt_path last`` resumes in place, NaN stops, checkpoints survive a kill inside the save,
bad-data fractions are exact, user errors read as one message, a missing val split is optional.

Faults are injected, never timed: a callback signals its own process at a chosen step
(``fault_utils.SignalAt``), another fills one batch with NaN, and ``TWOSTREAM_FAULT_SAVE`` ends the
process inside a checkpoint write. Runs that end their process (kill, DDP) are subprocesses; the
rest call ``twostream.cli.main`` in this process (tiny towers, 4 steps per epoch).
"""
from __future__ import annotations

import os
import shlex
from types import SimpleNamespace

import pytest
import torch
from fault_utils import albef_config, albef_folder, assert_same_training_state, load, run_cli, tiny_args

from twostream.checkpoint_io import FAULT_ENV, _Fault, atomic_torch_save
from twostream.cli import main
from twostream.encoder import TwoStreamEncoder

NO_TEST = "--test_after_fit=false"


def cli(args: list[str]) -> int:
    """``twostream ARGS`` in this process; its exit status."""
    try:
        main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


# ----------------------------------------------------------------------------- 1. interruption
@pytest.mark.slow
def test_sigterm_mid_epoch_saves_the_position_and_the_resume_is_bit_exact(tmp_path, monkeypatch, capsys):
    assert cli(["fit", *tiny_args(tmp_path, NO_TEST, name="straight", workers=1)]) == 0
    monkeypatch.setenv("TWOSTREAM_TEST_SIGNAL", "SIGTERM:5")  # during step 6 of 8 (epoch 1, batch 2 of 4)
    args = ["fit", *tiny_args(tmp_path, NO_TEST, "--trainer.callbacks+=fault_utils.SignalAt", name="cut", workers=1)]
    capsys.readouterr()
    assert cli(args) == 143
    err = capsys.readouterr().err
    run_dir = tmp_path / "runs" / "cut" / "version_0"
    assert f"training stopped after step 6 (epoch 1, batch 2 of 4); checkpoint: {run_dir}/checkpoints/last.ckpt" in err
    command = err.split("resume with:\n")[1].strip().splitlines()[0]
    assert command == shlex.join(["twostream", *args, "--ckpt_path", str(run_dir)])
    cut = load(run_dir / "checkpoints" / "last.ckpt")
    assert cut["global_step"] == 6 and cut["SyntheticShapesDataModule"]["train_position"] == {"epoch": 1, "batches": 2}

    monkeypatch.delenv("TWOSTREAM_TEST_SIGNAL")
    assert cli(shlex.split(command)[1:]) == 0
    assert "resuming" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]  # in place, no new version
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert_same_training_state(load(run_dir / "checkpoints" / "last.ckpt"),
                               load(tmp_path / "runs" / "straight" / "version_0" / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_sigint_exits_130_and_ckpt_path_last_resumes_the_newest_run_in_place(tmp_path, monkeypatch, capsys):
    assert cli(["fit", *tiny_args(tmp_path, "--ckpt_path", "last", name="ctrlc")]) == 2  # nothing to resume
    assert f"nothing to resume: no runs in {tmp_path / 'runs' / 'ctrlc'}" in capsys.readouterr().err
    monkeypatch.setenv("TWOSTREAM_TEST_SIGNAL", "SIGINT:2")
    assert cli(["fit", *tiny_args(tmp_path, NO_TEST, "--trainer.callbacks+=fault_utils.SignalAt", name="ctrlc",
                                  epochs=1)]) == 130
    assert "SIGINT: training stopped after step 3 (epoch 0, batch 3 of 4)" in capsys.readouterr().err
    (tmp_path / "runs" / "ctrlc" / "version_1").mkdir()  # a newer run that died before its first checkpoint
    monkeypatch.delenv("TWOSTREAM_TEST_SIGNAL")
    assert cli(["fit", *tiny_args(tmp_path, NO_TEST, "--ckpt_path", "last", name="ctrlc", epochs=1)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {tmp_path / 'runs' / 'ctrlc' / 'version_0'} from last.ckpt" in out
    assert "newer run(s) without a checkpoint: version_1" in out
    assert sorted(p.name for p in (tmp_path / "runs" / "ctrlc").iterdir()) == ["version_0", "version_1"]
    assert load(tmp_path / "runs" / "ctrlc" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_resume_targets_pass_over_incomplete_checkpoints_and_list_the_runs(tmp_path):
    from twostream.errors import ConfigError
    from twostream.resume import resolve

    runs = tmp_path / "runs"
    for version, content in ((0, "whole"), (1, "empty"), (2, None)):
        folder = runs / "default" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        if content == "whole":
            torch.save({"global_step": 4}, folder / "last.ckpt")
        elif content == "empty":
            (folder / "last.ckpt").write_bytes(b"")  # what a killed non-atomic save leaves
    v0 = runs / "default" / "version_0"
    found = resolve("last", str(runs), "default")
    assert (found.checkpoint, found.run_dir) == (v0 / "checkpoints" / "last.ckpt", v0)
    assert found.note == "newer run(s) without a checkpoint: version_2, version_1"
    assert found.logger_fields == {"save_dir": str(runs), "name": "default", "version": "version_0"}
    assert resolve(str(runs / "default"), None, None).run_dir == v0 == resolve(str(v0), None, None).run_dir
    assert resolve(str(v0 / "checkpoints" / "last.ckpt"), None, None) is None  # a file: Lightning's meaning
    with pytest.raises(ConfigError, match=r"not a complete checkpoint \(0 bytes"):
        resolve(str(runs / "default" / "version_1" / "checkpoints" / "last.ckpt"), None, None)
    with pytest.raises(ConfigError, match=r"no runs in .*other; runs under .*: default: version_2 \(no checkpoint\), "
                                          r"version_1 \(no checkpoint\), version_0 \(last.ckpt\)"):
        resolve("last", str(runs), "other")


@pytest.mark.ddp
@pytest.mark.slow
def test_sigterm_under_ddp_stops_every_rank_after_the_same_step(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    proc = run_cli(["fit", *tiny_args(tmp_path, NO_TEST, "--trainer.strategy=ddp", "--trainer.devices=2",
                                      "--trainer.callbacks+=fault_utils.SignalAt", name="ddp", num_train=128)],
                   env={"TWOSTREAM_TEST_SIGNAL": "SIGTERM:5", "TWOSTREAM_TEST_RECORD": str(record)})
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert proc.stderr.count("resume with:") == 1  # rank 0 only
    stops = [load_json(record / f"rank{r}.json") for r in (0, 1)]
    assert stops[0] == stops[1] == {"step": 6, "exception": "SIGTERMException"}  # rank 1 never got the signal
    ckpt = load(tmp_path / "runs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6 and ckpt["SyntheticShapesDataModule"]["train_position"] == {"epoch": 1, "batches": 2}


def test_streamed_shards_resume_mid_epoch_at_the_same_batch(tmp_path):
    """CC3M-style web shards (the *_cc3m configs): the datamodule's checkpointed position makes the
    resumed epoch replay and drop the batches already trained on, so the rest comes in the same order."""
    from fixtures_realdata import web_samples, write_img2dataset_webdataset

    from twostream.data import WebDatasetDataModule

    write_img2dataset_webdataset(tmp_path, web_samples(2, 12, dirty=False))

    def datamodule():
        dm = WebDatasetDataModule(shards=str(tmp_path / "*.tar"), batch_size=3, image_size=32, num_workers=2, seed=0,
                                  shuffle_buffer=8)
        dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=1)
        return dm

    dm = datamodule()
    loader = dm.train_dataloader()
    straight = [b["image_index"].tolist() for b in loader]
    assert len(straight) == 8 and dm.state_dict()["train_position"] == {"epoch": 1, "batches": 8}
    resumed = datamodule()
    resumed.load_state_dict({"train_position": {"epoch": 1, "batches": 3}})
    assert [b["image_index"].tolist() for b in resumed.train_dataloader()] == straight[3:]


def load_json(path):
    import json

    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- 3. non-finite
@pytest.mark.slow
def test_nan_stops_at_that_step_naming_the_head_and_checkpoints_stay_finite(tmp_path, capsys):
    poison = ("--trainer.callbacks+=fault_utils.PoisonAt", "--trainer.callbacks.step=5")
    assert cli(["fit", *tiny_args(tmp_path, NO_TEST, *poison, name="nan", every_epoch=True)]) == 3
    err = capsys.readouterr().err
    assert "twostream: training diverged: step 5 (epoch 1): the loss is nan (non-finite: contrastive_loss=nan)" in err
    assert "Traceback" not in err
    folder = tmp_path / "runs" / "nan" / "version_0" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]
    for path in folder.iterdir():  # the last one written before the bad step, whole and finite
        ckpt = load(path)
        assert ckpt["global_step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())

    assert cli(["fit", *tiny_args(tmp_path, NO_TEST, *poison, "--max_nonfinite_steps=1", name="skip")]) == 0
    out = capsys.readouterr().out
    assert "step 5: the loss is nan (non-finite: contrastive_loss=nan); non-finite gradients" in out
    assert "step skipped (1 of max_nonfinite_steps=1)" in out
    ckpt = load(tmp_path / "runs" / "skip" / "version_0" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 8 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert next(v for k, v in ckpt["callbacks"].items() if k.startswith("NonFiniteGuard")) == {"skipped": 1}


def test_impossible_numbers_are_rejected_at_start_naming_the_key(tmp_path, capsys):
    heads = ('[{"class_path": "InBatchContrastive", "init_args": {"weight": -0.5}}, {"class_path": '
             '"twostream.methods.cots.MaskedLanguageModeling", "init_args": {"mask_prob": 1.5}}]')
    assert cli(["fit", *tiny_args(tmp_path, "--model.init_args.temperature=1e-30", "--model.init_args.lr=-1",
                                  f"--model.init_args.heads={heads}")]) == 2
    err = capsys.readouterr().err
    for line in ("model.init_args.heads[0].init_args.weight: -0.5 is not a number >= 0",
                 "model.init_args.heads[1].init_args.mask_prob: 1.5 is not a probability in [0, 1]",
                 "model.init_args.lr: -1 is not a number >= 0",
                 "model.init_args.temperature: 1e-30 is below min_temperature=0.01"):
        assert line in err
    assert not (tmp_path / "data").exists()  # rejected before anything was built
    with pytest.raises(ValueError, match="temperature=0: expected > 0"):
        TwoStreamEncoder(vision=None, text=None, temperature=0.0)


# ----------------------------------------------------------------------------- 4. atomic checkpoints
@pytest.mark.slow
def test_a_kill_inside_the_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    other_fs = tmp_path / "elsewhere"  # TMPDIR is irrelevant: the temporary file goes beside the target
    other_fs.mkdir()
    # saves: epoch=0-step=4.ckpt, last.ckpt, epoch=1-step=8.ckpt, then last.ckpt again, which dies half written
    proc = run_cli(["fit", *tiny_args(tmp_path, NO_TEST, name="kill", every_epoch=True)],
                   env={FAULT_ENV: "4:write", "TMPDIR": str(other_fs)})
    assert proc.returncode == 137, proc.stderr[-3000:]
    folder = tmp_path / "runs" / "kill" / "version_0" / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert names[0].startswith(".last.ckpt.") and names[0].endswith(".partial")
    assert names[1:] == ["epoch=1-step=8.ckpt", "last.ckpt"]
    assert 0 < (folder / names[0]).stat().st_size < (folder / "last.ckpt").stat().st_size  # half written
    assert load(folder / "last.ckpt")["global_step"] == 4  # the previous checkpoint, whole
    assert not list(other_fs.iterdir())


@pytest.mark.parametrize("point", ["write", "fsync", "replace"])
def test_atomic_save_keeps_the_old_file_whatever_the_kill_point(tmp_path, point):
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"v": torch.zeros(4096)}, target)
    pid = os.fork()
    if pid == 0:  # the child dies inside its save, as a SIGKILL would leave it
        os.environ[FAULT_ENV], _Fault.saves = f"1:{point}", 0
        atomic_torch_save({"v": torch.ones(4096)}, target)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 137
    assert torch.equal(torch.load(target)["v"], torch.zeros(4096))
    atomic_torch_save({"v": torch.ones(4096)}, target)  # the next save replaces it and clears the debris
    assert torch.equal(torch.load(target)["v"], torch.ones(4096)) and [p.name for p in tmp_path.iterdir()] == [target.name]


# ----------------------------------------------------------------------------- 5. bad-data accounting
@pytest.mark.slow
@pytest.mark.parametrize("bad, limit, status, expected", [
    (0, 0.05, 0, "epoch 0: skipped 0 of 12 samples (0.0%)"),
    (6, 0.6, 0, "epoch 0: skipped 6 of 12 samples (50.0%) — corrupt_image 6"),
    (10, 0.5, 2, "epoch 0: 10 of 12 samples (83.3%) were bad, more than max_bad_fraction=0.5 allows"),
    (12, 1.0, 2, "all 12 of 12 training images (100%) are unreadable"),
])
def test_bad_fraction_is_bad_over_read_and_stops_at_any_fraction(tmp_path, capsys, bad, limit, status, expected):
    ann = albef_folder(tmp_path / "albef", bad=bad)  # train + test only: fit runs without validation
    args = ["fit", *tiny_args(tmp_path, NO_TEST, epochs=1, data=albef_config(tmp_path, ann, limit))]
    if bad == 12:
        args.append("--data.init_args.num_workers=1")  # the error comes out of a DataLoader worker
    with pytest.warns(UserWarning, match="has no val split: fit runs without validation"):
        assert cli(args) == status
    captured = capsys.readouterr()
    assert expected in (captured.out if status == 0 else captured.err)
    if status:
        assert "Traceback" not in captured.err and "DataLoader worker" not in captured.err


# ----------------------------------------------------------------------------- 6. clean errors
@pytest.mark.slow
def test_user_errors_are_one_message_and_exit_2_internal_errors_keep_the_traceback(tmp_path, capsys, monkeypatch):
    missing = ["fit", *tiny_args(tmp_path, data=albef_config(tmp_path, tmp_path / "no_such.json", 0.05))]
    assert cli(missing) == 2
    err = capsys.readouterr().err
    assert f"twostream: error: annotation file not found: {tmp_path / 'no_such.json'}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    monkeypatch.setenv("TWOSTREAM_TRACEBACK", "1")
    assert cli(missing) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.delenv("TWOSTREAM_TRACEBACK")

    assert cli(["fit", *tiny_args(tmp_path, "--data.init_args.num_train=0")]) == 2  # a constructor's ConfigError,
    assert "twostream: error: num_train must be >= 1, got 0\n" in capsys.readouterr().err  # unwrapped from jsonargparse's

    typo = '--model.init_args.heads=[{"class_path": "twostream.objectives.InBatchContrastiv"}]'
    assert cli(["fit", *tiny_args(tmp_path, typo)]) == 2
    lines = capsys.readouterr().err.rstrip().splitlines()
    hint = next(i for i, line in enumerate(lines) if line.startswith("hint: unknown class"))
    assert "did you mean twostream.contrastive.InBatchContrastive?" in lines[hint]
    assert all(line.startswith("  ") for line in lines[hint + 1:]) and "objectives (heads)" in lines[hint + 1]

    def broken(self, batch, batch_idx):
        raise KeyError("an internal bug")

    monkeypatch.setattr(TwoStreamEncoder, "training_step", broken)
    with pytest.raises(KeyError, match="an internal bug"):
        cli(["fit", *tiny_args(tmp_path, NO_TEST, name="bug")])


def test_errors_are_sorted_by_where_they_come_from():
    from twostream.data.formats.karpathy import load_json
    from twostream.error_report import exit_status, message

    with pytest.raises(FileNotFoundError) as data_error:
        load_json(__import__("pathlib").Path("/no/such.json"), "annotation file")
    assert exit_status(data_error.value) == 2  # raised by a data reader: the user's to fix
    with pytest.raises(ValueError) as ours:
        int("not a number")
    assert exit_status(ours.value) is None  # anywhere else: a bug, keep the traceback
    worker = ValueError('Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call '
                        'last):\n  File "/x/src/twostream/data/formats/karpathy.py", line 3, in f\n    raise '
                        'ValueError(msg)\nValueError: a.json is not valid JSON')
    assert exit_status(worker) == 2 and message(worker) == "a.json is not valid JSON"


# ----------------------------------------------------------------------------- 7. optional val split
def test_monitoring_a_val_metric_without_a_val_split_is_a_clear_error(tmp_path, capsys):
    ann = albef_folder(tmp_path / "albef")
    args = ["fit", *tiny_args(tmp_path, data=albef_config(tmp_path, ann, 0.05, monitor="val/rsum"))]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "has no val split, but ModelCheckpoint(monitor='val/rsum') needs validation metrics" in err
