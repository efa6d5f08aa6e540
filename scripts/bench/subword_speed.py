#!/usr/bin/env python3
"""Issue 36's speed figure: training tokens/s with subword sampling (alpha 0.5, both sides, whole
lattice) against without, on the CPU GRU recipes, in interleaved rounds, one run at a time on the
recipe's threads (take it on an otherwise idle machine). Resumable: a finished run is read, not trained.

    scripts/bench/subword_speed.py --out runs/sampling_speed            # 3 rounds x 2 recipes, ~30 min

A run is --steps updates with no validation or test; its speed is the median of metrics.jsonl's
tgt_tokens_per_s over the logged windows after the first (which holds the start-up). The epoch's
draw happens before its first update, so it is in the first window only: docs/data.md gives its cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPES = ("multi30k_de_en", "bible_es_en")
ARMS = {"off": [], "a05": ["tokenizer.sampling.sides=both", "tokenizer.sampling.alpha=0.5",
                           "tokenizer.sampling.nbest_size=-1"]}


def finished(run_dir: Path, steps: int) -> list[dict] | None:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return rows if any(r["step"] == steps for r in rows) else None


def train(recipe: str, run_dir: Path, arm: str, steps: int) -> float:
    """The run's median tokens/s, training it first where it is not finished."""
    rows = finished(run_dir, steps)
    if rows is None:
        folder = REPO / "recipes" / recipe
        sets = ["model.cell=gru", "train.seed=1", f"train.max_steps={steps}", f"train.log_every={steps // 6}",
                "train.eval_every=100000", "data.test=[]", *ARMS[arm]]
        cmd = [str(Path(sys.executable).with_name("nmt-train")), str(folder / "full.yaml"), str(folder / "cpu.yaml"),
               "--run-dir", str(run_dir), *[arg for s in sets for arg in ("--set", s)]]
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)  # an interrupted run starts again
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{run_dir}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        rows = finished(run_dir, steps)
    return statistics.median(r["tgt_tokens_per_s"] for r in rows[1:] if "tgt_tokens_per_s" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "sampling_speed")
    parser.add_argument("--recipe", choices=RECIPES, action="append", help="default: both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    print("| recipe | off tok/s (per round) | alpha 0.5 tok/s (per round) | alpha 0.5 / off (medians) |")
    print("|---|---|---|---|")
    for recipe in args.recipe or RECIPES:
        speeds = {arm: [] for arm in ARMS}
        for round_ in range(1, args.rounds + 1):
            for arm in ARMS:  # interleaved: a slow spell of the machine slows both arms alike
                speeds[arm].append(train(recipe, args.out / recipe / f"{arm}-r{round_}", arm, args.steps))
        medians = {arm: statistics.median(s) for arm, s in speeds.items()}
        cells = [", ".join(f"{s:.0f}" for s in speeds[arm]) for arm in ARMS]
        print(f"| {recipe} | {cells[0]} | {cells[1]} | {medians['a05'] / medians['off']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
