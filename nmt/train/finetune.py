"""Fine-tuning: a new run that starts from a trained model (`train.init_from`, `nmt-train --init-from`).

The new run takes the parent's weights, its tokenizer and vocabularies (the new data is tokenised
with them: the embedding rows must keep meaning the same pieces) and its architecture. Optimizer,
schedule, step count and early stopping start afresh, as in any new run. config.yaml records the
parent's checkpoint directory and the sha256 of its weights, so a result can be traced to them. A
resumed fine-tuning run continues from its own checkpoints and never reads the parent again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import torch

from nmt import checkpoint
from nmt.config import Config, architecture_keys, from_dict, read_values
from nmt.errors import NmtError
from nmt.typed_yaml import merge

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
HASH_BLOCK = 1 << 20


def parent_checkpoint(path: str | Path) -> Path:
    """A run directory's best checkpoint (else its last), or a checkpoint directory, as an absolute
    path that later training of the parent does not move (the step directory, not a link)."""
    try:
        return checkpoint.resolve(path).resolve()
    except NmtError as err:
        raise NmtError(f"train.init_from: {err}") from None


def weights_sha256(ckpt: Path) -> str:
    digest = hashlib.sha256()
    with open(ckpt / WEIGHTS, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def load_config(paths, overrides: list[str] = ()) -> Config:
    """The recipe(s) and overrides, as `nmt.config.load_config` reads them, except that a run with a
    parent (train.init_from) takes the parent's model and tokenizer sections as its defaults: the
    recipe need not repeat them, and what it does set must agree (checked by `with_parent`)."""
    values = read_values(paths, overrides)
    train = values.get("train")
    init_from = train.get("init_from") if isinstance(train, dict) else None
    if not init_from or not isinstance(init_from, str):
        return from_dict(values)  # no parent, or a wrong type that from_dict reports with the key
    parent = checkpoint.read_config(parent_checkpoint(init_from))
    inherited = {"model": dataclasses.asdict(parent.model), "tokenizer": dataclasses.asdict(parent.tokenizer)}
    return from_dict(merge(inherited, values))


def with_parent(cfg: Config, resume: bool = False) -> Config:
    """A new fine-tuning run's `cfg` with train.init_from as the parent's checkpoint directory and
    train.init_sha256 as the hash of its weights; refuses, naming the key, a config that the parent's
    weights cannot serve. Other runs' configs (a resumed one's included) are returned as they are."""
    if not cfg.train.init_from or resume:
        return cfg
    ckpt = parent_checkpoint(cfg.train.init_from)
    parent = checkpoint.read_config(ckpt)
    architecture = architecture_keys()
    free = ", ".join(f"model.{f.name}" for f in dataclasses.fields(cfg.model) if f.name not in architecture)
    # tokenizer.sampling is inherited too, but may change: it draws from the parent's files, makes none.
    tokenizer = tuple(f.name for f in dataclasses.fields(cfg.tokenizer) if f.name != "sampling")
    kept = (("model", architecture), ("tokenizer", tokenizer))
    for section, keys in kept:
        for key in keys:
            mine, theirs = getattr(getattr(cfg, section), key), getattr(getattr(parent, section), key)
            if mine != theirs:
                raise NmtError(f"{section}.{key}: the parent {ckpt} was trained with {theirs!r}; a fine-tuning run "
                               f"keeps its {'architecture' if section == 'model' else 'tokenizer'} (only {free} may "
                               f"change), not {mine!r}")
    digest = weights_sha256(ckpt)
    if cfg.train.init_sha256 and cfg.train.init_sha256 != digest:
        raise NmtError(f"train.init_sha256: {ckpt / WEIGHTS} has sha256 {digest}, not the {cfg.train.init_sha256} "
                       "this config was started from; the parent's weights changed")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(ckpt), init_sha256=digest))


def check_same_parent(cfg: Config, init_from: str) -> None:
    """--init-from on --resume: accepted only as the parent the run was started from (a no-op then)."""
    asked = parent_checkpoint(init_from)
    if Path(cfg.train.init_from or "") != asked:
        raise NmtError(f"--init-from: the run was started from {cfg.train.init_from or 'no parent'}, not {asked}; "
                       "--resume continues the run from its own last checkpoint (drop --init-from)")


def init_model(model: torch.nn.Module, cfg: Config, resume: bool) -> list[torch.nn.Parameter]:
    """Load the parent's weights into a new fine-tuning run's model (a resumed run loads its own
    checkpoint later), freeze the parts train.freeze names, and return the parameters to train."""
    if cfg.train.init_from and not resume:
        checkpoint.load_weights(model, Path(cfg.train.init_from) / WEIGHTS)
        log.info("fine-tuning from %s (sha256 %s)", cfg.train.init_from, cfg.train.init_sha256[:12])
    for part in cfg.train.freeze:
        modules = [model.encoder] if part == "encoder" else [model.encoder.embed, model.decoder.embed]
        for module in modules:
            module.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.train.freeze:
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        log.info("frozen (%s): %d parameters; %d trained", ", ".join(cfg.train.freeze), frozen,
                 sum(p.numel() for p in trainable))
    return trainable
