"""Model pieces checked against independent computations: per-sentence loops, step-by-step decoding."""

import pytest
import torch

from nmt.config import ModelConfig
from nmt.data.batching import pad
from nmt.model.attention import BahdanauAttention
from nmt.model.decoder import Readout
from nmt.model.encoder import Encoder
from nmt.model.seq2seq import Seq2Seq
from nmt.translate.inference import InferenceModel

CELLS = ["rnn", "lstm", "gru"]


def sentences(seed: int, lengths: list[int], vocab: int = 30) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_output_does_not_depend_on_padding(cell):
    torch.manual_seed(0)
    enc = Encoder(cell, 30, 8, 6, num_layers=2, dropout=0.0, padding_idx=0).eval()
    seqs = sentences(1, [5, 2, 7, 1])
    batch = enc(pad(seqs), torch.tensor([len(s) for s in seqs]))
    for b, seq in enumerate(seqs):
        alone = enc(torch.tensor([seq]), torch.tensor([len(seq)]))
        n = len(seq)
        torch.testing.assert_close(batch.memory[b, :n], alone.memory[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(batch.final[:, b], alone.final[:, 0], atol=1e-6, rtol=1e-5)
        assert torch.all(batch.memory[b, n:] == 0)
        assert batch.mask[b].tolist() == [True] * n + [False] * (batch.mask.size(1) - n)
    assert (batch.final_cell is not None) == (cell == "lstm")


def test_encoder_final_state_is_last_forward_and_first_backward():
    torch.manual_seed(0)
    enc = Encoder("gru", 30, 8, 6, num_layers=1, dropout=0.0, padding_idx=0).eval()
    out = enc(pad(sentences(2, [4, 6])), torch.tensor([4, 6]))
    for b, n in enumerate([4, 6]):
        torch.testing.assert_close(out.final[0, b, :6], out.memory[b, n - 1, :6])
        torch.testing.assert_close(out.final[0, b, 6:], out.memory[b, 0, 6:])


def test_attention_masks_padding_and_matches_a_per_sentence_loop():
    torch.manual_seed(0)
    attn = BahdanauAttention(query_size=5, key_size=6, hidden_size=4)
    lengths = [3, 7, 1]
    memory = torch.randn(3, 7, 6)
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    query = torch.randn(3, 5)
    context, weights = attn(query, attn.project_keys(memory), memory, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    for b, n in enumerate(lengths):
        # The textbook formula on the unpadded sentence alone.
        scores = torch.stack([attn.v.weight[0] @ torch.tanh(attn.query_proj.weight @ query[b]
                                                            + attn.key_proj.weight @ memory[b, j])
                              for j in range(n)])
        alpha = torch.softmax(scores, 0)
        torch.testing.assert_close(weights[b, :n], alpha)
        torch.testing.assert_close(context[b], (alpha[:, None] * memory[b, :n]).sum(0))


def test_beams_share_their_sentence_keys_without_copies():
    """K query rows per sentence against B key rows equals K copies of each sentence's keys."""
    torch.manual_seed(0)
    attn = BahdanauAttention(query_size=5, key_size=6, hidden_size=4)
    memory = torch.randn(3, 7, 6)
    mask = torch.arange(7)[None] < torch.tensor([3, 7, 1])[:, None]
    query = torch.randn(3 * 4, 5)  # 4 beams per sentence, sentence-major
    context, weights = attn(query, attn.project_keys(memory), memory, mask)
    rows = torch.arange(3).repeat_interleave(4)
    for r in range(12):
        one_c, one_w = attn(query[r:r + 1], attn.project_keys(memory[rows[r:r + 1]]), memory[rows[r:r + 1]],
                            mask[rows[r:r + 1]])
        torch.testing.assert_close(context[r], one_c[0])
        torch.testing.assert_close(weights[r], one_w[0])


def small_model(cell: str, tie: bool = False, layers: int = 1) -> Seq2Seq:
    torch.manual_seed(0)
    # Untied, the readout (7) differs from every other size, so that a mixed-up shape cannot pass.
    cfg = ModelConfig(cell=cell, embed_size=8, hidden_size=6, decoder_hidden_size=10, attention_size=5,
                      readout_size=8 if tie else 7, num_layers=layers, dropout=0.3, tie_embeddings=tie)
    return Seq2Seq(cfg, src_vocab_size=30, tgt_vocab_size=25).eval()


@pytest.mark.parametrize("cell, tie, layers", [("rnn", False, 1), ("lstm", True, 2), ("gru", False, 2)])
def test_teacher_forcing_equals_stepping(cell, tie, layers):
    model = small_model(cell, tie, layers)
    src = pad(sentences(3, [6, 3]))
    src_lengths = torch.tensor([6, 3])
    tgt_in = torch.tensor([[2, 5, 9, 11, 4], [2, 7, 6, 0, 0]])
    logits = model(src, src_lengths, tgt_in)  # (B, T, V)
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    for t in range(tgt_in.size(1)):
        out = model.step(tgt_in[:, t], state, enc)
        torch.testing.assert_close(out.logits, logits[:, t], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(2))
        state = out.state


def torch_rnn_with_our_weights(dec) -> torch.nn.RNNBase:
    """nn.RNN/nn.GRU/nn.LSTM holding the decoder's weights (first layer: [W C] on [E y; c]):
    PyTorch's own implementation of the cell."""
    stacked = dec.rnn
    cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[stacked.kind]
    layers = len(stacked.input)
    input_size = stacked.input[0].in_features + dec.context_gates.in_features
    ref = cls(input_size, stacked.hidden_size, num_layers=layers, batch_first=True)
    with torch.no_grad():
        for layer, (W, U) in enumerate(zip(stacked.input, stacked.recurrent)):
            w_ih = torch.cat([W.weight, dec.context_gates.weight], 1) if layer == 0 else W.weight
            getattr(ref, f"weight_ih_l{layer}").copy_(w_ih)
            getattr(ref, f"bias_ih_l{layer}").copy_(W.bias)
            getattr(ref, f"weight_hh_l{layer}").copy_(U.weight)
            getattr(ref, f"bias_hh_l{layer}").copy_(U.bias)
    return ref.eval()


@pytest.mark.parametrize("cell, layers", [("rnn", 1), ("lstm", 2), ("gru", 2)])
def test_step_equals_the_equations_through_the_torch_layers(cell, layers):
    """decoder.py's equations computed independently: the attention by its formula, the cell by
    nn.GRU/nn.LSTM/nn.RNN itself, the readout on the concatenation."""
    model = small_model(cell, layers=layers)
    dec = model.decoder
    ref = torch_rnn_with_our_weights(dec)
    src, src_lengths = pad(sentences(4, [5, 2, 7])), torch.tensor([5, 2, 7])
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    tokens = torch.tensor([5, 9, 2])
    for _ in range(3):
        out = model.step(tokens, state, enc)
        q = dec.attention.query_proj(state.hidden[-1])  # (B, A)
        scores = torch.tanh(q[:, None] + dec.attention.key_proj(enc.memory)) @ dec.attention.v.weight[0]
        alpha = torch.softmax(scores.masked_fill(~enc.mask, float("-inf")), -1)  # (B, S)
        context = (alpha[:, :, None] * enc.memory).sum(1)
        emb = dec.embed(tokens)
        x = torch.cat([emb, context], -1).unsqueeze(1)  # (B, 1, E + 2H)
        if cell == "lstm":
            _, (hidden, cell_state) = ref(x, (state.hidden, state.cell))
            torch.testing.assert_close(out.state.cell, cell_state, atol=1e-5, rtol=1e-4)
        else:
            _, hidden = ref(x, state.hidden)
        readout = torch.cat([hidden[-1], context, emb], -1) @ dec.readout.weight.T + dec.readout.bias
        logits = dec.out(torch.tanh(readout))
        torch.testing.assert_close(out.state.hidden, hidden, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.attention, alpha, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-4)
        state, tokens = out.state, out.logits.argmax(-1)


@pytest.mark.parametrize("init", ["uniform", "xavier"])
def test_initialisation_follows_the_literature(init):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", embed_size=64, hidden_size=48, decoder_hidden_size=80, attention_size=40,
                      init=init, init_range=0.2)
    model = Seq2Seq(cfg, src_vocab_size=300, tgt_vocab_size=250)
    rnn = model.decoder.rnn
    H = rnn.hidden_size
    for gate in rnn.recurrent[0].weight.detach().split(H):  # orthogonal per gate: Wᵀ W = I
        torch.testing.assert_close(gate.T @ gate, torch.eye(H), atol=1e-5, rtol=0)
    enc = model.encoder.rnn
    for gate in enc.weight_hh_l0.detach().split(enc.hidden_size):
        torch.testing.assert_close(gate.T @ gate, torch.eye(enc.hidden_size), atol=1e-5, rtol=0)
    total_bias = (rnn.input[0].bias + rnn.recurrent[0].bias).detach()
    assert torch.all(total_bias[H:2 * H] == 1)  # forget gate
    enc_total = (enc.bias_ih_l0 + enc.bias_hh_l0).detach()
    assert torch.all(enc_total[48:96] == 1)
    assert torch.all(model.decoder.embed.weight[0] == 0) and torch.all(model.encoder.embed.weight[0] == 0)  # padding
    embed, out, readout = model.decoder.embed.weight.detach()[1:], model.decoder.out.weight, model.decoder.readout
    if init == "uniform":  # U(-r, r): every value within r, standard deviation r / sqrt(3)
        for w in (embed, out.detach(), readout.weight.detach(), readout.bias.detach(), rnn.recurrent[0].bias[:H]):
            assert w.abs().max() <= 0.2
        assert abs(embed.std().item() - 0.2 / 3 ** 0.5) < 0.005
    else:  # N(0, 1) embeddings, Xavier U(±sqrt(6 / (fan_in + fan_out))), zero biases
        assert abs(embed.std().item() - 1.0) < 0.05
        bound = (6 / sum(out.shape)) ** 0.5
        assert out.abs().max() <= bound and out.abs().max() > 0.9 * bound
        assert torch.all(readout.bias == 0) and torch.all(total_bias[:H] == 0)


def test_tied_embeddings_share_one_tensor():
    model = small_model("gru", tie=True)
    assert model.decoder.out.weight is model.decoder.embed.weight


@pytest.mark.parametrize("cell, tie, layers", [("rnn", False, 1), ("lstm", True, 2), ("gru", False, 2)])
def test_the_inference_model_steps_as_the_model(cell, tie, layers):
    """nmt/translate/inference.py's precomputed tables and padded output rows compute Seq2Seq.step, also for
    beam rows (K per sentence) and after dropping a sentence with `select`."""
    model = small_model(cell, tie, layers)
    fast = InferenceModel(model)
    assert fast.out.weight.size(0) == 32 and model.decoder.out.weight.size(0) == 25  # padded for decoding only
    src, src_lengths = pad(sentences(6, [5, 2, 7])), torch.tensor([5, 2, 7])
    with torch.inference_mode():
        enc, prepared = model.encode(src, src_lengths), fast.encode(src, src_lengths)
        rows = torch.arange(3).repeat_interleave(2)  # two beams per sentence
        state, fast_state = model.init_state(enc).select(rows), fast.init_state(prepared).select(rows)
        tokens = torch.tensor([5, 9, 2, 24, 7, 7])
        for t in range(4):
            if t == 2:  # the second sentence finishes
                keep, keep_rows = torch.tensor([0, 2]), torch.tensor([0, 1, 4, 5])
                enc, prepared = enc.select(keep), prepared.select(keep)
                state, fast_state, tokens = state.select(keep_rows), fast_state.select(keep_rows), tokens[keep_rows]
            out, fast_out = model.step(tokens, state, enc), fast.step(tokens, fast_state, prepared)
            torch.testing.assert_close(fast_out.logits, out.logits, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(fast_out.attention, out.attention, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(fast_out.state.hidden, out.state.hidden, atol=1e-5, rtol=1e-4)
            state, fast_state, tokens = out.state, fast_out.state, out.logits.argmax(-1)


def test_the_readouts_named_parts_are_its_matrix():
    """W_o [s; c; E y] = W_s s + W_c c + W_e E y: the decoding rewrite applies the parts apart."""
    torch.manual_seed(0)
    readout = Readout(state_size=5, context_size=7, embed_size=3, size=4)
    s, c, y = torch.randn(2, 5), torch.randn(2, 7), torch.randn(2, 3)
    parts = readout.parts()
    assert [p.shape for p in parts] == [(4, 5), (4, 7), (4, 3)]
    by_parts = torch.tanh(s @ parts.state.T + c @ parts.context.T + y @ parts.embed.T + readout.bias)
    torch.testing.assert_close(readout(s, c, y), by_parts)
