"""nmt-translate's --split-sentences: which outputs it applies to, and a chunk of lines translated with it.

Splitting applies to plain-text 1-best output only. The other outputs are records of one
hypothesis of the whole line: --format json's pieces and attention, --nbest's scores,
--alignments' word pairs, --plot-attention's heatmaps and --prefix-file's forced start all run
over the line's own pieces, and a line cut into sentences has no such hypothesis. There the
default is off, and --split-sentences given with them is refused in one line.
"""

from __future__ import annotations

import argparse

from nmt.config import TextConfig
from nmt.errors import NmtError

SPLIT_DEFAULT = TextConfig().split_sentences


def add_split_flag(parser: argparse.ArgumentParser) -> None:
    """--split-sentences / --no-split-sentences; absent, None: `splitting` decides."""
    text = TextConfig.__dataclass_fields__["split_sentences"].metadata["help"]
    parser.add_argument("--split-sentences", action=argparse.BooleanOptionalAction, default=None,
                        help=f"{text} (default: {'on' if SPLIT_DEFAULT else 'off'} for plain-text 1-best output; "
                        "off with --format json, --nbest, --alignments, --attention, --plot-attention, --prefix-file)")


def splitting(args: argparse.Namespace) -> bool:
    """Whether this run splits lines into sentences; NmtError where it was asked for with an output
    that holds a record of the whole line."""
    whole_line = [flag for flag, given in (("--format json", args.format == "json"), ("--nbest", args.nbest > 1),
                                           ("--alignments", args.alignments), ("--attention", args.attention),
                                           ("--plot-attention", bool(args.plot_attention)),
                                           ("--prefix-file", bool(args.prefix_file))) if given]
    if args.split_sentences and whole_line:
        raise NmtError(f"--split-sentences: applies to plain-text 1-best output only, not with {whole_line[0]} "
                       "(its record is of the whole line); drop one of them")
    return SPLIT_DEFAULT and not whole_line if args.split_sentences is None else args.split_sentences


def translate_split(translator, lines: list[str], first_line: int, decoding: dict) -> list[str]:
    """One translation per line, a line of several sentences translated sentence by sentence; all
    the chunk's sentences decoded in one call (one length-sorted batch)."""
    from nmt.translate.paragraphs import plan_lines, rebuild_lines  # here: nmt.translate loads torch

    plan = plan_lines(lines, translator.cfg.data.src_lang)
    # A warning (a truncated sentence) names the input line it is in, not its place among the sentences.
    found = translator.translate_hyps(plan.inputs, line_numbers=[first_line + i for i in plan.lines], **decoding)
    return rebuild_lines(plan, translator.tokenizer.decode([hyps[0].tokens for hyps in found]))
