"""Greedy and beam search: hand-checkable probability tables, and properties on a trained model."""

import math

import pytest
import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.data.tokenizer import BOS, EOS
from nmt.model.decoder import DecoderState, StepOutput
from nmt.model.encoder import EncoderOutput
from nmt.search import beam_search, greedy_search, length_penalty, sample, select_candidates

from conftest import HostSyncs

A, B_, C = 4, 5, 6  # token ids of the toy vocabulary (0-3 are pad/unk/bos/eos)


class TableModel:
    """A scripted decoder: p(next | previous token) from a fixed table, whatever the source."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 7):
        self.logp = torch.full((vocab, vocab), -1e9)
        for prev, row in table.items():
            for tok, p in row.items():
                self.logp[prev, tok] = math.log(p)

    def encode(self, src, src_lengths):
        B, S = src.shape
        mask = torch.arange(S)[None] < src_lengths[:, None]
        return EncoderOutput(torch.zeros(B, S, 1), mask, torch.zeros(1, B, 1), None, torch.zeros(B, S, 1))

    def init_state(self, enc):
        return DecoderState(torch.zeros(1, enc.memory.size(0), 1), None)

    def step(self, tokens, state, enc):
        attention = enc.mask.float() / enc.mask.sum(1, keepdim=True)
        return StepOutput(self.logp[tokens], state, attention)


# Greedy takes A (0.6) and then must pay 0.4 for any continuation; B_ (0.4) leads to EOS with 0.9.
TRAP = {BOS: {A: 0.6, B_: 0.4}, A: {EOS: 0.4, C: 0.3, B_: 0.3}, B_: {EOS: 0.9, C: 0.1}, C: {EOS: 1.0}}


def decode(model, opts, nbest=1, n=1):
    src = torch.full((n, 3), 7 - 1)
    return beam_search(model, src, torch.full((n,), 3), opts, nbest=nbest)


def test_beam_finds_the_sequence_greedy_misses():
    model = TableModel(TRAP)
    src, lengths = torch.full((1, 3), 6), torch.tensor([3])
    assert greedy_search(model, src, lengths, DecodeConfig())[0].tokens == [A]
    best = decode(model, DecodeConfig(beam_size=2, length_penalty=0.0))[0][0]
    assert best.tokens == [B_] and best.finished
    assert best.score == pytest.approx(math.log(0.4 * 0.9))


def test_improbable_beams_that_end_early_do_not_close_the_search():
    """fairseq's rule alone (stop once K hypotheses ended) returns [D] (p = 0.015) here: D ends at
    step 1 and the sure path's unlikely A B_ EOS at step 2 make K = 2, while A B_ C (p = 0.95) is
    still going. The search goes on while a hypothesis still going looks better."""
    D, E_ = 7, 8
    model = TableModel({BOS: {A: 0.97, D: 0.015, E_: 0.015}, A: {B_: 0.99, EOS: 0.01},
                        B_: {C: 0.99, EOS: 0.01}, C: {EOS: 1.0}, D: {EOS: 1.0}, E_: {EOS: 1.0}}, vocab=9)
    src = torch.full((1, 3), 6)
    for alpha in (0.0, 1.0):
        best = beam_search(model, src, torch.tensor([3]), DecodeConfig(beam_size=2, length_penalty=alpha))[0][0]
        assert best.tokens == [A, B_, C], alpha
        assert best.score == pytest.approx(math.log(0.97 * 0.99 * 0.99) / length_penalty(4, alpha))


@pytest.mark.parametrize("stopping", ["exact", "early"])
def test_the_1best_does_not_depend_on_nbest(stopping):
    """A ends at once (log 0.54 / lp(2) = -0.528); the B-chain (p = 0.4, 12 pieces) ends later but
    better (log 0.4 / lp(12) = -0.323). Judged at its present length against the n-th best ended,
    the chain looks worse than A until it ends: nbest 1 then stopped at A, while nbest 2, waiting for
    a second hypothesis, found the chain. Bounded by its score over the length penalty at the cap
    (20, 'exact'), or judged against the K-th best ended ('early'), it goes on either way."""
    X, chain = 6, list(range(7, 17))
    table = {BOS: {A: 0.6, B_: 0.4}, A: {EOS: 0.9, X: 0.1}, X: {EOS: 1.0}}
    for prev, tok in zip([B_] + chain, chain + [EOS]):
        table[prev] = {tok: 1.0}
    opts = DecodeConfig(beam_size=2, length_penalty=1.0, max_len_a=0.0, max_len_b=20, stopping=stopping)
    for nbest in (1, 2):
        best = decode(TableModel(table, vocab=17), opts, nbest=nbest)[0][0]
        assert best.tokens == [B_] + chain and best.finished, nbest
        assert best.score == pytest.approx(math.log(0.4) / length_penalty(12, 1.0))


class BrokenModel(TableModel):
    """From step 1 on, every logit is `value` (NaN, or inf as an fp16 overflow gives): the
    log-probabilities are NaN, so no hypothesis ends with a finite score."""

    def __init__(self, value: float):
        super().__init__(TRAP)
        self.value = value

    def step(self, tokens, state, enc):
        out = super().step(tokens, state, enc)
        broken = (tokens != BOS)[:, None]  # (R, 1)
        return StepOutput(out.logits.masked_fill(broken, self.value), state, out.attention)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sampling"])
def test_non_finite_logits_still_end_every_sentence_with_a_hypothesis(strategy, value):
    model, n = BrokenModel(value), 3
    src, lengths = torch.full((n, 3), 6), torch.tensor([3, 2, 3])
    opts = DecodeConfig(beam_size=2, max_len_a=0.0, max_len_b=5, sampling=strategy == "sampling")
    if strategy == "greedy":
        found = [[h] for h in greedy_search(model, src, lengths, opts)]
    elif strategy == "beam":
        found = beam_search(model, src, lengths, opts, nbest=2)
    else:
        found = sample(model, src, lengths, opts, n=2)
    for hyps in found:
        assert hyps and len(hyps[0].tokens) == 4 and not hyps[0].finished
        assert hyps[0].score == float("-inf")


def test_nbest_is_sorted_and_scores_are_exact():
    hyps = decode(TableModel(TRAP), DecodeConfig(beam_size=3, length_penalty=0.0), nbest=3)[0]
    assert [h.tokens for h in hyps] == [[B_], [A], [A, C]]
    expected = [math.log(0.36), math.log(0.24), math.log(0.6 * 0.3 * 1.0)]
    assert [h.score for h in hyps] == pytest.approx(expected)


def test_length_penalty_changes_the_choice():
    # EOS at once (0.5) versus a 3-token path of probability 0.45: only normalisation prefers the longer.
    table = {BOS: {EOS: 0.5, A: 0.45, B_: 0.05}, A: {C: 1.0}, C: {EOS: 1.0}, B_: {C: 1.0}}
    plain = decode(TableModel(table), DecodeConfig(beam_size=2, length_penalty=0.0, min_len=0))[0][0]
    assert plain.tokens == []
    normalised = decode(TableModel(table), DecodeConfig(beam_size=2, length_penalty=2.0, min_len=0))[0][0]
    assert normalised.tokens == [A, C]
    assert normalised.score == pytest.approx(math.log(0.45) / length_penalty(3, 2.0))


def test_length_cap_forces_eos_and_reports_unfinished_hypotheses():
    # Cap 4 pieces with the EOS: three A's, then EOS is the only choice, at its own probability 0.1.
    loop = {BOS: {A: 1.0}, A: {A: 0.9, EOS: 0.1}}
    opts = DecodeConfig(beam_size=1, length_penalty=0.0, max_len_a=0.0, max_len_b=4)
    hyp = decode(TableModel(loop), opts)[0][0]
    greedy = greedy_search(TableModel(loop), torch.full((1, 3), 6), torch.tensor([3]), opts)[0]
    for h in (hyp, greedy):
        assert h.tokens == [A, A, A] and not h.finished
        assert h.score == pytest.approx(math.log(0.9 * 0.9 * 0.1))


def test_capped_hypotheses_cannot_outrank_finished_ones():
    """fairseq forces EOS at the cap, so a hypothesis that never ends pays for its EOS like any other.
    Scored without it, A A (log 0.5 * 0.99 * 0.99 at the cap) would head the n-best list above the
    finished B (log 0.5 * 0.6)."""
    table = {BOS: {A: 0.5, B_: 0.5}, A: {A: 0.99, EOS: 0.01}, B_: {EOS: 0.6, C: 0.4}, C: {C: 1.0}}
    opts = DecodeConfig(beam_size=2, length_penalty=0.0, max_len_a=0.0, max_len_b=3)
    hyps = decode(TableModel(table), opts, nbest=2)[0]
    assert [(h.tokens, h.finished) for h in hyps] == [([B_], True), ([A, A], False)]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.5 * 0.6), math.log(0.5 * 0.99 * 0.01)])


def test_beam_search_reads_the_host_a_few_times_per_step_not_per_hypothesis(monkeypatch):
    """Each host read waits for a GPU's queue: once per step (which candidates ended, which sentences
    are done) and once per step that ends hypotheses (their rows, in one copy), plus the pruning."""
    table = {BOS: {A: 0.4, B_: 0.3, C: 0.3}, A: {EOS: 0.3, A: 0.3, B_: 0.2, C: 0.2},
             B_: {EOS: 0.4, A: 0.3, C: 0.3}, C: {EOS: 0.2, A: 0.4, B_: 0.4}}
    opts = DecodeConfig(beam_size=4, length_penalty=1.0, max_len_a=0.0, max_len_b=8)
    syncs = HostSyncs(monkeypatch)
    hyps = decode(TableModel(table), opts, nbest=4, n=16)
    count = syncs.count
    monkeypatch.undo()
    assert sum(len(h) for h in hyps) == 64  # 64 hypotheses came back ...
    assert count <= 4 * 8 + 2  # ... with at most 4 reads per step of the 8 (and 2 to start)


def test_min_len_forbids_an_early_eos():
    hyp = decode(TableModel(TRAP), DecodeConfig(beam_size=2, length_penalty=0.0, min_len=2))[0][0]
    assert len(hyp.tokens) >= 2 and hyp.tokens == [A, C]


@pytest.mark.parametrize("min_len, tokens, prob", [(0, [], 0.7), (1, [A], 0.3)])
def test_min_len_in_greedy_and_beam_search(min_len, tokens, prob):
    """The default (1) never outputs an empty line; the forbidden EOS is not renormalised away."""
    model = TableModel({BOS: {EOS: 0.7, A: 0.3}, A: {EOS: 1.0}})
    opts = DecodeConfig(beam_size=2, length_penalty=0.0, min_len=min_len)
    greedy = greedy_search(model, torch.full((1, 3), 6), torch.tensor([3]), opts)[0]
    beam = decode(model, opts)[0][0]
    for hyp in (greedy, beam):
        assert hyp.tokens == tokens and hyp.score == pytest.approx(math.log(prob))
    assert DecodeConfig().min_len == 1


def test_select_candidates_picks_the_global_top_2k():
    log_probs = torch.log(torch.tensor([[[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]]]))
    scores = torch.log(torch.tensor([[0.5, 0.5]]))
    s, tokens, beams = select_candidates(log_probs, scores, 2 * scores.size(1))
    assert tokens.tolist() == [[2, 0, 1, 1]] and beams.tolist() == [[0, 1, 1, 0]]
    assert s.exp()[0].tolist() == pytest.approx([0.35, 0.25, 0.2, 0.1])


def test_select_candidates_equals_a_top_k_over_every_extension():
    """Each beam's own 2K best tokens first, then the sentence's 2K best of those: the same as one
    top-k over all K x V extensions (random scores, no ties; one beam at -inf as at step 0)."""
    torch.manual_seed(0)
    B, K, V = 3, 4, 50
    log_probs = torch.randn(B, K, V).log_softmax(-1)
    scores = torch.randn(B, K)
    scores[1, 1:] = float("-inf")
    s, tokens, beams = select_candidates(log_probs, scores, 2 * scores.size(1))
    expected, flat = (scores[..., None] + log_probs).view(B, K * V).topk(2 * K, dim=1)
    torch.testing.assert_close(s, expected)
    assert tokens.tolist() == (flat % V).tolist() and beams.tolist() == (flat // V).tolist()


@pytest.fixture(scope="module")
def trained(reverse_run):
    root, corpus, _ = reverse_run
    model, tokenizer, _, _ = load_checkpoint(root / "run")
    lines = (corpus / "test.src").read_text().splitlines()[:24]
    ids = tokenizer.encode_src(lines)
    return model, ids


def test_beam_one_equals_greedy_on_a_trained_model(trained):
    model, ids = trained
    src, lengths = pad(ids), torch.tensor([len(i) for i in ids])
    greedy = greedy_search(model, src, lengths, DecodeConfig())
    beam = beam_search(model, src, lengths, DecodeConfig(beam_size=1, length_penalty=0.0))
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    assert [h.score for h in greedy] == pytest.approx([b[0].score for b in beam], abs=1e-4)


def test_batched_beam_equals_each_sentence_alone(trained):
    model, ids = trained
    opts = DecodeConfig(beam_size=4)
    batched = beam_search(model, pad(ids), torch.tensor([len(i) for i in ids]), opts, nbest=3)
    for i, one in enumerate(ids):
        alone = beam_search(model, torch.tensor([one]), torch.tensor([len(one)]), opts, nbest=3)[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in alone], abs=1e-4)
        scores = [h.score for h in batched[i]]
        assert scores == sorted(scores, reverse=True)


def test_attention_rows_cover_each_output_token(trained):
    model, ids = trained
    hyps = beam_search(model, pad(ids[:3]), torch.tensor([len(i) for i in ids[:3]]),
                       DecodeConfig(beam_size=3), return_attention=True)
    for sent, nbest in zip(ids[:3], hyps):
        hyp = nbest[0]
        assert hyp.attention.shape[0] == len(hyp.tokens) + 1
        torch.testing.assert_close(hyp.attention[:, :len(sent)].sum(1), torch.ones(len(hyp.tokens) + 1))


def test_select_candidates_pads_when_fewer_extensions_exist():
    """At step 0 a sentence has one hypothesis: with V < 2K there are fewer than 2K extensions, and
    the rest are impossible (-inf), so that the search's bookkeeping keeps its shapes."""
    log_probs = torch.log(torch.tensor([[[0.6, 0.3, 0.1]]]))  # (B=1, K=1, V=3)
    s, tokens, beams = select_candidates(log_probs, torch.zeros(1, 1), 4)
    assert tokens[0, :3].tolist() == [0, 1, 2] and beams.tolist() == [[0, 0, 0, 0]]
    assert s.exp()[0, :3].tolist() == pytest.approx([0.6, 0.3, 0.1]) and s[0, 3] == float("-inf")
