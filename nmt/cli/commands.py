"""nmt-train, nmt-prepare, nmt-translate and nmt-evaluate: thin entry points over the library."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

from nmt.cli.common import quiet_libraries, user_errors
from nmt.cli.flags import add_config_flags, flags_named
from nmt.cli.sentences import add_split_flag, splitting, translate_split
from nmt.cli.text_io import open_input, open_output, read_chunks, with_prefixes
from nmt.config import INFERENCE_DTYPES, DecodeConfig, decode_options
from nmt.errors import NmtError
from nmt.vocab import EOS_PIECE


@user_errors
def train_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nmt-train", description="Train an attention RNN translation model.")
    parser.add_argument("config", nargs="*", help="recipe YAML file(s), merged left to right")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.cell=lstm (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML (the "
                        "recipes, --set and a parent's model and tokenizer applied: what config.yaml would hold) "
                        "and exit without training; without a recipe, the defaults (docs/config.md)")
    parser.add_argument("--run-dir", help="output directory (default: runs/<config name>)")
    parser.add_argument("--data-root", help="folder the recipe's data.dir is relative to "
                        "(default: $NMT_DATA_ROOT or ../shared/data)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                        help="fine-tune: start a new run from this run's best checkpoint (or this checkpoint), "
                        "with its weights, tokenizer and architecture (train.init_from)")
    args = parser.parse_args(argv)
    if not args.config and not args.print_config:
        parser.error("the following arguments are required: config")
    from nmt.config import load_saved_config, to_yaml
    from nmt.train import finetune

    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    run_dir = Path(args.run_dir or Path("runs") / "-".join(Path(c).stem for c in args.config))
    saved = run_dir / "config.yaml"
    # A resumed run keeps the config it was started with; --set may still change it (e.g. train.max_steps).
    if args.resume and saved.exists():
        cfg = load_saved_config(saved, overrides)
        if args.init_from:
            finetune.check_same_parent(cfg, args.init_from)
    else:
        # json.dumps: the path as a YAML string, whatever its characters
        init = [f"train.init_from={json.dumps(args.init_from)}"] if args.init_from else []
        cfg = finetune.load_config(args.config, overrides + init)
    if args.print_config:
        print(to_yaml(finetune.with_parent(cfg, args.resume)), end="")
        return 0
    quiet_libraries()
    from nmt.evaluate import format_split
    from nmt.train.loop import train

    results = train(cfg, run_dir, resume=args.resume)
    for split, result in results.get("test", {}).items():
        print(f"\n{format_split(split, result)}")
    if "resume" in results:  # the main process of a run stopped by a signal
        print(f"stopped by {results['stopped']} at step {results['step']}; checkpoint saved. Continue with:\n"
              f"  {results['resume']}", file=sys.stderr)
    return 0


@user_errors
def prepare_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmt-prepare", description="Train the tokenizer (a fine-tuning run: take its parent's) and tokenise a "
        "recipe's training and validation splits into the data cache, as nmt-train does first when they are not "
        "there (fairseq-preprocess).")
    parser.add_argument("config", nargs="+", help="recipe YAML file(s), merged left to right")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.num_proc=8 (repeatable)")
    parser.add_argument("--data-root", help="folder the recipe's data.dir is relative to "
                        "(default: $NMT_DATA_ROOT or ../shared/data)")
    parser.add_argument("--cache-dir", help="where prepared splits are kept "
                        "(default: data.cache_dir, else $NMT_CACHE_DIR, else ~/.cache/nmt)")
    parser.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT", help="for a fine-tuning run (nmt-train "
                        "--init-from, train.init_from): tokenise with this model's tokenizer, as that run will")
    args = parser.parse_args(argv)
    from nmt.train import finetune

    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    overrides += [f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []
    overrides += [f"train.init_from={json.dumps(args.init_from)}"] if args.init_from else []
    # As nmt-train reads it: a parent's tokenizer, and its refusals of settings the parent cannot serve.
    cfg = finetune.with_parent(finetune.load_config(args.config, overrides))
    quiet_libraries()
    from nmt.data.prepare import prepare

    ready = prepare(cfg, parent=Path(cfg.train.init_from) if cfg.train.init_from else None)
    if cfg.train.init_from:
        print(f"tokenizer: the parent's, {cfg.train.init_from}")
    print(f"prepared: {len(ready.train)} training pairs ({', '.join(f'{k} {v}' for k, v in ready.counts.items())}), "
          f"{len(ready.valid)} validation pairs")
    return 0


def _format(translator, index: int, line: str, hyps: list, texts: list[str], args) -> str:
    """The output line(s) for one input line (its hypotheses and their detokenized texts)."""
    columns = len(translator.source_pieces(line)) if args.attention else None
    words = translator.source_words([line])[0] if args.alignments else None
    from nmt.translate.records import hypothesis_record

    if args.format == "json":
        items = [hypothesis_record(translator.tokenizer, h, t, columns, words) for t, h in zip(texts, hyps)]
        record = {"line": index, **items[0]} if args.nbest == 1 else {"line": index, "nbest": items}
        return json.dumps(record, ensure_ascii=False) + "\n"
    if args.alignments:  # one more tab-separated column after the translation
        texts = [f"{t}\t{hypothesis_record(translator.tokenizer, h, t, source_words=words)['alignment']}"
                 for t, h in zip(texts, hyps)]
    if args.nbest > 1:
        return "".join(f"{index}\t{h.score:.4f}\t{t}\n" for t, h in zip(texts, hyps))
    return texts[0] + "\n"


def _plot(translator, index: int, line: str, hyp, directory: Path) -> None:
    from nmt.cli.plot import plot_attention

    if hyp.attention is None:
        return
    out = translator.tokenizer.tgt_pieces(hyp.tokens) + [EOS_PIECE]  # EOS ends every hypothesis (forced at the cap)
    plot_attention(hyp.attention.numpy(), translator.tokenizer.src_pieces(line), out,
                   directory / f"{index:06d}.png", title=line[:80])


@user_errors
def translate_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nmt-translate", description="Translate text with a trained model "
                                     "(or the ensemble of several).")
    parser.add_argument("model", nargs="+", help="run directory (uses its best checkpoint) or checkpoint directory; "
                        "several: decode with their ensemble (mean of their log-probabilities per step)")
    parser.add_argument("-i", "--input", help="input file, one sentence per line (default: stdin)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument("--nbest", type=int, default=1, help="output N hypotheses (or N samples with --sampling) "
                        "per line (TSV: index, score, text)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="plain text or JSON lines")
    parser.add_argument("--attention", action="store_true", help="include attention weights in JSON output")
    parser.add_argument("--plot-attention", metavar="DIR", help="write one attention heatmap PNG per line")
    parser.add_argument("--alignments", action="store_true", help="add each translation's word alignment "
                        "(Pharaoh 'src-tgt' pairs from the attention): a tab-separated column, or JSON's 'alignment'")
    parser.add_argument("--prefix-file", metavar="FILE", help="target-side prefixes, one per input line (an empty "
                        "line for none): each translation starts with its prefix, forced through the decoder")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32",
                        help="inference precision: int8 = 8-bit weights on the CPU; bf16/fp16 = autocast")
    parser.add_argument("--bad-bytes", choices=("error", "replace"), default="error",
                        help="on invalid UTF-8 input: stop with the line number, or replace and warn")
    parser.add_argument("--chunk-size", type=int, default=2000, help="lines read and translated at a time")
    add_split_flag(parser)
    add_config_flags(parser, DecodeConfig, with_defaults=False, title="decoding (absent: the checkpoint's decode settings)")
    args = parser.parse_args(argv)
    if args.chunk_size < 1:
        raise NmtError(f"--chunk-size: must be at least 1, got {args.chunk_size}")
    split = splitting(args)
    decoding = {f.name: getattr(args, f.name) for f in dataclasses.fields(DecodeConfig)}  # None: not given
    with flags_named([*decoding, "nbest"]):
        decode_options(DecodeConfig(), args.nbest, **decoding)  # refuse a bad value before loading the model
    quiet_libraries()
    from nmt.translate.translator import Translator

    translator = Translator.load(args.model, device=args.device, dtype=args.dtype)
    plots = Path(args.plot_attention) if args.plot_attention else None
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
    wants_attention = bool(plots or args.attention or args.alignments)
    with open_input(args.input) as stream, open_output(args.output) as out, \
            (open_input(args.prefix_file) if args.prefix_file else contextlib.nullcontext()) as prefix_stream:
        for first, lines, prefixes in _chunks(stream, prefix_stream, args):
            if split:
                out.write("".join(text + "\n" for text in translate_split(translator, lines, first, decoding)))
                out.flush()
                continue
            found = translator.translate_hyps(lines, nbest=args.nbest, first_line=first, prefixes=prefixes,
                                              return_attention=wants_attention, **decoding)
            # One batched detokenization per chunk: a call per line costs more than the decoding.
            texts = iter(translator.tokenizer.decode([h.tokens for hyps in found for h in hyps]))
            for offset, (line, hyps) in enumerate(zip(lines, found)):
                out.write(_format(translator, first - 1 + offset, line, hyps, [next(texts) for _ in hyps], args))
                if plots and line.strip():
                    _plot(translator, first - 1 + offset, line, hyps[0], plots)
            out.flush()
    return 0


def _chunks(stream, prefix_stream, args):
    """(first line number, lines, their prefixes or None) per chunk of the input."""
    chunks = read_chunks(stream, args.input or "stdin", args.bad_bytes, args.chunk_size)
    if prefix_stream is None:
        return ((first, lines, None) for first, lines in chunks)
    prefix_chunks = read_chunks(prefix_stream, args.prefix_file, args.bad_bytes, args.chunk_size)
    return with_prefixes(chunks, prefix_chunks, f"--prefix-file {args.prefix_file}")


@user_errors
def evaluate_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmt-evaluate", description="BLEU and chrF overall and by source length, from files or a checkpoint.")
    parser.add_argument("model", nargs="*", help="run or checkpoint directory to translate --split with "
                        "(several: their ensemble)")
    parser.add_argument("--split", action="append", default=[],
                        help="'test' (the recipe's test splits), 'valid', or a split of the corpus (repeatable)")
    parser.add_argument("--hyp", help="hypothesis file (detokenized, one per line)")
    parser.add_argument("--ref", help="reference file")
    parser.add_argument("--src", help="source file, for the length buckets")
    parser.add_argument("--beam-size", type=int, help="beam size when translating (default: the checkpoint's)")
    parser.add_argument("--buckets", help="source-word bucket edges, e.g. 10,20,30 (default: the recipe's)")
    parser.add_argument("--threshold", type=int, help="short/long threshold in source words (default: the recipe's)")
    parser.add_argument("--device", help="device for translating (default: cuda if available)")
    parser.add_argument("--json", metavar="FILE", help="also write the scores as JSON ('-' for stdout)")
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.hyp or args.ref):
        raise NmtError("give either a RUN_DIR (with --split) or --hyp and --ref files")
    quiet_libraries()
    from nmt.evaluate import evaluate_files, format_split, format_table
    from nmt.translate.evaluation import evaluate_checkpoint

    edges = [int(x) for x in args.buckets.split(",")] if args.buckets else None
    if args.model:
        model = args.model if len(args.model) > 1 else args.model[0]
        results = evaluate_checkpoint(model, args.split or ["test"], args.device, args.beam_size, edges=edges,
                                      threshold=args.threshold)
        print("\n\n".join(format_split(split, result) for split, result in results.items()))
    else:
        results = evaluate_files(args.hyp, args.ref, args.src, edges, args.threshold)
        print(format_table(results))
    if args.json == "-":
        print(json.dumps(results, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
