"""Pieces of the training loop checked in-process: the LR schedule, stalls, bf16 on CPU (updates: test_update.py)."""

import json

import pytest
import torch

from conftest import TINY, reverse_corpus, run_cli
from nmt.config import TrainConfig
from nmt.optim import LRSchedule
from nmt.run_state import Progress, observe_validation
from nmt.train import _done


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


def test_encoder_runs_in_fp32_where_autocast_would_make_it_fp16(monkeypatch):
    """The CPU half of item 5: when the guard fires, the recurrent layers run exactly as in fp32."""
    from nmt import encoder as encoder_module
    from nmt.config import ModelConfig
    from nmt.model import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16, dropout=0.0), 20, 20)
    src, lengths = torch.randint(4, 20, (3, 7)), torch.tensor([7, 5, 2])
    reference = model.encoder(src, lengths)
    monkeypatch.setattr(encoder_module, "_rnn_in_fp32", lambda x: True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = model.encoder(src, lengths)
    assert guarded.memory.dtype == torch.float32
    assert torch.equal(guarded.memory, reference.memory) and torch.equal(guarded.final, reference.final)


@pytest.mark.parametrize("lengths", [[7, 5, 2], [7, 7, 7]])
def test_a_cpu_without_bf16_runs_the_lstm_encoder_in_fp32_under_bf16(lengths, monkeypatch):
    """On a CPU without bf16 instructions, a bf16 LSTM over a batch of equal lengths went to oneDNN,
    which has none there ("could not create a primitive descriptor"): bf16 training on such a CPU
    crashed at the first such batch. The encoder now runs its layers in fp32 there."""
    from nmt import encoder as encoder_module
    from nmt.config import ModelConfig
    from nmt.model import Seq2Seq

    monkeypatch.setattr(encoder_module, "cpu_lacks_bf16", lambda: True)
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16, dropout=0.0), 20, 20)
    src, tgt, lengths = torch.randint(4, 20, (3, 7)), torch.randint(4, 20, (3, 5)), torch.tensor(lengths)
    reference = model.encoder(src, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = model.encoder(src, lengths)
        model(src, lengths, tgt).float().sum().backward()  # the whole update's path
    assert torch.equal(guarded.memory, reference.memory)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the question is cuDNN's")
def test_bf16_autocast_does_not_run_the_cudnn_encoder_in_fp16():
    """Issue 12, item 5: autocast's cuDNN RNN wrapper once reflattened weights into an fp16 buffer,
    which under bf16 would be fp16 without loss scaling (it still does: it hard-codes kHalf), so the
    encoder turns autocast off around it. Passed on an H200 (torch 2.11.0+cu130), 2026-11-26."""
    from nmt.config import ModelConfig
    from nmt.model import Seq2Seq

    model = Seq2Seq(ModelConfig(cell="lstm", embed_size=16, hidden_size=16, decoder_hidden_size=16,
                                attention_size=16), 20, 20).cuda()
    src = torch.randint(4, 20, (3, 7), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        enc = model.encoder(src, torch.tensor([7, 5, 2], device="cuda"))
    assert enc.memory.dtype != torch.float16
