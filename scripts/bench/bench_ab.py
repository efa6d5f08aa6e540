#!/usr/bin/env python
"""bench.py on two checkouts' code in turns, for a before/after comparison on one machine.

    scripts/bench/bench_ab.py --base ../base-checkout [--rounds 3] [--out DIR] -- RECIPE.yaml [bench.py arguments]

Runs this checkout's `scripts/bench/bench.py ARGS` on BASE's `nmt` package (PYTHONPATH=BASE) and
on this checkout's (PYTHONPATH=this checkout) alternately, `--rounds` times each (base first), each
run in a fresh process, and prints the median of every figure with the ratio new / base. One
instrument measures both; alternating spreads the drift of a shared machine over both sides (and
`--threads 1` measures CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import REPO

BENCH = Path(__file__).with_name("bench.py")
FIGURES = [("training", "tgt_tokens_per_s", "training, target tokens/s"),
           ("training", "ratio_to_floor", "floor / training"),
           ("training", "peak_memory_mb", "peak training memory, MB"),
           ("decoding", "beam1", "greedy, sentences/s"),
           ("decoding", "beam5", "beam 5, sentences/s")]


def figure(report: dict, section: str, key: str):
    value = report.get(section, {}).get(key)
    return value["sentences_per_s"] if isinstance(value, dict) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree of the old commit)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side")
    parser.add_argument("--out", default="runs/bench_ab", help="folder for each run's JSON")
    parser.add_argument("bench_args", nargs="+", help="arguments of bench.py (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, list[dict]] = {"base": [], "new": []}
    for round_ in range(args.rounds):
        for side, root in (("base", Path(args.base).resolve()), ("new", REPO)):
            path = out / f"{side}-{round_}.json"
            pythonpath = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
            subprocess.run([sys.executable, str(BENCH), *args.bench_args, "--json", str(path.resolve())], check=True,
                           cwd=REPO, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": pythonpath})
            report = json.loads(path.read_text())
            if report["code"] != str(root):  # bench.py reports whose `nmt` it imported
                sys.exit(f"bench.py measured the nmt of {report['code']}, not of {root}")
            reports[side].append(report)
            print(f"round {round_ + 1} {side}: " + ", ".join(
                f"{label} {figure(reports[side][-1], s, k)}" for s, k, label in FIGURES
                if figure(reports[side][-1], s, k) is not None), flush=True)
    print("\n| figure (median of %d runs each) | base | new | new / base |\n|---|---|---|---|" % args.rounds)
    for section, key, label in FIGURES:
        values = {side: [figure(r, section, key) for r in runs] for side, runs in reports.items()}
        if None in values["base"] + values["new"]:
            continue
        base, new = statistics.median(values["base"]), statistics.median(values["new"])
        print(f"| {label} | {base} | {new} | {new / base:.3f} |")


if __name__ == "__main__":
    main()
