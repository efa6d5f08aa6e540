"""Word alignments from the attention: the piece-to-word rule by hand, then the trained reverse model."""

import json

import pytest
import torch

from nmt.translate.alignment import NO_WORD, hard_alignment, pharaoh, word_indices
from nmt.translate.records import hypothesis_record
from nmt.translate.translator import Translator

from conftest import run_cli, write_lines


def test_a_piece_belongs_to_the_word_its_span_starts_in():
    """Spans are byte offsets, as SentencePiece gives them; the pieces' strings play no part."""
    # ▁Ein ▁Hund e haus ▁rennt .: a word split into pieces is one word
    assert word_indices("Ein Hundehaus rennt.", [(0, 3), (3, 8), (8, 9), (9, 13), (13, 19), (19, 20)]) == [
        0, 1, 1, 1, 2, 2]
    # ▁Ein, then "▁A" read as <unk> (its ▁ gone from the string, not from the span), sian, ▁Hund
    assert word_indices("Ein Asian Hund", [(0, 3), (3, 5), (5, 9), (9, 14)]) == [0, 1, 1, 2]
    # ´ (2 bytes) normalised to a space and a combining accent: ▁geht, ▁ (empty span), ́, s, ▁dir
    assert word_indices("geht´s dir", [(0, 4), (4, 4), (4, 6), (6, 7), (7, 11)]) == [0, 0, 0, 0, 1]
    # a lone ▁ (its span a space) starts the word after it; ⁇ (3 bytes) is a target <unk>'s own word
    assert word_indices("dir ?", [(0, 3), (3, 4), (4, 5)]) == [0, 1, 1]
    assert word_indices("A ⁇  dog", [(0, 1), (1, 6), (6, 10)]) == [0, 1, 2]
    assert word_indices("a  ", [(0, 1), (1, 3)]) == [0, 0]  # past the last word: the last word
    assert word_indices(" ", [(0, 1)]) == [NO_WORD] and word_indices("a", []) == []


def test_argmax_per_target_piece_mapped_to_words_without_eos():
    source = [0, 1, 1, 2]  # ▁Ein ▁Hund e ▁läuft (</s> left out): words Ein, Hunde, läuft
    target = [0, 0, 1]  # ▁Dog s ▁run: words Dogs, run
    attention = torch.tensor([  # (T + 1, S + 1 padding column): rows Dog, s, run, </s>
        [0.1, 0.7, 0.1, 0.0, 0.1, 0.0],
        [0.1, 0.1, 0.6, 0.1, 0.1, 0.0],
        [0.0, 0.1, 0.0, 0.3, 0.6, 0.0],  # most on the source </s>: the best real piece counts
        [0.0, 0.0, 0.0, 0.0, 0.1, 0.9],  # the </s> row (and a padding column): never used
    ])
    pairs = hard_alignment(attention, source, target)
    assert pairs == [(1, 0), (2, 1)]  # both pieces of "Dogs" -> "Hunde", deduplicated
    assert pharaoh(pairs) == "1-0 2-1"
    assert hard_alignment(None, source, target) == [] and hard_alignment(attention, source, []) == []
    assert hard_alignment(attention, source, [0, 0, NO_WORD]) == [(1, 0)]  # a piece of no word: no pair


LINES = ["w1 w2 w3", "w4 w5 w6 w7", "w8 w9 w10 w11 w0", "w3 w3 w5"]


def anti_diagonal_share(lines: list[str], alignments: list[str]) -> float:
    pairs = [(line, pair) for line, alignment in zip(lines, alignments) for pair in alignment.split()]
    mirrored = [int(p.split("-")[0]) + int(p.split("-")[1]) == len(line.split()) - 1 for line, p in pairs]
    return sum(mirrored) / len(mirrored)


def test_reverse_copy_aligns_on_the_anti_diagonal(reverse_run):
    root, corpus, _ = reverse_run
    lines = (corpus / "test.src").read_text().splitlines()[:30]
    translator = Translator.load(root / "run", device="cpu")
    found = translator.translate_hyps(lines, beam_size=3, return_attention=True)
    alignments = []
    for line, words, hyps in zip(lines, translator.source_words(lines), found):
        text = translator.tokenizer.decode([hyps[0].tokens])[0]
        alignment = hypothesis_record(translator.tokenizer, hyps[0], text, source_words=words)["alignment"]
        pairs = [tuple(int(i) for i in pair.split("-")) for pair in alignment.split()]
        assert all(0 <= i < len(line.split()) and 0 <= j < len(text.split()) for i, j in pairs), (line, pairs)
        alignments.append(alignment)
    assert anti_diagonal_share(lines, alignments) >= 0.8, list(zip(lines, alignments))


