"""Prepare once: the tokenizer and the tokenised training and validation splits, in the data cache.

    CACHE/tokenizers/KEY/   SentencePiece model(s) and vocabularies. KEY: the training split's data
                            (file contents, format, languages, train_limit) and every tokenizer setting
    CACHE/splits/KEY/       a split's memory-mapped Arrow files (`src_ids`, `tgt_ids`; the validation
                            split also its text). KEY: the split's data and the tokenizer's files
                            (with tokenizer.sampling, one more per epoch: its drawn segmentation,
                            keyed also by the draw: settings, train.seed, epoch)

Every later run, `--resume`, and the runs that share data and tokenizer settings (the RNN, LSTM and
GRU runs of a recipe) map the same files. Nothing holds a corpus in memory: SentencePiece
trains on a sample of `tokenizer.max_sentences` lines drawn while the files stream past, and
`data.num_proc` processes tokenise block by block (`encode.py`). Filter settings are applied when a
split is loaded (`batching.filter_pairs`), so changing them needs no new entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from nmt.config import Config, TokenizerConfig
from nmt.data import batching, cache, splits
from nmt.data.encode import write_tokenized
from nmt.data.readers import Pairs
from nmt.data.subword_sampling import Draw, epoch_draw
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NmtError

log = logging.getLogger("nmt.prepare")

VERSION = 1  # part of every key: a change of the stored layout makes new entries
SPLIT_FILE = "data.arrow"


class Prepared(NamedTuple):
    tokenizer: Tokenizer
    train: object  # datasets.Dataset: src_ids, tgt_ids of every training pair, memory-mapped
    train_rows: np.ndarray  # the training pairs the filters keep
    counts: dict  # kept, and dropped by reason
    valid: object  # datasets.Dataset: src, tgt, src_ids, tgt_ids
    train_key: str  # the training data's cache key (file contents, format, languages, train_limit)


def sample_pairs(blocks, cfg: TokenizerConfig) -> Pairs:
    """The pairs SentencePiece trains on, in corpus order: all, if their lines fit in `max_sentences`,
    else a uniform sample of them drawn while streaming (the pairs with the smallest of a fixed
    sequence of random keys), so that the corpus is never in memory."""
    wanted = max(1, cfg.max_sentences // 2 if cfg.joint else cfg.max_sentences)  # joint: lines of both sides
    rng = np.random.default_rng(0)
    keys, kept = np.zeros(0), Pairs([], [])
    for block in blocks:
        keys = np.concatenate([keys, rng.random(len(block.src))])
        kept = Pairs(kept.src + block.src, kept.tgt + block.tgt)
        if len(keys) > wanted:
            best = np.sort(np.argpartition(keys, wanted - 1)[:wanted])  # sorted: corpus order
            keys, kept = keys[best], Pairs([kept.src[i] for i in best], [kept.tgt[i] for i in best])
    return kept


class _Work:
    """What one preparation shares: the config, the cache folder, its file digests and build folders."""

    def __init__(self, cfg: Config, may_build: bool):
        self.cfg, self.may_build = cfg, may_build
        self.root = cache.cache_root(cfg.data)
        self.digests = cache.Digests(self.root)
        self.builds = cache.Builds(self.root)

    def source_key(self, spec: str, limit: int) -> str:
        d = self.cfg.data
        what = (splits.load_split(d, spec)._fingerprint if d.format == "hub"
                else [self.digests(p) for p in splits.split_files(d, spec)])
        return cache.content_hash({"version": VERSION, "format": d.format, "langs": [d.src_lang, d.tgt_lang],
                                   "data": what, "limit": limit})

    def blocks(self, spec: str, limit: int):
        """The split's first `limit` pairs (all if 0), a block at a time, read to the end of its files."""
        rows = 0
        for block in splits.split_blocks(self.cfg.data, spec):
            n = len(block.src) if not limit else max(0, min(len(block.src), limit - rows))
            rows += n
            if n:
                yield Pairs(block.src[:n], block.tgt[:n])

    def where(self, spec: str) -> str:
        return str((splits.split_files(self.cfg.data, spec) or [self.cfg.data.hub_name])[0])

    def refuse(self, what: str, entry) -> None:
        if not self.may_build:
            raise NmtError(f"{entry}: the {what} prepared by the main process is not visible from process "
                           f"{os.environ.get('RANK', '?')} on {os.uname().nodename}; data.cache_dir must be a "
                           "folder every process can read (with several machines, a shared filesystem)")


def tokenizer_identity(cfg: TokenizerConfig) -> dict:
    """The settings that make the SentencePiece files: all but `sampling`, which only draws from them."""
    return {key: value for key, value in asdict(cfg).items() if key != "sampling"}


def _tokenizer_files_hash(tokenizer: Tokenizer) -> str:
    return cache.content_hash({name: hashlib.sha256(Path(path).read_bytes()).hexdigest()
                               for name, path in tokenizer.files.items()})


def _cached_tokenizer(entry: Path) -> Tokenizer | None:
    if cache.read_entry(entry) is None:
        return None
    try:
        return Tokenizer.load(entry)
    except NmtError as err:
        cache.discard(entry, err)
        return None


