"""Several models decoding as one: the same `encode` / `init_state` / `step` that search sees.

The combination rule (OpenNMT-py's; a product of experts): at each step the ensemble's output is
the mean of its members' log-probabilities,

    logits_t(v) = 1/N Σ_i log p_i(v | y_<t, x)

returned in the `logits` slot. That mean is not normalised (Σ_v exp(...) <= 1, with equality only
when the members agree), so the search's log_softmax turns it into the renormalised geometric mean
of the members' distributions: greedy search picks the token with the highest mean log-probability,
and an ensemble of one model, or of a model with itself, decodes exactly as that model.
The attention returned is the mean of the members' attention weights.

Members share the batch: they must read the same source ids and write the same target ids, so
their tokenizers must agree piece for piece (`check_vocabularies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.errors import NmtError
from nmt.model.decoder import StepOutput


@dataclass
class Members:
    """One encoding or decoder state per member; `select` takes the same rows of each."""
    parts: list

    def select(self, index: torch.Tensor) -> "Members":
        return Members([part.select(index) for part in self.parts])


class Ensemble:
    """`models`: objects with encode / init_state / step (e.g. InferenceModel), same vocabularies."""

    def __init__(self, models: list):
        if not models:
            raise NmtError("an ensemble needs at least one model")
        self.models = list(models)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Members:
        return Members([m.encode(src, src_lengths) for m in self.models])

    def init_state(self, enc: Members) -> Members:
        return Members([m.init_state(part) for m, part in zip(self.models, enc.parts)])

    def step(self, tokens: torch.Tensor, state: Members, enc: Members) -> StepOutput:
        """tokens (B,) -> the mean of the members' log-probabilities (B, V), their states, mean attention (B, S)."""
        outs = [m.step(tokens, s, e) for m, s, e in zip(self.models, state.parts, enc.parts)]
        mean_lp = torch.stack([o.logits.float().log_softmax(-1) for o in outs]).mean(0)  # (B, V)
        attention = torch.stack([o.attention.float() for o in outs]).mean(0)  # (B, S)
        return StepOutput(mean_lp, Members([o.state for o in outs]), attention)


def check_vocabularies(tokenizers: list, names: list[str]) -> None:
    """Refuse members whose target pieces (or source segmentation) differ from the first's."""
    first = tokenizers[0]
    for tok, name in zip(tokenizers[1:], names[1:]):
        for side, what in ((first.tgt, "target"), (first.src, "source")):
            other = tok.tgt if side is first.tgt else tok.src
            mine, theirs = side.vocabulary(), other.vocabulary()
            if mine != theirs:
                at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
                raise NmtError(f"{name}: its {what} vocabulary differs from {names[0]}'s ({len(theirs)} vs "
                               f"{len(mine)} pieces, first difference at id {at}); ensemble members must share it")
        if tok.src.proc.serialized_model_proto() != first.src.proc.serialized_model_proto():
            raise NmtError(f"{name}: its source SentencePiece model differs from {names[0]}'s; "
                           "ensemble members must split the input the same way")
