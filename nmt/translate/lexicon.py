"""The lexical table a vocabulary shortlist reads (nmt/translate/shortlist.py): per source piece its
most likely target pieces, and every target piece by its frequency, from a run's training pairs.

The translation probabilities are IBM Model 1's (Brown et al., 1993), estimated by EM over piece ids:

    p(e | f) ∝ Σ_pairs Σ_{j: e_j = e} Σ_{i: f_i = f} t(e | f_i) / Σ_{i'} t(e | f_i')     (f_0 = NULL)

one E-step over all pairs at a time, vectorised: each chunk of pairs gathers t at its (S, T) piece
pairs, normalises over the source positions and adds the posteriors into a dense (V_src + 1, V_tgt)
table, whose rows are then normalised. The NULL row takes the target pieces no source piece
explains (mostly frequent ones, which the frequent list keeps anyway); it is not saved. Model 1
is what Marian's and Sockeye's shortlists start from (with fast_align's or the aligner's tables):
no positions, no fertility, a few seconds on Multi30k.

The table is `shortlist.safetensors` in the run directory, written atomically: `translations`
(V_src, depth) int32, most likely first, padded with PAD where a piece has fewer seen translations
(PAD is a special token, in every shortlist anyway), and `frequent` (V_tgt,) int32, the target
pieces by their count in the training targets, most frequent first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nmt.config import LexiconConfig
from nmt.data import splits
from nmt.errors import NmtError
from nmt.vocab import PAD

TABLE = "shortlist.safetensors"
CHUNK_CELLS = 4_000_000  # (pairs x S x T) posteriors per E-step chunk: about 16 MB of floats


@dataclass
class LexicalTable:
    translations: torch.Tensor  # (V_src, depth) target ids, most likely first, PAD-padded
    frequent: torch.Tensor  # (V_tgt,) target ids, most frequent first

    def check(self, src_vocab: int, tgt_vocab: int, where: str) -> None:
        """Refuse a table built for other vocabularies, in one line naming the command that rebuilds it."""
        got = (self.translations.size(0), self.frequent.size(0))
        if got != (src_vocab, tgt_vocab) or int(self.translations.max()) >= tgt_vocab:
            raise NmtError(f"{where}: built for {got[0]} source and {got[1]} target pieces, the model has "
                           f"{src_vocab} and {tgt_vocab}; rebuild it with nmt-shortlist")


def model1(src: list[list[int]], tgt: list[list[int]], src_vocab: int, tgt_vocab: int,
           iterations: int) -> torch.Tensor:
    """IBM Model 1's t(e | f) (V_src + 1, V_tgt) from id pairs (no BOS/EOS); row V_src is NULL."""
    null = src_vocab
    chunks = _chunks([[null] + s for s in src], tgt)
    t = torch.full((src_vocab + 1, tgt_vocab), 1.0 / tgt_vocab)
    for _ in range(iterations):
        counts = torch.zeros_like(t)
        for f, e, f_mask, e_mask in chunks:  # (N, S), (N, T), masks 1.0 on real pieces
            cells = f[:, :, None] * tgt_vocab + e[:, None, :]  # (N, S, T) flat indices into t
            prob = t.view(-1)[cells] * f_mask[:, :, None]
            posterior = prob / prob.sum(1, keepdim=True).clamp_min(1e-30) * e_mask[:, None, :]
            counts.view(-1).index_add_(0, cells.view(-1), posterior.view(-1))
        t = counts / counts.sum(1, keepdim=True).clamp_min(1e-30)
    return t


