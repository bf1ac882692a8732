"""COTS under FSDP2 (Lightning ModelParallelStrategy, experiments/strategies/fsdp2_cpu.yaml) on 2 CPU
processes over gloo, through the user's entry point, against the same run under DDP.

Four runs, two at a time: DDP 2 epochs, FSDP2 2 epochs, FSDP2 1 epoch, and FSDP2 resumed from the
1-epoch run's (sharded) checkpoint to 2 epochs. Each rank dumps its per-batch losses and the full
model state (tests/fsdp_dump.py)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cots_utils import ROOT, cots_args, cots_override

FSDP2_CPU = str(ROOT / "experiments" / "strategies" / "fsdp2_cpu.yaml")
EPOCH_STEPS = 2  # 64 training images / (16 per rank x 2 ranks)
QUEUE = 40
# DDP all-reduces gradients, FSDP2 reduce-scatters them. On 2 ranks each reduced element is a + b,
# halved, in either collective, and forward/EMA see the same full-precision values, so the runs agree
# bit for bit (measured: 0.0). The tolerance leaves room for other summation orders (more ranks;
# with gradient accumulation FSDP2 reduces every micro-batch, DDP once: measured 1e-6 there).
ATOL = 1e-5

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def _launch(tmp: Path, override: Path, name: str, *extra: str, test: bool = False) -> subprocess.Popen:
    dump = tmp / name
    dump.mkdir()
    cmd = [sys.executable, "-m", "twostream", "fit", *cots_args(
        tmp, override, f"--test_after_fit={test}", "--trainer.limit_val_batches=0", "--trainer.deterministic=true",
        "--trainer.devices=2", f"--trainer.logger.init_args.name={name}", f"--data.init_args.root={dump / 'data'}",
        f"--model.init_args.state.momentum.init_args.queue_size={QUEUE}",
        f"--model.init_args.total_steps={2 * EPOCH_STEPS}", "--trainer.callbacks+=fsdp_dump.DumpSteps", *extra)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TWOSTREAM_DUMP": str(dump),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("MASTER_PORT", None)  # each run's rank 0 picks a free port: two runs at a time must not share one
    # own session: on failure the whole run (rank 0 and the rank 1 Lightning started) is killed
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    LAUNCHED.append(proc)
    return proc


LAUNCHED: list[subprocess.Popen] = []


def _wait(*procs: subprocess.Popen) -> None:
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]


def _kill_leftovers() -> None:
    for proc in LAUNCHED:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _dumps(tmp: Path, name: str) -> tuple[dict, dict]:
    return tuple(torch.load(tmp / name / f"steps_rank{r}.pt") for r in (0, 1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    # noise filter active after 2 steps: its statistics must match across ranks and DDP/FSDP2 too
    override = cots_override(tmp, filter={"warmup_steps": 2, "k": 0.5})
    fsdp = ("--config", FSDP2_CPU)
    try:
        half = _launch(tmp, override, "half", *fsdp, "--trainer.max_epochs=1")
        ddp = _launch(tmp, override, "ddp", "--trainer.strategy=ddp", "--trainer.max_epochs=2", test=True)
        _wait(half)  # two runs in flight at a time
        ckpt = tmp / "runs" / "half" / "version_0" / "checkpoints" / "last.ckpt"
        assert ckpt.is_dir() and len(list(ckpt.glob("*.distcp"))) == 2  # sharded: one file per rank
        resumed = _launch(tmp, override, "resumed", *fsdp, "--trainer.max_epochs=2", f"--ckpt_path={ckpt}")
        _wait(ddp)
        _wait(resumed, _launch(tmp, override, "fsdp", *fsdp, "--trainer.max_epochs=2", test=True))
    finally:
        _kill_leftovers()
    out = {name: _dumps(tmp, name) for name in ("ddp", "fsdp", "resumed")}
    out["metrics"] = {name: json.loads((tmp / "runs" / name / "version_0" / "metrics.json").read_text())
                      for name in ("ddp", "fsdp")}
    return out


def test_fsdp2_shards_towers_and_momentum_towers(runs):
    sharded = set(runs["fsdp"][0]["sharded"])
    assert not runs["ddp"][0]["sharded"]
    for prefix in ("vision.", "text.", "image_proj.", "state.momentum.vision.", "state.momentum.text.",
                   "state.momentum.image_proj.", "heads."):
        assert any(k.startswith(prefix) for k in sharded), prefix
    assert "log_temperature" not in sharded  # 0-dim: FSDP2 cannot shard it; replicated, gradient averaged
    assert runs["fsdp"][0]["ema_collectives"] == 0  # the EMA on matching shards is local


def test_fsdp2_tracks_ddp(runs):
    for rank in (0, 1):
        ddp, fsdp = runs["ddp"][rank], runs["fsdp"][rank]
        assert ddp["global_step"] == fsdp["global_step"] == 2 * EPOCH_STEPS
        diff = (torch.tensor(fsdp["losses"]) - torch.tensor(ddp["losses"])).abs()
        assert len(diff) == 2 * EPOCH_STEPS and diff.max() <= ATOL, (ddp["losses"], fsdp["losses"])
    a, b = runs["ddp"][0]["state"], runs["fsdp"][0]["state"]
    assert a.keys() == b.keys()
    for key in a:  # weights, momentum towers (EMA on shards), queues, filter statistics
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], atol=ATOL, rtol=0, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def test_fsdp2_resume_equals_straight_run(runs):
    for rank in (0, 1):
        straight, resumed = runs["fsdp"][rank], runs["resumed"][rank]
        assert resumed["global_step"] == straight["global_step"] == 2 * EPOCH_STEPS
        assert resumed["losses"] == straight["losses"][EPOCH_STEPS:]  # the second epoch, bit for bit
        a, b = straight["state"], resumed["state"]
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"differs after resume: {different[:5]}"
        assert int(a["state.filter.steps"]) == 2 * EPOCH_STEPS
        assert not torch.equal(a["state.momentum.vision.net.transformer.resblocks.0.attn.in_proj_weight"], a["vision.net.transformer.resblocks.0.attn.in_proj_weight"])


def test_fsdp2_test_recall_equals_ddp(runs):  # evaluation after fit: configure_model ran twice
    ddp, fsdp = runs["metrics"]["ddp"], runs["metrics"]["fsdp"]
    assert {k: v for k, v in ddp.items() if k != "fit_wall_s"} == {k: v for k, v in fsdp.items() if k != "fit_wall_s"}
    assert "rsum" in fsdp


def test_fsdp2_queues_identical_on_both_ranks(runs):
    r0, r1 = (d["state"] for d in runs["fsdp"])
    assert "state.momentum.image_queue" in r0 and "state.filter.mean" in r0 and "log_temperature" in r0
    for key in r0:  # queues, filter statistics, temperature are replicated; sharded weights gathered
        assert torch.equal(r0[key], r1[key]), key
    assert int(r0["state.momentum.filled"]) == QUEUE
    assert len(set(r0["state.momentum.id_queue"].tolist())) > 16  # both ranks' keys went in
