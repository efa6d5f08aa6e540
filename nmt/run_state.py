"""What a training run carries between updates and across a restart: progress counters,
checkpoints for --resume, the metrics log and stop signals. `train.py` holds the loop.
"""

from __future__ import annotations

import json
import os
import logging
import math
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from nmt import checkpoint
from nmt.config import Config
from nmt.errors import NmtError
from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What the helpers below share: the config, where to write, and the prepared objects."""
    cfg: Config
    run_dir: Path
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    tokenizer: Tokenizer
    metrics: "MetricsLog"


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint and restored by --resume."""
    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of `epoch` already consumed (accumulation micro-batches included)
    best_bleu: float = -1.0
    # Validations in a row without a better BLEU: early stopping (train.patience) and the plateau
    # schedule (train.plateau_patience) both act when it reaches their N.
    stalled: int = 0


def observe_validation(progress: Progress, bleu: float, tc, schedule, scheduled: bool = True) -> bool:
    """Record a validation BLEU; True if it is the best so far. A scheduled validation also counts
    toward `progress.stalled`, and the plateau schedule decays at every tc.plateau_patience stalls."""
    improved = bleu > progress.best_bleu
    if improved:
        progress.best_bleu = bleu
    if scheduled:
        progress.stalled = 0 if improved else progress.stalled + 1
        if tc.schedule == "plateau" and progress.stalled and progress.stalled % tc.plateau_patience == 0:
            schedule.decay()
    return improved


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Fail before any work if the run directory is unusable or would be overwritten."""
    if (run_dir / "checkpoints").exists() and not resume:
        raise NmtError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
    if resume and not (run_dir / "last").exists():
        raise NmtError(f"{run_dir}: nothing to resume (no 'last' checkpoint)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 1024)
        probe.unlink()
    except OSError as err:
        raise NmtError(f"{run_dir}: not writable ({err.strerror})") from None


def check_free_space(run_dir: Path, parameters: int, keep_last: int) -> None:
    """Refuse to start when the disk cannot hold the checkpoints the run will keep."""
    # Each checkpoint: fp32 weights plus Adam's two moments; keep_last of them, best, and one being written.
    need = parameters * 4 * 3 * (keep_last + 2)
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise NmtError(f"{run_dir}: {free / 2**20:.0f} MiB free, but its checkpoints need about "
                       f"{need / 2**20:.0f} MiB (see train.keep_last)")


def save(run: Run, progress: Progress, metrics: dict, best: bool) -> None:
    """Checkpoint on the main process: weights for translation, trainer state for --resume."""
    acc = run.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        trainer = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                   "progress": vars(progress).copy(),
                   "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}
        if acc.scaler is not None:
            trainer["scaler"] = acc.scaler.state_dict()
        meta = {"step": progress.step, "epoch": progress.epoch, **metrics,
                "src_vocab_size": run.tokenizer.src_vocab_size, "tgt_vocab_size": run.tokenizer.tgt_vocab_size}
        links = ("last", "best") if best else ("last",)
        checkpoint.save_checkpoint(run.run_dir, acc.unwrap_model(run.model), run.cfg, run.tokenizer, meta,
                                   trainer, links, run.cfg.train.keep_last)
    acc.wait_for_everyone()


def restore(run: Run) -> Progress:
    ckpt = (run.run_dir / "last").resolve()
    if checkpoint.read_meta(ckpt).get("format", 1) < checkpoint.FORMAT_VERSION:
        raise NmtError(f"{ckpt}: written by an older nmt (checkpoint format 1); it translates and "
                       "evaluates as it is, but cannot be resumed: start a new run")
    checkpoint.load_weights(run.accelerator.unwrap_model(run.model), ckpt / "model.safetensors")
    state = checkpoint.load_trainer_state(ckpt)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.accelerator.scaler is not None and "scaler" in state:
        run.accelerator.scaler.load_state_dict(state["scaler"])
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


class StopSignal:
    """SIGINT/SIGTERM ask training to stop after the current update, with a checkpoint (pre-emption)."""

    def __init__(self):
        self.received = None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def agreed(self, accelerator: Accelerator) -> bool:
        """True on every process as soon as any process got a signal. An all-reduce: every process
        must call it at the same update."""
        flag = torch.tensor(float(self.received is not None), device=accelerator.device)
        if accelerator.num_processes > 1:
            flag = accelerator.reduce(flag, reduction="sum")
        return bool(flag > 0)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Window:
    """Training loss and throughput since the last log line."""

    def __init__(self):
        self.loss, self.batches, self.tokens, self.start = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        if math.isfinite(loss):
            self.loss, self.batches = self.loss + loss, self.batches + 1
        self.tokens += tokens

    def flush(self, progress: Progress, lr: float) -> dict:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        values = {"epoch": progress.epoch, "train_loss": round(self.loss / max(1, self.batches), 4),
                  "lr": lr, "tgt_tokens_per_s": round(self.tokens / elapsed, 1)}
        self.__init__()
        return values
