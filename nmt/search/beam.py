"""Batched beam search: all sentences x beams advance together as tensor operations.

`select_candidates` is the pure selection step; `beam_search` is the bookkeeping around it:
EOS candidates are set aside as finished hypotheses, finished sentences leave the active batch,
and the decoder state follows the surviving beams through `state.select`. A sentence's search
ends at its length cap or when `_done` says so: by default once no hypothesis still going can end
better than its n-th best ended one (a true bound); with `stopping: early`, by Hugging Face's
faster rule. Under either, the 1-best is the same whatever `nbest`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig
from nmt.search.common import Hypothesis, forced_at, log_probs, max_lengths, prefix_caps
from nmt.data.tokenizer import BOS, EOS


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
    # State rows are hypotheses, sentence-major: one per sentence at step 0 (its K beams would all be
    # the same), then K; enc keeps one row per sentence.
    state = model.init_state(enc)
    scores = torch.zeros((B, 1), device=device)  # (b, hypotheses per sentence)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=device)
    history = torch.empty((B, 0), dtype=torch.long, device=device)
    attn_history = None
    sentence = torch.arange(B, device=device)  # original index of each active sentence
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    n_finished = torch.zeros(B, dtype=torch.long, device=device)
    exact = opts.stopping == "exact"
    # The best normalised scores of ended hypotheses, as many as the stopping rule compares with (_done).
    top_finished = torch.full((B, min(nbest, K) if exact else K), float("-inf"), device=device)
    for t in range(max(host_caps)):
        out = model.step(tokens, state, enc)
        last = t + 1 >= caps[sentence]  # (b,) at the cap: only EOS may follow
        # Before the first cap of the batch no row can be at its cap: skip two passes over (b, K, V).
        at_cap = last[:, None] if t + 1 >= first_cap else None
        per_sentence = scores.size(1)  # 1 at step 0, then K
        forced = forced_at(prefix, t)  # (B,) or None
        forced = None if forced is None else forced[sentence, None]  # (b, 1): one per sentence
        logits = out.logits.view(len(sentence), per_sentence, -1)
        step_scores = log_probs(logits, t, opts, at_cap, forced)  # (b, 1 or K, V)
        cand_scores, cand_tokens, cand_beams = select_candidates(step_scores, scores, 2 * K)
        flat_beams = cand_beams + (torch.arange(len(sentence), device=device) * per_sentence)[:, None]  # (b, 2K)
        if return_attention:
            attn_now = out.attention.unsqueeze(1)
            attn_history = attn_now if attn_history is None else torch.cat([attn_history, attn_now], 1)
        ended, ended_raw = _ending(cand_scores[:, :K], cand_tokens[:, :K], last & (n_finished[sentence] == 0))
        n_finished.index_add_(0, sentence, ended.sum(1))
        step_penalty = length_penalty(t + 1, opts.length_penalty)  # t tokens and the EOS
        ended_scores = ended_raw / step_penalty
        top_finished[sentence] = torch.cat([top_finished[sentence], ended_scores], 1).topk(top_finished.size(1), 1).values
        penalty = penalty_at_cap[sentence] if exact else step_penalty
        done = _done(top_finished[sentence, -1], cand_scores, cand_tokens, penalty) | last
        any_ended, all_done, any_done = torch.stack([ended.any(), done.all(), done.any()]).tolist()
        if any_ended:
            _set_aside(finished, ended, sentence, flat_beams[:, :K], ended_raw, history, attn_history,
                       t, host_caps, opts)
        if all_done:
            break
        scores, next_tokens, beams = _carry_on(cand_scores, cand_tokens, flat_beams, K)
        rows = beams.view(-1)
        history = torch.cat([history.index_select(0, rows), next_tokens.view(-1, 1)], 1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, rows)
        state, tokens = out.state.select(rows), next_tokens.view(-1)
        if any_done:
            keep = (~done).nonzero().flatten()
            keep_rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            sentence, scores = sentence[keep], scores[keep]
            enc, state = enc.select(keep), state.select(keep_rows)
            tokens, history = tokens[keep_rows], history[keep_rows]
            if attn_history is not None:
                attn_history = attn_history[keep_rows]
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]


def _set_aside(finished: list[list[Hypothesis]], ended, sentence, beams, scores, history, attn_history,
               t: int, caps: list[int], opts: DecodeConfig) -> None:
    """Append step t's ended candidates ((b, K) mask `ended`) to their sentences' finished lists,
    copying their rows to the host at once."""
    where = ended.flatten().nonzero().flatten()
    rows = beams.flatten()[where]  # their histories' rows
    sentences = sentence.repeat_interleave(ended.size(1))[where]
    # Token ids and sentence indices are exact in float64: one copy for all of them.
    table = torch.cat([sentences[:, None].double(), scores.flatten()[where, None].double(),
                       history.index_select(0, rows).double()], 1).tolist()
    weights = None if attn_history is None else attn_history.index_select(0, rows).float().cpu()
    norm = length_penalty(t + 1, opts.length_penalty)  # t tokens and the EOS
    for i, (s, score, *tokens) in enumerate(table):
        s = int(s)
        finished[s].append(Hypothesis([int(x) for x in tokens], score / norm, t + 1 < caps[s],
                                      None if weights is None else weights[i]))
