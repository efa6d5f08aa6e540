#!/usr/bin/env python
"""Throughput and latency of `nmt-serve` under concurrent clients, with request batching on and off,
against offline `nmt-translate` on the same sentences in the same run.

    scripts/bench/bench_serve.py RUN_DIR [--source ../shared/data/multi30k/test_2016_flickr.de]
                                 [--clients 1,8,32] [--requests 320] [--max-seconds 60] [--json OUT]
                                 [-- NMT_SERVE_FLAGS ...]

For each mode (batching on, then off) one `nmt-serve RUN_DIR` runs on a free port of 127.0.0.1; for
each client count, that many threads each hold one keep-alive connection and send their share of
--requests one after the other, each one sentence of --source (the checkpoint's decode settings), until
all are answered or --max-seconds pass. Reports sentences/s (answers / wall time) and p50/p95 latency,
and checks that both modes gave every sentence the same translation. Offline: `nmt-translate` on the
first --requests sentences, its wall time less its start-up (timed on one line), before and after the
servers run; the share is of their mean. Local
clients only; every loop is bounded in count and time. Targets (the issue's): batching costs one
client nothing; the most clients reach >= 60 % of offline sentences/s with p95 < 600 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import MULTI30K, health, run_threads, start_server


def run_clients(port: int, sentences: list[str], clients: int, per_client: int, max_seconds: float) -> dict:
    """`clients` threads x `per_client` sequential one-sentence requests; latencies and answers by sentence."""
    latencies: list[float] = []
    answers: dict[int, str] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(per_client):
            if time.monotonic() > stop_at:
                break
            index = (c * per_client + i) % len(sentences)
            start = time.perf_counter()
            conn.request("POST", "/translate", body=json.dumps({"text": sentences[index]}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = json.loads(response.read())["translations"][0]["text"]
            with lock:
                latencies.append(time.perf_counter() - start)
                answers[index] = text
        conn.close()

    wall = run_threads(client, clients)
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
            "sentences_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
            "answers": answers}


def offline(run_dir: str, sentences: list[str]) -> float:
    """Sentences/s of `nmt-translate RUN_DIR` on `sentences`, less its start-up (timed on one line)."""
    exe = Path(sys.executable).with_name("nmt-translate")

    def seconds(lines: list[str]) -> float:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as source:
            source.write("\n".join(lines) + "\n")
            source.flush()
            start = time.perf_counter()
            subprocess.run([str(exe), run_dir, "-i", source.name, "-o", os.devnull], check=True)
            return time.perf_counter() - start

    seconds(sentences[:1])  # the first start reads the files from disk: not counted
    return round(len(sentences) / (seconds(sentences) - seconds(sentences[:1])), 1)


def bench_mode(args, sentences: list[str], batching: bool) -> list[dict]:
    flags = args.serve_flags + ([] if batching else ["--no-batching"])
    process, port = start_server(args.run_dir, flags, Path(f"/tmp/bench_serve_{os.getpid()}.log"))
    try:
        run_clients(port, sentences, 4, 5, 30)  # warm-up: first calls allocate and tune
        rows = []
        for clients in args.clients:
            before = health(port)
            row = run_clients(port, sentences, clients, -(-args.requests // clients), args.max_seconds)
            after = health(port)
            row["batches"] = after["batches"] - before["batches"]
            row["batching"] = batching
            rows.append(row)
            print(f"batching {'on ' if batching else 'off'} {clients:3d} clients: {row['sentences_per_s']:7.1f} "
                  f"sentences/s, p50 {row['p50_ms']:7.1f} ms, p95 {row['p95_ms']:7.1f} ms, "
                  f"{row['requests']} requests in {row['batches']} batches", flush=True)
        return rows
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run or checkpoint directory to serve")
    parser.add_argument("--source", default=str(MULTI30K / "test_2016_flickr.de"),
                        help="one sentence per line; each request sends one")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=320, help="requests per client count, shared by the clients")
    parser.add_argument("--max-seconds", type=float, default=60, help="stop sending new requests after this")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("serve_flags", nargs="*", help="after --: flags for nmt-serve (default: its own)")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    sentences = [line for line in Path(args.source).read_text(encoding="utf-8").splitlines() if line.strip()]
    sent = sentences[:args.requests]  # what the largest client count sends, when the source has enough
    before = offline(args.run_dir, sent)  # before and after the servers: a shared machine's speed drifts
    rows = bench_mode(args, sentences, True) + bench_mode(args, sentences, False)
    on = {r["clients"]: r for r in rows if r["batching"]}
    off = {r["clients"]: r for r in rows if not r["batching"]}
    differ = sum(on[c]["answers"][i] != off[c]["answers"][i] for c in on for i in on[c]["answers"]
                 if i in off[c]["answers"])
    print("\n| batching | clients | requests | decoding batches | sentences/s | p50 latency | p95 latency |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r['batching'] else 'off'} | {r['clients']} | {r['requests']} | {r['batches']} | "
              f"{r['sentences_per_s']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms |")
    lo, hi = min(on), max(on)
    after = offline(args.run_dir, sent)
    offline_rate = round((before + after) / 2, 1)
    share = on[hi]["sentences_per_s"] / offline_rate
    print(f"| offline nmt-translate (before / after) | | {len(sent)} | | {before} / {after} | | |")
    print(f"\nbatching on: {hi} clients reach {100 * share:.0f} % of offline nmt-translate (target >= 60 %), "
          f"p95 {on[hi]['p95_ms']:.0f} ms (target < 600 ms); {lo} client(s): {on[lo]['sentences_per_s']} "
          f"sentences/s batching on, {off[lo]['sentences_per_s']} off. Translations differing between the "
          f"modes: {differ}")
    if args.json:
        for r in rows:
            del r["answers"]
        Path(args.json).write_text(json.dumps({"rows": rows, "offline": offline_rate, "share": share,
                                               "differ": differ}, indent=1))


if __name__ == "__main__":
    main()
