"""Batched beam search: all sentences x beams advance together as tensor operations.

`select_candidates` is the pure selection step; `beam_search` is the bookkeeping around it:
EOS candidates are set aside as finished hypotheses (`Finished`), finished sentences leave the
active batch, and the live hypotheses (`Beams`), decoder state included, follow the surviving
beams. A sentence's search ends at its length cap or when `_done` says so: by default once no
hypothesis still going can end better than its n-th best ended one (a true bound); with
`stopping: early`, by Hugging Face's faster rule. Under either, the 1-best is the same whatever `nbest`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig
from nmt.search.common import Hypothesis, forced_at, log_probs, max_lengths, prefix_caps
from nmt.vocab import BOS, EOS


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT: ((5 + |Y|) / 6) ** alpha; alpha 0 gives 1 (no normalisation)."""
    return ((5.0 + length) / 6.0) ** alpha


def select_candidates(log_probs: torch.Tensor, scores: torch.Tensor, count: int):
    """log_probs (B, K, V), scores (B, K) -> the `count` best extensions per sentence.

    Returns (scores, tokens, beams), each (B, count), best first. The search asks for twice its beam
    size, so that enough candidates that do not end in EOS always remain to carry on; at step 0 a
    sentence has one hypothesis (K = 1), then beam-size many.
    """
    B, K, V = log_probs.shape
    n = min(count, V)
    # A sentence's `count` best extensions are among each beam's n best tokens: taking those first, the sum
    # with the beam scores and the second top-k run over (B, K, n) instead of (B, K, V).
    row_scores, row_tokens = log_probs.topk(n, dim=-1)  # (B, K, n)
    total = (scores.unsqueeze(-1) + row_scores).view(B, K * n)
    top_scores, top = total.topk(min(count, K * n), dim=1)
    tokens, beams = row_tokens.view(B, K * n).gather(1, top), torch.div(top, n, rounding_mode="floor")
    if top.size(1) < count:  # fewer extensions than asked (one hypothesis, V < count): impossible ones
        missing = count - top.size(1)
        top_scores = F.pad(top_scores, (0, missing), value=float("-inf"))
        tokens, beams = F.pad(tokens, (0, missing)), F.pad(beams, (0, missing))
    return top_scores, tokens, beams


def _done(worst_kept, cand_scores, cand_tokens, penalty) -> torch.Tensor:
    """(b,) sentences whose search is over: no hypothesis still going beats `worst_kept` (b,), the
    worst of the ended hypotheses the rule keeps, once its score is divided by `penalty` (b,).

    'exact' keeps the n best ended and divides by the length penalty at the cap: a going
    hypothesis's score s only decreases as it grows (log-probabilities are <= 0) and the penalty only
    grows with the length, so s / the penalty at its cap bounds every score it can end with (Hugging
    Face's early_stopping="never"; with alpha 0 the bound is s itself). The search stops only once
    its n best can no longer change, so the 1-best is the same for every nbest.
    'early' keeps the K best ended (-inf until K have ended) and divides by the penalty at the
    present length (Hugging Face's default): not a bound, but a rule of K alone, so the 1-best does
    not depend on nbest either. Judged against the n-th best at the present length, as this search
    once did, it would: a smaller n-th best stops sooner.
    """
    going = cand_scores.masked_fill(cand_tokens == EOS, float("-inf")).max(1).values  # (b,)
    return worst_kept >= going / penalty


def _ending(scores, tokens, last_chance):
    """Of the K best candidates (scores, tokens (b, K)), those that end a hypothesis: EOS among them
    (fairseq's rule). Returns the (b, K) mask and their scores (-inf elsewhere).

    Non-finite logits (fp16 overflow, NaN) can leave a sentence at its cap with nothing ended
    (`last_chance` (b,): at the cap, nothing ended before): its best hypothesis then ends there
    anyway, scored -inf, so that every sentence has one."""
    finite = torch.isfinite(scores)
    ended = (tokens == EOS) & finite  # (b, K)
    ended[:, 0] |= last_chance & ~ended.any(1)
    return ended, scores.masked_fill(~(ended & finite), float("-inf"))


def _carry_on(scores, tokens, beams, K: int):
    """Of the 2K candidates, the K best that do not end in EOS (B, K) each."""
    rank = torch.arange(tokens.size(1), device=tokens.device)
    order = ((tokens == EOS) * tokens.size(1) + rank).argsort(dim=1)[:, :K]
    return scores.gather(1, order), tokens.gather(1, order), beams.gather(1, order)


