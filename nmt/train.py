"""Training with Hugging Face Accelerate: one function and small helpers, no trainer class.

The same code runs in one process or under `accelerate launch --num_processes N`; only the main
process writes files. Mixed precision, accumulation and DDP are Accelerate's; we only call its idioms.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from nmt import checkpoint, data
from nmt.config import Config, save_config
from nmt.errors import NmtError
from nmt.evaluate import evaluate_checkpoint, score
from nmt.model import Seq2Seq, count_parameters
from nmt.optim import build_optimizer, build_scheduler
from nmt.tokenizer import PAD, Tokenizer
from nmt.translate import decode_ids

log = logging.getLogger("nmt.train")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so that --resume continues exactly."""
    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of `epoch` already consumed (accumulation micro-batches included)
    best_bleu: float = -1.0
    bad_evals: int = 0


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Fail before any work if the run directory is unusable or would be overwritten."""
    if (run_dir / "checkpoints").exists() and not resume:
        raise NmtError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
    if resume and not (run_dir / "last").exists():
        raise NmtError(f"{run_dir}: nothing to resume (no 'last' checkpoint)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"x" * 1024)
        probe.unlink()
    except OSError as err:
        raise NmtError(f"{run_dir}: not writable ({err.strerror})") from None


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
            greedy = _greedy_options(cfg)
            hyps = decode_ids(model, list(share["src_ids"]), greedy, accelerator.device) if len(share) else []
        pairs = list(zip(mine, tokenizer.decode([h[0].tokens for h in hyps])))
    total, tokens = accelerator.reduce(torch.stack([total, tokens]), reduction="sum").unbind(0)
    ordered = [text for _, text in sorted(gather_object(pairs))]
    bleu = score(ordered, list(valid_ds["tgt"]), cfg.eval.tokenize)["bleu"]
    loss = float(total / tokens.clamp(min=1))
    model.train()
    return {"valid_loss": round(loss, 4), "valid_ppl": round(math.exp(min(loss, 50)), 2), "valid_bleu": bleu}


def _greedy_options(cfg: Config):
    import dataclasses
    return dataclasses.replace(cfg.decode, beam_size=1)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _save(accelerator, run_dir, model, cfg, tokenizer, optimizer, scheduler, progress: Progress,
          metrics: dict, best: bool) -> None:
    """Checkpoint on the main process: weights for translation, trainer state for --resume."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "progress": vars(progress).copy(), "rng": _rng_state()}
        if accelerator.scaler is not None:
            trainer["scaler"] = accelerator.scaler.state_dict()
        meta = {"step": progress.step, "epoch": progress.epoch, **metrics,
                "src_vocab_size": tokenizer.src_vocab_size, "tgt_vocab_size": tokenizer.tgt_vocab_size}
        links = ("last", "best") if best else ("last",)
        checkpoint.save_checkpoint(run_dir, accelerator.unwrap_model(model), cfg, tokenizer, meta,
                                   trainer, links, cfg.train.keep_last)
    accelerator.wait_for_everyone()


def _restore(run_dir: Path, model, optimizer, scheduler, accelerator) -> Progress:
    ckpt = (run_dir / "last").resolve()
    checkpoint.load_weights(accelerator.unwrap_model(model), ckpt / "model.safetensors")
    state = checkpoint.load_trainer_state(ckpt)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if accelerator.scaler is not None and "scaler" in state:
        accelerator.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    log.info("resumed from %s (step %d)", ckpt.name, state["progress"]["step"])
    return Progress(**state["progress"])


class MetricsLog:
    """Appends JSON lines to RUN_DIR/metrics.jsonl (main process) and forwards to Accelerate's trackers."""

    def __init__(self, accelerator: Accelerator, path: Path):
        self.accelerator, self.path = accelerator, path

    def __call__(self, step: int, **values) -> None:
        if self.accelerator.is_main_process:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        self.accelerator.log(values, step=step)