def test_cli_writes_alignments_as_a_column_and_in_json(reverse_run, tmp_path):
    root, _, _ = reverse_run
    src = write_lines(tmp_path / "in.txt", [*LINES[:2], ""])
    text = run_cli("nmt-translate", str(root / "run"), "-i", str(src), "--alignments", "--beam-size", "2",
                   "--device", "cpu")
    assert text.returncode == 0, text.stderr
    rows = [row.split("\t") for row in text.stdout.splitlines()]
    assert [len(row) for row in rows] == [2, 2, 2] and rows[2] == ["", ""]
    assert anti_diagonal_share(LINES[:2], [row[1] for row in rows[:2]]) >= 0.8
    js = run_cli("nmt-translate", str(root / "run"), "-i", str(src), "--alignments", "--format", "json",
                 "--nbest", "2", "--device", "cpu")
    assert js.returncode == 0, js.stderr
    records = [json.loads(row) for row in js.stdout.splitlines()]
    assert records[0]["nbest"][0]["alignment"] == rows[0][1]
    assert "attention" not in records[0]["nbest"][0]  # alignments do not bring the weights along


def test_nmt_serve_sends_alignments_without_the_weights(reverse_run, served):
    from conftest import call
    from nmt.serve.answer import attention_size
    from nmt.serve.schema import Sentence, Settings

    root, _, _ = reverse_run
    cli = run_cli("nmt-translate", str(root / "run"), "--format", "json", "--alignments", "--nbest", "2",
                  "--beam-size", "2", stdin="\n".join(LINES) + "\n")
    assert cli.returncode == 0, cli.stderr
    want = [json.loads(line)["nbest"] for line in cli.stdout.splitlines()]
    status, answer = call(served.url + "/translate", {"text": LINES, "nbest": 2, "beam_size": 2, "alignments": True})
    assert status == 200
    for got, ref in zip(answer["translations"], want):
        assert [h["alignment"] for h in got["nbest"]] == [h["alignment"] for h in ref]
        assert got["alignment"] == got["nbest"][0]["alignment"]
        assert all("attention" not in h for h in [got, *got["nbest"]])
    # Alignments send no weights, but the worker computes and keeps them: the budget counts them alike.
    translator = Translator.load(root / "run", device="cpu")
    aligned = Settings(beam_size=2, nbest=2, length_penalty=None, attention=False, alignments=True)
    weights = Settings(beam_size=2, nbest=2, length_penalty=None, attention=True, alignments=False)
    sentences = [Sentence(line) for line in LINES]
    assert attention_size(translator, sentences, aligned) == attention_size(translator, sentences, weights) > 0



# A tiny joint tokenizer: "Asian" is only in the target's text, so the source vocabulary reads its
# "▁A" as <unk>; "´" is in the source's, and the normaliser turns it into a space and a combining
# mark, so "geht´s" is pieces of two SentencePiece words.
TINY_SRC = ["Wie geht´s dir ?", "Ein Hund läuft .", "Zwei Hunde laufen .", "Wie geht es ?"] * 5
TINY_TGT = ["How are you ?", "An Asian dog runs .", "Two Asian dogs run .", "A dog ."] * 5
# Per line: the pieces the model reads, and the alignment of "A dog ⁇  ⁇  ⁇" (forced "A dog", then
# <unk>, five words) when step t attends to piece 4t (at most the last before </s>), by hand.
TINY_LINES = {
    # pieces 0 4 8 12 14 are in the words 0 (▁E...), 1 (<unk> s i a n: Asian), 1, 3 (▁l ä uf t), 4 (▁.)
    "Ein Asian Hund läuft .": (["▁", "E", "i", "n", "<unk>", "s", "i", "a", "n", "▁Hund", "▁l", "ä", "uf", "t",
                                "▁.", "</s>"], "0-0 1-1 1-2 3-3 4-4"),
    # pieces 0 4 8 12 16 are in the words 0 (▁W i e), 1 (▁ g e h t ▁ ́ s: geht´s), 1, 2 (▁d i r), 3 (▁ ?)
    "Wie geht´s dir ?": (["▁", "W", "i", "e", "▁", "g", "e", "h", "t", "▁", "\u0301", "s", "▁d", "i", "r", "▁", "?",
                          "</s>"], "0-0 1-1 1-2 2-3 3-4"),
}
UNK_TARGET = ["▁A", "▁dog", "<unk>", "<unk>", "<unk>"]


