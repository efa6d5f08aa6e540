"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, as a normal checkpoint.

The last checkpoints of a run sit near one minimum but each carries the noise of its last updates;
their mean (Vaswani et al. 2017; fairseq's, JoeyNMT's and OpenNMT-py's average_checkpoints) often
translates better than any of them, at no training cost. Only checkpoints of one model are
averaged: same tensors, same shapes, same model settings and the same tokenizer files.

The result is a checkpoint directory (weights, config, tokenizer, meta.json with the steps averaged,
no trainer state) that nmt-translate and nmt-evaluate read like any other, written as a hidden
temporary beside OUT_DIR and renamed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from nmt.checkpoint import Checkpoint, check_same_tensors, load_checkpoint, read_config, resolve, write_files
from nmt.config import architecture_keys
from nmt.errors import NmtError

def run_checkpoints(run_dir: str | Path, last: int) -> list[Path]:
    """The `last` newest step checkpoints of a run, oldest first. At most train.keep_last: a run
    keeps that many of its newest saves, and older ones only as its 'best', not its newest."""
    steps = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / "model.safetensors").exists())
    if not steps:
        raise NmtError(f"{run_dir}: no step checkpoints in {Path(run_dir) / 'checkpoints'}")
    if last > len(steps):
        raise NmtError(f"{run_dir}: {last} checkpoints asked for, {len(steps)} kept (see train.keep_last)")
    keep_last = read_config(steps[-1]).train.keep_last
    if last > keep_last:
        older = ", ".join(p.name for p in steps[:-keep_last])
        raise NmtError(f"{run_dir}: {last} checkpoints asked for, but the run keeps only its {keep_last} newest "
                       f"(train.keep_last); older ones left ({older}) are kept as its best, not among its "
                       "newest: name the checkpoints to average instead")
    return steps[-last:]


def _check_same_model(first: Checkpoint, other: Checkpoint, first_path: Path, path: Path) -> None:
    """Refuse `other` unless it is the same model as `first`, naming what differs."""
    (model0, tok0, cfg0, _), (model, tok, cfg, _) = first, other
    try:
        check_same_tensors(model.state_dict(), model0.state_dict(), path, f"{first_path} has")
    except NmtError as err:
        raise NmtError(f"{err}; cannot average different architectures") from None
    for key in architecture_keys():  # e.g. tie_embeddings: the same tensors, another model
        a, b = getattr(cfg0.model, key), getattr(cfg.model, key)
        if a != b:
            raise NmtError(f"{path}: model.{key} is {b!r}, {first_path}'s is {a!r}; cannot average them")
    for name in sorted(set(tok0.files) | set(tok.files)):
        mine, theirs = tok0.files.get(name), tok.files.get(name)
        if mine is None or theirs is None or mine.read_bytes() != theirs.read_bytes():
            raise NmtError(f"{path}: tokenizer file {name} differs from {first_path}'s; cannot average "
                           "checkpoints with different tokenizers")


def average_checkpoints(paths: list[str | Path]) -> Checkpoint:
    """Load `paths` (run or checkpoint directories) and return the first with every tensor replaced
    by the mean over all of them (accumulated in float64), its meta naming them."""
    if not paths:
        raise NmtError("no checkpoints to average")
    paths = [resolve(p) for p in paths]
    first = load_checkpoint(paths[0])
    sums = {name: t.double().clone() for name, t in first.model.state_dict().items()}
    steps = [first.meta.get("step")]
    for path in paths[1:]:
        other = load_checkpoint(path)
        _check_same_model(first, other, paths[0], path)
        for name, tensor in other.model.state_dict().items():
            sums[name] += tensor.double()
        steps.append(other.meta.get("step"))
    state = first.model.state_dict()
    with torch.no_grad():
        for name, total in sums.items():
            state[name].copy_(total / len(paths))  # tied twins get the same mean twice
    averaged = {"step": max((s for s in steps if s is not None), default=0), "epoch": first.meta.get("epoch"),
                "averaged": [str(p) for p in paths], "averaged_steps": steps}
    return first._replace(meta=averaged)


def write_average(paths: list[str | Path], out_dir: str | Path) -> Path:
    """Average `paths` into the new checkpoint directory `out_dir` (refused if it holds anything)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NmtError(f"{out}: already exists; give a new output directory")
    averaged = average_checkpoints(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_files(tmp, averaged.model, averaged.cfg, averaged.tokenizer, averaged.meta)
        os.replace(tmp, out)  # onto a missing or empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