def _chunks(src: list[list[int]], tgt: list[list[int]]):
    """Pairs sorted by source length, padded into (N, S), (N, T) chunks of at most about CHUNK_CELLS
    (N x S x T) cells, with their masks: few padding cells, and a bounded E-step buffer."""
    chunks, rows, widest = [], [], 1
    for i in sorted(range(len(src)), key=lambda i: len(src[i])):
        width = max(widest, len(tgt[i]))
        if rows and (len(rows) + 1) * len(src[i]) * width > CHUNK_CELLS:
            chunks.append(rows)
            rows, width = [], max(len(tgt[i]), 1)
        rows.append(i)
        widest = width
    chunks.append(rows)
    padded = [(_padded([src[i] for i in rows]), _padded([tgt[i] for i in rows])) for rows in chunks]
    return [(f, e, f_mask, e_mask) for (f, f_mask), (e, e_mask) in padded]


def _padded(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(max(len(s) for s in seqs), 1)
    ids = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs], dtype=torch.long)
    mask = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in seqs])
    return ids, mask.float()


def build_table(src: list[list[int]], tgt: list[list[int]], src_vocab: int, tgt_vocab: int,
                cfg: LexiconConfig) -> LexicalTable:
    """The table from training id pairs (no BOS/EOS): Model 1's `cfg.depth` best translations per
    source piece (PAD where fewer have any probability) and the target pieces by frequency."""
    if not src:
        raise NmtError("nmt-shortlist: the training split has no pairs")
    t = model1(src, tgt, src_vocab, tgt_vocab, cfg.iterations)[:src_vocab]  # NULL dropped
    probs, ids = t.topk(min(cfg.depth, tgt_vocab), dim=1)  # (V_src, depth)
    counts = torch.bincount(torch.tensor([i for seq in tgt for i in seq], dtype=torch.long), minlength=tgt_vocab)
    frequent = counts.argsort(descending=True, stable=True)  # ties (unseen pieces) by id
    return LexicalTable(ids.masked_fill(probs <= 0, PAD).int(), frequent.int())


def training_ids(cfg, tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """The run's training pairs (its config's data section, data.train_limit applied) as piece ids."""
    src, tgt = [], []
    for block in splits.split_blocks(cfg.data, cfg.data.train):
        src += tokenizer.src.encode(block.src)
        tgt += tokenizer.tgt.encode(block.tgt)
        if cfg.data.train_limit and len(src) >= cfg.data.train_limit:
            return src[:cfg.data.train_limit], tgt[:cfg.data.train_limit]
    return src, tgt


def save_table(table: LexicalTable, run_dir: Path) -> Path:
    """`run_dir`/shortlist.safetensors, written beside and renamed: a reader never sees half a table."""
    final, tmp = run_dir / TABLE, run_dir / f".{TABLE}.tmp"
    save_file({"translations": table.translations.contiguous(), "frequent": table.frequent.contiguous()}, str(tmp))
    os.replace(tmp, final)
    return final


def table_path(model_path: str | Path) -> Path:
    """Where a run's table lies: in the run directory given, or in the run of a checkpoint directory
    (RUN/checkpoints/step-N, RUN/best)."""
    path = Path(model_path)
    if (path / TABLE).exists() or not (path / "model.safetensors").exists():
        return path / TABLE
    resolved = path.resolve()
    return resolved.parent.parent / TABLE if resolved.parent.name == "checkpoints" else path / TABLE


def load_table(path: Path | None, src_vocab: int, tgt_vocab: int) -> LexicalTable:
    """The table at `path` (None: a Translator built from a model, not loaded from a run), checked
    against the model's vocabularies; missing or unreadable: one line."""
    if path is None:
        raise NmtError("decode.shortlist: no run to read a lexical table from; load the model with "
                       "Translator.load(RUN) or set the Translator's lexicon")
    run = path.parent
    if not path.exists():
        raise NmtError(f"decode.shortlist: no lexical table in {run} ({TABLE}); build it with nmt-shortlist {run}")
    try:
        tensors = load_file(str(path))
        table = LexicalTable(tensors["translations"], tensors["frequent"])
    except (SafetensorError, KeyError, OSError) as err:
        raise NmtError(f"{path}: unreadable ({str(err).splitlines()[0]}); rebuild it with nmt-shortlist {run}") from None
    table.check(src_vocab, tgt_vocab, str(path))
    return table
