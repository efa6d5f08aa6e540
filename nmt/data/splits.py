"""Parallel data: where a recipe's splits are and how they are read, as Hugging Face `datasets`.

A split is read a block of pairs at a time (`split_blocks`), which `prepare` tokenises into
memory-mapped Arrow files with the columns `src_ids`/`tgt_ids`, or, for test sets, into memory as a
`datasets.Dataset` with the text columns `src` and `tgt` (`load_split`). Filtering and batching the
tokenised pairs is nmt/data/batching.py's.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from nmt.config import DataConfig
from nmt.data import readers
from nmt.errors import NmtError

log = logging.getLogger(__name__)


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


def _text_pair_paths(spec: str, cfg: DataConfig, corpus: Path) -> tuple[Path, Path]:
    if "|" in spec:
        src, tgt = spec.split("|", 1)
        return corpus / src, corpus / tgt
    if "{lang}" in spec:
        return corpus / spec.format(lang=cfg.src_lang), corpus / spec.format(lang=cfg.tgt_lang)
    return corpus / f"{spec}.{cfg.src_lang}", corpus / f"{spec}.{cfg.tgt_lang}"


def split_files(cfg: DataConfig, spec: str) -> list[Path]:
    """The files a split is read from (none for a hub dataset)."""
    corpus = resolve_root(cfg) / cfg.dir
    if cfg.format == "text":
        return list(_text_pair_paths(spec, cfg, corpus))
    return [] if cfg.format == "hub" else [corpus / spec]


def split_blocks(cfg: DataConfig, spec: str) -> Iterator[readers.Pairs]:
    """A split, a block of pairs at a time: files are streamed; a hub split is read from datasets'
    own Arrow cache in batches."""
    files = split_files(cfg, spec)
    if cfg.format == "text":
        return readers.text_pairs(*files)
    if cfg.format == "hub":
        batches = _hub_split(cfg, spec).with_format("arrow").iter(batch_size=50_000)
        return (readers.Pairs(b.column("src").to_pylist(), b.column("tgt").to_pylist()) for b in batches)
    read = readers.tsv_pairs if cfg.format == "tsv" else readers.jsonl_pairs
    return read(files[0], cfg.src_lang, cfg.tgt_lang)


def _from_columns(ds, cfg: DataConfig, where: str):
    """Map a hub dataset onto the `src`/`tgt` columns (a `translation` dict or one column per language)."""
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


def _hub_split(cfg: DataConfig, spec: str):
    import datasets

    where = f"{cfg.hub_name} ({cfg.hub_config or 'default'}, split {spec})"
    try:
        ds = datasets.load_dataset(cfg.hub_name, cfg.hub_config or None, split=spec)
    except Exception as err:  # datasets raises many types; the user needs the first line of any
        raise NmtError(f"{where}: cannot load ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if len(ds) == 0:
        raise NmtError(f"{where}: no examples")
    return _from_columns(ds, cfg, where)


def load_split(cfg: DataConfig, spec: str):
    """One split in memory, as a Dataset with text columns `src` and `tgt` (for test sets)."""
    if cfg.format == "hub":
        return _hub_split(cfg, spec)
    src, tgt = [], []
    for block in split_blocks(cfg, spec):
        src += block.src
        tgt += block.tgt
    if not src:
        raise NmtError(f"{split_files(cfg, spec)[0]}: no examples")
    return in_memory(pa.table({"src": src, "tgt": tgt}))


def in_memory(table: pa.Table):
    """A Dataset over an Arrow table in memory, with a fingerprint of its own. Left to itself,
    datasets hashes the whole table through dill: 0.1 s per 29 000 pairs, and a PicklingError
    ("Can't pickle <class 'MonthDayNano'>") where packages live outside a `site-packages` folder
    (`pip install --target`), since dill then pickles their modules by value."""
    import datasets

    return datasets.Dataset(table, fingerprint=uuid.uuid4().hex)