@dataclass
class Beams:
    """The live hypotheses of the active sentences: what the search carries from one step to the next.

    Rows are hypotheses, sentence-major, k per sentence: 1 at step 0 (a sentence's K beams would all
    be the same), then K. `extend` follows the candidates that carry on and `keep` drops the sentences
    that are done, as `DecoderState.select` does for the decoder's rows; `enc` keeps one row per sentence.
    """
    sentence: torch.Tensor  # (b,) original index of each active sentence
    scores: torch.Tensor  # (b, k) each hypothesis's sum of log-probabilities
    tokens: torch.Tensor  # (b*k,) each hypothesis's last token: the next step's input
    history: torch.Tensor  # (b*k, t) the tokens so far, BOS left out
    attention: torch.Tensor | None  # (b*k, t, S) the attention weights so far; None unless asked for
    state: Any  # the decoder's state, b*k rows: search needs only its select(rows)
    enc: Any  # the encoder's output, b rows, likewise

    @classmethod
    def start(cls, enc, state, B: int, device: torch.device) -> Beams:
        """One hypothesis per sentence: BOS, scored 0."""
        return cls(torch.arange(B, device=device), torch.zeros((B, 1), device=device),
                   torch.full((B,), BOS, dtype=torch.long, device=device),
                   torch.empty((B, 0), dtype=torch.long, device=device), None, state, enc)

    def next_log_probs(self, logits, t: int, opts: DecodeConfig, at_cap, prefix) -> torch.Tensor:
        """Step t's logits (b*k, V) -> log-probabilities (b, k, V); `at_cap` (b,) (None before the
        batch's first cap) marks the sentences where only EOS may follow, `prefix` (B, P) the forced tokens."""
        forced = forced_at(prefix, t)  # (B,) or None
        forced = None if forced is None else forced[self.sentence, None]  # (b, 1): one per sentence
        at_cap = None if at_cap is None else at_cap[:, None]  # (b, 1): the sentence's every hypothesis
        return log_probs(logits.view(len(self.sentence), self.scores.size(1), -1), t, opts, at_cap, forced)

    def rows(self, beams: torch.Tensor) -> torch.Tensor:
        """Hypotheses (b, n) by their index within their sentence -> by their row."""
        offsets = torch.arange(len(self.sentence), device=beams.device) * self.scores.size(1)  # (b,)
        return beams + offsets[:, None]

    def record(self, out, keep_attention: bool) -> Beams:
        """After a decoder step: its new state, and its attention (b*k, S) appended if kept."""
        attention = self.attention
        if keep_attention:
            now = out.attention.unsqueeze(1)  # (b*k, 1, S)
            attention = now if attention is None else torch.cat([attention, now], 1)
        return dataclasses.replace(self, state=out.state, attention=attention)

    def extend(self, scores: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> Beams:
        """The next step's hypotheses, K per sentence: each extends row `rows` (b, K) with its token
        `tokens` (b, K), for a sum of log-probabilities `scores` (b, K)."""
        rows = rows.view(-1)  # (b*K,)
        history = torch.cat([self.history.index_select(0, rows), tokens.view(-1, 1)], 1)
        attention = None if self.attention is None else self.attention.index_select(0, rows)
        return Beams(self.sentence, scores, tokens.view(-1), history, attention, self.state.select(rows), self.enc)

    def keep(self, keep: torch.Tensor) -> Beams:
        """Only the active sentences `keep` (n,), each with its K hypotheses."""
        K = self.scores.size(1)
        rows = (keep[:, None] * K + torch.arange(K, device=keep.device)).view(-1)  # (n*K,)
        attention = None if self.attention is None else self.attention[rows]
        return Beams(self.sentence[keep], self.scores[keep], self.tokens[rows], self.history[rows], attention,
                     self.state.select(rows), self.enc.select(keep))


@dataclass
class Finished:
    """The hypotheses ended so far, by original sentence: the host's lists, and on the device the
    two tallies that the search's rules read at each step."""
    hyps: list[list[Hypothesis]]
    count: torch.Tensor  # (B,) how many each sentence has: one with none ends its best at the cap (_ending)
    best: torch.Tensor  # (B, n) their n best normalised scores, -inf until n have ended (_done)

    @classmethod
    def start(cls, B: int, n: int, device: torch.device) -> Finished:
        return cls([[] for _ in range(B)], torch.zeros(B, dtype=torch.long, device=device),
                   torch.full((B, n), float("-inf"), device=device))

    def count_in(self, sentence: torch.Tensor, ended: torch.Tensor, scores: torch.Tensor) -> None:
        """The step's ended candidates ((b, K) mask `ended` of sentences `sentence` (b,), normalised
        `scores` (b, K), -inf elsewhere) added to the tallies; `_set_aside` copies them to the lists."""
        self.count.index_add_(0, sentence, ended.sum(1))
        self.best[sentence] = torch.cat([self.best[sentence], scores], 1).topk(self.best.size(1), 1).values


@torch.inference_mode()
def beam_search(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig,
                nbest: int = 1, return_attention: bool = False,
                prefix: torch.Tensor | None = None) -> list[list[Hypothesis]]:
    """Up to `nbest` hypotheses per sentence, best score (length-normalised log-probability) first,
    each continuing the sentence's `prefix` (B, P) if given.

    At its length cap a hypothesis can only end (EOS is forced, as in fairseq), so every hypothesis
    is scored alike, EOS term included. The host reads the device a few times per step (which
    candidates ended and which sentences are done, then the ended rows in one copy), never once
    per hypothesis: on a GPU each read waits for the queue. While a sentence's prefix is forced, one
    candidate per hypothesis is finite: the sentence keeps a single live hypothesis (the others score
    -inf and never end), as at step 0, and its beams fill once its prefix ends.
    """
    B, K, device = src.size(0), opts.beam_size, src.device
    caps = prefix_caps(max_lengths(src_lengths, opts.max_len_a, opts.max_len_b), prefix)  # (B,)
    host_caps = caps.tolist()
    first_cap = min(host_caps)
    penalty_at_cap = length_penalty(caps, opts.length_penalty)  # (B,) the largest a hypothesis can meet
    enc = model.encode(src, src_lengths)
    beams = Beams.start(enc, model.init_state(enc), B, device)
    exact = opts.stopping == "exact"
    finished = Finished.start(B, min(nbest, K) if exact else K, device)  # as many as _done compares with
    for t in range(max(host_caps)):
        out = model.step(beams.tokens, beams.state, beams.enc)
        beams = beams.record(out, return_attention)
        sentence = beams.sentence  # (b,)
        last = t + 1 >= caps[sentence]  # (b,) at the cap: only EOS may follow
        # Before the first cap of the batch no row can be at its cap: skip two passes over (b, K, V).
        step_scores = beams.next_log_probs(out.logits, t, opts, last if t + 1 >= first_cap else None, prefix)
        cand_scores, cand_tokens, cand_beams = select_candidates(step_scores, beams.scores, 2 * K)
        cand_rows = beams.rows(cand_beams)  # (b, 2K)
        ended, ended_raw = _ending(cand_scores[:, :K], cand_tokens[:, :K], last & (finished.count[sentence] == 0))
        step_penalty = length_penalty(t + 1, opts.length_penalty)  # t tokens and the EOS
        finished.count_in(sentence, ended, ended_raw / step_penalty)
        penalty = penalty_at_cap[sentence] if exact else step_penalty
        done = _done(finished.best[sentence, -1], cand_scores, cand_tokens, penalty) | last
        any_ended, all_done, any_done = torch.stack([ended.any(), done.all(), done.any()]).tolist()
        if any_ended:
            _set_aside(finished.hyps, beams, ended, cand_rows[:, :K], ended_raw, t, host_caps, opts)
        if all_done:
            break
        scores, next_tokens, rows = _carry_on(cand_scores, cand_tokens, cand_rows, K)
        beams = beams.extend(scores, next_tokens, rows)
        if any_done:
            beams = beams.keep((~done).nonzero().flatten())
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished.hyps]


def _set_aside(finished: list[list[Hypothesis]], beams: Beams, ended, rows, scores,
               t: int, caps: list[int], opts: DecodeConfig) -> None:
    """Append step t's ended candidates ((b, K) mask `ended`, extending rows `rows` (b, K) of `beams`,
    their sums of log-probabilities `scores` (b, K)) to their sentences' finished lists, copying them
    to the host at once."""
    where = ended.flatten().nonzero().flatten()
    rows = rows.flatten()[where]  # their histories' rows
    sentences = beams.sentence.repeat_interleave(ended.size(1))[where]
    # Token ids and sentence indices are exact in float64: one copy for all of them.
    table = torch.cat([sentences[:, None].double(), scores.flatten()[where, None].double(),
                       beams.history.index_select(0, rows).double()], 1).tolist()
    weights = None if beams.attention is None else beams.attention.index_select(0, rows).float().cpu()
    norm = length_penalty(t + 1, opts.length_penalty)  # t tokens and the EOS
    for i, (s, score, *tokens) in enumerate(table):
        s = int(s)
        finished[s].append(Hypothesis([int(x) for x in tokens], score / norm, t + 1 < caps[s],
                                      None if weights is None else weights[i]))
