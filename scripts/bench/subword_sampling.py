#!/usr/bin/env python3
"""Issue 36's measurement of subword regularization (tokenizer.sampling), resumable: run it again
after an interruption and it skips the finished runs and resumes the stopped ones (--resume).

    scripts/bench/subword_sampling.py                      # both recipes, the whole matrix (hours on CPU)
    scripts/bench/subword_sampling.py --recipe multi30k_de_en --steps 30 --out /tmp/smoke   # a smoke test

Per recipe (its cpu scale, GRU, the same updates for every run):
  1. without sampling, seeds 1 and 2;
  2. with sampling on both sides at each of --alphas (nbest_size --nbest), seed 1;
  3. the alpha with the best *validation* BLEU (never test), seed 2.
Then one row per run and the means: test BLEU all / short / long of each test split (Multi30k
also test_2017_flickr) and the training tokens/s (mean of metrics.jsonl's tgt_tokens_per_s), as
Markdown for the recipe's RESULTS.md. Target (issue 36): +0.8 BLEU on Multi30k, +0.5 on the Bible,
at >= 0.9x the tokens/s, means of two seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = {"multi30k_de_en": "[test_2016_flickr,test_2017_flickr]", "bible_es_en": "[test]"}
SEEDS = (1, 2)


def train(recipe: str, run_dir: Path, seed: int, steps: int, alpha: float | None, nbest: int) -> dict:
    """The run's results.json, training (or resuming) it first if it has none."""
    if (run_dir / "results.json").exists():
        return json.loads((run_dir / "results.json").read_text())
    folder = REPO / "recipes" / recipe
    sets = ["model.cell=gru", f"train.seed={seed}", f"data.test={TESTS[recipe]}"]
    if steps:
        sets += [f"train.max_steps={steps}", f"train.eval_every={max(1, steps // 2)}",
                 f"train.log_every={max(1, steps // 4)}"]  # tokens/s rows even in a short run
    if alpha is not None:
        sets += ["tokenizer.sampling.sides=both", f"tokenizer.sampling.alpha={alpha}",
                 f"tokenizer.sampling.nbest_size={nbest}"]
    cmd = [str(Path(sys.executable).with_name("nmt-train")), str(folder / "full.yaml"), str(folder / "cpu.yaml"),
           "--run-dir", str(run_dir), *[arg for s in sets for arg in ("--set", s)]]
    if (run_dir / "last").exists():
        cmd.append("--resume")
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # a run killed before its first checkpoint: start it again
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((run_dir / "results.json").read_text())


def tokens_per_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["tgt_tokens_per_s"] for r in rows if "tgt_tokens_per_s" in r]
    return statistics.mean(speeds) if speeds else float("nan")


def row(name: str, seed: int, run_dir: Path, results: dict) -> dict:
    cells = {"run": name, "seed": seed, "valid BLEU": results["valid"]["valid_bleu"],
             "tok/s": round(tokens_per_s(run_dir), 0)}
    for split, table in results.get("test", {}).items():
        for part, scores in table.items():
            if part == "all" or part.startswith(("short", "long")):
                cells[f"{split} {part.split(' ')[0]}"] = scores["bleu"]
    return cells


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def mean_row(name: str, rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("run", "seed")]
    return {"run": f"{name} (mean)", "seed": "", **{k: round(statistics.mean(r[k] for r in rows), 2) for k in keys}}


def measure(recipe: str, out: Path, steps: int, alphas: list[float], nbest: int) -> str:
    runs = out / recipe
    base = [row("off", s, runs / f"off-s{s}", train(recipe, runs / f"off-s{s}", s, steps, None, nbest))
            for s in SEEDS]
    tried = {a: train(recipe, runs / f"alpha{a}-s1", 1, steps, a, nbest) for a in alphas}
    best = max(alphas, key=lambda a: tried[a]["valid"]["valid_bleu"])  # chosen on validation only
    sampled = [row(f"alpha {a}", 1, runs / f"alpha{a}-s1", tried[a]) for a in alphas]
    chosen = [r for r in sampled if r["run"] == f"alpha {best}"]
    chosen.append(row(f"alpha {best}", 2, runs / f"alpha{best}-s2",
                      train(recipe, runs / f"alpha{best}-s2", 2, steps, best, nbest)))
    rows = [*base, *sampled, chosen[-1], mean_row("off", base), mean_row(f"alpha {best}", chosen)]
    return f"### {recipe}: subword sampling (both sides, nbest_size {nbest}), GRU cpu scale\n\n{markdown(rows)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(TESTS), action="append", help="default: both")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "subword_sampling")
    parser.add_argument("--steps", type=int, default=0, help="train.max_steps (0 = the recipe's; a smoke test: 30)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--nbest", type=int, default=-1, help="tokenizer.sampling.nbest_size")
    args = parser.parse_args()
    for recipe in args.recipe or sorted(TESTS):
        table = measure(recipe, args.out, args.steps, args.alphas, args.nbest)
        (args.out / recipe / "table.md").write_text(table)
        print(table, flush=True)


if __name__ == "__main__":
    main()
