"""Translating lists of sentences: the `Translator` API and the length-sorted batching under it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import DecodeConfig
from nmt.data import pad
from nmt.search import Hypothesis, greedy_search


def decode_ids(model, src_ids: list[list[int]], opts: DecodeConfig, device: torch.device,
               return_attention: bool = False) -> list[Hypothesis]:
    """Decode tokenised sources in batches of similar length; results come back in input order."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[Hypothesis | None] = [None] * len(src_ids)
    for start in range(0, len(order), opts.batch_size):
        chunk = order[start:start + opts.batch_size]
        src = pad([src_ids[i] for i in chunk]).to(device)
        lengths = torch.tensor([len(src_ids[i]) for i in chunk], device=device)
        hyps = search(model, src, lengths, opts, return_attention)
        for i, hyp in zip(chunk, hyps):
            results[i] = hyp
    return results


def search(model, src, src_lengths, opts: DecodeConfig, return_attention: bool = False) -> list[Hypothesis]:
    if opts.beam_size == 1:
        return greedy_search(model, src, src_lengths, opts.max_len_a, opts.max_len_b, return_attention)
    from nmt.beam import beam_search

    return [nbest[0] for nbest in beam_search(model, src, src_lengths, opts, nbest=1,
                                              return_attention=return_attention)]


class Translator:
    """A trained model ready to translate: `Translator.load(path).translate(["Ein Hund läuft."])`."""

    def __init__(self, model, tokenizer, cfg, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.cfg = tokenizer, cfg

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Translator":
        model, tokenizer, cfg, _ = load_checkpoint(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, tokenizer, cfg, device)

    def options(self, **overrides) -> DecodeConfig:
        """The checkpoint's decode settings with `overrides` (None values ignored)."""
        return dataclasses.replace(self.cfg.decode, **{k: v for k, v in overrides.items() if v is not None})

    def translate_hyps(self, lines: list[str], return_attention: bool = False, **overrides) -> list[Hypothesis]:
        ids = self.tokenizer.encode_src(lines)
        with torch.inference_mode():
            return decode_ids(self.model, ids, self.options(**overrides), self.device, return_attention)

    def translate(self, lines: list[str], **overrides) -> list[str]:
        """Detokenized translations, one per input line, in input order."""
        return self.tokenizer.decode([h.tokens for h in self.translate_hyps(lines, **overrides)])
