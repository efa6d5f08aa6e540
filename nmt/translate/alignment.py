"""Hard word alignments from the attention of a hypothesis, in Pharaoh format.

Pharaoh format is what fast_align, Moses and Marian write: space-separated "i-j" pairs, source word i
aligned to target word j, both 0-based indices into the whitespace-separated words of the input
line and of the output line.

The rule: each target piece is aligned to the source piece that its attention row weighs most
(argmax over the source pieces; the source's </s> column is left out, as it is no word), and each
piece stands for the whitespace word it belongs to: a piece that starts with ▁ starts a new word,
the others continue the word before. The row of the target's </s> is left out too, so EOS never
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

WORD_START = "▁"  # SentencePiece's mark of a piece that follows a space


def word_indices(pieces: list[str]) -> list[int]:
    """Per SentencePiece piece, the index of the whitespace word it belongs to.

    A piece starting with ▁ starts a new word; so does the first piece, whatever it is (a line
    never starts with a space after normalisation, but a target may start without ▁)."""
    indices, word = [], -1
    for piece in pieces:
        if piece.startswith(WORD_START) or word < 0:
            word += 1
        indices.append(word)
    return indices


def hard_alignment(attention: torch.Tensor | None, source: list[str], target: list[str]) -> list[tuple[int, int]]:
    """attention (T + 1, S) of a hypothesis, `source` the S' <= S pieces the model read (</s> last),
    `target` its T pieces (without </s>) -> sorted, distinct (source word, target word) pairs."""
    src_words = word_indices(source[:-1])  # the </s> column is no word
    if attention is None or not src_words or not target:
        return []
    # (T, S' - 1): the </s> row and column dropped, and the columns past the line (its batch's padding)
    rows = attention[:len(target), :len(src_words)]
    best = rows.argmax(-1).tolist()  # (T,) the source piece each target piece weighs most
    tgt_words = word_indices(target)
    return sorted({(src_words[j], tgt_words[t]) for t, j in enumerate(best)})


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """Pairs as a Pharaoh line: "0-2 1-1 2-0"."""
    return " ".join(f"{i}-{j}" for i, j in pairs)
