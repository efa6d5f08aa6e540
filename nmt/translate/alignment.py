"""Hard word alignments from the attention of a hypothesis, in Pharaoh format.

Pharaoh format is what fast_align, Moses and Marian write: space-separated "i-j" pairs, source word i
aligned to target word j, both 0-based indices into the whitespace-separated words of the input
line and of the output line as it is printed.

The rule: each target piece is aligned to the source piece that its attention row weighs most
(argmax over the source pieces; the source's </s> column is left out, as it is no word), and each
piece stands for the whitespace word of its text that holds it, found from offsets, not from the
piece's string: SentencePiece gives each piece's byte span in the line it encoded (and in the text
it decoded: nmt/data/spans.py), and a piece belongs to the word of the first non-space character at
or after the start of its span. So a piece that a side's vocabulary reads as <unk> keeps its word;
a space that the normaliser made (`´` becomes a space and a combining accent) starts none; a target
<unk>, printed " ⁇ ", is the word the reader sees; a piece with no text of its own (an empty span, a
lone ▁) belongs to the word after it. The row of the target's </s> is left out too, so EOS never
appears; pairs are deduplicated and sorted.

Row t is the attention the decoder computed while predicting target piece t: in Bahdanau's order
it attends with the previous state s_{t-1}, before y_t is chosen, so it is where the model looked
to produce y_t, not a judgement made after seeing it. Attention is not alignment: it may point at
a neighbour of the word a human would pick, or at punctuation or </s> (Koehn and Knowles 2017 saw
it shifted by one for some words). The alignments are a cheap signal (tag transfer, terminology
checks), not a gold one.
"""

from __future__ import annotations

import torch

from nmt.data.spans import Span

NO_WORD = -1  # the word of a piece in a text without any (a hypothesis of spaces alone)


def word_indices(text: str, spans: list[Span]) -> list[int]:
    """Per piece (its byte span in `text`'s UTF-8), the index of the whitespace word of `text` that
    holds the first non-space character at or after the span's start: past the last word, the last
    word; NO_WORD if `text` has none."""
    owner: list[int] = []  # per byte of `text`: its character's word, or for a space the next word
    word = -1
    for i, char in enumerate(text):
        space = char.isspace()  # what str.split() splits at
        if not space and (i == 0 or text[i - 1].isspace()):
            word += 1
        owner += [word + space] * len(char.encode("utf-8"))
    owner.append(word + 1)  # the end of the text
    return [min(owner[min(begin, len(owner) - 1)], word) for begin, _ in spans]


def hard_alignment(attention: torch.Tensor | None, src_words: list[int],
                   tgt_words: list[int]) -> list[tuple[int, int]]:
    """attention (T + 1, S) of a hypothesis, `src_words` the word of each source piece the model read
    (</s> left out: S' - 1 <= S - 1 of them), `tgt_words` the word of each of its T target pieces ->
    sorted, distinct (source word, target word) pairs; a piece of NO_WORD is in none."""
    if attention is None or not src_words or not tgt_words:
        return []
    # (T, S' - 1): the </s> row and column dropped, and the columns past the line (its batch's padding)
    rows = attention[:len(tgt_words), :len(src_words)]
    best = rows.argmax(-1).tolist()  # (T,) the source piece each target piece weighs most
    pairs = {(src_words[j], tgt_words[t]) for t, j in enumerate(best)}
    return sorted((i, j) for i, j in pairs if NO_WORD not in (i, j))


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """Pairs as a Pharaoh line: "0-2 1-1 2-0"."""
    return " ".join(f"{i}-{j}" for i, j in pairs)
