"""Shape buckets (nmt/train/buckets.py): deterministic, covering, and padding that changes nothing."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from nmt.config import DecodeConfig, ModelConfig
from nmt.data.batching import Batch, collate
from nmt.model.seq2seq import Seq2Seq
from nmt.search import beam_search, greedy_search
from nmt.train.buckets import Buckets, Ladder, Shape, pad_rows_and_lengths
from nmt.train.update import token_loss_sum
from nmt.vocab import EOS, PAD

VOCAB = 23
CELLS = ("rnn", "lstm", "gru")


def tiny_model(cell: str, layers: int = 1, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, embed_size=8, hidden_size=6, decoder_hidden_size=10, attention_size=7,
                      num_layers=layers, dropout=0.0, init_range=0.5)
    return Seq2Seq(cfg, VOCAB, VOCAB)


def random_batch(seed: int, rows: int = 5, max_len: int = 9) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(rows):
        n, m = (int(x) for x in torch.randint(1, max_len, (2,), generator=g))
        pairs.append({"src_ids": torch.randint(4, VOCAB, (n,), generator=g).tolist() + [EOS],
                      "tgt_ids": torch.randint(4, VOCAB, (m,), generator=g).tolist()})
    return collate(pairs)


def loss_and_grads(model: Seq2Seq, batch: Batch):
    model.zero_grad(set_to_none=True)
    loss = token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, 0.1)
    tokens = (batch.tgt_out != PAD).sum()
    (loss / tokens).backward()
    return loss.item(), tokens.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# Reference helpers, here because only the tests pad whole batches and decoding batches: training pads
# inside nmt/train/cuda_graphs.py (BucketedForward), and decoding is not bucketed yet.
def batch_shape(batch: Batch) -> Shape:
    B, S = batch.src.shape
    return Shape(B, S, batch.tgt_in.size(1))


def pad_batch(batch: Batch, shape: Shape) -> Batch:
    """`batch` padded to `shape` (at least as large in every dimension): the same loss and gradients."""
    B, S, T = batch_shape(batch)
    if shape.rows < B or shape.src < S or shape.tgt < T:
        raise ValueError(f"bucket {tuple(shape)} is smaller than the batch {(B, S, T)}")
    src, src_lengths = pad_rows_and_lengths(batch.src, batch.src_lengths, shape.rows, shape.src)
    grow = (0, shape.tgt - T, 0, shape.rows - B)
    return Batch(src, src_lengths, F.pad(batch.tgt_in, grow, value=PAD), F.pad(batch.tgt_out, grow, value=PAD))


def pad_sources(src: torch.Tensor, src_lengths: torch.Tensor, buckets: Buckets) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoding batch, src (B, S), padded to its (rows, source length) bucket. Padded rows are the
    empty sentence (EOS alone), a sentence like any other; their hypotheses are to be dropped."""
    B, S = src.shape
    return pad_rows_and_lengths(src, src_lengths, buckets.rows.round_up(B), buckets.src.round_up(S), EOS)


def decode_in_bucket(search, src: torch.Tensor, src_lengths: torch.Tensor, buckets: Buckets) -> list:
    """`search(src, src_lengths)` (greedy or beam: one result per row) run on the batch padded to its
    bucket; the padded rows' results are dropped. Attention, if asked for, has the bucket's S columns."""
    return search(*pad_sources(src, src_lengths, buckets))[: src.size(0)]


def bench_script(name: str):
    """scripts/bench/NAME.py as a module (scripts/ is no package): a benchmark's own helpers are tested here."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_ladder_rounds_up_to_few_multiples_of_its_step():
    ladder = Ladder(4, 1.25)
    rungs = sorted({ladder.round_up(n) for n in range(1, 201)})
    assert rungs[:5] == [4, 8, 12, 16, 20]
    assert all(r % 4 == 0 for r in rungs) and len(rungs) <= 16
    for n in range(1, 201):
        r = ladder.round_up(n)
        assert n <= r and ladder.round_up(r) == r  # covers, and a rung is its own bucket
        assert r <= max(4, 1.25 * n + 4)  # padding stays bounded by the ratio (plus one step)


def test_bucket_choice_is_deterministic_and_covers_every_shape():
    buckets = Buckets()
    for shape in (Shape(b, s, t) for b in (1, 7, 8, 9, 300) for s in (1, 5, 60) for t in (2, 17, 99)):
        bucket = buckets.of(shape)
        assert bucket == Buckets().of(shape)
        assert all(big >= small for big, small in zip(bucket, shape))


@pytest.mark.parametrize("cell", CELLS)
def test_a_padded_batch_gives_the_same_loss_and_gradients(cell):
    model = tiny_model(cell, layers=2 if cell == "lstm" else 1)
    for seed in range(3):
        batch = random_batch(seed)
        bucket = Shape(*(n + extra for n, extra in zip(batch_shape(batch), (3, 4, 5))))
        loss, tokens, grads = loss_and_grads(model, batch)
        padded_loss, padded_tokens, padded_grads = loss_and_grads(model, pad_batch(batch, bucket))
        assert padded_tokens == tokens
        assert padded_loss == pytest.approx(loss, rel=1e-6)
        assert padded_grads.keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(padded_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_padding_rows_are_pad_with_one_source_position():
    batch = random_batch(0, rows=2)
    padded = pad_batch(batch, Shape(4, 12, 10))
    assert padded.src[2:].eq(PAD).all() and padded.src_lengths[2:].tolist() == [1, 1]
    assert padded.tgt_in[2:].eq(PAD).all() and padded.tgt_out[2:].eq(PAD).all()
    with pytest.raises(ValueError, match="smaller than the batch"):
        pad_batch(batch, Shape(1, 12, 10))


def test_padding_ratio_counts_bucket_tokens_over_real_ones():
    padding_ratio = bench_script("bucket_padding").padding_ratio
    buckets = Buckets(rows=Ladder(8, 2.0), src=Ladder(4, 2.0), tgt=Ladder(4, 2.0))
    shapes = [(Shape(8, 3, 4), 30), (Shape(5, 5, 7), 30)]  # buckets (8, 4, 4) and (8, 8, 8)
    assert padding_ratio(shapes, buckets) == {"padded_over_real": round((32 + 64) / 60, 3),
                                              "unbucketed_over_real": round((32 + 35) / 60, 3),
                                              "buckets": 2, "batches_tokens": 60}


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_a_sentence_decodes_the_same_alone_and_in_a_padded_bucket(cell, beam):
    model = tiny_model(cell).eval()
    opts = DecodeConfig(beam_size=beam, max_len_a=1.0, max_len_b=4)
    batch = random_batch(7, rows=5)

    def search(src, lengths):
        if beam == 1:
            return greedy_search(model, src, lengths, opts)
        return [hyps[0] for hyps in beam_search(model, src, lengths, opts)]

    bucketed = decode_in_bucket(search, batch.src, batch.src_lengths, Buckets())
    assert len(bucketed) == 5
    for row, hyp in enumerate(bucketed):
        n = int(batch.src_lengths[row])
        alone = search(batch.src[row:row + 1, :n], batch.src_lengths[row:row + 1])[0]
        assert hyp.tokens == alone.tokens
        assert hyp.score == pytest.approx(alone.score, abs=1e-4)
