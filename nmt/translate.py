"""Translating lists of sentences: the `Translator` API and the length-sorted batching under it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import DecodeConfig
from nmt.data import pad
from nmt.errors import NmtError
from nmt.inference import InferenceModel
from nmt.search import Hypothesis, beam_search, greedy_search
from nmt.tokenizer import EOS

log = logging.getLogger("nmt.translate")


def decode_ids(model, src_ids: list[list[int]], opts: DecodeConfig, device: torch.device,
               nbest: int = 1, return_attention: bool = False) -> list[list[Hypothesis]]:
    """N-best lists for tokenised sources, decoded in batches of similar length, in input order."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    for start in range(0, len(order), opts.batch_size):
        chunk = order[start:start + opts.batch_size]
        src = pad([src_ids[i] for i in chunk]).to(device)
        lengths = torch.tensor([len(src_ids[i]) for i in chunk], device=device)
        if opts.beam_size == 1 and nbest == 1:
            found = [[h] for h in greedy_search(model, src, lengths, opts, return_attention)]
        else:
            found = beam_search(model, src, lengths, opts, nbest, return_attention)
        for i, hyps in zip(chunk, found):
            results[i] = hyps
    return results


def autocast(device: torch.device, dtype: str):
    """Inference autocast for 'fp16'/'bf16'; 'fp32' runs as is."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype == "fp16" and device.type != "cuda":
        raise NmtError("fp16 inference needs a CUDA device; use --dtype bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[dtype])


class Translator:
    """A trained model ready to translate: `Translator.load(path).translate(["Ein Hund läuft."])`."""

    def __init__(self, model, tokenizer, cfg, device: str | torch.device = "cpu", dtype: str = "fp32"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.decoding_model = InferenceModel(self.model)  # the same function, faster (nmt/inference.py)
        self.tokenizer, self.cfg, self.dtype = tokenizer, cfg, dtype
        autocast(self.device, dtype)  # refuse an unsupported precision now, not at the first batch

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: str = "fp32") -> "Translator":
        model, tokenizer, cfg, _ = load_checkpoint(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as err:
            raise NmtError(f"device {device}: not available ({str(err).splitlines()[0]})") from None
        return cls(model, tokenizer, cfg, device, dtype)

    def options(self, **overrides) -> DecodeConfig:
        """The checkpoint's decode settings with `overrides` (None values ignored)."""
        return dataclasses.replace(self.cfg.decode, **{k: v for k, v in overrides.items() if v is not None})

    def encode(self, lines: list[str], line_numbers: list[int]) -> list[list[int]]:
        """Source ids; lines over decode.max_input_len pieces are truncated with a warning."""
        limit = self.cfg.decode.max_input_len
        ids = self.tokenizer.encode_src(lines)
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                log.warning("line %d: %d pieces, truncated to the model's limit of %d",
                            line_numbers[i], len(seq) - 1, limit - 1)
                ids[i] = seq[: limit - 1] + [EOS]
        return ids

    def source_pieces(self, line: str) -> list[str]:
        """The pieces the model reads for `line`, </s> included, truncated as `encode` truncates; [] if blank.

        Their number is the width of the line's attention; columns beyond it are its batch's padding."""
        if not line.strip():
            return []
        pieces = self.tokenizer.src_pieces(line)
        limit = self.cfg.decode.max_input_len
        return pieces if len(pieces) <= limit else pieces[:limit - 1] + ["</s>"]

    def translate_hyps(self, lines: list[str], nbest: int = 1, return_attention: bool = False,
                       first_line: int = 1, **overrides) -> list[list[Hypothesis]]:
        """N-best hypotheses per line; an empty line gets one empty hypothesis without decoding."""
        opts = self.options(**overrides)
        todo = [i for i, line in enumerate(lines) if line.strip()]
        ids = self.encode([lines[i] for i in todo], [first_line + i for i in todo])
        with torch.inference_mode(), autocast(self.device, self.dtype):
            found = decode_ids(self.decoding_model, ids, opts, self.device, nbest, return_attention)
        results = [[Hypothesis([], 0.0, True, None)] for _ in lines]
        for i, hyps in zip(todo, found):
            results[i] = hyps
        return results

    def translate(self, lines: list[str], **overrides) -> list[str]:
        """Detokenized translations, one per input line, in input order."""
        hyps = self.translate_hyps(lines, **overrides)
        return self.tokenizer.decode([h[0].tokens for h in hyps])
