"""What a training run carries between updates and across a restart: progress counters and early
stopping, checkpoints for --resume with every process's random state. `train.py` holds the loop;
its log is nmt/train/log.py's, its stop signals nmt/train/stop_signal.py's.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from nmt import checkpoint
from nmt.config import Config
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NmtError
from nmt.train.log import MetricsLog

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
    metrics: MetricsLog
    data_key: str = ""  # the prepared training split's cache key, saved for --resume to compare


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
    skipped: int = 0  # updates skipped for a non-finite gradient (fp16 overflows included); not in `step`


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


def save(run: Run, progress: Progress, metrics: dict, best: bool) -> None:
    """Checkpoint on the main process: weights for translation, trainer state for --resume."""
    acc = run.accelerator
    # Each process draws its own dropout masks: every process's streams are kept (a collective call).
    rng_states = {"processes": gather_object([rng_state()])}
    if acc.is_main_process:
        trainer = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                   "progress": vars(progress).copy(), "rng": rng_states}
        if acc.scaler is not None:
            trainer["scaler"] = acc.scaler.state_dict()
        meta = {"step": progress.step, "epoch": progress.epoch, **metrics, "train_data": run.data_key,
                "src_vocab_size": run.tokenizer.src_vocab_size, "tgt_vocab_size": run.tokenizer.tgt_vocab_size}
        links = ("last", "best") if best else ("last",)
        checkpoint.save_checkpoint(run.run_dir, acc.unwrap_model(run.model), run.cfg, run.tokenizer, meta,
                                   trainer, links, run.cfg.train.keep_last)
    acc.wait_for_everyone()


def restore(run: Run) -> Progress:
    ckpt = (run.run_dir / "last").resolve()
    version = checkpoint.read_meta(ckpt).get("format", 1)
    if version < checkpoint.FORMAT_VERSION:
        raise NmtError(f"{ckpt}: written by an older nmt (checkpoint format {version}); it translates and "
                       "evaluates as it is, but cannot be resumed: start a new run")
    checkpoint.load_weights(run.accelerator.unwrap_model(run.model), ckpt / "model.safetensors")
    state = checkpoint.load_trainer_state(ckpt)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.accelerator.scaler is not None and "scaler" in state:
        run.accelerator.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.accelerator.process_index, run.accelerator.num_processes)
    log.info("resumed from %s (step %d)", ckpt.name, state["progress"]["step"])
    return Progress(**state["progress"])


def rng_state() -> dict:
    """This process's random streams: Python's, torch's CPU generator and, on a GPU, its CUDA generator."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(saved: dict, rank: int, processes: int) -> None:
    """Restore process `rank`'s streams from a checkpoint's list (one entry per process)."""
    states = saved["processes"] if "processes" in saved else [saved]  # older checkpoints: one process
    if len(states) != processes:
        raise NmtError(f"the checkpoint was written by {len(states)} process(es), this run has {processes}: "
                       f"the epoch in progress would be split into other batches; resume with {len(states)}")
    state = states[rank]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
