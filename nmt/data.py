"""Parallel data: loading through Hugging Face `datasets`, tokenisation, filtering and token batching.

A split is a `datasets.Dataset` with the raw text columns `src` and `tgt`; `tokenize` adds
`src_ids`/`tgt_ids`. Training pairs that are empty, too long or too unbalanced are dropped
(and counted); evaluation pairs never are.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from nmt.config import DataConfig
from nmt.errors import NmtError
from nmt.tokenizer import BOS, EOS, PAD, Tokenizer

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) source ids ending in EOS, right-padded
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS + target ids
    tgt_out: torch.Tensor  # (B, T) target ids + EOS, PAD where tgt_in is padding


def resolve_root(cfg: DataConfig) -> Path:
    """Where corpora live: data.root (set by --data-root), $NMT_DATA_ROOT, else ../shared/data if it exists."""
    for given in (cfg.root, os.environ.get("NMT_DATA_ROOT", "")):
        if given:
            return Path(given).expanduser()
    here = Path(__file__).resolve().parents[1]
    for candidate in (Path.cwd() / "../shared/data", here / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return Path.cwd()


def read_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 text file; a bad byte is reported with its line number."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NmtError(f"{path}: file not found") from None
    except OSError as err:
        raise NmtError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise NmtError(f"{path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x})") from None
    if not text:
        raise NmtError(f"{path}: file is empty")
    # Only \n ends a line: str.splitlines would also split on \u2028 and friends and misalign pairs.
    return text.removesuffix("\n").split("\n")


def _text_pair_paths(spec: str, cfg: DataConfig, corpus: Path) -> tuple[Path, Path]:
    if "|" in spec:
        src, tgt = spec.split("|", 1)
        return corpus / src, corpus / tgt
    if "{lang}" in spec:
        return corpus / spec.format(lang=cfg.src_lang), corpus / spec.format(lang=cfg.tgt_lang)
    return corpus / f"{spec}.{cfg.src_lang}", corpus / f"{spec}.{cfg.tgt_lang}"


def _from_columns(ds, cfg: DataConfig, where: str):
    """Map a loaded dataset onto the `src`/`tgt` columns (a `translation` dict or one column per language)."""
    import datasets

    if "translation" in ds.column_names:
        pick = lambda row: {"src": row["translation"][cfg.src_lang] or "",
                            "tgt": row["translation"][cfg.tgt_lang] or ""}
    elif cfg.src_lang in ds.column_names and cfg.tgt_lang in ds.column_names:
        pick = lambda row: {"src": row[cfg.src_lang] or "", "tgt": row[cfg.tgt_lang] or ""}
    else:
        raise NmtError(f"{where}: needs a 'translation' column or columns '{cfg.src_lang}' and "
                       f"'{cfg.tgt_lang}'; found {', '.join(ds.column_names)}")
    try:
        ds = ds.map(pick, remove_columns=ds.column_names)
    except KeyError as err:
        raise NmtError(f"{where}: a row has no {err} entry") from None
    return ds.cast(datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")}))


def load_split(cfg: DataConfig, spec: str):
    """Load one split as a Dataset with text columns `src` and `tgt`."""
    import datasets

    corpus = resolve_root(cfg) / cfg.dir
    if cfg.format == "text":
        src_path, tgt_path = _text_pair_paths(spec, cfg, corpus)
        src, tgt = read_lines(src_path), read_lines(tgt_path)
        if len(src) != len(tgt):
            raise NmtError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
        return datasets.Dataset.from_dict({"src": src, "tgt": tgt})
    if cfg.format == "hub":
        where = f"{cfg.hub_name} ({cfg.hub_config or 'default'}, split {spec})"
        loader_args = (cfg.hub_name, cfg.hub_config or None)
        kwargs = {}
    else:
        path = corpus / spec
        if not path.is_file():
            raise NmtError(f"{path}: file not found")
        where = str(path)
        if cfg.format == "tsv":
            loader_args = ("csv",)
            kwargs = dict(data_files=str(path), sep="\t", header=None, quoting=3,
                          names=[cfg.src_lang, cfg.tgt_lang], keep_default_na=False)
        else:
            loader_args = ("json",)
            kwargs = dict(data_files=str(path))
        spec = "train"  # a single data file is exposed as the split 'train'
    try:
        ds = datasets.load_dataset(*loader_args, split=spec, **kwargs)
    except Exception as err:  # datasets raises many types; the user needs the first line of any
        raise NmtError(f"{where}: cannot load ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if len(ds) == 0:
        raise NmtError(f"{where}: no examples")
    return _from_columns(ds, cfg, where)


def tokenize(ds, tokenizer: Tokenizer):
    """Add `src_ids` and `tgt_ids` columns (tokenised once, in batches)."""
    digest = hashlib.sha1(b"".join(Path(p).read_bytes() for p in tokenizer.files.values())).hexdigest()

    def encode(rows):
        return {"src_ids": tokenizer.encode_src(rows["src"]), "tgt_ids": tokenizer.encode_tgt(rows["tgt"])}

    fingerprint = hashlib.sha1(f"{ds._fingerprint}-{digest}".encode()).hexdigest()
    return ds.map(encode, batched=True, batch_size=2000, new_fingerprint=fingerprint)


def lengths(ds) -> tuple[np.ndarray, np.ndarray]:
    """Source lengths (with EOS) and target lengths (without BOS/EOS)."""
    src = np.fromiter((len(x) for x in ds["src_ids"]), dtype=np.int64, count=len(ds))
    tgt = np.fromiter((len(x) for x in ds["tgt_ids"]), dtype=np.int64, count=len(ds))
    return src, tgt


def filter_pairs(ds, max_len: int, max_ratio: float):
    """Drop training pairs with an empty side, over `max_len` pieces, or a length ratio over `max_ratio`."""
    src, tgt = lengths(ds)
    src = src - 1  # without the EOS the tokenizer appended
    empty = (src == 0) | (tgt == 0)
    long = ~empty & ((src > max_len) | (tgt > max_len))
    ratio = ~empty & ~long & (np.maximum(src, tgt) > max_ratio * np.minimum(src, tgt))
    keep = np.flatnonzero(~(empty | long | ratio))
    counts = {"kept": len(keep), "empty": int(empty.sum()), "too_long": int(long.sum()),
              "bad_ratio": int(ratio.sum())}
    return ds.select(keep), counts


def token_batches(src_lens, tgt_lens, max_tokens: int, seed: int, epoch: int,
                  shuffle: bool = True) -> list[list[int]]:
    """Group example indices into batches of at most `max_tokens` padded target tokens (with EOS).

    Examples are shuffled, then sorted by length inside pools of about 100 batches, so padding
    stays low while batches still mix across the corpus. The order depends only on (seed, epoch).
    """
    n = len(tgt_lens)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    pool = max(1, int(100 * max_tokens / max(1.0, float(np.mean(tgt_lens)) + 1))) if n else 1
    batches: list[list[int]] = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.lexsort((src_lens[chunk], tgt_lens[chunk]))]
        batch, width = [], 0
        for i in chunk.tolist():
            w = max(width, int(tgt_lens[i]) + 1)
            if batch and w * (len(batch) + 1) > max_tokens:
                batches.append(batch)
                batch, w = [], int(tgt_lens[i]) + 1
            batch.append(i)
            width = w
        if batch:
            batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


class TokenBatchSampler:
    """A batch sampler over `token_batches`; `use_epoch` changes the shuffle deterministically.

    Deliberately not named `set_epoch`: Accelerate calls `set_epoch` with its own iteration counter,
    which restarts at 0 on the loader that `skip_first_batches` builds when a run resumes mid-epoch.
    """

    def __init__(self, ds, max_tokens: int, seed: int, shuffle: bool = True):
        self.src_lens, self.tgt_lens = lengths(ds)
        self.max_tokens, self.seed, self.shuffle, self.epoch = max_tokens, seed, shuffle, 0
        self._batches = None

    def use_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._batches = epoch, None

    def batches(self) -> list[list[int]]:
        if self._batches is None:
            self._batches = token_batches(self.src_lens, self.tgt_lens, self.max_tokens,
                                          self.seed, self.epoch, self.shuffle)
        return self._batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def pad(seqs: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def collate(rows: list[dict]) -> Batch:
    src = [r["src_ids"] for r in rows]
    tgt = [r["tgt_ids"] for r in rows]
    return Batch(
        src=pad(src),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),
        tgt_in=pad([[BOS] + t for t in tgt]),
        tgt_out=pad([t + [EOS] for t in tgt]),
    )


def make_loader(ds, max_tokens: int, seed: int, shuffle: bool):
    """A DataLoader of `Batch`es over a tokenised split, plus its sampler (for `use_epoch`)."""
    sampler = TokenBatchSampler(ds, max_tokens, seed, shuffle)
    columns = ds.select_columns(["src_ids", "tgt_ids"])
    # An own generator: creating an iterator must not draw from the global RNG (exact resume).
    loader = torch.utils.data.DataLoader(columns, batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    return loader, sampler
