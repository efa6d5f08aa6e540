#!/usr/bin/env python
"""nmt-translate on a large file with decode.workers: N workers of one thread against one of N threads.

    scripts/bench/bench_workers.py RUN_DIR [--lines 10000] [--workers 1 2] [--beam 5] [--rounds 3]

Translates the first --lines lines of Multi30k's train.de (a file that large users translate, not
the test set) with `nmt-translate --workers W` for each W, in turns, --rounds times: wall time of
the whole command (`python -m nmt translate`, this Python's `nmt`; loading included), sentences/s, and whether the outputs are the same file
(each batch decodes as it would alone, but on W workers its products run on fewer threads, which
may move a float's last bit: a difference here is reported, not hidden).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MULTI30K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_workers."))
    lines = (MULTI30K / "train.de").read_text(encoding="utf-8").splitlines()[:args.lines]
    src = tmp / "src.de"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seconds: dict[int, list[float]] = {w: [] for w in args.workers}
    for _ in range(args.rounds):
        for w in args.workers:
            command = [sys.executable, "-m", "nmt", "translate", str(Path(args.run_dir).resolve()), "-i", str(src), "-o", str(tmp / f"out.{w}"),
                       "--beam-size", str(args.beam), "--workers", str(w)]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=tmp)  # python -m: the cwd comes first
            seconds[w].append(time.perf_counter() - start)
    base = statistics.median(seconds[args.workers[0]])
    first = (tmp / f"out.{args.workers[0]}").read_text(encoding="utf-8")
    print(f"{len(lines)} lines, beam {args.beam}, median of {args.rounds} turns\n")
    print(f"| workers | seconds | sentences/s | vs {args.workers[0]} | same output |\n|---|---|---|---|---|")
    for w in args.workers:
        median = statistics.median(seconds[w])
        same = (tmp / f"out.{w}").read_text(encoding="utf-8") == first
        print(f"| {w} | {median:.1f} | {len(lines) / median:.1f} | {base / median:.2f}x | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
