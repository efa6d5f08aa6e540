#!/usr/bin/env python
"""Decoding speed of two checkouts' code in turns, on one model: a before/after comparison.

    scripts/bench/decode_ab.py --base ../base-checkout RUN_DIR [--dtype fp32] [--rounds 5] [--threads 2]

Each round decodes Multi30k test_2016_flickr (batches of 64) greedy and with beam 5, once on BASE's
`nmt` (PYTHONPATH=BASE) and once on this checkout's, each in a fresh process, base first; prints
the median sentences/s of each and the ratio new / base. Alternating spreads a shared machine's
drift over both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MULTI30K, REPO

CHILD = """
import json, sys, time, torch
import nmt
from nmt import Translator
torch.set_num_threads({threads})
lines = open({src!r}, encoding="utf-8").read().splitlines()
translator = Translator.load({run!r}, device="cpu", dtype={dtype!r})
translator.translate(lines[:64], beam_size=5)  # warm-up
rates = {{}}
for name, beam in (("greedy", 1), ("beam5", 5)):
    start = time.perf_counter()
    translator.translate_hyps(lines, beam_size=beam, batch_size=64)
    rates[name] = len(lines) / (time.perf_counter() - start)
rates["code"] = str(__import__("pathlib").Path(nmt.__file__).parents[1])
print(json.dumps(rates))
"""


def one_run(code: Path, args) -> dict:
    child = CHILD.format(threads=args.threads, src=str(MULTI30K / "test_2016_flickr.de"), run=args.run_dir,
                         dtype=args.dtype)
    # Not from this directory: `python -c` puts the working directory ahead of PYTHONPATH, and from
    # inside a checkout both sides would import that checkout's `nmt`.
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(code)}, cwd=tempfile.gettempdir())
    rates = json.loads(out.stdout.strip().splitlines()[-1])
    found = rates.pop("code")
    if Path(found).resolve() != code.resolve():
        sys.exit(f"the child imported nmt from {found}, not {code}")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--base", required=True, type=Path)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runs = {"base": [], "new": []}
    for _ in range(args.rounds):
        runs["base"].append(one_run(args.base.resolve(), args))
        runs["new"].append(one_run(REPO, args))
    print(f"{args.run_dir}, {args.dtype}, {args.threads} threads, {args.rounds} rounds, {time.strftime('%Y-%m-%d')}")
    for name in ("greedy", "beam5"):
        base, new = (statistics.median(r[name] for r in runs[side]) for side in ("base", "new"))
        print(f"{name}: base {base:.1f}, new {new:.1f} sentences/s, new / base {new / base:.2f}x")


if __name__ == "__main__":
    main()
