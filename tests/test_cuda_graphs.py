"""train.cuda_graphs (nmt/train/cuda_graphs.py): the switch and the bucketed path on a CPU; the captured
path against eager on a GPU (skipped without CUDA: nothing here needs a GPU in CI)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from nmt.train import cuda_graphs
from conftest import TINY, reverse_recipe, run_cli
from nmt.config import DecodeConfig, from_dict
from nmt.errors import NmtError
from nmt.search import beam_search, greedy_search
from nmt.train.buckets import Buckets, Shape
from nmt.train.cuda_graphs import BucketedForward, capture_training, use_cuda_graphs
from nmt.train.loop import train
from nmt.vocab import PAD
from test_buckets import CELLS, batch_shape, loss_and_grads, random_batch, tiny_model

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_the_switch_is_on_for_cuda_and_off_elsewhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert from_dict({}).train.cuda_graphs == "off"  # until checked on a GPU
    assert [use_cuda_graphs(s, cuda) for s in ("auto", "on", "off")] == [True, True, False]
    assert [use_cuda_graphs(s, cpu) for s in ("auto", "off")] == [False, False]
    with pytest.raises(NmtError, match=r"^train\.cuda_graphs: on needs a CUDA device, and this run is on cpu"):
        use_cuda_graphs("on", cpu)
    with pytest.raises(NmtError, match=r"train\.cuda_graphs"):
        from_dict({"train": {"cuda_graphs": "sometimes"}})


def test_on_without_cuda_stops_training_before_any_work(tmp_path):
    with pytest.raises(NmtError) as err:
        train(from_dict({"train": {"cuda_graphs": "on"}}), tmp_path / "run")
    assert str(err.value).startswith("train.cuda_graphs: on needs a CUDA device") and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "config.yaml").exists()


class Recorder:
    """A stand-in for the capture on a CPU: returns the module (run eagerly) and counts the buckets."""

    def __init__(self):
        self.shapes = []

    def __call__(self, module, args):
        self.shapes.append(tuple(args[0].shape))
        return module


@pytest.mark.parametrize("cell", CELLS)
def test_the_bucketed_path_gives_the_plain_loss_and_gradients(cell):
    plain = tiny_model(cell, layers=2 if cell == "gru" else 1)
    bucketed = copy.deepcopy(plain)
    record = Recorder()
    bucketed.forward = BucketedForward(bucketed, record)
    batches = [random_batch(seed, rows=rows) for seed, rows in ((0, 5), (1, 13), (2, 5), (0, 5))]
    for batch in batches:
        loss, tokens, grads = loss_and_grads(plain, batch)
        got_loss, got_tokens, got_grads = loss_and_grads(bucketed, batch)
        assert (got_loss, got_tokens) == (pytest.approx(loss, rel=1e-6), tokens)
        for name, grad in grads.items():
            torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    wanted = {Buckets().of(batch_shape(b)) for b in batches}
    assert len(record.shapes) == len(wanted)  # one capture per bucket, reused after
    assert {(s.rows, s.tgt) for s in wanted} == set(record.shapes)


def test_evaluation_and_decoding_take_the_plain_path():
    model = tiny_model("lstm")
    record = Recorder()
    model.forward = BucketedForward(model, record)
    batch = random_batch(3)
    model.eval()
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape[:2] == batch.tgt_in.shape and record.shapes == []


def test_capture_training_keeps_the_weights_and_hands_autograd_copies(monkeypatch):
    """The CUDA path constructed on a CPU, its capture replaced: the state_dict is the same, and the
    decoder's gradients arrive through the copying hook."""
    monkeypatch.setattr(cuda_graphs, "capture", Recorder())
    model = tiny_model("gru")
    keys = list(model.state_dict())
    plain = copy.deepcopy(model)
    capture_training(model)
    assert list(model.state_dict()) == keys
    batch = random_batch(4)
    _, _, grads = loss_and_grads(plain, batch)
    _, _, got = loss_and_grads(model, batch)
    for name, grad in grads.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_capture_disables_autocasts_weight_cache(monkeypatch):
    """make_graphed_callables refuses autocast's cache; `capture` turns it off and keeps the dtype."""
    seen = {}

    def fake(module, sample):
        seen.update(cache=torch.is_autocast_cache_enabled(), grads=[a.requires_grad for a in sample])
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)
    memory = torch.zeros(2, 3, 4, requires_grad=True)
    cuda_graphs.capture(torch.nn.Identity(), (torch.zeros(2, 5, dtype=torch.long), memory))
    assert seen == {"cache": False, "grads": [False, True]}


