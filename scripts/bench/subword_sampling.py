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
also test_2017_flickr), the training tokens/s (mean of metrics.jsonl's tgt_tokens_per_s) and the
wall time, as Markdown for the recipe's RESULTS.md. --jobs 2 --threads 1 (the default) trains two
runs at a time, one thread each, as the recipes' RESULTS tables were trained; a run waits only for
the runs it depends on (the second seed of the chosen alpha, for the first seed's), so that every
run but the last shares the machine with another and their speeds compare.
Target (issue 36): +0.8 BLEU on Multi30k, +0.5 on the Bible, at >= 0.9x the tokens/s, means of two seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = {"multi30k_de_en": "[test_2016_flickr,test_2017_flickr]", "bible_es_en": "[test]"}
SEEDS = (1, 2)


def train(recipe: str, run_dir: Path, seed: int, steps: int, alpha: float | None, nbest: int,
          threads: int) -> dict:
    """The run's results.json, training (or resuming) it first if it has none."""
    if (run_dir / "results.json").exists():
        return json.loads((run_dir / "results.json").read_text())
    folder = REPO / "recipes" / recipe
    sets = ["model.cell=gru", f"train.seed={seed}", f"data.test={TESTS[recipe]}", f"train.threads={threads}"]
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
    start = time.monotonic()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:  # two runs at once: a log each
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    (run_dir / "wall_s").write_text(f"{time.monotonic() - start:.0f}\n")
    print(f"done {run_dir.name}", flush=True)
    return json.loads((run_dir / "results.json").read_text())


def tokens_per_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["tgt_tokens_per_s"] for r in rows if "tgt_tokens_per_s" in r]
    return statistics.mean(speeds) if speeds else float("nan")


def row(name: str, seed: int, run_dir: Path, results: dict) -> dict:
    wall = run_dir / "wall_s"  # absent for a run resumed by an older version of this script
    cells = {"run": name, "seed": seed, "valid BLEU": results["valid"]["valid_bleu"],
             "tok/s": round(tokens_per_s(run_dir), 0),
             "wall min": round(int(wall.read_text()) / 60, 1) if wall.exists() else float("nan")}
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


class Matrix:
    """One recipe's runs, submitted to a shared pool: each a Future of its results.json."""

    def __init__(self, recipe: str, out: Path, pool: ThreadPoolExecutor, args: argparse.Namespace):
        self.recipe, self.runs, self.pool, self.args = recipe, out / recipe, pool, args
        self.off = {s: self.submit(f"off-s{s}", s, None) for s in SEEDS}
        self.tried = {a: self.submit(f"alpha{a}-s1", 1, a) for a in args.alphas}
        self.second: Future | None = None  # submitted once every alpha's first seed is done
        self.lock = threading.Lock()
        for future in self.tried.values():
            future.add_done_callback(lambda _: self.submit_second())

    def submit(self, name: str, seed: int, alpha: float | None) -> Future:
        a = self.args
        return self.pool.submit(train, self.recipe, self.runs / name, seed, a.steps, alpha, a.nbest, a.threads)

    def best(self) -> float:
        """The alpha whose first seed has the best validation BLEU (never test)."""
        return max(self.tried, key=lambda a: self.tried[a].result()["valid"]["valid_bleu"])

    def submit_second(self) -> None:
        """Once every alpha's first seed is done: the second seed of the best. After a failed run, none:
        table() re-raises the failure before it waits for the second seed."""
        with self.lock:
            if self.second is not None or not all(f.done() and not f.exception() for f in self.tried.values()):
                return
            best = self.best()
            self.second = self.submit(f"alpha{best}-s2", 2, best)

    def table(self) -> str:
        base = [row("off", s, self.runs / f"off-s{s}", self.off[s].result()) for s in SEEDS]
        sampled = [row(f"alpha {a}", 1, self.runs / f"alpha{a}-s1", f.result()) for a, f in self.tried.items()]
        while self.second is None:  # its callback runs in the pool's thread that finished the last alpha
            time.sleep(1)
        best = self.best()
        chosen = [r for r in sampled if r["run"] == f"alpha {best}"]
        chosen.append(row(f"alpha {best}", 2, self.runs / f"alpha{best}-s2", self.second.result()))
        rows = [*base, *sampled, chosen[-1], mean_row("off", base), mean_row(f"alpha {best}", chosen)]
        return (f"### {self.recipe}: subword sampling (both sides, nbest_size {self.args.nbest}), GRU cpu scale, "
                f"{self.args.jobs} runs at a time x {self.args.threads} thread(s)\n\n{markdown(rows)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(TESTS), action="append", help="default: both")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "subword_sampling")
    parser.add_argument("--steps", type=int, default=0, help="train.max_steps (0 = the recipe's; a smoke test: 30)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--nbest", type=int, default=-1, help="tokenizer.sampling.nbest_size")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at a time")
    parser.add_argument("--threads", type=int, default=1, help="train.threads of each run")
    args = parser.parse_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        matrices = [Matrix(recipe, args.out, pool, args) for recipe in args.recipe or list(TESTS)]
        for matrix in matrices:
            table = matrix.table()
            (matrix.runs / "table.md").write_text(table)
            print(table, flush=True)


if __name__ == "__main__":
    main()
