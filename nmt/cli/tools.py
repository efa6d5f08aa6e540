"""nmt-average, nmt-score and nmt-shortlist: thin entry points over nmt/average.py, nmt/translate/score.py and
nmt/translate/lexicon.py (conventions of nmt/cli/commands.py)."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

from nmt.cli.common import quiet_libraries, user_errors
from nmt.cli.flags import add_config_flags, config_from_flags
from nmt.cli.text_io import open_input, open_output, read_chunks
from nmt.config import LexiconConfig
from nmt.errors import NmtError


@user_errors
def average_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmt-average", description="Average the weights of several checkpoints of one model into a new "
        "checkpoint directory that nmt-translate and nmt-evaluate read like any other.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="with --last: one run directory; else the checkpoint (or run) directories to average")
    parser.add_argument("--last", type=int, metavar="N", help="average the run's N newest step checkpoints")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                        help="new checkpoint directory (must not exist or be empty; written beside and renamed)")
    args = parser.parse_args(argv)
    from nmt.average import run_checkpoints, write_average
    from nmt.checkpoint import read_meta

    if args.last is not None:
        if args.last < 1:
            raise NmtError(f"--last: must be at least 1, got {args.last}")
        if len(args.paths) != 1:
            raise NmtError("--last takes one run directory")
        paths = run_checkpoints(args.paths[0], args.last)
    else:
        paths = args.paths
    out = write_average(paths, args.output)
    steps = ", ".join(str(step) for step in read_meta(out)["averaged_steps"])
    print(f"averaged {len(paths)} checkpoints (steps {steps}) into {out}: {', '.join(str(p) for p in paths)}")
    return 0


def _pairs(args, size: int):
    """(first line number, sources, targets) chunks from --src/--tgt, or from 'source<TAB>target' on stdin."""
    if (args.src is None) != (args.tgt is None):
        raise NmtError("give both --src and --tgt, or neither (then stdin holds source<TAB>target lines)")
    if args.src is None:
        with open_input(None) as stream:
            for first, lines in read_chunks(stream, "stdin", "error", size):
                split = [line.split("\t", 1) for line in lines]
                for number, parts in enumerate(split, first):
                    if len(parts) != 2:
                        raise NmtError(f"stdin:{number}: expected source<TAB>target")
                yield first, [p[0] for p in split], [p[1] for p in split]
        return
    counts = []
    for path in (args.src, args.tgt):
        with open_input(path) as stream:
            counts.append(sum(1 for _ in stream))
    if counts[0] != counts[1]:
        raise NmtError(f"{args.src} has {counts[0]} lines but {args.tgt} has {counts[1]}")
    with open_input(args.src) as src, open_input(args.tgt) as tgt:
        for (first, sources), (_, targets) in itertools.zip_longest(
                read_chunks(src, args.src, "error", size), read_chunks(tgt, args.tgt, "error", size)):
            yield first, sources, targets


@user_errors
def score_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmt-score", description="Score given translations: one line per pair with the log-probability "
        "of the target given the source under the model, total and per target piece (EOS counted), "
        "tab-separated. Natural logarithms; higher is better.")
    parser.add_argument("model", help="run directory (uses its best checkpoint) or checkpoint directory")
    parser.add_argument("--src", help="source file, one sentence per line")
    parser.add_argument("--tgt", help="target file, as many lines (without --src/--tgt: stdin, source<TAB>target)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument("--batch-size", type=int, help="pairs per batch (default: the checkpoint's decode.batch_size)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--chunk-size", type=int, default=2000, help="pairs read and scored at a time")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "chunk_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise NmtError(f"--{flag.replace('_', '-')}: must be at least 1, got {value}")
    quiet_libraries()
    from nmt.translate.translator import Translator

    translator = Translator.load(args.model, device=args.device)
    with open_output(args.output) as out:
        for first, sources, targets in _pairs(args, args.chunk_size):
            scores = translator.score(sources, targets, args.batch_size, first_line=first)
            out.write("".join(f"{s.total:.4f}\t{s.per_token:.4f}\n" for s in scores))
            out.flush()
    return 0


@user_errors
def shortlist_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmt-shortlist", description="Build a run's lexical table for decode.shortlist (IBM Model 1 over its "
        "training pairs, read from the files its config.yaml names): shortlist.safetensors in the run directory.")
    parser.add_argument("run", help="run directory (or one of its checkpoints): its tokenizer and training data")
    parser.add_argument("--data-root", help="folder the run's data.dir is relative to (default: as nmt-train)")
    add_config_flags(parser, LexiconConfig, with_defaults=True, title="the table")
    args = parser.parse_args(argv)
    settings = config_from_flags(args, LexiconConfig)
    quiet_libraries()
    from nmt.checkpoint import read_config, resolve
    from nmt.data.tokenizer import Tokenizer
    from nmt.translate.lexicon import build_table, save_table, table_path, training_ids

    ckpt, start = resolve(args.run), time.perf_counter()
    cfg = read_config(ckpt)
    if args.data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=args.data_root))
    tokenizer = Tokenizer.load(ckpt)
    src, tgt = training_ids(cfg, tokenizer)
    table = build_table(src, tgt, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, settings)
    path = save_table(table, table_path(args.run).parent)
    print(f"wrote {path}: the {table.translations.size(1)} most likely of {tokenizer.tgt_vocab_size} target pieces "
          f"for each of {tokenizer.src_vocab_size} source pieces, from {len(src)} training pairs "
          f"({settings.iterations} EM iterations, {time.perf_counter() - start:.1f} s)")
    return 0
