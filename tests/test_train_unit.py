"""Pieces of the training loop checked in-process: the LR schedule, stalls, bf16 on CPU (updates: test_update.py)."""

import json

import pytest
import torch

from conftest import TINY, reverse_corpus, run_cli
from nmt.config import TrainConfig
from nmt.train.loop import _done
from nmt.train.optim import LRSchedule
from nmt.train.run_state import Progress, observe_validation


def test_schedules():
    warm = LRSchedule("constant", warmup=4, factor=0.5)
    assert [warm(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    inv = LRSchedule("inverse_sqrt", warmup=4, factor=0.5)
    assert inv(3) == 1.0 and inv(15) == pytest.approx((4 / 16) ** 0.5)


def test_plateau_and_early_stopping_share_one_stall_count():
    """N validations in a row without a better BLEU: plateau decays at every plateau_patience of
    them, early stopping stops at patience."""
    tc = TrainConfig(schedule="plateau", plateau_patience=2, patience=5, plateau_factor=0.5)
    schedule, progress = LRSchedule("plateau", warmup=0, factor=0.5), Progress()
    seen = []
    for bleu in (10, 12, 11, 12, 11.5, 9, 12, 8):
        observe_validation(progress, bleu, tc, schedule)
        seen.append((progress.stalled, schedule(100), _done(tc, progress)))
    assert seen == [(0, 1.0, False), (0, 1.0, False), (1, 1.0, False), (2, 0.5, False), (3, 0.5, False),
                    (4, 0.25, False), (5, 0.25, True), (6, 0.125, True)]
    assert progress.best_bleu == 12
    observe_validation(progress, 30, tc, schedule, scheduled=False)  # the step-limit validation
    assert progress.best_bleu == 30 and progress.stalled == 6


def test_bf16_autocast_trains_on_cpu(tmp_path):
    corpus = reverse_corpus(tmp_path / "data", n_train=300)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\ntrain:\n  max_steps: 16\n"
                      "  eval_every: 16\n  max_tokens: 300\n  log_every: 4\n  mixed_precision: bf16\n  lr: 0.01\n")
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(tmp_path / "run"), *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    losses = [json.loads(x)["train_loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "train_loss" in x]
    assert losses[-1] < 0.8 * losses[0], losses


def test_encoder_leaves_autocast_when_told_to():
    """With `recurrent_in_fp32` the recurrent layers run exactly as in fp32 under autocast."""
    from nmt.config import ModelConfig
    from nmt.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16, dropout=0.0), 20, 20)
    src, lengths = torch.randint(4, 20, (3, 7)), torch.tensor([7, 5, 2])
    reference = model.encoder(src, lengths)
    model.encoder.recurrent_in_fp32 = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = model.encoder(src, lengths)
    assert guarded.memory.dtype == torch.float32
    assert torch.equal(guarded.memory, reference.memory) and torch.equal(guarded.final, reference.final)


def test_precision_policy_table(monkeypatch):
    """cuDNN's autocast rule makes bf16 RNNs fp16 (so fp32 there); a CPU without bf16 instructions has
    no bf16 LSTM (so fp32 there); everything else follows autocast."""
    from nmt import precision

    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: True)
    assert precision.recurrent_in_fp32("cuda", torch.bfloat16)
    assert not precision.recurrent_in_fp32("cuda", torch.float16)
    assert precision.recurrent_in_fp32("cpu", torch.bfloat16)
    assert not any(precision.recurrent_in_fp32(kind, None) for kind in ("cpu", "cuda"))
    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: False)
    assert not precision.recurrent_in_fp32("cpu", torch.bfloat16)


@pytest.mark.parametrize("lengths", [[7, 5, 2], [7, 7, 7]])
def test_a_cpu_without_bf16_runs_the_lstm_encoder_in_fp32_under_bf16(lengths, monkeypatch):
    """On a CPU without bf16 instructions, a bf16 LSTM over a batch of equal lengths went to oneDNN,
    which has none there ("could not create a primitive descriptor"): bf16 training on such a CPU
    crashed at the first such batch. The policy runs the encoder's layers in fp32 there."""
    from nmt import precision
    from nmt.config import ModelConfig
    from nmt.model.seq2seq import Seq2Seq

    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: True)
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16, dropout=0.0), 20, 20)
    src, tgt, lengths = torch.randint(4, 20, (3, 7)), torch.randint(4, 20, (3, 5)), torch.tensor(lengths)
    reference = model.encoder(src, lengths)
    precision.set_precision_policy(model, "cpu", torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = model.encoder(src, lengths)
        model(src, lengths, tgt).float().sum().backward()  # the whole update's path
    assert torch.equal(guarded.memory, reference.memory)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the question is cuDNN's")
def test_bf16_autocast_does_not_run_the_cudnn_encoder_in_fp16():
    """autocast's cuDNN RNN wrapper reflattens weights into an fp16 buffer whatever the autocast
    dtype (it hard-codes kHalf), which under bf16 is fp16 without loss scaling: the precision policy
    takes the encoder out of autocast there."""
    from nmt.config import ModelConfig
    from nmt.model.seq2seq import Seq2Seq
    from nmt.precision import set_precision_policy

    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16), 20, 20).cuda()
    set_precision_policy(model, "cuda", torch.bfloat16)
    src = torch.randint(4, 20, (3, 7), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        enc = model.encoder(src, torch.tensor([7, 5, 2], device="cuda"))
    assert enc.memory.dtype != torch.float16
