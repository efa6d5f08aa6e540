#!/usr/bin/env python
"""decode.shortlist against the full vocabulary: sentences/s, BLEU and the shortlist's size.

    scripts/bench/bench_shortlist.py RUN_DIR [--sizes 20:100 50:200] [--split test_2016_flickr|val]
                                     [--beams 1 5] [--repeats 5] [--threads 2] [--dtype fp32|int8] [--json OUT]

RUN_DIR must hold the lexical table (nmt-shortlist RUN_DIR). Each size is TOP_K:FREQUENT
(decode.shortlist_top_k, decode.shortlist_frequent). Per beam, the settings (full vocabulary and
each size) are timed in turns, --repeats rounds after one untimed pass each (its BLEU and sizes), so that a burst of
other work on the machine slows them alike; each row is the median of its rounds. `pieces` is the
mean shortlist size per batch (V_s) against the target vocabulary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from nmt.evaluate import score
from nmt.translate.shortlist import Shortlister
from nmt.translate.translator import Translator

from common import MULTI30K as DATA


def shortlist_sizes(translator: Translator, lines: list[str], settings: dict):
    """One pass with `settings`: its hypotheses and the mean V_s over its batches (None: no shortlist)."""
    sizes, restrict = [], Shortlister.restrict

    def recording(self, *args):
        restricted = restrict(self, *args)
        sizes.append(restricted.ids.numel())
        return restricted

    Shortlister.restrict = recording
    try:
        found = translator.translate_hyps(lines, **settings)
    finally:
        Shortlister.restrict = restrict
    return found, statistics.mean(sizes) if sizes else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sizes", nargs="+", default=["20:100"], help="TOP_K:FREQUENT pairs")
    parser.add_argument("--split", default="test_2016_flickr", help="Multi30k split: its .de and .en files")
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lines", type=int, default=0, help="the split's first N lines only (0 = all)")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = (DATA / f"{args.split}.de").read_text(encoding="utf-8").splitlines()
    refs = (DATA / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    if args.lines:
        lines, refs = lines[:args.lines], refs[:args.lines]
    translator = Translator.load(args.run_dir, device="cpu", dtype=args.dtype)
    vocab = translator.tokenizer.tgt_vocab_size
    configs = {"full": {}} | {size: {"shortlist": True, "shortlist_top_k": int(size.split(":")[0]),
                                     "shortlist_frequent": int(size.split(":")[1])} for size in args.sizes}
    rows = []
    for beam in args.beams:
        common = {"beam_size": beam, "batch_size": args.batch_size}
        times, found, pieces = {name: [] for name in configs}, {}, {}
        for name, settings in configs.items():  # the untimed pass: BLEU and the shortlist sizes
            found[name], pieces[name] = shortlist_sizes(translator, lines, {**common, **settings})
        for _ in range(args.repeats):
            for name, settings in configs.items():
                start = time.perf_counter()
                translator.translate_hyps(lines, **common, **settings)
                times[name].append(time.perf_counter() - start)
        for name in configs:
            seconds = statistics.median(times[name])
            hyps = translator.tokenizer.decode([h[0].tokens for h in found[name]])
            rows.append({"setting": name, "beam": beam, "sentences_per_s": round(len(lines) / seconds, 1),
                         "seconds": round(seconds, 3), "bleu": round(score(hyps, refs)["bleu"], 2),
                         "pieces": round(pieces[name] or vocab)})
    print(table(rows, args, vocab))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1))


def table(rows: list[dict], args, vocab: int) -> str:
    head = (f"{args.run_dir}, {args.split} ({args.dtype}), {args.threads} threads, torch {torch.__version__}, "
            f"CPU {torch.backends.cpu.get_cpu_capability()}, medians of {args.repeats} interleaved rounds\n")
    out = [head, "| search | shortlist (top-k:frequent) | pieces per batch | sentences/s | vs full | BLEU | ΔBLEU |",
           "|---|---|---|---|---|---|---|"]
    full = {r["beam"]: r for r in rows if r["setting"] == "full"}
    for r in rows:
        base = full[r["beam"]]
        search = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        out.append(f"| {search} | {r['setting']} | {r['pieces']} of {vocab} | {r['sentences_per_s']} | "
                   f"{r['sentences_per_s'] / base['sentences_per_s']:.2f}x | {r['bleu']} | "
                   f"{r['bleu'] - base['bleu']:+.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
