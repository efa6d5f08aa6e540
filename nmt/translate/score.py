"""Forced decoding: the model's log-probability of given translations, for filtering and reranking.

A pair's score is log p(y | x) = Σ_t log p(y_t | y_<t, x) over the target pieces and the final EOS,
teacher-forced (the same forward pass as training, without dropout or label smoothing). The
per-token score divides it by that count (pieces + 1), so that long and short pairs compare.
Pairs are scored in batches of similar length and returned in input order; an empty source or
target is scored too (an empty target is just EOS), so every input pair gets a line.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nmt.data.batching import Batch, collate
from nmt.vocab import PAD


class PairScore(NamedTuple):
    total: float  # log p(y | x), natural log
    tokens: int  # target pieces + EOS

    @property
    def per_token(self) -> float:
        return self.total / self.tokens


@torch.inference_mode()
def score_ids(model, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int,
              device: torch.device) -> list[PairScore]:
    """src_ids with EOS, tgt_ids without BOS/EOS (as the tokenizer gives them) -> one score per pair."""
    model.eval()
    order = sorted(range(len(src_ids)), key=lambda i: (len(src_ids[i]), len(tgt_ids[i])))
    results: list[PairScore | None] = [None] * len(src_ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch: Batch = collate([{"src_ids": src_ids[i], "tgt_ids": tgt_ids[i]} for i in chunk])
        batch = Batch(*(t.to(device) for t in batch))
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        real = batch.tgt_out != PAD  # (B, T)
        token_lp = logits.float().log_softmax(-1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        totals = (token_lp * real).sum(1).tolist()
        for i, total, count in zip(chunk, totals, real.sum(1).tolist()):
            results[i] = PairScore(total, count)
    return results
