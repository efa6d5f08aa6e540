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
from nmt.ensemble import Ensemble, check_vocabularies
from nmt.errors import NmtError
from nmt.hardware import cpu_lacks_bf16
from nmt.inference import InferenceModel
from nmt.score import PairScore, score_ids
from nmt.search import Hypothesis, beam_search, greedy_search, sample
from nmt.tokenizer import EOS

log = logging.getLogger("nmt.translate")


def decode_ids(model, src_ids: list[list[int]], opts: DecodeConfig, device: torch.device,
               nbest: int = 1, return_attention: bool = False,
               generator: torch.Generator | None = None) -> list[list[Hypothesis]]:
    """N-best lists (or `nbest` samples with opts.sampling) for tokenised sources, decoded in
    batches of similar length, in input order."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    for start in range(0, len(order), opts.batch_size):
        chunk = order[start:start + opts.batch_size]
        src = pad([src_ids[i] for i in chunk]).to(device)
        lengths = torch.tensor([len(src_ids[i]) for i in chunk], device=device)
        if opts.sampling:
            found = sample(model, src, lengths, opts, nbest, generator, return_attention)
        elif opts.beam_size == 1 and nbest == 1:
            found = [[h] for h in greedy_search(model, src, lengths, opts, return_attention)]
        else:
            found = beam_search(model, src, lengths, opts, nbest, return_attention)
        for i, hyps in zip(chunk, found):
            results[i] = hyps
    return results


DTYPES = ("fp32", "int8", "bf16", "fp16")


def autocast(device: torch.device, dtype: str):
    """Inference autocast for 'fp16'/'bf16'; 'fp32' runs as is, and so does 'int8', whose products
    are quantized layers (nmt/inference.py)."""
    if dtype not in DTYPES:
        raise NmtError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if dtype == "int8" and device.type != "cpu":
        raise NmtError(f"int8 decoding runs on the CPU (oneDNN int8 products), not on {device.type}; use --device cpu")
    if dtype in ("fp32", "int8"):
        return contextlib.nullcontext()
    if dtype == "fp16" and device.type != "cuda":
        raise NmtError("fp16 inference needs a CUDA device; use --dtype bf16, int8 or fp32 on CPU")
    if dtype == "bf16" and device.type == "cpu" and cpu_lacks_bf16():
        log.warning("bf16 on a CPU without bf16 matrix instructions (avx512_bf16, amx_bf16): every product "
                    "takes a slow path, about 4x slower than fp32 here; --dtype int8 is the fast one")
    return torch.autocast(device.type, dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[dtype])


class Translator:
    """A trained model ready to translate: `Translator.load(path).translate(["Ein Hund läuft."])`.

    `Translator.load([path1, path2, ...])` decodes with the ensemble of the models (nmt/ensemble.py);
    the first model's tokenizer and decode settings are used. `dtype`: "fp32", "int8" (CPU: 8-bit
    weights in the per-step products), "bf16" or "fp16" (CUDA) autocast. Scoring always runs the
    unquantized model.
    """

    def __init__(self, model, tokenizer, cfg, device: str | torch.device = "cpu", dtype: str = "fp32"):
        """`model`: a Seq2Seq, or a list of them (sharing `tokenizer`'s vocabularies) for an ensemble."""
        self.device = torch.device(device)
        autocast(self.device, dtype)  # refuse an unsupported precision now, not at the first batch
        self.models = [m.to(self.device).eval() for m in (model if isinstance(model, list) else [model])]
        self.model = self.models[0]
        # The same function, faster (nmt/inference.py); with int8, on 8-bit weights.
        members = [InferenceModel(m, int8=dtype == "int8") for m in self.models]
        self.decoding_model = members[0] if len(members) == 1 else Ensemble(members)
        self.tokenizer, self.cfg, self.dtype = tokenizer, cfg, dtype

    @classmethod
    def load(cls, path: str | Path | list, device: str | None = None, dtype: str = "fp32") -> "Translator":
        """A run or checkpoint directory, or a list of them for an ensemble."""
        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        if not paths:
            raise NmtError("no model given")
        loaded = [load_checkpoint(p) for p in paths]
        check_vocabularies([tok for _, tok, _, _ in loaded], [str(p) for p in paths])
        models = [m for m, _, _, _ in loaded]
        _, tokenizer, cfg, _ = loaded[0]
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as err:
            raise NmtError(f"device {device}: not available ({str(err).splitlines()[0]})") from None
        return cls(models if len(models) > 1 else models[0], tokenizer, cfg, device, dtype)

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
                       first_line: int = 1, generator: torch.Generator | None = None,
                       **overrides) -> list[list[Hypothesis]]:
        """N-best hypotheses (or samples) per line; an empty line gets one empty hypothesis without
        decoding. Sampling draws from `generator`, by default a new one seeded with decode.seed."""
        opts = self.options(**overrides)
        if opts.sampling and generator is None:
            generator = torch.Generator(self.device).manual_seed(opts.seed)
        todo = [i for i, line in enumerate(lines) if line.strip()]
        ids = self.encode([lines[i] for i in todo], [first_line + i for i in todo])
        with torch.inference_mode(), autocast(self.device, self.dtype):
            found = decode_ids(self.decoding_model, ids, opts, self.device, nbest, return_attention, generator)
        results = [[Hypothesis([], 0.0, True, None)] for _ in lines]
        for i, hyps in zip(todo, found):
            results[i] = hyps
        return results

    def translate(self, lines: list[str], **overrides) -> list[str]:
        """Detokenized translations, one per input line, in input order."""
        hyps = self.translate_hyps(lines, **overrides)
        return self.tokenizer.decode([h[0].tokens for h in hyps])

    def score(self, src_lines: list[str], tgt_lines: list[str], batch_size: int | None = None,
              first_line: int = 1) -> list[PairScore]:
        """log p(tgt | src) of each pair under the model, teacher-forced (nmt/score.py)."""
        if len(self.models) > 1:
            raise NmtError("scoring uses one model; give one run or checkpoint directory")
        if len(src_lines) != len(tgt_lines):
            raise NmtError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines")
        src_ids = self.encode(src_lines, list(range(first_line, first_line + len(src_lines))))
        with torch.inference_mode(), autocast(self.device, self.dtype):
            return score_ids(self.model, src_ids, self.tokenizer.encode_tgt(tgt_lines),
                             batch_size or self.cfg.decode.batch_size, self.device)
