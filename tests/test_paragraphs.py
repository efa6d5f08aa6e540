"""Raw text in, raw text out (nmt/translate/paragraphs.py): checked against the sentences' own
translations, each decoded alone, and against the input's own bytes."""

import dataclasses
import logging

import pytest

from conftest import run_cli
from nmt.cli.sentences import translate_split
from nmt import Translator
from nmt.translate.html_text import html_chunks
from nmt.translate.paragraphs import segments, translate_texts

SENTENCES = ["w1 w2 w3.", "w4 w5 w6 w7!", "w8 w9 w10 w11?"]


@pytest.fixture(scope="module")
def translator(reverse_run):
    return Translator.load(reverse_run[0] / "run", device="cpu")


def alone(translator, text: str) -> str:
    return translator.translate([text])[0]


def test_segments_keep_every_byte():
    text = "  Ein Mann läuft.  Er ist müde!\nDr. Müller kommt.\t...\n\n"
    found = segments(text, "de")
    assert found.sentences == ["Ein Mann läuft.", "Er ist müde!", "Dr. Müller kommt."]
    assert found.glue == ["  ", "  ", "\n", "\t...\n\n"]
    assert found.join(found.sentences) == text


def test_a_paragraph_is_its_sentences_translated_alone(translator):
    text = f" {SENTENCES[0]}  {SENTENCES[1]}\n{SENTENCES[2]}\n"
    want = [alone(translator, s) for s in SENTENCES]
    assert translate_texts(translator, [text, "", SENTENCES[0]]) == [
        f" {want[0]}  {want[1]}\n{want[2]}\n", "", want[0]]


def test_all_sentences_of_all_texts_are_one_call(translator, monkeypatch):
    calls = []
    real = translator.translate
    monkeypatch.setattr(translator, "translate", lambda lines, **kw: calls.append(lines) or real(lines, **kw))
    translate_texts(translator, [" ".join(SENTENCES), SENTENCES[0]])
    assert calls == [SENTENCES + SENTENCES[:1]]


def test_html_keeps_markup_and_translates_its_text(translator):
    page = ('<p class="a>b" id=x>w1 w2 w3. w4 w5 w6!</p>\n<!-- w7 --><b>w8 w9</b> &amp; &#169;'
            '<script>var w10 = "<p>w11</p>";</script><br/><style>p {}</style>w2 w1')
    texts = ["w1 w2 w3.", "w4 w5 w6!", "w8 w9", "w2 w1"]
    out = translate_texts(translator, [page], html=True)[0]
    t = [alone(translator, s) for s in texts]
    assert out == (f'<p class="a>b" id=x>{t[0]} {t[1]}</p>\n<!-- w7 --><b>{t[2]}</b> &amp; &#169;'
                   f'<script>var w10 = "<p>w11</p>";</script><br/><style>p {{}}</style>{t[3]}')


def test_html_chunks_put_back_together_are_the_input():
    for page in ["", "plain", "a < b > c", "<P >x</P >", "<a href='q>r'>s</a>&nbsp", "<!DOCTYPE html><?pi?>t"]:
        assert "".join(c.text for c in html_chunks(page)) == page


def test_cli_splits_a_line_of_sentences_and_leaves_one_sentence_lines_as_they_were(reverse_run, translator):
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:12]
    plain = run_cli("nmt-translate", str(root / "run"), "--no-split-sentences", stdin="\n".join(src) + "\n")
    split = run_cli("nmt-translate", str(root / "run"), stdin="\n".join(src) + "\n")
    assert plain.returncode == 0 and split.stdout == plain.stdout  # byte for byte
    out = run_cli("nmt-translate", str(root / "run"), stdin=" ".join(SENTENCES) + "\n" + src[0] + "\n")
    assert out.stdout == " ".join(alone(translator, s) for s in SENTENCES) + "\n" + plain.stdout.split("\n")[0] + "\n"


def test_cli_refuses_splitting_with_a_whole_line_record(reverse_run):
    out = run_cli("nmt-translate", str(reverse_run[0] / "run"), "--split-sentences", "--format", "json", stdin="w1.\n")
    assert out.returncode == 2 and "--split-sentences: applies to plain-text" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("nmt-translate", str(reverse_run[0] / "run"), "--format", "json", stdin="w1 w2. w3 w4.\n")
    assert out.returncode == 0 and out.stdout.count("\n") == 1  # off by default there: one record


def test_a_truncated_sentence_is_named_by_the_input_line_it_is_in(translator, monkeypatch, caplog):
    # A limit of 6 pieces (</s> included): the 8-word sentence is cut, the others are not.
    monkeypatch.setattr(translator, "cfg", dataclasses.replace(
        translator.cfg, decode=dataclasses.replace(translator.cfg.decode, max_input_len=6)))
    long = "w1 w2 w3 w4 w5 w6 w7 w8."
    lines = ["w1 w2. w3 w4.", "", "w5. w6 w7!", f"w2 w3. {long}"]
    in_line = next(i for i, line in enumerate(lines) if long in line)  # the 4th line, its 6th sentence
    with caplog.at_level(logging.WARNING, logger="nmt"):
        translate_split(translator, lines, 41, {})  # a chunk that starts at line 41
    assert [r.getMessage().split(":")[0] for r in caplog.records if "truncated" in r.getMessage()] == [
        f"line {41 + in_line}"]
