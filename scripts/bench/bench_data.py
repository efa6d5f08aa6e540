#!/usr/bin/env python
"""Start-up time and memory of `nmt-train` on large corpora: prepare once, memory flat, DDP prepares once.

    scripts/bench/bench_data.py --work DIR [--sizes 100000,4060000] [--runs first,second,resume,ddp] [--json OUT.json]

Builds the corpora itself in DIR from ../shared/data/multi30k: its 29 000 training pairs repeated
(4 060 000 = 140 copies) or cut (100 000), as plain text files. For each size, with a fresh data
cache in DIR, it trains `recipes/multi30k_de_en/quick.yaml` for 5 updates (no test-set evaluation):

    first   the cache is empty: SentencePiece on a sample, tokenisation, 5 updates
    second  a new run directory, the same data and tokenizer: the cache is reused
    resume  `--resume` of the second run to 10 updates

and (`--runs ...,ddp`) once more under `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2`
with a fresh cache. Each figure: seconds from the command's start to the first update (metrics.jsonl
gets a line per update) and to the last, total seconds (validation included), and peak RSS, the
largest of any process of the command (os.wait4's ru_maxrss covers the waited-for process tree).
Targets (issue 13, 4 060 000 pairs, 2-core CPU): first run <= 150 s; second run and --resume <= 20 s
to the first update; peak RSS <= 1.5 GB and within 1.3x of the 100 000-pair run's. Prints one table,
with each run's peak anonymous memory beside its peak RSS (see `largest_anonymous`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import MULTI30K, REPO

BIN = Path(sys.executable).parent


def build_corpus(work: Path, pairs: int, multi30k: Path) -> str:
    """`work/m30k-N.de` and `.en`: Multi30k's training files repeated (or cut) to `pairs` lines."""
    paths = {lang: work / f"m30k-{pairs}.{lang}" for lang in ("de", "en")}
    for lang, path in paths.items():
        lines = (multi30k / f"train.{lang}").read_bytes().splitlines(keepends=True)
        if path.exists() and path.stat().st_size == sum(len(lines[i % len(lines)]) for i in range(pairs)):
            continue
        with open(path.with_suffix(".tmp"), "wb") as out:
            for start in range(0, pairs, len(lines)):
                out.writelines(lines[: pairs - start])
        path.with_suffix(".tmp").replace(path)
    return f"{paths['de']}|{paths['en']}"


def largest_anonymous(pid: int) -> int:
    """Bytes of anonymous memory (RssAnon) of the largest process in `pid`'s tree, now.

    Peak RSS also counts the pages of the memory-mapped cache a process has read: clean page cache,
    shared by every process that maps the file and reclaimed under memory pressure, and mapped in
    whole folios (up to MBs each on a recent kernel) so that a few random rows of a cached file count
    for most of it. The memory a process owns is its anonymous memory, sampled here every 50 ms."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    largest = 0
    for proc in procs:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")), 0)
        largest = max(largest, kb * 1024)
    return largest


def run(cmd: list[str], run_dir: Path, env: dict, first_step: int, name: str) -> dict:
    """Run a training command; seconds to update `first_step` and to the last, total seconds, peak RSS."""
    metrics, log_path, start, steps = run_dir / "metrics.jsonl", run_dir.parent / f"{name}.log", time.perf_counter(), {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # not Popen.wait: we need its rusage
            now = round(time.perf_counter() - start, 1)
            anon = max(anon, largest_anonymous(proc.pid))
            for line in metrics.read_text().splitlines() if metrics.exists() else []:
                steps.setdefault(json.loads(line)["step"], now)
            if pid:
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    # ru_maxrss of a waited-for process is the largest peak of it and of every descendant it waited for.
    return {"to_first_update_s": steps.get(first_step), "to_last_update_s": steps.get(max(steps)),
            "total_s": now, "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "peak_anon_gb": round(anon / 2**30, 2),
            "prepared_splits": text.count("read and tokenised"), "prepared_once_line": "data prepared once" in text,
            "log": [line for line in text.splitlines() if " nmt." in line]}


def bench_size(work: Path, pairs: int, which: list[str], overrides: list[str], multi30k: Path) -> dict:
    train = build_corpus(work, pairs, multi30k)
    cache = work / f"cache-{pairs}"
    shutil.rmtree(cache, ignore_errors=True)
    runs = work / f"runs-{pairs}"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    env = {**os.environ, "NMT_CACHE_DIR": str(cache), "PYTHONWARNINGS": "ignore"}
    args = [str(REPO / "recipes/multi30k_de_en/quick.yaml"), "--data-root", str(multi30k.parent),
            "--set", f"data.train={train}", "--set", "train.max_steps=5", "--set", "train.log_every=1",
            "--set", "data.test=[]", *(x for o in overrides for x in ("--set", o))]
    out = {"pairs": pairs, "text_mb": round(sum(Path(p).stat().st_size for p in train.split("|")) / 1e6)}
    for name in ("first", "second"):
        if name in which:
            out[name] = run([str(BIN / "nmt-train"), *args, "--run-dir", str(runs / name)], runs / name, env, 1, name)
            out["cache_mb"] = round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e6)
    if "resume" in which:
        resume = [str(BIN / "nmt-train"), str(runs / "second" / "config.yaml"), "--run-dir", str(runs / "second"),
                  "--resume", "--set", "train.max_steps=10"]
        out["resume"] = run(resume, runs / "second", env, 6, "resume")
    if "ddp" in which:
        shutil.rmtree(cache, ignore_errors=True)
        launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", str(BIN / "nmt-train")]
        env_ddp = {**env, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        out["ddp"] = run([*launch, *args, "--run-dir", str(runs / "ddp")], runs / "ddp", env_ddp, 1, "ddp")
    return out


def table(results: list[dict]) -> str:
    rows = ["| pairs | text MB | cache MB | run | to 1st update, s | to last update, s | total, s | peak RSS, GB "
            "| peak anonymous, GB | splits prepared |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name in ("first", "second", "resume", "ddp"):
            if name in r:
                f = r[name]
                cells = [f"{r['pairs']:,}", r["text_mb"], r.get("cache_mb", ""), name, f["to_first_update_s"],
                         f["to_last_update_s"], f["total_s"], f["peak_rss_gb"], f["peak_anon_gb"],
                         f["prepared_splits"]]
                rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the corpora, caches and runs (GBs; not the repo)")
    parser.add_argument("--sizes", default="100000,4060000", help="corpus sizes in pairs, comma-separated")
    parser.add_argument("--runs", default="first,second,resume",
                        help="which runs, in this order: first, second, resume (needs second), ddp (a 2-process "
                             "CPU DDP run with a fresh cache)")
    parser.add_argument("--data-root", help="folder that holds multi30k/ (default: ../shared/data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more overrides for every run, e.g. --set data.valid_limit=100 (shorter validation)")
    parser.add_argument("--json", help="also write the figures (and the runs' log lines) as JSON")
    args = parser.parse_args()
    multi30k = Path(args.data_root) / "multi30k" if args.data_root else MULTI30K
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = [bench_size(work, int(n), args.runs.split(","), args.overrides, multi30k) for n in args.sizes.split(",")]
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
