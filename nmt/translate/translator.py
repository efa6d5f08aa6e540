"""Translating lists of sentences: the `Translator` API and the length-sorted batching under it."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import INFERENCE_DTYPES, DecodeConfig, decode_options
from nmt.errors import NmtError
from nmt.precision import AUTOCAST_DTYPES, set_precision_policy
from nmt.search import Hypothesis
from nmt.translate.alignment import word_indices
from nmt.translate.decoding import decode_ids
from nmt.translate.ensemble import Ensemble, check_vocabularies
from nmt.translate.inference import InferenceModel
from nmt.translate.lexicon import LexicalTable, load_table, table_path
from nmt.translate.prefix import long_prefix
from nmt.translate.score import PairScore, score_ids
from nmt.translate.shortlist import Shortlister
from nmt.translate.speed_check import check_step, fastest_int8_kernel
from nmt.vocab import EOS, EOS_PIECE, UNK

log = logging.getLogger("nmt.translate")


def autocast(device: torch.device, dtype: str):
    """Inference autocast for 'fp16'/'bf16'; 'fp32' runs as is, and so does 'int8', whose products
    are quantized layers (nmt/translate/inference.py)."""
    if dtype not in INFERENCE_DTYPES:
        raise NmtError(f"dtype {dtype!r}: expected one of {', '.join(INFERENCE_DTYPES)}")
    if dtype == "int8" and device.type != "cpu":
        raise NmtError(f"int8 decoding runs on the CPU (oneDNN int8 products), not on {device.type}; use --device cpu")
    if dtype in ("fp32", "int8"):
        return contextlib.nullcontext()
    if dtype == "fp16" and device.type != "cuda":
        raise NmtError("fp16 inference needs a CUDA device; use --dtype bf16, int8 or fp32 on CPU")
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[dtype])


def _cut(seq: list, limit: int, end) -> list:
    """`seq`, which ends with `end`, cut to at most `limit` items that still end with `end`."""
    return seq if len(seq) <= limit else seq[:limit - 1] + [end]


class Translator:
    """A trained model ready to translate: `Translator.load(path).translate(["Ein Hund läuft."])`.

    `Translator.load([path1, path2, ...])` decodes with the ensemble of the models (nmt/translate/ensemble.py);
    the first model's tokenizer and decode settings are used. `dtype`: "fp32", "int8" (CPU: 8-bit
    weights in the per-step products), "bf16" or "fp16" (CUDA) autocast. Scoring always runs the
    unquantized model.
    """

    def __init__(self, model, tokenizer, cfg, device: str | torch.device = "cpu", dtype: str = "fp32"):
        """`model`: a Seq2Seq, or a list of them (sharing `tokenizer`'s vocabularies) for an ensemble."""
        self.device = torch.device(device)
        autocast(self.device, dtype)  # refuse an unsupported precision now, not at the first batch
        self.models = [m.to(self.device).eval() for m in (model if isinstance(model, list) else [model])]
        for m in self.models:
            set_precision_policy(m, self.device.type, AUTOCAST_DTYPES.get(dtype))
        self.model = self.models[0]
        # The same function, faster (nmt/translate/inference.py); with int8, on 8-bit weights.
        members = [InferenceModel(m) for m in self.models]
        # A precision not faster than fp32 on this CPU is refused now (nmt/translate/speed_check.py).
        rows = cfg.decode.batch_size  # a greedy batch's: more rows (beam search) only widen int8's gain
        if dtype == "bf16" and self.device.type == "cpu":
            check_step("bf16", members[0], members[0], rows, AUTOCAST_DTYPES["bf16"])
        if dtype == "int8":
            kernel = fastest_int8_kernel([layer for m in members for layer in m.per_step_linears()])
            fp32_member, members = members[0], [InferenceModel(m, int8_kernel=kernel) for m in self.models]
            check_step("int8", fp32_member, members[0], rows)
        self.members = members
        self.decoding_model = members[0] if len(members) == 1 else Ensemble(members)
        self.tokenizer, self.cfg, self.dtype = tokenizer, cfg, dtype
        # decode.shortlist's table: read at its first use from `lexicon_path` (Translator.load sets it: the
        # first model's run), or set here directly.
        self.lexicon: LexicalTable | None = None
        self.lexicon_path: Path | None = None

    @classmethod
    def load(cls, path: str | Path | list, device: str | None = None, dtype: str = "fp32") -> "Translator":
        """A run or checkpoint directory, or a list of them for an ensemble."""
        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        if not paths:
            raise NmtError("no model given")
        loaded = [load_checkpoint(p) for p in paths]
        check_vocabularies([c.tokenizer for c in loaded], [str(p) for p in paths])
        models = [c.model for c in loaded]
        tokenizer, cfg = loaded[0].tokenizer, loaded[0].cfg
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as err:
            raise NmtError(f"device {device}: not available ({str(err).splitlines()[0]})") from None
        translator = cls(models if len(models) > 1 else models[0], tokenizer, cfg, device, dtype)
        translator.lexicon_path = table_path(paths[0])
        return translator

    def options(self, nbest: int = 1, **overrides) -> DecodeConfig:
        """The checkpoint's decode settings with `overrides` (None values ignored) for `nbest`
        hypotheses per line, checked by the config's rules (`nmt.config.decode_options`): an unknown
        key or a value out of range is an NmtError naming the key."""
        return decode_options(self.cfg.decode, nbest, **overrides)

    def encode(self, lines: list[str], line_numbers: list[int]) -> list[list[int]]:
        """Source ids; lines over decode.max_input_len pieces are truncated with a warning."""
        limit = self.cfg.decode.max_input_len
        ids = self.tokenizer.encode_src(lines)
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                log.warning("line %d: %d pieces, truncated to the model's limit of %d",
                            line_numbers[i], len(seq) - 1, limit - 1)
                ids[i] = _cut(seq, limit, EOS)
        return ids

    def pieces_read(self, lines: list[str]) -> list[tuple[list[str], bool]]:
        """Per line, the pieces the model reads, </s> included, truncated as `encode` truncates ([] if
        blank), and whether the line was cut. Their number is the width of the line's attention;
        columns beyond it are its batch's padding. One batched tokenizer call: a call per line costs
        more than decoding a short sentence in a batch."""
        limit, src = self.cfg.decode.max_input_len, self.tokenizer.src
        found = []
        for line, ids in zip(lines, src.encode(lines)):
            pieces = src.pieces(ids) + [EOS_PIECE] if line.strip() else []
            found.append((_cut(pieces, limit, EOS_PIECE), len(pieces) > limit))
        return found

    def source_pieces(self, line: str) -> list[str]:
        """`pieces_read` of one line: its pieces alone."""
        return self.pieces_read([line])[0][0]

    def source_words(self, lines: list[str]) -> list[list[int]]:
        """Per line, the whitespace word of the line that each piece the model reads stands for, </s>
        left out (nmt/translate/alignment.py): one per piece of `pieces_read` but the last."""
        kept = self.cfg.decode.max_input_len - 1  # the pieces before </s> that `encode` keeps
        return [word_indices(line, spans)[:kept] for line, spans in zip(lines, self.tokenizer.src.spans(lines))]

    def unspellable(self, prefixes: list[str], ids: list[list[int]] | None = None) -> tuple[int, str] | None:
        """The first (index, word) of `prefixes` that the target vocabulary reads as <unk>, or None;
        `ids`: their target ids, if already encoded. Forced as <unk>, such a word would not be in the
        output: the output would not start with its prefix, so the callers refuse it."""
        for i, seq in enumerate(self.tokenizer.encode_tgt(prefixes) if ids is None else ids):
            if UNK in seq:
                words = prefixes[i].split()
                return i, next((w for w in words if UNK in self.tokenizer.encode_tgt([w])[0]), prefixes[i])
        return None

    def translate_hyps(self, lines: list[str], nbest: int = 1, return_attention: bool = False,
                       first_line: int = 1, prefixes: list[str] | None = None, line_numbers: list[int] | None = None,
                       **overrides) -> list[list[Hypothesis]]:
        """N-best hypotheses (or samples) per line; an empty line gets one empty hypothesis without
        decoding. A line's samples depend on decode.seed and the line, not on the others
        (nmt/search/sampling.py).

        `prefixes`: one target-side text per line ("" or None: none). Its pieces are forced through
        the decoder, then the search continues: each hypothesis starts with them and its score
        includes their log-probability (nmt/search/common.py). A prefix with a word the target
        vocabulary cannot spell, or longer than its line's length cap allows (nmt/translate/prefix.py),
        is an NmtError naming its line. A warning or error names line `first_line + i` for lines[i], or
        `line_numbers[i]` where given (sentences of input lines: the line each is in)."""
        opts = self.options(nbest, **overrides)
        numbers = line_numbers or [first_line + i for i in range(len(lines))]
        if prefixes is not None and len(prefixes) != len(lines):
            raise NmtError(f"prefixes: {len(prefixes)} given for {len(lines)} lines; give one per line (\"\" for none)")
        todo = [i for i, line in enumerate(lines) if line.strip()]
        ids = self.encode([lines[i] for i in todo], [numbers[i] for i in todo])
        texts = [prefixes[i] or "" for i in todo] if prefixes else None
        prefix_ids = self.tokenizer.encode_tgt(texts) if texts else None
        if prefix_ids and (unknown := self.unspellable(texts, prefix_ids)):
            index, word = unknown
            raise NmtError(f"line {numbers[todo[index]]}: its prefix's word {word!r} is outside the target "
                           "vocabulary (forced as <unk>, the output would not start with the prefix)")
        if prefix_ids and (long := long_prefix([len(seq) for seq in ids], [len(seq) for seq in prefix_ids], opts)):
            raise NmtError(f"line {numbers[todo[long.index]]}: its prefix has {long.reason()}")
        found = decode_ids(self.decoding_model, ids, opts, self.device, nbest, return_attention, prefix_ids,
                           precision=lambda: autocast(self.device, self.dtype), shortlist=self.shortlister(opts))
        results = [[Hypothesis([], 0.0, True, None)] for _ in lines]
        for i, hyps in zip(todo, found):
            results[i] = hyps
        return results

    def shortlister(self, opts: DecodeConfig) -> Shortlister | None:
        """decode.shortlist's restriction of each batch (nmt/translate/shortlist.py), or None where it is off."""
        if not opts.shortlist:
            return None
        if self.lexicon is None:
            self.lexicon = load_table(self.lexicon_path, self.tokenizer.src_vocab_size, self.tokenizer.tgt_vocab_size)
        return Shortlister(self.lexicon, self.members, opts.shortlist_top_k, opts.shortlist_frequent)

    def translate(self, lines: list[str], prefixes: list[str] | None = None, **overrides) -> list[str]:
        """Detokenized translations, one per input line, in input order (each starting with its
        prefix in `prefixes`, if given: see translate_hyps)."""
        hyps = self.translate_hyps(lines, prefixes=prefixes, **overrides)
        return self.tokenizer.decode([h[0].tokens for h in hyps])

    def score(self, src_lines: list[str], tgt_lines: list[str], batch_size: int | None = None,
              first_line: int = 1) -> list[PairScore]:
        """log p(tgt | src) of each pair under the model, teacher-forced (nmt/translate/score.py)."""
        if len(self.models) > 1:
            raise NmtError("scoring uses one model; give one run or checkpoint directory")
        if len(src_lines) != len(tgt_lines):
            raise NmtError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines")
        src_ids = self.encode(src_lines, list(range(first_line, first_line + len(src_lines))))
        with torch.inference_mode(), autocast(self.device, self.dtype):
            return score_ids(self.model, src_ids, self.tokenizer.encode_tgt(tgt_lines),
                             batch_size or self.cfg.decode.batch_size, self.device)
