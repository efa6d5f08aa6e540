"""A vocabulary shortlist: each batch is decoded over the target pieces its sentences may need only,
as Marian's lexical shortlist, CTranslate2's vocabulary map and Sockeye's restrict-lexicon do.

A sentence's shortlist is the special tokens, the `frequent` most frequent target pieces, the
`top_k` most likely translations of each of its source pieces (the run's lexical table,
nmt/translate/lexicon.py) and the pieces of its target prefix. The batch's shortlist is their
union, V_s pieces sorted by id: the special tokens (ids 0-3, nmt/vocab.py) keep their ids, so search,
which knows BOS and EOS by id, runs unchanged in shortlist space. Per batch:

    logits (B, V_s) = o (B, R) · W_out[ids]ᵀ      ids (V_s,): shortlist index -> target id

so the output layer, the log_softmax and the top-k run over V_s columns instead of V. A step's
input tokens are shortlist indices, mapped to target ids for the embedding lookup; hypotheses are
mapped back when the search ends.

Each row also masks the batch's columns outside its own sentence's shortlist (-inf): a sentence's
distribution is then renormalised over its own shortlist, whatever its batch-mates brought in, so a
sentence's output still does not depend on its batch (README, "What is guaranteed"). The mask is
one pass over (B, V_s); the product it follows costs R multiply-adds per cell.

Search sees `encode` / `init_state` / `step` as ever (nmt/search/); an ensemble's members share the
target vocabulary, so each member is restricted to the same rows and the ensemble combines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.errors import NmtError
from nmt.model.decoder import StepOutput
from nmt.search import FREE, Hypothesis
from nmt.translate.ensemble import Ensemble
from nmt.translate.lexicon import LexicalTable
from nmt.vocab import EOS, PAD


def sentence_pieces(table: LexicalTable, src: torch.Tensor, src_lengths: torch.Tensor,
                    prefix: torch.Tensor | None, top_k: int, frequent: int) -> torch.Tensor:
    """(B, V) bool: each sentence's shortlist over the target vocabulary (module docstring)."""
    B, V = src.size(0), table.frequent.size(0)
    if top_k > table.translations.size(1):
        raise NmtError(f"decode.shortlist_top_k: {top_k} exceeds the lexical table's {table.translations.size(1)} "
                       "translations per source piece; rebuild it with nmt-shortlist RUN --depth N")
    base = torch.zeros(V, dtype=torch.bool, device=src.device)
    base[:EOS + 1] = True  # the special tokens
    base[table.frequent[:frequent].to(src.device, torch.long)] = True
    real = torch.arange(src.size(1), device=src.device) < src_lengths[:, None]  # (B, S)
    found = table.translations.to(src.device)[src, :top_k].long().masked_fill(~real[:, :, None], PAD)  # (B, S, k)
    allowed = base.repeat(B, 1)
    allowed.scatter_(1, found.view(B, -1), True)  # padding adds only PAD, a special token
    if prefix is not None:
        allowed.scatter_(1, prefix.masked_fill(prefix == FREE, PAD), True)
    return allowed


@dataclass
class ShortlistSource:
    """The inner model's encoding and each sentence's own columns of the batch's shortlist."""
    inner: object
    allowed: torch.Tensor  # (B, V_s) bool

    def select(self, index: torch.Tensor) -> "ShortlistSource":
        return ShortlistSource(self.inner.select(index), self.allowed.index_select(0, index))


class ShortlistModel:
    """An InferenceModel decoding over the target pieces `ids` (V_s,) only: tokens and logits in
    shortlist space, `allowed` (B, V_s) each sentence's columns of it."""

    def __init__(self, inner, ids: torch.Tensor, allowed: torch.Tensor):
        self.inner, self.ids, self.allowed = inner, ids, allowed
        self.out = inner.output_rows(ids)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> ShortlistSource:
        return ShortlistSource(self.inner.encode(src, src_lengths), self.allowed)

    def init_state(self, source: ShortlistSource):
        return self.inner.init_state(source.inner)

    def step(self, tokens: torch.Tensor, state, source: ShortlistSource) -> StepOutput:
        """tokens (B*k,) shortlist indices -> logits (B*k, V_s); rows are sentence-major, k per
        sentence of `source` (beam search's hypotheses; k = 1 for greedy search and sampling)."""
        o, state, alpha = self.inner.read_out(self.ids[tokens], state, source.inner)
        V_s, b = self.ids.size(0), source.allowed.size(0)
        logits = self.out(o)[:, :V_s]
        logits = logits.view(b, -1, V_s).masked_fill(~source.allowed[:, None], float("-inf")).view(-1, V_s)
        return StepOutput(logits, state, alpha)


@dataclass
class Restricted:
    """One batch's decoding over its shortlist: the model, the prefix in shortlist space, and the map back."""
    model: object
    prefix: torch.Tensor | None  # (B, P) shortlist indices, FREE past each prefix
    ids: torch.Tensor  # (V_s,) shortlist index -> target id

    def to_target(self, found: list[list[Hypothesis]]) -> list[list[Hypothesis]]:
        """The search's hypotheses with their tokens as target ids."""
        ids = self.ids.tolist()
        for hyps in found:
            for hyp in hyps:
                hyp.tokens = [ids[t] for t in hyp.tokens]
        return found


class Shortlister:
    """Restricts each batch of `members` (InferenceModels; several: their ensemble) to its shortlist."""

    def __init__(self, table: LexicalTable, members: list, top_k: int, frequent: int):
        self.table, self.members, self.top_k, self.frequent = table, members, top_k, frequent

    def restrict(self, src: torch.Tensor, src_lengths: torch.Tensor, prefix: torch.Tensor | None) -> Restricted:
        """src (B, S), src_lengths (B,), prefix (B, P) target ids or None -> the batch's Restricted."""
        wanted = sentence_pieces(self.table, src, src_lengths, prefix, self.top_k, self.frequent)  # (B, V)
        ids = wanted.any(0).nonzero().flatten()  # (V_s,) sorted: the special tokens keep their ids
        allowed = wanted[:, ids]  # (B, V_s)
        models = [ShortlistModel(m, ids, allowed) for m in self.members]
        model = models[0] if len(models) == 1 else Ensemble(models)
        mapped = None if prefix is None else torch.where(prefix == FREE, FREE, torch.searchsorted(ids, prefix))
        return Restricted(model, mapped, ids)
