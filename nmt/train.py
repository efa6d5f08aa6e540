"""Training with Hugging Face Accelerate: one function and small helpers, no trainer class.

The same code runs in one process or under `accelerate launch --num_processes N`; only the main
process writes files. Mixed precision, accumulation and DDP are Accelerate's; we only call its idioms.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from nmt import data
from nmt.config import Config, save_config
from nmt.errors import NmtError
from nmt.evaluate import evaluate_checkpoint, score
from nmt.model import Seq2Seq, count_parameters
from nmt.optim import build_optimizer, build_scheduler
from nmt.run_state import (MetricsLog, Progress, Run, StopSignal, Window, check_free_space, check_run_dir,
                           observe_validation, restore, save)
from nmt.tokenizer import PAD, Tokenizer
from nmt.translate import decode_ids

log = logging.getLogger("nmt.train")


def prepare_tokenizer(cfg: Config, run_dir: Path, train_ds, accelerator: Accelerator) -> Tokenizer:
    """Train SentencePiece on the training split once (main process); everyone then loads it."""
    have = (run_dir / "spm.model").exists() or (run_dir / "spm.src.model").exists()
    if accelerator.is_main_process and not have:
        log.info("training SentencePiece (%s, %d pieces)", cfg.tokenizer.model_type, cfg.tokenizer.vocab_size)
        Tokenizer.train(train_ds["src"], train_ds["tgt"], cfg.tokenizer, run_dir)
    accelerator.wait_for_everyone()
    return Tokenizer.load(run_dir)


def load_data(cfg: Config, run_dir: Path, accelerator: Accelerator):
    train_ds = data.load_split(cfg.data, cfg.data.train)
    if cfg.data.train_limit:
        train_ds = train_ds.select(range(min(cfg.data.train_limit, len(train_ds))))
    valid_ds = data.load_split(cfg.data, cfg.data.valid)
    if cfg.data.valid_limit:
        valid_ds = valid_ds.select(range(min(cfg.data.valid_limit, len(valid_ds))))
    tokenizer = prepare_tokenizer(cfg, run_dir, train_ds, accelerator)
    with accelerator.main_process_first():
        train_ds, valid_ds = data.tokenize(train_ds, tokenizer), data.tokenize(valid_ds, tokenizer)
    train_ds, counts = data.filter_pairs(train_ds, cfg.data.max_len, cfg.data.max_ratio)
    log.info("training pairs: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    if len(train_ds) == 0:
        raise NmtError("no training pairs left after filtering (see data.max_len and data.max_ratio)")
    return tokenizer, train_ds, valid_ds


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean token cross-entropy; logits (B, T, V), target (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD,
                           label_smoothing=smoothing)


@torch.inference_mode()
def validate(model, valid_ds, tokenizer: Tokenizer, cfg: Config, accelerator: Accelerator) -> dict:
    """Validation loss/perplexity and greedy BLEU; each process takes a share of the sentences."""
    model.eval()
    total, tokens = torch.zeros(2, device=accelerator.device).unbind(0)
    with accelerator.split_between_processes(list(range(len(valid_ds)))) as mine:
        share = valid_ds.select(mine)
        loader, _ = data.make_loader(share, cfg.train.max_tokens, 0, shuffle=False)
        with accelerator.autocast():
            for batch in loader:
                batch = data.Batch(*(t.to(accelerator.device) for t in batch))
                logits = model(batch.src, batch.src_lengths, batch.tgt_in)
                n = (batch.tgt_out != PAD).sum()
                total = total + loss_fn(logits, batch.tgt_out, 0.0) * n
                tokens = tokens + n
            greedy = dataclasses.replace(cfg.decode, beam_size=1)
            hyps = decode_ids(model, list(share["src_ids"]), greedy, accelerator.device) if len(share) else []
        pairs = list(zip(mine, tokenizer.decode([h[0].tokens for h in hyps])))
    total, tokens = accelerator.reduce(torch.stack([total, tokens]), reduction="sum").unbind(0)
    ordered = [text for _, text in sorted(gather_object(pairs))]
    bleu = score(ordered, list(valid_ds["tgt"]), cfg.eval.tokenize)["bleu"]
    loss = float(total / tokens.clamp(min=1))
    model.train()
    return {"valid_loss": round(loss, 4), "valid_ppl": round(math.exp(min(loss, 50)), 2), "valid_bleu": bleu}


def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train a model as `cfg` says, in `run_dir`; returns the final validation and test scores."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume)
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision,
                              gradient_accumulation_steps=cfg.train.accumulate,
                              log_with="tensorboard" if cfg.train.tensorboard else None,
                              project_dir=str(run_dir))
    if cfg.train.mixed_precision == "fp16" and accelerator.scaler is None:
        raise NmtError(f"train.mixed_precision: fp16 needs a GPU ({accelerator.device} has no fp16 autocast "
                       "with a gradient scaler in Accelerate); use bf16 or no")
    if not accelerator.is_main_process:
        logging.getLogger("nmt").setLevel(logging.WARNING)  # one copy of the log, from rank 0
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    set_seed(cfg.train.seed)
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
        if cfg.train.tensorboard:
            accelerator.init_trackers("tensorboard")
    tokenizer, train_ds, valid_ds = load_data(cfg, run_dir, accelerator)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    log.info("model: %s cell, %d parameters", cfg.model.cell, count_parameters(model))
    check_free_space(run_dir, count_parameters(model), cfg.train.keep_last)
    optimizer = build_optimizer(cfg.train, model.parameters())
    scheduler = build_scheduler(cfg.train, optimizer)  # stepped by us: one step per update
    loader, sampler = data.make_loader(train_ds, cfg.train.max_tokens, cfg.train.seed, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    run = Run(cfg, run_dir, accelerator, model, optimizer, scheduler, tokenizer,
              MetricsLog(accelerator, run_dir / "metrics.jsonl"))
    progress = restore(run) if resume else Progress()
    stop = StopSignal()
    try:
        results = {"valid": _loop(run, loader, sampler, valid_ds, progress, stop)}
    finally:
        stop.restore()
    if stop.received:
        if accelerator.is_main_process:
            print(f"stopped by {stop.received} at step {progress.step}; checkpoint saved. Continue with:\n"
                  f"  nmt-train {run_dir / 'config.yaml'} --run-dir {run_dir} --resume", file=sys.stderr)
        return {"stopped": stop.received, "step": progress.step}
    # One number per process: replicas that drifted apart under DDP would show different sums.
    checksum = sum(p.detach().double().sum().item() for p in accelerator.unwrap_model(model).parameters())
    run.metrics(progress.step, weights_checksum_per_process=gather_object([checksum]))
    if accelerator.is_main_process:
        if cfg.data.test:
            results["test"] = evaluate_checkpoint(run_dir, cfg.data.test, accelerator.device, hyp_dir=run_dir)
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def _update(run: Run, batch: data.Batch, bad_losses: int) -> tuple[float, int]:
    """Forward, backward and (at the end of an accumulation cycle) an optimizer step.

    A non-finite loss is skipped on every process; returns (loss, consecutive non-finite losses).
    """
    acc, tc = run.accelerator, run.cfg.train
    with acc.accumulate(run.model):
        logits = run.model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = loss_fn(logits, batch.tgt_out, tc.label_smoothing)
        finite = torch.isfinite(loss.detach()).float()
        if acc.num_processes > 1:
            finite = acc.reduce(finite, reduction="min")
        if not finite:
            run.optimizer.zero_grad(set_to_none=True)
            log.warning("non-finite loss skipped (%d in a row)", bad_losses + 1)
            if bad_losses + 1 >= tc.max_bad_losses:
                raise NmtError(f"{bad_losses + 1} non-finite losses in a row; stopping. The last good "
                               f"checkpoint is kept; try a lower train.lr or train.mixed_precision=no")
            return float("nan"), bad_losses + 1
        acc.backward(loss)
        if acc.sync_gradients and tc.clip_norm:
            acc.clip_grad_norm_(run.model.parameters(), tc.clip_norm)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss.item(), 0


def _loop(run: Run, loader, sampler, valid_ds, progress: Progress, stop: StopSignal) -> dict:
    """Epochs of updates, with validation, checkpoints, early stopping, a step limit and signals."""
    acc, tc = run.accelerator, run.cfg.train
    total = tc.max_steps or tc.epochs * max(1, len(loader) // tc.accumulate)
    bar = tqdm(total=total, initial=progress.step, disable=not acc.is_main_process,
               desc="train", unit="step", mininterval=5, dynamic_ncols=True)
    window = Window()
    last_valid, validated_at, bad_losses = {}, -1, 0
    while progress.epoch < tc.epochs and not _done(tc, progress):
        sampler.use_epoch(progress.epoch)
        skip = progress.batches_done  # resume mid-epoch: same order, batches already seen skipped
        for batch in acc.skip_first_batches(loader, skip) if skip else loader:
            loss, bad_losses = _update(run, batch, bad_losses)
            progress.batches_done += 1
            window.add(loss, int((batch.tgt_out != PAD).sum()) * acc.num_processes)
            if not acc.sync_gradients or bad_losses:
                continue
            if not acc.optimizer_step_was_skipped:
                run.scheduler.step()
            progress.step += 1
            bar.update(1)
            if progress.step % tc.log_every == 0:
                values = window.flush(progress, run.scheduler.get_last_lr()[0])
                run.metrics(progress.step, **values)
                bar.set_postfix(loss=f"{values['train_loss']:.3f}", tok_s=f"{values['tgt_tokens_per_s']:.0f}")
            if progress.step % tc.eval_every == 0:
                last_valid, validated_at = _validate_and_save(run, valid_ds, progress), progress.step
            if _done(tc, progress) or stop.agreed(acc):
                break
        else:
            progress.epoch, progress.batches_done = progress.epoch + 1, 0
        if stop.received:
            break
    bar.close()
    if stop.received:
        save(run, progress, {}, best=False)
    elif validated_at != progress.step:
        last_valid = _validate_and_save(run, valid_ds, progress, scheduled=False)
    return last_valid


def _done(tc, progress: Progress) -> bool:
    out_of_steps = bool(tc.max_steps) and progress.step >= tc.max_steps
    out_of_patience = bool(tc.patience) and progress.stalled >= tc.patience
    return out_of_steps or out_of_patience


def _validate_and_save(run: Run, valid_ds, progress: Progress, scheduled: bool = True) -> dict:
    """Validate, log, and save a checkpoint (marked best if it is).

    Only validations on the eval_every grid feed the plateau schedule and the patience count: the
    one that closes a run off the grid (a step limit) must not, or extending that run with --resume
    and a higher limit would train differently from a run given the higher limit at once.
    """
    start = time.perf_counter()
    result = validate(run.accelerator.unwrap_model(run.model), valid_ds, run.tokenizer, run.cfg, run.accelerator)
    improved = observe_validation(progress, result["valid_bleu"], run.cfg.train, run.scheduler.lr_lambdas[0],
                                  scheduled)
    run.metrics(progress.step, epoch=progress.epoch, **result, best_bleu=progress.best_bleu,
                valid_seconds=round(time.perf_counter() - start, 1))
    if run.accelerator.is_main_process:
        tqdm.write(f"step {progress.step}: valid loss {result['valid_loss']:.3f} ppl {result['valid_ppl']:.2f} "
                   f"BLEU {result['valid_bleu']:.2f}{' (best)' if improved else ''}")
    save(run, progress, result, improved)
    return result
