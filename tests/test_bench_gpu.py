"""experiments/benchmarks/gpu_throughput.py on the CPU (--tiny): writes md + json, counts FLOPs that scale with the
batch, and refuses --device cuda cleanly (exit code 2, no traceback) where no CUDA device exists."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "experiments" / "benchmarks" / "gpu_throughput.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def test_gpu_throughput_tiny_cpu_writes_results_and_flops_scale_with_batch(tmp_path):
    stem = tmp_path / "gpu"
    cmd = [sys.executable, SCRIPT, "--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1",
           "--batch-size", "2", "4", "--peak-tflops", "1", "--out", str(stem)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)  # ~12 s
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = stem.with_suffix(".md").read_text()
    assert "# COTS training step throughput" in md and "FlopCounterMode" in md and "--tiny" in md
    data = json.loads(stem.with_suffix(".json").read_text())
    assert "gpu_throughput.py" in data["command"] and "--batch-size 2 4" in data["command"]
    assert data["machine"]["torch"] == torch.__version__ and data["machine"]["device_name"]
    rows = {r["batch_size"]: r for r in data["results"]}
    assert set(rows) == {2, 4}
    for r in rows.values():
        assert r["status"] == "ok"
        assert r["samples_per_s"] > 0 and r["step_ms_median"] > 0
        assert r["flops_forward"] > 0 and r["flops_backward"] > 0
        assert r["flops_per_step"] == r["flops_forward"] + r["flops_backward"]
        assert r["peak_memory_gib"] is None  # CPU: no CUDA allocator statistics
        assert r["mfu"] > 0  # --peak-tflops given, so MFU is reported even on the CPU
    ratio = rows[4]["flops_per_step"] / rows[2]["flops_per_step"]
    assert abs(ratio - 2.0) <= 0.2, ratio  # twice the batch, twice the work (within 10 %)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_throughput_cuda_without_a_gpu_exits_2_with_a_message(tmp_path):
    cmd = [sys.executable, SCRIPT, "--tiny", "--device", "cuda", "--out", str(tmp_path / "gpu")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "no CUDA device is available" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "gpu.json").exists()