def _tokenizer(work: _Work, train_key: str, fixed: Path | None) -> Tokenizer:
    """The tokenizer in `fixed` (a resumed run's own, a fine-tuning run's parent's), else the cached one
    for this data and these settings, else one trained now on a sample. Only --resume reads a run
    directory's tokenizer: a new run's is the one its config asks for, whatever a killed run left there."""
    if fixed:
        return Tokenizer.load(fixed)
    cfg = work.cfg
    entry = work.root / "tokenizers" / cache.content_hash(
        {"version": VERSION, "data": train_key, "tokenizer": tokenizer_identity(cfg.tokenizer)})
    tokenizer = _cached_tokenizer(entry)
    if tokenizer is None:
        work.refuse("tokenizer", entry)
        start = time.perf_counter()
        sample = sample_pairs(work.blocks(cfg.data.train, cfg.data.train_limit), cfg.tokenizer)
        if not sample.src:
            raise NmtError(f"{work.where(cfg.data.train)}: no examples")
        log.info("training SentencePiece (%s, %d pieces) on %d pairs", cfg.tokenizer.model_type,
                 cfg.tokenizer.vocab_size, len(sample.src))
        folder = work.builds.new()
        Tokenizer.train(sample.src, sample.tgt, cfg.tokenizer, folder)
        cache.publish(folder, entry, sample_pairs=len(sample.src), seconds=round(time.perf_counter() - start, 1))
        log.info("tokenizer sampled and trained in %.1f s (%s)", time.perf_counter() - start, entry.name)
        tokenizer = Tokenizer.load(entry)
    return tokenizer


def _load_split(entry: Path):
    """The entry's Dataset, memory-mapped; None (and the entry removed) if it is missing or damaged."""
    import datasets

    meta = cache.read_entry(entry)
    if meta is None:
        return None
    try:
        ds = datasets.Dataset.from_file(str(entry / SPLIT_FILE))
        if len(ds) != meta["rows"]:
            raise ValueError(f"{len(ds)} rows instead of {meta['rows']}")
        return ds
    except (OSError, ValueError, KeyError, pa.ArrowException) as err:
        cache.discard(entry, err)
        return None


def _split(work: _Work, name: str, spec: str, limit: int, key: str, tokenizer: Tokenizer, keep_text: bool,
           draw: Draw | None = None):
    """A tokenised split from the cache, prepared first if it is not there; with `draw`, an epoch's
    sampled segmentation of it (its own entry, keyed by the draw as well)."""
    what = {"version": VERSION, "data": key, "tokenizer": _tokenizer_files_hash(tokenizer), "text": keep_text}
    entry = work.root / "splits" / cache.content_hash({**what, "draw": draw._asdict()} if draw else what)
    ds = _load_split(entry)
    if ds is not None:
        log.info("%s: %d pairs from the cache (%s)", name, len(ds), entry.name)
        return ds
    work.refuse(f"{name} split", entry)
    procs = work.cfg.data.num_proc or len(os.sched_getaffinity(0))
    start = time.perf_counter()
    folder = work.builds.new()
    rows = write_tokenized(work.blocks(spec, limit), tokenizer, folder / SPLIT_FILE, keep_text, procs, draw)
    if rows == 0:
        raise NmtError(f"{work.where(spec)}: no examples")
    cache.publish(folder, entry, rows=rows, split=spec, seconds=round(time.perf_counter() - start, 1))
    log.info("%s: %d pairs read and tokenised (%d processes) in %.1f s, %.0f MB (%s)", name, rows, procs,
             time.perf_counter() - start, (entry / SPLIT_FILE).stat().st_size / 1e6, entry.name)
    return _load_split(entry)


def prepare(cfg: Config, run_dir: Path | None = None, may_build: bool = True, resume: bool = False,
            parent: Path | None = None) -> Prepared:
    """The tokenizer and tokenised splits, from the cache or prepared into it now.

    `run_dir`: a run's directory, whose tokenizer is used with `resume`, or which gets a copy of the
    cached one, or of `parent`'s (a fine-tuning run's parent checkpoint: the new data is tokenised
    with the parent's tokenizer, never a new one). `may_build=False` (the other processes of a
    distributed run, after the main one has prepared) fails with a clear message instead of preparing again.
    """
    work = _Work(cfg, may_build)
    log.info("data cache: %s", work.root)
    cache.open_root(work.root)
    d = cfg.data
    train_key, valid_key = work.source_key(d.train, d.train_limit), work.source_key(d.valid, d.valid_limit)
    work.digests.save()
    with work.builds:
        tokenizer = _tokenizer(work, train_key, run_dir if resume else parent)
        train = _split(work, "train", d.train, d.train_limit, train_key, tokenizer, keep_text=False)
        valid = _split(work, "valid", d.valid, d.valid_limit, valid_key, tokenizer, keep_text=True)
    rows, counts = batching.filter_pairs(train, d.max_len, d.max_ratio)
    if run_dir and not resume and may_build and len(rows):  # the main process; the others map the cache's
        # A copy for the run (its checkpoints carry it), once its data is ready: a run that fails on its
        # data (no pair left included) leaves its directory as it was, for the corrected command.
        tokenizer.copy_to(run_dir)
        tokenizer = Tokenizer.load(run_dir)
    return Prepared(tokenizer, train, rows, counts, valid, train_key)


def sampled_epoch(cfg: Config, tokenizer: Tokenizer, epoch: int, may_build: bool = True):
    """The training split as `epoch`'s draw segments it (tokenizer.sampling), from the cache or drawn
    into it now by `data.num_proc` processes, memory-mapped like the split itself; None when sampling is off.
    The corpus files are read again, not a copy of their text: the resumed run's check of the
    training data (`train_key`) covers them."""
    draw = epoch_draw(cfg.tokenizer.sampling, cfg.train.seed, epoch)
    if draw is None:
        return None
    work = _Work(cfg, may_build)
    d = cfg.data
    with work.builds:
        return _split(work, f"train, epoch {epoch + 1} sampled", d.train, d.train_limit,
                      work.source_key(d.train, d.train_limit), tokenizer, keep_text=False, draw=draw)
