#!/usr/bin/env python
"""Train rnn/lstm/gru from one recipe folder, evaluate with beam search, write RESULTS.md and a plot.

    scripts/reproduce.py recipes/multi30k_de_en [--scale cpu|full] [--cells rnn lstm gru]

Each model trains in RUNS/<corpus>-<scale>/<cell> (reused when finished, resumed when interrupted),
then the best checkpoint's test BLEU/chrF overall, for short and long sentences and per source-length
bucket (from the run's results.json) goes into RECIPE_DIR/RESULTS[.full].md and bleu_by_length[.full].png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nmt.checkpoint import load_checkpoint
from nmt.cli.plot import plot_bleu_by_length
from nmt.model.seq2seq import count_parameters

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench" / "bench.py"


def train_one(recipe_dir: Path, cell: str, scale: str, run_dir: Path, data_root: str | None,
              overrides: list[str]) -> None:
    """Train (or resume, or reuse) one model; the log goes beside the run directory."""
    if (run_dir / "results.json").exists():
        print(f"{cell}: finished run found in {run_dir}, reused")
        return
    configs = [str(recipe_dir / "full.yaml")] + ([str(recipe_dir / "cpu.yaml")] if scale == "cpu" else [])
    configs += ["--set", f"model.cell={cell}"] + [x for o in overrides for x in ("--set", o)]
    resume = (run_dir / "last").exists()
    if not resume and run_dir.exists():  # killed before its first checkpoint: nothing to resume, start again
        shutil.rmtree(run_dir)
    cmd = [str(Path(sys.executable).with_name("nmt-train")), *configs, "--run-dir", str(run_dir)]
    cmd += ["--resume"] if resume else []
    cmd += ["--data-root", data_root] if data_root else []
    print(f"{cell}: {'resuming' if resume else 'training'}: {' '.join(cmd)}", flush=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(run_dir.parent / f"{cell}.log", "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"{cell}: nmt-train failed with status {code}; see {run_dir.parent / f'{cell}.log'}")
    timing = {"wall_s": round(time.time() - start, 1), "resumed": resume}
    (run_dir / "timing.json").write_text(json.dumps(timing))


def throughput(run_dir: Path, steps: int, threads: int) -> dict:
    """Training speed measured apart from the run, by scripts/bench/bench.py's timed updates of the
    run's config, tokenizer and data, so that whatever else the machine did during a long run does not
    skew the comparison; cached in the run directory (`bench.json`)."""
    path = run_dir / "bench.json"
    if not path.exists():
        cmd = [sys.executable, str(BENCH), str(run_dir / "config.yaml"), "--tokenizer", str(run_dir),
               "--steps", str(steps), "--warmup", "10", "--no-floor", "--json", str(path)]
        subprocess.run(cmd + (["--threads", str(threads)] if threads else []), check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())["training"]


def summarize(cell: str, run_dir: Path, bench_steps: int, bench_threads: int | None = None) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    best = load_checkpoint(run_dir)
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [x["valid_bleu"] for x in logs if "valid_bleu" in x]
    timing = run_dir / "timing.json"
    split = next(k for k in results["test"] if k != "checkpoint_step")
    return {"cell": cell, "params": count_parameters(best.model), "bench_steps": bench_steps,
            "tok_s": throughput(run_dir, bench_steps, bench_threads or best.cfg.train.threads)["tgt_tokens_per_s"],
            "best_valid_bleu": max(valid), "best_step": best.meta["step"], "split": split,
            "test": results["test"][split], "cfg": best.cfg,
            "wall_s": json.loads(timing.read_text())["wall_s"] if timing.exists() else None}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({os.cpu_count()} cores){gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def kept_sections(path: Path) -> str:
    """The `## ` sections written by hand after the generated table (e.g. checkpoint averaging),
    which a new report keeps; the generated part has none."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n## ")
    return text[start:] if start >= 0 else ""


