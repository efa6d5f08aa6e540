"""One training update: forward and backward over its micro-batches, then an optimizer step, or a skip.

Normalisation (fairseq's): every target token of an update weighs the same, however the update is
split over micro-batches (train.accumulate) and processes. Each micro-batch contributes the sum of
its token losses, divided by N, the non-PAD target tokens of the whole update on all P processes.
DDP averages the gradients over the processes, so each process scales its sums by P / N:

    (1/P) Σ_p Σ_m ∇ (P/N) L_pm  =  ∇ (Σ_p Σ_m L_pm) / N

(a mean per micro-batch would weigh the 200-token tail batch of a length pool as much as a full one).

Skipping: the gradient norm is taken after DDP's all-reduce, so it is the same on every process, and
a NaN or inf from any one process (or an fp16 overflow) makes every process skip the update. The
loss stays on the device; the one host read per update is the skip/stop flag, because the step
counter and the learning-rate schedule live on the host and must not advance on a skipped update.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from nmt.config import TrainConfig
from nmt.data.batching import Batch
from nmt.errors import NmtError
from nmt.vocab import PAD


class UpdateOutcome(NamedTuple):
    loss_sum: torch.Tensor  # () this process's summed token loss, on the device
    tokens: torch.Tensor  # () non-PAD target tokens of the whole update, all processes, on the device
    skipped: bool  # the gradient was not finite: weights, schedule and step count unchanged
    stop: bool  # some process received a stop signal (the same answer on every process)


def micro_batch_tokens(tc: TrainConfig, processes: int) -> int:
    """Each process's micro-batch budget: train.max_tokens is the whole update's (all processes and
    accumulation steps), so a recipe trains the same updates on 1, 2 or 8 GPUs."""
    share = tc.max_tokens // (processes * tc.accumulate)
    if share < 1:
        raise NmtError(f"train.max_tokens: {tc.max_tokens} tokens per update cannot be split over {processes} "
                       f"processes x {tc.accumulate} accumulation steps")
    return share


def update_groups(loader, accumulate: int):
    """The loader's micro-batches in lists of `accumulate`, one list per update (the last may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulate:
            yield group
            group = []
    if group:
        yield group


def token_loss_sum(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Summed token cross-entropy; logits (B, T, V), target (B, T); PAD positions count nothing."""
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD,
                           label_smoothing=smoothing, reduction="sum")


def update_tokens(accelerator: Accelerator, group: list[Batch]) -> torch.Tensor:
    """N: non-PAD target tokens of the update's micro-batches on all processes."""
    local = sum((batch.tgt_out != PAD).sum() for batch in group)
    return accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local


def accumulate_gradients(model, accelerator: Accelerator, group: list[Batch], smoothing: float):
    """Backward over the micro-batches of one update; gradients end up as ∇ (summed loss) / N.
    Returns (this process's summed loss, N), both on the device."""
    tokens = update_tokens(accelerator, group)
    scale = accelerator.num_processes / tokens.clamp(min=1)
    loss_sum = torch.zeros((), device=accelerator.device)
    for i, batch in enumerate(group):
        # Gradients are all-reduced once per update, in the last micro-batch's backward.
        last = i == len(group) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
            loss = token_loss_sum(logits, batch.tgt_out, smoothing)
            accelerator.backward(loss * scale)
        loss_sum = loss_sum + loss.detach()
    return loss_sum, tokens


def gradient_norm(accelerator: Accelerator, model, clip_norm: float) -> torch.Tensor:
    """The total gradient norm (unscaled under fp16), clipped to clip_norm when that is set."""
    if clip_norm:
        return accelerator.clip_grad_norm_(model.parameters(), clip_norm)
    accelerator.unscale_gradients()
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def update(model, optimizer, accelerator: Accelerator, group: list[Batch], smoothing: float,
           clip_norm: float, stop_requested: bool) -> UpdateOutcome:
    """One update over `group` (this process's micro-batches). Every process must call it together."""
    loss_sum, tokens = accumulate_gradients(model, accelerator, group, smoothing)
    norm = gradient_norm(accelerator, model, clip_norm)
    flags = torch.stack([(~torch.isfinite(norm)).float(),
                         torch.tensor(float(stop_requested), device=norm.device)])
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags, reduction="sum")  # any process's stop signal stops all
    skipped, stop = (flag > 0 for flag in flags.tolist())
    if accelerator.scaler is not None or not skipped:
        # fp16: the GradScaler sees the same inf, skips the step itself and lowers the loss scale.
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return UpdateOutcome(loss_sum, tokens, skipped, stop)
