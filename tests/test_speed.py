"""The training-speed settings (docs/performance.md): AdamW implementation, the non-finite guard's fast path,
kept-free memory, the 16-bit precision guard, opt-in compilation of the towers."""
import json
import warnings

import pytest
import torch

from test_encoder import tiny_batch, tiny_encoder
from twostream.callbacks import StepTimer
from twostream.callbacks.nonfinite import _nonfinite_grads
from twostream.compilation import compile_available, compile_towers
from twostream.cpu_memory import keep_freed_memory
from twostream.optim import adamw_impl_kwargs
from twostream.precision_check import PrecisionWarning, precision_problem, warn_precision


def _train(impl: str, steps: int = 4) -> dict[str, torch.Tensor]:
    model = tiny_encoder(optimizer_impl=impl, total_steps=steps, warmup_steps=1)
    model.train()
    opt = model.configure_optimizers()["optimizer"]
    torch.manual_seed(1)
    batches = [tiny_batch(model) for _ in range(steps)]
    for batch in batches:
        loss, _ = model.objective(model(batch), batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_adamw_implementations_compute_the_same_update():
    """Same update up to float rounding order; Adam's first steps divide by sqrt(v) ~ |g|, which magnifies
    rounding where |g| is near eps, so the bound is relative to how far the weights moved."""
    init = {k: v.detach().clone() for k, v in tiny_encoder().state_dict().items()}
    ref = _train("for-loop")
    moved = max(float((ref[k] - v).abs().max()) for k, v in init.items() if v.is_floating_point())
    for impl in ("fused", "foreach"):
        got = _train(impl)
        worst = max(float((got[k] - v).abs().max()) for k, v in ref.items() if v.is_floating_point())
        assert worst < 0.02 * moved, (impl, worst, moved)


def test_adamw_impl_kwargs():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert adamw_impl_kwargs("fused", p) == {"fused": True}
    assert adamw_impl_kwargs("foreach", p) == {"foreach": True}
    assert adamw_impl_kwargs("for-loop", p) == {"foreach": False}
    assert adamw_impl_kwargs("fused", [torch.zeros(3, dtype=torch.long)]) == {}  # torch's own choice
    with pytest.raises(ValueError, match="valid"):
        adamw_impl_kwargs("apex", p)
    model = tiny_encoder(total_steps=2)  # the default is fused
    assert model.configure_optimizers()["optimizer"].defaults["fused"] is True


def test_nonfinite_fast_path_is_exact():
    model = torch.nn.Linear(4, 4)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    assert _nonfinite_grads(model) == (False, [])
    model.weight.grad.fill_(3e38)  # finite elements whose sum overflows: the exact check clears them
    assert _nonfinite_grads(model) == (False, [])
    for bad in (float("nan"), float("inf"), -float("inf")):
        model.weight.grad.fill_(1.0)
        model.weight.grad[1, 2] = bad
        assert _nonfinite_grads(model) == (True, ["weight"])


def test_keep_freed_memory_applies_on_linux_glibc():
    import platform

    result = keep_freed_memory()
    assert result is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() is result  # idempotent


def test_precision_guard_names_slowdown_and_setting():
    none = {"bf16": False, "fp16": False}
    msg = precision_problem("bf16-mixed", "cpu", none)
    assert "--trainer.precision=32-true" in msg and "9.5x" in msg
    assert "4.2-11.3x" in precision_problem("16-true", "cpu", none)
    assert "bf16-mixed" in precision_problem("16-true", "cpu", {"bf16": True, "fp16": False})
    assert precision_problem("bf16-mixed", "cpu", {"bf16": True, "fp16": False}) is None  # native bf16
    assert precision_problem("32-true", "cpu", none) is None
    assert precision_problem("bf16-mixed", "cuda", none) is None  # GPU configs keep bf16


def test_precision_guard_warns_once_for_a_cpu_trainer(monkeypatch):
    import lightning as L

    from twostream import precision_check

    monkeypatch.setattr(precision_check, "native_support", lambda: {"bf16": False, "fp16": False})
    monkeypatch.setattr(precision_check, "_warned", set())
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False)
    with pytest.warns(PrecisionWarning, match="32-true"):
        assert warn_precision(trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        warn_precision(trainer)  # once
    fp32 = L.Trainer(accelerator="cpu", precision="32-true", logger=False, enable_progress_bar=False)
    assert warn_precision(fp32) is None


def test_step_timer_summary(tmp_path):
    timer = StepTimer(warmup=1)
    timer.step_s, timer.batch_size = [5.0, 1.0, 3.0], 4
    s = timer.summary()
    assert s["median_step_s"] == 2.0 and s["samples_per_s"] == pytest.approx(4 * 2 / 4.0)
    json.dumps(s)


@pytest.mark.skipif(compile_available("cpu") is not None, reason=f"torch.compile unavailable: {compile_available('cpu')}")
@pytest.mark.timeout(300)
def test_compiled_towers_give_the_same_loss():
    model = tiny_encoder().eval()
    torch.manual_seed(2)
    batch = tiny_batch(model)
    keys = set(model.state_dict())
    with torch.no_grad():
        ref, _ = model.objective(model(batch), batch)
        compile_towers(model, ("vision", "text"))
        got, _ = model.objective(model(batch), batch)
    assert set(model.state_dict()) == keys  # in place: checkpoints keep their keys
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5), (float(got), float(ref))
