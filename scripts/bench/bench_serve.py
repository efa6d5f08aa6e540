#!/usr/bin/env python
"""Throughput and latency of `nmt-serve` under concurrent clients, with request batching on and off,
against offline `nmt-translate` on the same sentences in the same run.

    scripts/bench/bench_serve.py RUN_DIR [--source ../shared/data/multi30k/test_2016_flickr.de]
                                 [--clients 1,8,32] [--requests 320] [--max-seconds 60] [--json OUT]
                                 [--apis ours,libre] [--modes on,off] [--no-offline] [-- NMT_SERVE_FLAGS ...]

For each mode (batching on, then off) one `nmt-serve RUN_DIR` runs on a free port of 127.0.0.1; for
each client count, that many threads each hold one keep-alive connection and send their share of
--requests one after the other, each one sentence of --source (the checkpoint's decode settings), until
all are answered or --max-seconds pass. Reports sentences/s (answers / wall time) and p50/p95 latency,
and checks that both modes gave every sentence the same translation. Offline: `nmt-translate` on the
first --requests sentences, its wall time less its start-up (timed on one line), before and after the
servers run; the share is of their mean. Local
clients only; every loop is bounded in count and time. Targets (the issue's): batching costs one
client nothing; the most clients reach >= 60 % of offline sentences/s with p95 < 600 ms.

--apis ours,libre loads each client count through both APIs in turn on the same server: ours
({"text": ...}) and LibreTranslate's /translate ({"q": ...}, its JSON body), and reports the compat
route's sentences/s as a share of ours at the most clients (target: within 5 % at 32) and whether
both gave every sentence the same translation. --modes on runs batching on only; --no-offline skips
nmt-translate.
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


# Per API: the body of a one-sentence request, and its translation read from the answer.
APIS = {"ours": (lambda text: {"text": text}, lambda answer: answer["translations"][0]["text"]),
        "libre": (lambda text: {"q": text}, lambda answer: answer["translatedText"])}


def run_clients(port: int, sentences: list[str], clients: int, per_client: int, max_seconds: float,
                api: str = "ours") -> dict:
    """`clients` threads x `per_client` sequential one-sentence requests through `api`; latencies and
    answers by sentence."""
    body_of, text_of = APIS[api]
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
            conn.request("POST", "/translate", body=json.dumps(body_of(sentences[index])),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = text_of(json.loads(response.read()))
            with lock:
                latencies.append(time.perf_counter() - start)
                answers[index] = text
        conn.close()

    wall = run_threads(client, clients)
    latencies.sort()
    return {"api": api, "clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
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
            for api in args.apis:  # in turns on one server: both see the same machine's drift
                before = health(port)
                row = run_clients(port, sentences, clients, -(-args.requests // clients), args.max_seconds, api)
                after = health(port)
                row["batches"] = after["batches"] - before["batches"]
                row["batching"] = batching
                rows.append(row)
                print(f"batching {'on ' if batching else 'off'} {api:5s} {clients:3d} clients: "
                      f"{row['sentences_per_s']:7.1f} sentences/s, p50 {row['p50_ms']:7.1f} ms, p95 "
                      f"{row['p95_ms']:7.1f} ms, {row['requests']} requests in {row['batches']} batches", flush=True)
        return rows
    finally:
        process.terminate()
        process.wait(timeout=60)


def differing(rows: list[dict], key) -> int:
    """Sentences translated differently by the two rows of each group of `key` (mode, or API)."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return sum(a["answers"][i] != b["answers"][i] for a, b in (g for g in groups.values() if len(g) == 2)
               for i in a["answers"] if i in b["answers"])


def summary(args, rows: list[dict], offline_rate: float | None) -> dict:
    """Print the targets' figures from `rows`; the figures, for --json."""
    figures: dict = {"offline": offline_rate}
    on = {r["clients"]: r for r in rows if r["batching"] and r["api"] == args.apis[0]}
    off = {r["clients"]: r for r in rows if not r["batching"] and r["api"] == args.apis[0]}
    hi, lo = max(args.clients), min(args.clients)
    if on and offline_rate:
        figures["share"] = on[hi]["sentences_per_s"] / offline_rate
        print(f"batching on: {hi} clients reach {100 * figures['share']:.0f} % of offline nmt-translate (target "
              f">= 60 %), p95 {on[hi]['p95_ms']:.0f} ms (target < 600 ms)")
    if on and off:
        figures["differ"] = differing([r for r in rows if r["api"] == args.apis[0]], lambda r: r["clients"])
        print(f"{lo} client(s): {on[lo]['sentences_per_s']} sentences/s batching on, {off[lo]['sentences_per_s']} "
              f"off. Translations differing between the modes: {figures['differ']}")
    if len(args.apis) == 2:
        rates = {r["api"]: r["sentences_per_s"] for r in rows if r["clients"] == hi and r["batching"] == bool(on)}
        figures["compat_share"] = rates[args.apis[1]] / rates[args.apis[0]]
        figures["differ_apis"] = differing(rows, lambda r: (r["batching"], r["clients"]))
        print(f"{args.apis[1]} at {hi} clients: {100 * figures['compat_share']:.1f} % of {args.apis[0]}"
              f" in sentences/s (target >= 95 % at 32). Translations differing between the APIs: "
              f"{figures['differ_apis']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run or checkpoint directory to serve")
    parser.add_argument("--source", default=str(MULTI30K / "test_2016_flickr.de"),
                        help="one sentence per line; each request sends one")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=320, help="requests per client count, shared by the clients")
    parser.add_argument("--max-seconds", type=float, default=60, help="stop sending new requests after this")
    parser.add_argument("--apis", default="ours", help="ours, libre, or both in turns (ours,libre)")
    parser.add_argument("--modes", default="on,off", help="batching on, off, or both (on,off)")
    parser.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True,
                        help="time nmt-translate on the same sentences, before and after the servers")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("serve_flags", nargs="*", help="after --: flags for nmt-serve (default: its own)")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.apis = args.apis.split(",")
    modes = args.modes.split(",")
    if not set(args.apis) <= set(APIS) or len(args.apis) > 2 or not set(modes) <= {"on", "off"}:
        parser.error("--apis takes ours and/or libre, --modes on and/or off")
    sentences = [line for line in Path(args.source).read_text(encoding="utf-8").splitlines() if line.strip()]
    sent = sentences[:args.requests]  # what the largest client count sends, when the source has enough
    before = offline(args.run_dir, sent) if args.offline else None  # before and after: a shared machine drifts
    rows = [row for mode in modes for row in bench_mode(args, sentences, mode == "on")]
    print("\n| batching | API | clients | requests | decoding batches | sentences/s | p50 latency | p95 latency |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r['batching'] else 'off'} | {r['api']} | {r['clients']} | {r['requests']} | "
              f"{r['batches']} | {r['sentences_per_s']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms |")
    after = offline(args.run_dir, sent) if args.offline else None
    offline_rate = round((before + after) / 2, 1) if args.offline else None
    if args.offline:
        print(f"| offline nmt-translate (before / after) | | | {len(sent)} | | {before} / {after} | | |")
    print()
    figures = summary(args, rows, offline_rate)
    if args.json:
        for r in rows:
            del r["answers"]
        Path(args.json).write_text(json.dumps({"rows": rows, **figures}, indent=1))


if __name__ == "__main__":
    main()