def train(cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train a model as `cfg` says, in `run_dir`; returns the final validation and test scores."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume)
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision,
                              gradient_accumulation_steps=cfg.train.accumulate,
                              log_with="tensorboard" if cfg.train.tensorboard else None,
                              project_dir=str(run_dir))
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
    optimizer = build_optimizer(cfg.train, model.parameters())
    scheduler = build_scheduler(cfg.train, optimizer)
    loader, sampler = data.make_loader(train_ds, cfg.train.max_tokens, cfg.train.seed, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    progress = _restore(run_dir, model, optimizer, scheduler, accelerator) if resume else Progress()
    metrics = MetricsLog(accelerator, run_dir / "metrics.jsonl")
    last = _loop(cfg, run_dir, accelerator, model, optimizer, scheduler, loader, sampler,
                 tokenizer, valid_ds, progress, metrics)
    results = {"valid": last}
    if cfg.data.test and accelerator.is_main_process:
        results["test"] = evaluate_checkpoint(run_dir, cfg.data.test, accelerator.device, hyp_dir=run_dir)
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def _loop(cfg, run_dir, accelerator, model, optimizer, scheduler, loader, sampler, tokenizer,
          valid_ds, progress: Progress, metrics: MetricsLog) -> dict:
    """Epochs of updates, with validation, checkpoints, early stopping and a step limit."""
    tc = cfg.train
    steps_per_epoch = max(1, len(loader) // tc.accumulate)
    total = tc.max_steps or tc.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=progress.step, disable=not accelerator.is_main_process,
               desc="train", unit="step", mininterval=5, dynamic_ncols=True)
    window = {"loss": 0.0, "batches": 0, "tokens": 0, "start": time.perf_counter()}
    last_valid, validated_at = {}, -1
    schedule = scheduler.lr_lambdas[0]
    while progress.epoch < tc.epochs and not _done(tc, progress):
        sampler.set_epoch(progress.epoch)
        skip = progress.batches_done
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            with accelerator.accumulate(model):
                logits = model(batch.src, batch.src_lengths, batch.tgt_in)
                loss = loss_fn(logits, batch.tgt_out, tc.label_smoothing)
                accelerator.backward(loss)
                if accelerator.sync_gradients and tc.clip_norm:
                    accelerator.clip_grad_norm_(model.parameters(), tc.clip_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            progress.batches_done += 1
            window["loss"] += loss.item()
            window["batches"] += 1
            window["tokens"] += int((batch.tgt_out != PAD).sum()) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            progress.step += 1
            bar.update(1)
            if progress.step % tc.log_every == 0:
                _log_window(window, progress, scheduler, metrics, bar)
            if progress.step % tc.eval_every == 0:
                last_valid = _validate_and_save(cfg, run_dir, accelerator, model, optimizer, scheduler,
                                                tokenizer, valid_ds, progress, metrics, schedule)
                validated_at = progress.step
            if _done(tc, progress):
                break
        else:
            progress.epoch += 1
            progress.batches_done = 0
    bar.close()
    if validated_at != progress.step:
        last_valid = _validate_and_save(cfg, run_dir, accelerator, model, optimizer, scheduler,
                                        tokenizer, valid_ds, progress, metrics, schedule)
    return last_valid


def _done(tc, progress: Progress) -> bool:
    out_of_steps = bool(tc.max_steps) and progress.step >= tc.max_steps
    out_of_patience = bool(tc.patience) and progress.bad_evals >= tc.patience
    return out_of_steps or out_of_patience


def _log_window(window: dict, progress: Progress, scheduler, metrics: MetricsLog, bar) -> None:
    elapsed = time.perf_counter() - window["start"]
    loss = window["loss"] / max(1, window["batches"])
    values = {"epoch": progress.epoch, "train_loss": round(loss, 4), "lr": scheduler.get_last_lr()[0],
              "tgt_tokens_per_s": round(window["tokens"] / max(elapsed, 1e-9), 1)}
    metrics(progress.step, **values)
    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{values['tgt_tokens_per_s']:.0f}")
    window.update(loss=0.0, batches=0, tokens=0, start=time.perf_counter())


def _validate_and_save(cfg, run_dir, accelerator, model, optimizer, scheduler, tokenizer, valid_ds,
                       progress: Progress, metrics: MetricsLog, schedule) -> dict:
    start = time.perf_counter()
    result = validate(accelerator.unwrap_model(model), valid_ds, tokenizer, cfg, accelerator)
    improved = result["valid_bleu"] > progress.best_bleu
    if improved:
        progress.best_bleu, progress.bad_evals = result["valid_bleu"], 0
    else:
        progress.bad_evals += 1
    schedule.observe(result["valid_bleu"])
    metrics(progress.step, epoch=progress.epoch, **result, best_bleu=progress.best_bleu,
            valid_seconds=round(time.perf_counter() - start, 1))
    if accelerator.is_main_process:
        tqdm.write(f"step {progress.step}: valid loss {result['valid_loss']:.3f} ppl {result['valid_ppl']:.2f} "
                   f"BLEU {result['valid_bleu']:.2f}{' (best)' if improved else ''}")
    _save(accelerator, run_dir, model, cfg, tokenizer, optimizer, scheduler, progress, result, improved)
    return result