# --- on a GPU -------------------------------------------------------------------------------------

def _cuda_twins(cell):
    torch.backends.cudnn.allow_tf32 = False  # eager and captured both in true fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    eager = tiny_model(cell).cuda()
    captured = copy.deepcopy(eager)
    capture_training(captured)
    return eager, captured


def _on_cuda(batch):
    return type(batch)(*(t.cuda() for t in batch))


@GPU
@pytest.mark.parametrize("cell", CELLS)
def test_captured_training_equals_eager_across_buckets_validation_and_updates(cell):
    eager, captured = _cuda_twins(cell)
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (eager, captured)]
    batches = [_on_cuda(random_batch(seed, rows=rows)) for seed, rows in ((0, 5), (1, 13), (0, 5), (2, 30))]
    for i, batch in enumerate(batches):
        for micro in range(2):  # two backward passes of one bucket into one update: gradients add up
            results = [loss_and_grads(m, batch) if micro == 0 else _accumulate(m, batch) for m in (eager, captured)]
            assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
        for name, grad in results[0][2].items():
            torch.testing.assert_close(results[1][2][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for opt in optimizers:
            opt.step()
        if i == 1:  # validation in between: eval mode, no gradients, then training again
            for m in (eager, captured):
                m.eval()
            with torch.no_grad():
                torch.testing.assert_close(captured(batch.src, batch.src_lengths, batch.tgt_in),
                                           eager(batch.src, batch.src_lengths, batch.tgt_in), rtol=1e-4, atol=1e-5)
            for m in (eager, captured):
                m.train()
    for (name, a), b in zip(eager.named_parameters(), captured.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    eager.eval(), captured.eval()
    opts = DecodeConfig(beam_size=3, max_len_a=1.0, max_len_b=4)
    batch = batches[-1]
    assert [h.tokens for h in greedy_search(captured, batch.src, batch.src_lengths, opts)] == \
        [h.tokens for h in greedy_search(eager, batch.src, batch.src_lengths, opts)]
    assert [h[0].tokens for h in beam_search(captured, batch.src, batch.src_lengths, opts)] == \
        [h[0].tokens for h in beam_search(eager, batch.src, batch.src_lengths, opts)]


def _accumulate(model, batch):
    """A second backward into the same .grad (no zeroing), as train.accumulate does."""
    from nmt.train.update import token_loss_sum

    loss = token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, 0.1)
    tokens = (batch.tgt_out != PAD).sum()
    (loss / tokens).backward()
    return loss.item(), tokens.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@GPU
def test_a_captured_run_resumes_and_matches_eager(tmp_path):
    """nmt-train with graphs on: stopped at step 12, resumed to 24 (validation and checkpoints on
    the way), ending with the weights of an uninterrupted captured run and of an eager one."""
    recipe = reverse_recipe(tmp_path, 400, {"max_steps": 24, "eval_every": 6, "max_tokens": 300, "patience": 0,
                                            "keep_last": 10, "log_every": 6})
    args = [*TINY, "--set", "model.dropout=0.0"]  # dropout masks: graphs draw them in another order
    runs = {}
    for name, graphs, steps in (("eager", "off", 24), ("full", "on", 24), ("part", "on", 12)):
        result = run_cli("nmt-train", str(recipe), "--run-dir", str(tmp_path / name), *args,
                         "--set", f"train.cuda_graphs={graphs}", "--set", f"train.max_steps={steps}")
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = tmp_path / name
    resumed = run_cli("nmt-train", str(runs["part"] / "config.yaml"), "--run-dir", str(runs["part"]), "--resume",
                      "--set", "train.max_steps=24")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "capturing the decoder" in resumed.stderr
    weights = {name: load_file(run / "last" / "model.safetensors") for name, run in runs.items()}
    for name, value in weights["eager"].items():
        for other in ("full", "part"):
            torch.testing.assert_close(weights[other][name], value, rtol=1e-3, atol=1e-4, msg=f"{other}: {name}")


def test_a_bucket_is_a_shape():
    assert Buckets().of(Shape(5, 9, 9)) == Shape(8, 12, 12)
