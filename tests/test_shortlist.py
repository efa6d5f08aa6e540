"""decode.shortlist: the lexical table against Model 1 and counts done by hand, decoding over a
shortlist against decoding over the whole vocabulary, and the command that builds the table
(nmt/translate/lexicon.py, nmt/translate/shortlist.py)."""

import math
import shutil
from collections import Counter

import pytest
import torch

from nmt.cli.tools import shortlist_main
from nmt.config import DecodeConfig, LexiconConfig, ModelConfig
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq
from nmt.translate.ensemble import Ensemble
from nmt.translate.inference import InferenceModel
from nmt.translate.int8 import IntMM
from nmt.translate.lexicon import TABLE, LexicalTable, build_table, load_table, model1, save_table
from nmt.translate.shortlist import Shortlister
from nmt.translate.translator import Translator, decode_ids
from nmt.vocab import EOS

V_SRC, V_TGT = 30, 40


def small_model(seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = ModelConfig(cell="gru", embed_size=16, hidden_size=16, decoder_hidden_size=24, attention_size=12,
                      num_layers=1, dropout=0.0, init_range=0.5)
    return Seq2Seq(cfg, V_SRC, V_TGT).eval()


def sources(n: int = 7, seed: int = 1) -> list[list[int]]:
    """Source ids of several lengths, EOS last, as Translator.encode gives them."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, V_SRC, (2 + i % 5,), generator=g).tolist() + [EOS] for i in range(n)]


def random_table(seed: int = 2) -> LexicalTable:
    g = torch.Generator().manual_seed(seed)
    translations = torch.stack([torch.randperm(V_TGT, generator=g)[:6] for _ in range(V_SRC)]).int()
    return LexicalTable(translations, torch.randperm(V_TGT, generator=g).int())


def decode(model, opts, shortlist=None, prefix_ids=None, src=None):
    with torch.inference_mode():
        return decode_ids(model, src or sources(), opts, torch.device("cpu"), nbest=opts.beam_size,
                          prefix_ids=prefix_ids, shortlist=shortlist)


def test_one_em_iteration_is_model1_counted_by_hand():
    """From uniform t, each target piece is shared equally among its pair's source pieces and NULL."""
    src, tgt = [[4, 5], [4], [6, 5, 4]], [[7, 8, 7], [9], [8]]
    expected = torch.zeros(V_SRC + 1, V_TGT)
    for f, e in zip(src, tgt):
        for target in e:
            for source in [V_SRC] + f:  # NULL first
                expected[source, target] += 1 / (len(f) + 1)
    expected /= expected.sum(1, keepdim=True).clamp_min(1e-30)
    assert torch.allclose(model1(src, tgt, V_SRC, V_TGT, iterations=1), expected)


def test_the_table_keeps_each_pieces_translations_and_the_targets_by_frequency():
    src, tgt = [[4, 5], [4], [5], [4, 5]] * 5, [[10, 11], [10], [11], [11, 10]] * 5
    table = build_table(src, tgt, V_SRC, V_TGT, LexiconConfig(depth=3, iterations=10))
    assert table.translations[4, 0] == 10 and table.translations[5, 0] == 11
    assert table.translations[6].tolist() == [0, 0, 0]  # an unseen piece: PAD, a special token
    counts = Counter(i for seq in tgt for i in seq)
    ranked = sorted(range(V_TGT), key=lambda i: (-counts[i], i))
    assert table.frequent.tolist() == ranked


def test_a_saved_table_loads_and_a_wrong_or_missing_one_is_one_line(tmp_path):
    table = random_table()
    path = save_table(table, tmp_path)
    loaded = load_table(path, V_SRC, V_TGT)
    assert torch.equal(loaded.translations, table.translations) and torch.equal(loaded.frequent, table.frequent)
    with pytest.raises(NmtError, match=r"built for 30 source and 40 target pieces, the model has 30 and 50; "
                                       "rebuild it with nmt-shortlist") as err:
        load_table(path, V_SRC, 50)
    assert "\n" not in str(err.value)
    with pytest.raises(NmtError, match=f"no lexical table in {tmp_path / 'x'} .*build it with nmt-shortlist"):
        load_table(tmp_path / "x" / TABLE, V_SRC, V_TGT)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_shortlist_of_the_whole_vocabulary_decodes_as_the_whole_vocabulary(beam):
    member = InferenceModel(small_model())
    opts = DecodeConfig(beam_size=beam)
    everything = Shortlister(random_table(), [member], top_k=6, frequent=V_TGT)
    full, listed = decode(member, opts), decode(member, opts, everything)
    assert [[h.tokens for h in hyps] for hyps in listed] == [[h.tokens for h in hyps] for hyps in full]
    assert [h.score for hyps in listed for h in hyps] == pytest.approx([h.score for hyps in full for h in hyps],
                                                                       abs=1e-4)


def sentence_shortlist(table: LexicalTable, src: list[int], top_k: int, frequent: int) -> set[int]:
    """The shortlist of one sentence, by the module docstring's definition, in sets."""
    listed = {0, 1, 2, 3} | set(table.frequent[:frequent].tolist())
    return listed | {t for f in src for t in table.translations[f, :top_k].tolist()}


@pytest.mark.parametrize("beam", [1, 3])
def test_every_output_token_lies_in_its_sentences_shortlist(beam):
    member, table, src = InferenceModel(small_model()), random_table(), sources()
    found = decode(member, DecodeConfig(beam_size=beam), Shortlister(table, [member], 2, 3), src=src)
    for ids, hyps in zip(src, found):
        allowed = sentence_shortlist(table, ids, 2, 3)
        assert all(set(h.tokens) <= allowed for h in hyps), (ids, [h.tokens for h in hyps])
    full = decode(member, DecodeConfig(beam_size=beam), src=src)
    assert any(not set(h[0].tokens) <= sentence_shortlist(table, ids, 2, 3) for ids, h in zip(src, full))


def test_a_sentence_decodes_the_same_alone_and_in_a_batch_with_a_shortlist():
    """Each row is masked to its own sentence's shortlist, so its batch-mates' pieces change nothing."""
    member, src = InferenceModel(small_model()), sources()
    shortlist, opts = Shortlister(random_table(), [member], 2, 3), DecodeConfig(beam_size=3)
    batched = decode(member, opts, shortlist, src=src)
    alone = [decode(member, opts, shortlist, src=[ids])[0] for ids in src]
    assert [[h.tokens for h in hyps] for hyps in batched] == [[h.tokens for h in hyps] for hyps in alone]


@pytest.mark.parametrize("beam", [1, 3])
def test_a_prefix_outside_the_table_is_added_to_the_shortlist(beam):
    member, table, src = InferenceModel(small_model()), random_table(), sources()
    outside = [t for t in range(4, V_TGT) if all(t not in sentence_shortlist(table, ids, 2, 3) for ids in src)]
    prefixes = [outside[:2] if i % 2 else [] for i in range(len(src))]
    found = decode(member, DecodeConfig(beam_size=beam), Shortlister(table, [member], 2, 3), prefixes, src)
    for ids, prefix, hyps in zip(src, prefixes, found):
        assert all(h.tokens[:len(prefix)] == prefix and math.isfinite(h.score) for h in hyps)
        assert all(set(h.tokens) <= sentence_shortlist(table, ids, 2, 3) | set(prefix) for h in hyps)


def test_an_ensemble_restricts_every_member_to_the_same_shortlist():
    members = [InferenceModel(small_model(0)), InferenceModel(small_model(3))]
    opts = DecodeConfig(beam_size=3)
    everything = Shortlister(random_table(), members, top_k=6, frequent=V_TGT)
    full, listed = decode(Ensemble(members), opts), decode(None, opts, everything)
    assert [[h.tokens for h in hyps] for hyps in listed] == [[h.tokens for h in hyps] for hyps in full]


def test_int8_output_rows_are_the_whole_layers_rows_bit_for_bit():
    """Each row is quantized with its own scale, so taking rows before quantizing changes nothing."""
    member = InferenceModel(small_model(), int8_kernel=IntMM)
    ids = torch.tensor([0, 1, 2, 3, 9, 17, 38])
    o = torch.randn(5, member.out.in_features)
    assert torch.equal(member.output_rows(ids)(o)[:, :len(ids)], member.out(o)[:, ids])
    fp32 = InferenceModel(small_model())
    assert torch.allclose(fp32.output_rows(ids)(o)[:, :len(ids)], fp32.out(o)[:, ids], atol=1e-6)


@pytest.fixture(scope="module")
def reverse_copy(reverse_run, tmp_path_factory):
    """The trained reverse-task run, copied: nmt-shortlist writes into it."""
    root, corpus, _ = reverse_run
    run = tmp_path_factory.mktemp("shortlist") / "run"
    shutil.copytree(root / "run", run, symlinks=True)
    return run, corpus


def test_off_changes_nothing_and_needs_no_table(reverse_copy):
    run, corpus = reverse_copy
    lines = (corpus / "test.src").read_text().splitlines()[:20]
    translator = Translator.load(run, device="cpu")
    translator.lexicon_path = run / "missing" / TABLE  # off: never read
    for beam in (1, 4):
        off = translator.translate_hyps(lines, nbest=2 if beam > 1 else 1, beam_size=beam, shortlist=False)
        ids = translator.encode(lines, list(range(1, 21)))
        with torch.inference_mode():
            plain = decode_ids(translator.decoding_model, ids, translator.options(2 if beam > 1 else 1, beam_size=beam),
                               translator.device, 2 if beam > 1 else 1)
        assert [[(h.tokens, h.score) for h in hyps] for hyps in off] == [[(h.tokens, h.score) for h in hyps]
                                                                         for hyps in plain]
    with pytest.raises(NmtError, match="decode.shortlist: no lexical table in .*missing"):
        translator.translate(lines, shortlist=True)


def test_nmt_shortlist_builds_the_table_that_translating_reads(reverse_copy, capsys):
    run, corpus = reverse_copy
    lines = (corpus / "test.src").read_text().splitlines()
    assert shortlist_main([str(run), "--depth", "5"]) == 0
    assert f"wrote {run / TABLE}" in capsys.readouterr().out
    translator = Translator.load(run / "best", device="cpu")  # a checkpoint: its run's table
    full = translator.translate(lines, beam_size=3)
    listed = translator.translate(lines, beam_size=3, shortlist=True, shortlist_top_k=2, shortlist_frequent=0)
    # The reverse task renames each word: a word's translation is its one likely piece.
    assert sum(a == b for a, b in zip(full, listed)) >= 0.9 * len(lines)
    with pytest.raises(NmtError, match="decode.shortlist_top_k: 6 exceeds the lexical table's 5 translations"):
        translator.translate(lines, shortlist=True, shortlist_top_k=6)
    assert shortlist_main([str(run), "--depth", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
