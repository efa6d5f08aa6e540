"""Pieces of the training loop checked in-process: non-finite losses, the LR schedule, bf16 on CPU."""

import json

import pytest
import torch
from accelerate import Accelerator

from conftest import TINY, reverse_corpus, run_cli
from nmt.config import Config, TrainConfig
from nmt.data import collate
from nmt.errors import NmtError
from nmt.optim import LRSchedule, build_optimizer, build_scheduler
from nmt.run_state import Progress, Run, observe_validation
from nmt.train import _done, _update


class Poisoned(torch.nn.Module):
    """Returns NaN logits, as a model does after an fp16 overflow or a bad batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))

    def forward(self, src, src_lengths, tgt_in):
        return (self.weight.sum() * float("nan")).expand(*tgt_in.shape, 10)


def test_non_finite_losses_are_skipped_then_training_stops(tmp_path):
    cfg = Config(train=TrainConfig(max_bad_losses=3))
    model = Poisoned()
    optimizer = build_optimizer(cfg.train, model.parameters())
    run = Run(cfg, tmp_path, Accelerator(cpu=True), model, optimizer, build_scheduler(cfg.train, optimizer),
              tokenizer=None, metrics=None)
    batch = collate([{"src_ids": [5, 3], "tgt_ids": [6, 7]}])
    bad = 0
    for expected in (1, 2):
        loss, bad = _update(run, batch, bad)
        assert bad == expected and loss != loss  # NaN
        assert torch.equal(model.weight.detach(), torch.ones(3))  # no update was applied
    with pytest.raises(NmtError, match="3 non-finite losses in a row; stopping"):
        _update(run, batch, bad)


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
