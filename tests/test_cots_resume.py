"""COTS state across a stop/resume and across DDP ranks, through the user's entry point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cots_utils import cots_args, cots_override
from twostream.cli import run

EPOCH_STEPS = 4  # 64 training images / batch 16


def fit(tmp: Path, override: Path, name: str, *extra: str) -> Path:
    run(["fit", *cots_args(tmp, override, "--trainer.deterministic=true", "--test_after_fit=false",
                           "--trainer.limit_val_batches=0", f"--trainer.logger.init_args.name={name}",
                           f"--model.init_args.total_steps={2 * EPOCH_STEPS}", *extra)])
    return next((tmp / "runs" / name).rglob("last.ckpt"))


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    override = cots_override(tmp_path, filter={"warmup_steps": 2, "k": 0.5})
    straight = torch.load(fit(tmp_path, override, "straight", "--trainer.max_epochs=2"), weights_only=False)
    half = fit(tmp_path, override, "half", "--trainer.max_epochs=1")
    resumed = torch.load(fit(tmp_path, override, "resumed", "--trainer.max_epochs=2", f"--ckpt_path={half}"),
                         weights_only=False)
    assert straight["global_step"] == resumed["global_step"] == 2 * EPOCH_STEPS
    a, b = straight["state_dict"], resumed["state_dict"]
    assert a.keys() == b.keys()
    # the things LAVIS-style checkpoints lose: momentum towers, queues, pointer, filter statistics
    for key in ("state.momentum.ptr", "state.momentum.image_queue", "state.momentum.id_queue",
                "state.momentum.vision.net.transformer.resblocks.0.attn.in_proj_weight", "state.filter.mean", "state.filter.steps"):
        assert key in a
    assert int(a["state.momentum.filled"]) == 48 and int(a["state.filter.steps"]) == 2 * EPOCH_STEPS
    assert not torch.equal(a["state.momentum.vision.net.transformer.resblocks.0.attn.in_proj_weight"], a["vision.net.transformer.resblocks.0.attn.in_proj_weight"])
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differs after resume: {different[:5]}"
    for sa, sb in zip(straight["optimizer_states"][0]["state"].values(), resumed["optimizer_states"][0]["state"].values()):
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


@pytest.mark.slow
def test_gradient_accumulation_updates_state_once_per_optimizer_step(tmp_path):
    override = cots_override(tmp_path)
    ckpt = torch.load(fit(tmp_path, override, "accum", "--trainer.accumulate_grad_batches=2",
                          "--model.init_args.state.momentum.init_args.queue_size=1000"), weights_only=False)
    state = ckpt["state_dict"]
    assert ckpt["global_step"] == EPOCH_STEPS // 2
    assert int(state["state.momentum.filled"]) == 64  # every micro-batch's keys enqueued, once each
    # each image enqueued exactly once
    assert sorted(state["state.momentum.id_queue"][:64].tolist()) == list(range(64))


@pytest.mark.ddp
@pytest.mark.slow
def test_queues_identical_on_both_ranks(tmp_path):
    override = cots_override(tmp_path)
    dump = tmp_path / "dump"
    dump.mkdir()
    cmd = [sys.executable, "-m", "twostream", "fit", *cots_args(tmp_path, override, "--test_after_fit=false",
           "--trainer.limit_val_batches=0", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.max_epochs=2",
           "--model.init_args.state.momentum.init_args.queue_size=40", "--trainer.callbacks+=state_dump.DumpState")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TWOSTREAM_DUMP": str(dump),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(dump / f"state_rank{r}.pt") for r in (0, 1))
    assert int(r0["momentum.filled"]) == 40 and int(r0["momentum.ptr"]) == (2 * 2 * 2 * 16) % 40
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    # both ranks' keys went in: 2 ranks x 2 steps/epoch x 2 epochs x 16 = 128 writes, last 40 kept, ids unique per step
    assert len(set(r0["momentum.id_queue"].tolist())) > 16
