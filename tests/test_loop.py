"""Gradients summed once per loop (nmt/loop.py) against autograd's step-by-step sums."""

import pytest
import torch

import nmt.decoder
from nmt.config import ModelConfig
from nmt.data import pad
from nmt.loop import DIRECT, Loop
from nmt.model import Seq2Seq


def recurrence(ops, h, w, b, memory, steps=5):
    """A small loop reading w, b and memory at every step, in the pattern of the decoder."""
    total = 0
    for _ in range(steps):
        weights = torch.softmax(ops.linear(h, w, b)[:, :memory.size(1)], -1)  # (B, S)
        context = ops.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, D)
        h = torch.tanh(h + context)
        total = total + h.pow(2).sum()
    return total


def test_shared_products_give_autograd_gradients():
    torch.manual_seed(0)
    B, H, S = 3, 6, 4
    leaves = [torch.randn(B, H), torch.randn(H, H), torch.randn(H), torch.randn(B, S, H)]
    grads = {}
    for name, ops in (("autograd", DIRECT), ("loop", Loop())):
        h, w, b, memory = (x.clone().double().requires_grad_() for x in leaves)
        recurrence(ops, h, w, b, memory).backward()
        grads[name] = [h.grad, w.grad, b.grad, memory.grad]
    for a, b in zip(grads["autograd"], grads["loop"]):
        torch.testing.assert_close(a, b)


def test_a_retained_graph_can_run_backward_twice():
    torch.manual_seed(0)
    h, w, b, memory = (x.double().requires_grad_() for x in (torch.randn(2, 5), torch.randn(5, 5),
                                                               torch.randn(5), torch.randn(2, 3, 5)))
    loss = recurrence(Loop(), h, w, b, memory)
    loss.backward(retain_graph=True)
    once = w.grad.clone()
    loss.backward()
    torch.testing.assert_close(w.grad, 2 * once)


@pytest.mark.parametrize("cell, layers", [("rnn", 2), ("lstm", 2), ("gru", 1)])
def test_teacher_forcing_gradients_equal_plain_autograd(cell, layers, monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embed_size=8, hidden_size=6, decoder_hidden_size=10, attention_size=5,
                      num_layers=layers, dropout=0.0)
    model = Seq2Seq(cfg, src_vocab_size=30, tgt_vocab_size=25).double()
    src, lengths = pad([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]), torch.tensor([5, 2, 3])
    tgt_in = torch.tensor([[2, 5, 9, 11], [2, 7, 6, 0], [2, 4, 4, 4]])
    grads = {}
    for name, make in (("autograd", lambda: DIRECT), ("loop", Loop)):
        monkeypatch.setattr(nmt.decoder, "Loop", make)
        model.zero_grad()
        model(src, lengths, tgt_in).pow(2).mean().backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["loop"].keys() == grads["autograd"].keys()
    for name, grad in grads["autograd"].items():
        torch.testing.assert_close(grads["loop"][name], grad, msg=name)
