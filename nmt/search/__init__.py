"""Decoding strategies over any model with `encode` / `init_state` / `step` and a state with `select`.

    greedy.py   the most probable token at each step
    beam.py     batched beam search: a pure selection function and the bookkeeping around it
    sampling.py tokens drawn at random (temperature, top-k, top-p), batched like greedy
    common.py   what they share: the hypothesis, the length cap, a step's log-probabilities, a target
                prefix's forced tokens
"""

from nmt.search.beam import beam_search, length_penalty, select_candidates
from nmt.search.common import FREE, Hypothesis, log_probs, max_lengths
from nmt.search.greedy import greedy_search
from nmt.search.sampling import sample, truncate

__all__ = ["FREE", "Hypothesis", "beam_search", "greedy_search", "length_penalty", "log_probs", "max_lengths",
           "sample", "select_candidates", "truncate"]
