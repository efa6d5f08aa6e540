"""The special tokens every vocabulary shares: their ids and the piece that ends a sentence.

The tokenizer trains SentencePiece with these ids, the model pads with PAD, search starts with BOS
and stops at EOS; none of them names the numbers or strings itself. Here, not in the tokenizer, so
that the model and search need no SentencePiece to know them.
"""

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# EOS's piece: the last column of a hypothesis's attention (the source's end) and the last row
# of a finished one.
EOS_PIECE = "</s>"
