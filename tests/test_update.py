"""One training update (nmt/train/update.py, nmt/train/loop.py's bookkeeping) checked in-process: per-token
normalisation over micro-batches, skipped updates (NaN, fp16 overflow) and the host reads per update.
The two-process halves of these checks are in test_distributed.py."""

import pytest
import torch
from accelerate import Accelerator

from conftest import HostSyncs
from nmt.config import Config, ModelConfig, TrainConfig
from nmt.data.batching import collate
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq
from nmt.train.log import Window
from nmt.train.loop import _update
from nmt.train.optim import build_optimizer, build_scheduler
from nmt.train.run_state import Progress, Run
from nmt.train.stop_signal import StopSignal
from nmt.train.update import accumulate_gradients

VOCAB = 12


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second OpenMP thread only waits for the first (on a loaded 2-core machine,
    40 s instead of 0.3 s for the host-read test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def examples(n: int = 12, seed: int = 0) -> list[dict]:
    """Pairs of very unequal lengths (1 to 9 target pieces), so micro-batches differ in size."""
    g = torch.Generator().manual_seed(seed)
    lengths = [1 + (7 * i) % 9 for i in range(n)]
    return [{"src_ids": torch.randint(4, VOCAB, (2 + k % 3,), generator=g).tolist() + [3],
             "tgt_ids": torch.randint(4, VOCAB, (k,), generator=g).tolist()} for k in lengths]


def tiny_model(dtype=torch.float64) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(embed_size=8, hidden_size=8, decoder_hidden_size=8, attention_size=8, dropout=0.0)
    return Seq2Seq(cfg, VOCAB, VOCAB).to(dtype)


def gradients(groups_of_rows: list[list[dict]], smoothing: float = 0.1) -> dict:
    model, acc = tiny_model(), Accelerator(cpu=True)
    accumulate_gradients(model, acc, [collate(rows) for rows in groups_of_rows], smoothing)
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def mean_per_micro_batch(groups_of_rows: list[list[dict]]) -> dict:
    """The old normalisation: each micro-batch's mean, averaged over the micro-batches."""
    model = tiny_model()
    for rows in groups_of_rows:
        batch = collate(rows)
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0,
                                                 label_smoothing=0.1)
        (loss / len(groups_of_rows)).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


# Two processes x two unequal micro-batches (test_distributed.py): row ranges of examples().
SPLIT_OVER_PROCESSES = [[(0, 1), (1, 3)], [(3, 8), (8, 12)]]


def test_every_token_weighs_the_same_however_the_update_is_split():
    rows = examples()
    whole = gradients([rows])
    # Unequal micro-batches: 1 x 4 (accumulate 4) and 2 x 2 (accumulate 2) of the same examples.
    four = gradients([rows[:1], rows[1:3], rows[3:8], rows[8:]])
    two = gradients([rows[:3], rows[3:]])
    assert max_diff(four, whole) < 1e-12 and max_diff(two, whole) < 1e-12
    # A mean per micro-batch, as before, weighs the one-example batch like the five-example one.
    assert max_diff(mean_per_micro_batch([rows[:1], rows[1:3], rows[3:8], rows[8:]]), whole) > 1e-3


class Poisoned(torch.nn.Module):
    """Returns NaN logits, as a model does after an fp16 overflow or a bad batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))

    def forward(self, src, src_lengths, tgt_in):
        return (self.weight.sum() * float("nan")).expand(*tgt_in.shape, 10)


class Loud(torch.nn.Module):
    """Logits 1000 x its weights: gradients near 1000, which a loss scale of 2^127 overflows."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(VOCAB))

    def forward(self, src, src_lengths, tgt_in):
        return (1000 * self.weight).expand(*tgt_in.shape, VOCAB)


def make_run(model, tmp_path, acc=None, **train):
    cfg = Config(train=TrainConfig(**train))
    acc = acc or Accelerator(cpu=True)
    optimizer = acc.prepare(build_optimizer(cfg.train, model.parameters()))
    return Run(cfg, tmp_path, acc, model, optimizer, build_scheduler(cfg.train, optimizer), tokenizer=None,
               metrics=None)


