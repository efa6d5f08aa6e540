"""Word alignments from the attention: the piece-to-word rule by hand, then the trained reverse model."""

import json

import torch

from nmt.translate.alignment import hard_alignment, pharaoh, word_indices
from nmt.translate.translator import Translator

from conftest import run_cli, write_lines


def test_a_word_split_into_pieces_is_one_word():
    assert word_indices(["▁Ein", "▁Hund", "e", "hütte", "▁läuft", "."]) == [0, 1, 1, 1, 2, 2]
    assert word_indices(["Hund", "▁läuft"]) == [0, 1]  # a first piece without ▁ still starts word 0
    assert word_indices(["▁", "(", "a", ")"]) == [0, 0, 0, 0]
    assert word_indices([]) == []


def test_argmax_per_target_piece_mapped_to_words_without_eos():
    source = ["▁Ein", "▁Hund", "e", "▁läuft", "</s>"]  # words: Ein, Hunde, läuft
    target = ["▁Dog", "s", "▁run"]  # words: Dogs, run
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
    for line, hyps in zip(lines, found):
        source, target = translator.source_pieces(line), translator.tokenizer.tgt_pieces(hyps[0].tokens)
        pairs = hard_alignment(hyps[0].attention, source, target)
        n_src, n_tgt = len(line.split()), len(translator.tokenizer.decode([hyps[0].tokens])[0].split())
        assert all(0 <= i < n_src and 0 <= j < n_tgt for i, j in pairs), (line, pairs)  # no EOS index
        alignments.append(pharaoh(pairs))
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
    # Alignments need the weights on the worker but send none: the attention budget does not count them.
    translator = Translator.load(root / "run", device="cpu")
    aligned = Settings(beam_size=2, nbest=2, length_penalty=None, attention=False, alignments=True)
    assert attention_size(translator, [Sentence(line) for line in LINES], aligned) == 0
