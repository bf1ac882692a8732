"""InBatchContrastive under 2 gloo processes equals one process on the concatenated batch."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dist_utils import spawn
from twostream.contrastive import InBatchContrastive
from twostream.heads import EncoderOutput

BATCH, D_IMG, D_TXT, D_EMB = 12, 16, 10, 8


def _model_and_data():
    torch.manual_seed(0)
    model = nn.ModuleDict({"img": nn.Linear(D_IMG, D_EMB), "txt": nn.Linear(D_TXT, D_EMB)})
    model.log_t = nn.Parameter(torch.tensor(-2.0))
    return model, torch.randn(BATCH, D_IMG), torch.randn(BATCH, D_TXT)


def _loss(model, xi, xt):
    out = EncoderOutput(F.normalize(model.img(xi), dim=-1), F.normalize(model.txt(xt), dim=-1), None, None,
                        model.log_t.exp())
    return InBatchContrastive()(out, {})["contrastive_loss"]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _worker(rank, world_size, out_path):
    model, xi, xt = _model_and_data()
    half = BATCH // world_size
    sl = slice(rank * half, (rank + 1) * half)
    loss = _loss(model, xi[sl], xt[sl])
    loss.backward()
    for p in model.parameters():  # what DDP does: average gradients over ranks
        dist.all_reduce(p.grad)
        p.grad /= world_size
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        torch.save({"loss": mean_loss / world_size, "grads": _grads(model)}, out_path)


@pytest.mark.ddp
def test_two_process_loss_and_grads_equal_single_process(tmp_path):
    model, xi, xt = _model_and_data()
    loss = _loss(model, xi, xt)
    loss.backward()
    ref = _grads(model)
    out = tmp_path / "rank0.pt"
    spawn(_worker, 2, str(out))
    got = torch.load(out)
    torch.testing.assert_close(got["loss"], loss.detach(), atol=1e-5, rtol=0)
    for name, grad in ref.items():
        torch.testing.assert_close(got["grads"][name], grad, atol=1e-5, rtol=0, msg=name)
    assert any(g.abs().sum() > 0 for g in ref.values())