def test_non_finite_updates_are_skipped_then_training_stops(tmp_path):
    model = Poisoned()
    run, progress, stop = make_run(model, tmp_path, max_bad_losses=3), Progress(), StopSignal()
    stop.restore()
    group = [collate([{"src_ids": [5, 3], "tgt_ids": [6, 7]}])]
    bad = 0
    for expected in (1, 2):
        outcome, bad = _update(run, group, progress, stop, bad)
        assert outcome.skipped and bad == expected and progress.skipped == expected and progress.step == 0
        assert torch.equal(model.weight.detach(), torch.ones(3))  # no update was applied
    with pytest.raises(NmtError, match="3 non-finite updates in a row; stopping"):
        _update(run, group, progress, stop, bad)


def test_fp16_overflow_steps_are_counted_as_skipped(tmp_path, monkeypatch):
    """A GradScaler starting at 2^127 overflows fp32 gradients until it has halved enough; the fused
    Adam skips those steps inside its kernel, so only the scale shows them. They must not advance the
    schedule, the step count or Adam's own step."""
    monkeypatch.setattr(Accelerator, "mixed_precision", property(lambda self: "fp16"))
    acc = Accelerator(cpu=True)
    acc.scaler, acc.native_amp = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127), True
    model = Loud()
    run = make_run(model, tmp_path, acc=acc, lr=1e-3, warmup_steps=100, schedule="constant", max_bad_losses=20)
    progress, stop, bad = Progress(), StopSignal(), 0
    stop.restore()
    group = [collate(examples(6))]
    scales, moved = [acc.scaler.get_scale()], []
    for _ in range(16):
        before = [p.detach().clone() for p in model.parameters()]
        outcome, bad = _update(run, group, progress, stop, bad)
        scales.append(acc.scaler.get_scale())
        moved.append(any(not torch.equal(a, p) for a, p in zip(before, model.parameters())))
    shrank = sum(after < before for before, after in zip(scales, scales[1:]))
    assert shrank >= 1 and moved[:shrank] == [False] * shrank and all(moved[shrank:])
    assert progress.skipped == shrank and progress.step == 16 - shrank
    assert run.scheduler.last_epoch == progress.step
    adam_steps = {int(s["step"]) for s in run.optimizer.state_dict()["state"].values()}
    assert adam_steps == {progress.step}


def test_one_host_read_per_update_and_one_per_log_line(tmp_path, monkeypatch):
    model = tiny_model(torch.float32)
    run, progress, stop, bad = make_run(model, tmp_path, clip_norm=1.0), Progress(), StopSignal(), 0
    stop.restore()
    group = [collate(examples(6, seed=1)), collate(examples(6, seed=2))]  # accumulate 2
    window = Window(run.accelerator.device)
    syncs = HostSyncs(monkeypatch)
    with torch.no_grad():  # what the model's forward reads itself (the packed encoder's lengths)
        for batch in group:
            model(batch.src, batch.src_lengths, batch.tgt_in)
    in_forward, syncs.count = syncs.count, 0
    losses = []
    for _ in range(5):
        outcome, bad = _update(run, group, progress, stop, bad)
        window.add(outcome.loss_sum, outcome.tokens, outcome.skipped)
        losses.append(outcome.loss_sum)
    # One read per update, the skip/stop flag: the loss and token counts stay on the device.
    assert syncs.count == 5 * (1 + in_forward)
    values = window.flush(run.accelerator, progress, 1e-3)
    assert syncs.count == 5 * (1 + in_forward) + 1
    monkeypatch.undo()
    # The logged loss is the per-token mean over the window's updates (targets with their EOS).
    tokens = sum(len(r["tgt_ids"]) + 1 for r in examples(6, seed=1) + examples(6, seed=2))
    assert values["train_loss"] == pytest.approx(sum(l.item() for l in losses) / (5 * tokens), abs=1e-4)
