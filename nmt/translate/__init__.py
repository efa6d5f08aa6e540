"""Translating with a trained model: the `Translator` and the decoding model under it.

    translator.py  `Translator.load(path).translate(lines)`: lines to ids, the decoding, ids to text
    decoding.py    ids to hypotheses: length-sorted batches, each searched by the chosen strategy
    workers.py     batches decoded on several threads at once, each with its share of the CPU threads
    inference.py   the model rewritten for decoding (the same function, precomputed where it can be)
    int8.py        8-bit weights for the per-step products on a CPU (--dtype int8), two kernels
    speed_check.py int8 or bf16 refused at load where its step is slower than fp32's; int8's kernel chosen
    ensemble.py    several models as one (mean of their log-probabilities per step)
    score.py       forced decoding: log p(target | source) per pair
    alignment.py   word alignments from the attention (Pharaoh format)
    prefix.py      how long a target prefix may be (its source's length cap)
    evaluation.py  a checkpoint's BLEU and chrF on its splits (nmt-evaluate)
    paragraphs.py  raw text in, raw text out: sentences split, decoded as one batch, joined back
    html_text.py   an HTML fragment cut into its text and its markup (the standard library's parser)
    language.py    which candidate language a text is in (py3langid; nmt-serve's `source: auto`)
"""

from nmt.translate.translator import Translator

__all__ = ["Translator"]