class Pointing:
    """`model`, but its attention at step t is all on source piece 4t (at most the last before </s>):
    a scripted attention whose alignment is known by hand."""

    def __init__(self, model):
        self.model, self.t, self.last = model, 0, None

    def encode(self, src, src_lengths):
        self.t, self.last = 0, src_lengths - 2
        return self.model.encode(src, src_lengths)

    def init_state(self, enc):
        return self.model.init_state(enc)

    def step(self, tokens, state, enc):
        out = self.model.step(tokens, state, enc)
        column = (4 * self.t + torch.zeros_like(self.last)).minimum(self.last)  # (B,)
        self.t += 1
        return out._replace(attention=torch.nn.functional.one_hot(column, out.attention.size(1)).float())


@pytest.fixture(scope="module")
def unk_translator(tmp_path_factory):
    """An untrained model over the tiny tokenizer that says <unk> at every free step (its output layer
    weighs nothing else), so that a target <unk> shows, with the scripted attention of `Pointing`."""
    from nmt.config import Config, DecodeConfig, ModelConfig, TokenizerConfig
    from nmt.data.tokenizer import Tokenizer
    from nmt.model.seq2seq import Seq2Seq
    from nmt.vocab import UNK

    tokenizer = Tokenizer.train(TINY_SRC, TINY_TGT, TokenizerConfig(vocab_size=60), tmp_path_factory.mktemp("tok"))
    cfg = Config(model=ModelConfig(embed_size=8, hidden_size=8, decoder_hidden_size=8, attention_size=8, dropout=0.0),
                 decode=DecodeConfig(beam_size=1, max_len_a=0.0, max_len_b=6))
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    with torch.no_grad():
        model.decoder.readout.weight.zero_()
        model.decoder.readout.bias.fill_(1.0)  # o_t = tanh(1) whatever the step
        model.decoder.out.weight.zero_()
        model.decoder.out.weight[UNK] = 1.0
    translator = Translator(model, tokenizer, cfg)
    translator.decoding_model = Pointing(translator.decoding_model)
    return translator


@pytest.mark.parametrize("line", list(TINY_LINES), ids=["unk", "normaliser"])
def test_words_are_the_lines_own_whatever_the_vocabulary_and_the_normaliser(unk_translator, line, tmp_path,
                                                                             monkeypatch):
    """A piece read as <unk> (source or target) keeps its word, and a normaliser's space makes none:
    indices count the whitespace words of the input line and of the printed output line."""
    pieces, alignment = TINY_LINES[line]
    assert unk_translator.source_pieces(line) == pieces
    monkeypatch.setattr(Translator, "load", staticmethod(lambda *args, **kwargs: unk_translator))
    from nmt.cli.commands import translate_main

    src, out = write_lines(tmp_path / "in.txt", [line]), tmp_path / "out.jsonl"
    prefix = write_lines(tmp_path / "prefix.txt", ["A dog"])
    assert translate_main(["tiny", "-i", str(src), "--prefix-file", str(prefix), "--format", "json",
                           "--alignments", "-o", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["tokens"] == UNK_TARGET and len(record["text"].split()) == 5
    assert record["alignment"] == alignment


def test_nmt_serve_aligns_the_same_words(unk_translator):
    pytest.importorskip("fastapi")
    from nmt.serve.answer import translate_records
    from nmt.serve.parts import PartedDecoder
    from nmt.serve.schema import Sentence, Settings

    settings = Settings(beam_size=1, nbest=1, length_penalty=None, attention=False, alignments=True)
    parts = PartedDecoder(1, 1)
    try:
        records = translate_records(unk_translator, 8, parts, [Sentence(line, "A dog") for line in TINY_LINES],
                                    settings)
    finally:
        parts.close()
    assert [r["alignment"] for r in records] == [alignment for _, alignment in TINY_LINES.values()]
