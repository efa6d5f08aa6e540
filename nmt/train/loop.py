"""Training with Hugging Face Accelerate: one function and small helpers, no trainer class.

The same code runs in one process or under `accelerate launch --num_processes N -m nmt train`; only
the main process writes files. Mixed precision and DDP are Accelerate's; an update's micro-batches
(train.accumulate) are grouped here and run under Accelerate's `no_sync` (nmt/train/update.py), because the
loss is normalised by the target tokens of the whole update, which must be known before the first
backward. train.max_tokens is that whole update's budget, on any number of processes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from nmt.config import Config, save_config
from nmt.data import batching
from nmt.data.prepare import Prepared, prepare
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq, count_parameters
from nmt.precision import AUTOCAST_DTYPES, set_precision_policy
from nmt.train.cuda_graphs import capture_training, use_cuda_graphs
from nmt.train.epochs import epoch_starter
from nmt.train.finetune import init_model, with_parent
from nmt.train.log import MetricsLog, Window
from nmt.train.optim import build_optimizer, build_scheduler
from nmt.train.run_checks import check_free_space, check_replicas, check_resume, check_resume_data, check_run_dir
from nmt.train.run_state import Progress, Run, observe_validation, restore, save
from nmt.train.stop_signal import StopSignal
from nmt.train.update import micro_batch_tokens, update, update_groups
from nmt.train.validate import validate
from nmt.translate.evaluation import evaluate_checkpoint

log = logging.getLogger("nmt.train")
MIN_LOSS_SCALE = 2.0 ** -14  # fp16: a loss scale below this means non-finite losses, not overflows


def load_data(cfg: Config, run_dir: Path, accelerator: Accelerator, resume: bool) -> Prepared:
    """The tokenizer and tokenised splits: prepared once into the data cache by the main process
    (if not there yet) while the others wait, then memory-mapped by every process."""
    with accelerator.main_process_first():
        ready = prepare(cfg, run_dir, may_build=accelerator.is_main_process, resume=resume,
                        parent=Path(cfg.train.init_from) if cfg.train.init_from else None)
    if resume:
        check_resume_data(run_dir, ready.train_key)
    if accelerator.num_processes > 1:
        log.info("data prepared once, by the main process; all %d processes map the same cache files",
                 accelerator.num_processes)
    log.info("training pairs: %s", ", ".join(f"{k} {v}" for k, v in ready.counts.items()))
    if len(ready.train_rows) == 0:
        raise NmtError("no training pairs left after filtering (see data.max_len and data.max_ratio)")
    return ready


def _accelerator(cfg: Config, run_dir: Path) -> Accelerator:
    # Accumulation is nmt.train.update's (no_sync over an update's micro-batches), not Accelerate's
    # gradient_accumulation_steps: the loss is normalised by the tokens of the whole update.
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision,
                              log_with="tensorboard" if cfg.train.tensorboard else None,
                              project_dir=str(run_dir))
    if cfg.train.mixed_precision == "fp16" and accelerator.scaler is None:
        raise NmtError(f"train.mixed_precision: fp16 needs a GPU ({accelerator.device} has no fp16 autocast "
                       "with a gradient scaler in Accelerate); use bf16 or no")
    return accelerator


def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train a model as `cfg` says, in `run_dir`; returns the final validation and test scores (or, for a run
    stopped by a signal, where it stopped and, on the main process, the command that resumes it)."""
    run_dir = Path(run_dir)
    cfg = with_parent(cfg, resume)  # refuses a config the parent's weights cannot serve, before any file is written
    check_run_dir(run_dir, resume)
    accelerator = _accelerator(cfg, run_dir)
    graphs = use_cuda_graphs(cfg.train.cuda_graphs, accelerator.device)  # refuse `on` off CUDA before any work
    if resume:
        check_resume(run_dir, cfg, accelerator)
    share = micro_batch_tokens(cfg.train, accelerator.num_processes)
    if not accelerator.is_main_process:
        logging.getLogger("nmt").setLevel(logging.WARNING)  # one copy of the log, from rank 0
    log.info("global batch: up to %d target tokens per update = %d process(es) x %d micro-batch(es) x %d tokens",
             share * accelerator.num_processes * cfg.train.accumulate, accelerator.num_processes,
             cfg.train.accumulate, share)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ready = load_data(cfg, run_dir, accelerator, resume)  # on --resume, refuses other training data first
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
        if cfg.train.tensorboard:
            accelerator.init_trackers("tensorboard")
    tokenizer, valid_ds = ready.tokenizer, ready.valid
    set_seed(cfg.train.seed)  # the same initial weights in every process
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    set_precision_policy(model, accelerator.device.type, AUTOCAST_DTYPES[cfg.train.mixed_precision])
    if graphs:  # before `prepare`, which wraps the forward in autocast
        capture_training(model)
    # Dropout: a stream per process (seed + rank), or equal-shaped batches draw equal masks on all ranks.
    set_seed(cfg.train.seed, device_specific=True)
    log.info("model: %s cell, %d parameters", cfg.model.cell, count_parameters(model))
    check_free_space(run_dir, count_parameters(model), cfg.train.keep_last)
    optimizer = build_optimizer(cfg.train, init_model(model, cfg, resume))  # before prepare: every process loads
    scheduler = build_scheduler(cfg.train, optimizer)  # stepped by us: one step per update
    loader, _ = batching.make_loader(ready.train, share, cfg.train.seed, shuffle=True, rows=ready.train_rows)
    begin_epoch = epoch_starter(cfg, ready, loader, accelerator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    run = Run(cfg, run_dir, accelerator, model, optimizer, scheduler, tokenizer,
              MetricsLog(accelerator, run_dir / "metrics.jsonl"), ready.train_key)
    progress = restore(run) if resume else Progress()
    stop = StopSignal()
    try:
        results = {"valid": _loop(run, loader, begin_epoch, valid_ds, progress, stop)}
    finally:
        stop.restore()
    if stop.agreed:
        results = {"stopped": stop.agreed, "step": progress.step}
        if accelerator.is_main_process:
            results["resume"] = _resume_command(accelerator, run_dir)
    else:
        check_replicas(run.accelerator, model, run.metrics, progress.step)
        if accelerator.is_main_process:
            if cfg.data.test:
                results["test"] = evaluate_checkpoint(run_dir, cfg.data.test, accelerator.device, hyp_dir=run_dir)
            (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        accelerator.wait_for_everyone()
    del model, optimizer, loader, run
    _tear_down(accelerator)
    return results


def _resume_command(accelerator: Accelerator, run_dir: Path) -> str:
    """The command that continues a run stopped by a signal (the caller prints it)."""
    launcher = (f"accelerate launch --num_processes {accelerator.num_processes} ... -m nmt train"
                if accelerator.num_processes > 1 else "nmt-train")
    return f"{launcher} {run_dir / 'config.yaml'} --run-dir {run_dir} --resume"


def _tear_down(accelerator: Accelerator) -> None:
    """The process group goes last, on every process. The caller has dropped its references to the
    prepared model, optimizer and loader first: DDP's reducer holds the backend's pending work, and
    when it outlived the group, Gloo's threads could abort the process at exit ("terminate called
    without an active exception", seen in the 2-process test)."""
    accelerator.free_memory()  # Accelerate's own references, then the garbage collector
    accelerator.end_training()


def _update(run: Run, group: list[batching.Batch], progress: Progress, stop: StopSignal, bad: int):
    """One update with its bookkeeping; returns (outcome, consecutive skipped updates)."""
    tc = run.cfg.train
    outcome = update(run.model, run.optimizer, run.accelerator, group, tc.label_smoothing, tc.clip_norm,
                     stop.received is not None)
    progress.batches_done += len(group)
    if outcome.stop:  # the agreed flag, never the local one: every process leaves at this update
        stop.agreed = stop.received or "a stop signal on another process"
    if not outcome.skipped:
        run.scheduler.step()
        progress.step += 1
        return outcome, 0
    progress.skipped += 1
    scaler = run.accelerator.scaler
    if scaler is not None and scaler.get_scale() >= MIN_LOSS_SCALE:
        # An fp16 overflow, which the scaler has answered by lowering its scale (logged as loss_scale);
        # only a scale collapsing below MIN_LOSS_SCALE means the loss itself is broken (fairseq's rule).
        log.info("update skipped: fp16 overflow, loss scale now %g (%d skipped in all)", scaler.get_scale(),
                 progress.skipped)
        return outcome, 0
    log.warning("update skipped: non-finite gradient (%d in a row, %d in all)", bad + 1, progress.skipped)
    if bad + 1 >= tc.max_bad_losses:
        raise NmtError(f"{bad + 1} non-finite updates in a row; stopping. The last good checkpoint is kept; "
                       "try a lower train.lr or train.mixed_precision=no")
    return outcome, bad + 1


def _loop(run: Run, loader, begin_epoch, valid_ds, progress: Progress, stop: StopSignal) -> dict:
    """Epochs of updates, with validation, checkpoints, early stopping, a step limit and signals."""
    acc, tc = run.accelerator, run.cfg.train
    total = tc.max_steps or tc.epochs * max(1, math.ceil(len(loader) / tc.accumulate))
    bar = tqdm(total=total, initial=progress.step, disable=not acc.is_main_process,
               desc="train", unit="step", mininterval=5, dynamic_ncols=True)
    window = Window(acc.device)
    last_valid, validated_at, bad = {}, -1, 0
    while progress.epoch < tc.epochs and not _done(tc, progress) and not stop.agreed:
        begin_epoch(progress.epoch)  # the epoch's batches (and, sampling, its segmentation)
        skip = progress.batches_done  # resume mid-epoch: same order, batches already seen skipped
        for group in update_groups(acc.skip_first_batches(loader, skip) if skip else loader, tc.accumulate):
            outcome, bad = _update(run, group, progress, stop, bad)
            window.add(outcome.loss_sum, outcome.tokens, outcome.skipped)
            if not outcome.skipped:
                bar.update(1)
                if progress.step % tc.log_every == 0:
                    values = window.flush(acc, progress, run.scheduler.get_last_lr()[0])
                    run.metrics(progress.step, **values)
                    bar.set_postfix(loss=f"{values['train_loss']:.3f}", tok_s=f"{values['tgt_tokens_per_s']:.0f}")
                if progress.step % tc.eval_every == 0:
                    last_valid, validated_at = _validate_and_save(run, valid_ds, progress), progress.step
            if _done(tc, progress) or stop.agreed:
                break
        else:
            progress.epoch, progress.batches_done = progress.epoch + 1, 0
    bar.close()
    if stop.agreed:
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
    acc = run.accelerator
    result = validate(acc.unwrap_model(run.model), valid_ds, run.tokenizer, run.cfg, acc,
                      micro_batch_tokens(run.cfg.train, acc.num_processes))
    improved = observe_validation(progress, result["valid_bleu"], run.cfg.train, run.scheduler.lr_lambdas[0],
                                  scheduled)
    run.metrics(progress.step, epoch=progress.epoch, **result, best_bleu=progress.best_bleu,
                valid_seconds=round(time.perf_counter() - start, 1))
    if run.accelerator.is_main_process:
        tqdm.write(f"step {progress.step}: valid loss {result['valid_loss']:.3f} ppl {result['valid_ppl']:.2f} "
                   f"BLEU {result['valid_bleu']:.2f}{' (best)' if improved else ''}")
    save(run, progress, result, improved)
    return result
