"""What a training run refuses before it changes anything: a run directory it would mix with another
run's files, a disk too small for its checkpoints, and --resume settings or data that would make
the resumed run other than the one it continues (checked after cleaning up killed saves); and at
the end of a distributed run, that its processes hold the same weights."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from accelerate.utils import gather_object

from nmt import checkpoint
from nmt.config import Config, TokenizerConfig, architecture_keys
from nmt.data.tokenizer import JOINT_FILE, SRC_FILE, SRC_VOCAB, TGT_FILE, TGT_VOCAB
from nmt.errors import NmtError

log = logging.getLogger(__name__)

# What `nmt-train` writes into a run directory. A new run finding any of them would train with or
# beside another run's files (its tokenizer, above all), while config.yaml shows the new settings.
RUN_FILES = ("checkpoints", "last", "best", "config.yaml", "metrics.jsonl", "results.json",
             JOINT_FILE, SRC_FILE, TGT_FILE, SRC_VOCAB, TGT_VOCAB)

# Settings a resumed run cannot change, by section, with why: the restored optimizer, schedule and
# batch order; the epoch's batch list, under the saved position in it; the run's own tokenizer.
RESUME_FIXED = (
    ("train", ("optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "plateau_factor",
               "plateau_patience", "seed", "max_tokens", "accumulate"),
     "the optimizer, schedule and batch order are restored"),
    ("train", ("init_from", "init_sha256", "freeze"),
     "the run continues from its own checkpoint, whose optimizer state holds the trained parameters"),
    ("data", ("format", "src_lang", "tgt_lang", "train", "hub_name", "hub_config", "train_limit", "max_len",
              "max_ratio"),
     "the epoch's batches would change under the position saved in it"),
    ("tokenizer", tuple(f.name for f in dataclasses.fields(TokenizerConfig)),
     "the run keeps the tokenizer it was started with, and tokenizer.sampling the segmentations it draws"),
    # Dropout and the initialisation may change: they shape the updates to come, not the weights saved.
    ("model", architecture_keys(),
     "the checkpoint's weights are of that model"),
)


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Fail before any work if the run directory is unusable or holds another run's files."""
    has_checkpoint = os.path.lexists(run_dir / "last")
    if resume and not has_checkpoint:
        raise NmtError(f"{run_dir}: nothing to resume (no 'last' checkpoint)")
    leftovers = [name for name in RUN_FILES if os.path.lexists(run_dir / name)]
    if leftovers and not resume:
        if has_checkpoint:
            raise NmtError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        raise NmtError(f"{run_dir} holds files of a run that saved no checkpoint to --resume from "
                       f"({', '.join(leftovers)}); remove them or choose another --run-dir")
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


def check_resume(run_dir: Path, cfg: Config, accelerator) -> None:
    """Before a resumed run reads its checkpoint: put back what killed saves left (the main process,
    while the others wait), then refuse settings it cannot change."""
    if accelerator.is_main_process:
        checkpoint.clean_interrupted_saves(run_dir)
    accelerator.wait_for_everyone()
    check_resume_config(run_dir, cfg)


def check_resume_config(run_dir: Path, cfg: Config) -> None:
    """Refuse, naming the key, a --set that a resumed run would silently ignore or misapply."""
    saved = checkpoint.read_config(run_dir / "last")
    for section, keys, why in RESUME_FIXED:
        for key in keys:
            before, now = getattr(getattr(saved, section), key), getattr(getattr(cfg, section), key)
            if before != now:
                raise NmtError(f"{section}.{key}: the run was started with {before!r} and cannot change to "
                               f"{now!r} on --resume ({why}); start a new run")


def check_resume_data(run_dir: Path, train_key: str) -> None:
    """Refuse training files whose contents changed since the checkpoint was saved (the prepared
    split's cache key: file contents, format, languages, train_limit)."""
    saved = checkpoint.read_meta((run_dir / "last").resolve()).get("train_data")
    if saved and saved != train_key:  # none: saved before checkpoints recorded it
        raise NmtError("data.train: the training files changed since the run started, so the epoch's batches "
                       "would change under the position saved in it; restore them or start a new run")


def check_replicas(accelerator, model, metrics, step: int) -> None:
    """Several processes must end with the same weights (DDP keeps its replicas in step); a run whose
    replicas drifted apart says so in its log and metrics rather than saving one of them silently."""
    if accelerator.num_processes == 1:
        return
    params = accelerator.unwrap_model(model).parameters()
    sums = gather_object([sum(p.detach().double().sum().item() for p in params)])
    metrics(step, replicas_identical=len(set(sums)) == 1)
    if len(set(sums)) > 1:
        log.error("the processes ended with different weights (sums %s): the saved model is rank 0's", sums)