def write_report(recipe_dir: Path, scale: str, rows: list[dict], command: str) -> None:
    suffix = "" if scale == "cpu" else f".{scale}"
    cfg = rows[0]["cfg"]
    threshold = cfg.eval.short_long_threshold
    short, long = f"short (<= {threshold})", f"long (> {threshold})"
    base = next((r["tok_s"] for r in rows if r["cell"] == "rnn"), rows[0]["tok_s"])
    lines = [f"# {recipe_dir.name}: RNN vs LSTM vs GRU ({scale} scale)", "",
             f"Test split `{rows[0]['split']}`, best checkpoint by validation BLEU, beam {cfg.decode.beam_size} "
             f"(length penalty {cfg.decode.length_penalty}). Short/long: source sentences of at most / more than "
             f"{threshold} words. Training speed: target tokens/s over {rows[0]['bench_steps']} timed updates of the recipe's "
             "batches (`scripts/bench/bench.py`'s measurement, taken after training on an otherwise idle machine).", "",
             "| model | parameters | training speed (tgt tok/s) | relative to RNN | BLEU | short BLEU (n) "
             "| long BLEU (n) | chrF | best valid BLEU (step) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["test"]
        lines.append(f"| {r['cell']} | {r['params'] / 1e6:.2f}M | {r['tok_s']:.0f} | {r['tok_s'] / base:.2f}x "
                     f"| {fmt(t['all']['bleu'])} | {fmt(t[short]['bleu'])} ({t[short]['n']}) "
                     f"| {fmt(t[long]['bleu'])} ({t[long]['n']}) | {fmt(t['all']['chrf'])} "
                     f"| {fmt(r['best_valid_bleu'])} ({r['best_step']}) |")
    buckets = [k for k in rows[0]["test"] if k[0].isdigit()]
    lines += ["", "BLEU by source length (words), sentence counts in brackets:", "",
              "| model | " + " | ".join(f"{b} ({rows[0]['test'][b]['n']})" for b in buckets) + " |",
              "|---|" + "---|" * len(buckets)]
    for r in rows:
        lines.append(f"| {r['cell']} | " + " | ".join(fmt(r["test"][b]["bleu"]) for b in buckets) + " |")
    walls = ", ".join(f"{r['cell']} {r['wall_s'] / 60:.1f} min" for r in rows if r["wall_s"])
    lines += ["", f"![BLEU by source length](bleu_by_length{suffix}.png)", "",
              f"- Command: `{command}`", f"- Machine: {machine()}",
              f"- Date: {datetime.date.today().isoformat()}",
              f"- Wall time per model (training + evaluation): {walls or 'not recorded (reused runs)'}",
              f"- BLEU signature: `{rows[0]['test']['all']['bleu_signature']}`", ""]
    path = recipe_dir / f"RESULTS{suffix}.md"
    path.write_text("\n".join(lines) + kept_sections(path))
    plot_bleu_by_length({r["cell"]: [r["test"][b]["bleu"] for b in buckets] for r in rows}, buckets,
                        recipe_dir / f"bleu_by_length{suffix}.png",
                        f"{recipe_dir.name} ({scale} scale): test BLEU by source length")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe_dir", type=Path)
    parser.add_argument("--scale", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "reproduce")
    parser.add_argument("--data-root", help="passed on to nmt-train")
    parser.add_argument("--bench-steps", type=int, default=60, help="timed updates for the training speed")
    parser.add_argument("--bench-threads", type=int, help="threads for the timed updates (default: the recipe's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="passed on to nmt-train, e.g. train.threads=1 to train two recipes side by side")
    parser.add_argument("--no-report", action="store_true", help="train only; summarize later on an idle machine")
    args = parser.parse_args()
    recipe_dir = args.recipe_dir.resolve()
    runs = args.runs / f"{recipe_dir.name}-{args.scale}"
    for cell in args.cells:
        train_one(recipe_dir, cell, args.scale, runs / cell, args.data_root, args.overrides)
    if args.no_report:
        return
    rows = [summarize(cell, runs / cell, args.bench_steps, args.bench_threads) for cell in args.cells]
    command = " ".join([f"scripts/reproduce.py {args.recipe_dir} --scale {args.scale}",
                        *(f"--set {o}" for o in args.overrides)])
    write_report(recipe_dir, args.scale, rows, command)


if __name__ == "__main__":
    main()
