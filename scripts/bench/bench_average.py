#!/usr/bin/env python
"""Test BLEU and decoding speed of last checkpoints, checkpoint averages and an ensemble of runs.

    scripts/bench/bench_average.py RUN [RUN ...] [--last 2 3 4] [--beam-size 5] [--split test] [--limit N]
                                   [--work DIR] [--only-ensemble | --no-ensemble] [--json OUT.json]

For each run: its last checkpoint, its best (when another), and the average of its N newest step checkpoints for
each N of --last (written under --work with nmt.average). Then the ensemble of the runs' last
checkpoints and the ensemble of their largest averages. Each line: BLEU, chrF and sentences/s of
one `Translator.translate` over the split (the recipe's test split by default, one thread pool,
the machine as it is: run it under `flock -x /work/cpu.lock` for figures worth recording).
Prints a Markdown table; --json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nmt.average import run_checkpoints, write_average
from nmt.checkpoint import resolve
from nmt.data import splits
from nmt.evaluate import score
from nmt.translate.evaluation import resolve_splits
from nmt.translate.translator import Translator


def measure(name: str, paths: list, split: str, beam: int, limit: int = 0) -> dict:
    translator = Translator.load(paths if len(paths) > 1 else paths[0], device="cpu")
    (spec,) = resolve_splits(translator.cfg, [split])
    ds = splits.load_split(translator.cfg.data, spec)
    srcs, refs = list(ds["src"]), list(ds["tgt"])
    if limit:
        srcs, refs = srcs[:limit], refs[:limit]
    start = time.perf_counter()
    hyps = translator.translate(srcs, beam_size=beam)
    seconds = time.perf_counter() - start
    scores = score(hyps, refs, translator.cfg.eval.tokenize)
    row = {"name": name, "bleu": scores["bleu"], "chrf": scores["chrf"], "sentences_per_s": round(len(srcs) / seconds, 1),
           "models": len(paths), "split": spec, "beam_size": beam}
    print(f"| {name} | {row['bleu']:.2f} | {row['chrf']:.2f} | {row['sentences_per_s']:.1f} |", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (checkpoints kept with train.keep_last)")
    parser.add_argument("--last", type=int, nargs="*", default=[2, 3, 4], help="average the N newest checkpoints")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--split", default="test", help="'test' (the recipe's first test split), 'valid' or a name")
    parser.add_argument("--work", help="where the averages are written (default: a temporary folder)")
    parser.add_argument("--only-ensemble", action="store_true", help="skip the per-run rows")
    parser.add_argument("--no-ensemble", action="store_true", help="skip the ensemble rows")
    parser.add_argument("--averages-only", action="store_true", help="per run, only the averages' rows")
    parser.add_argument("--limit", type=int, default=0, help="only the split's first N sentences (0 = all)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nmt-average-"))
    print(f"| {args.split}, beam {args.beam_size} | BLEU | chrF | sentences/s |\n|---|---|---|---|", flush=True)
    rows, lasts, averages = [], [], []
    for run in args.runs:
        tag = Path(run).name
        lasts.append(resolve(Path(run) / "last").resolve())
        averages.append(lasts[-1])
        if not (args.only_ensemble or args.averages_only):
            rows.append(measure(f"{tag} last ({lasts[-1].name})", [lasts[-1]], args.split, args.beam_size, args.limit))
            if resolve(run).resolve() != lasts[-1]:
                rows.append(measure(f"{tag} best ({resolve(run).name})", [resolve(run)], args.split, args.beam_size,
                                    args.limit))
        for n in args.last:
            out = work / f"{tag}-avg{n}"
            if not out.exists():
                write_average(run_checkpoints(run, n), out)
            averages[-1] = out
            if not args.only_ensemble:
                rows.append(measure(f"{tag} average of last {n}", [out], args.split, args.beam_size, args.limit))
    if len(args.runs) > 1 and not args.no_ensemble:
        rows.append(measure(f"ensemble of {len(lasts)} last", lasts, args.split, args.beam_size, args.limit))
        if args.last:
            rows.append(measure(f"ensemble of {len(lasts)} averages of last {args.last[-1]}", averages,
                                args.split, args.beam_size, args.limit))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
