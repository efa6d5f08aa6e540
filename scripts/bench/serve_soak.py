#!/usr/bin/env python
"""Soak and fault figures of `nmt-serve` on 127.0.0.1: many clients with mixed settings, then the faults.

    scripts/bench/serve_soak.py RUN_DIR [--source FILE] [--clients 64] [--requests 10000]
                                [--max-seconds 300] [--modes on,off] [--faults] [--json OUT]

For each batching mode one `nmt-serve RUN_DIR` runs on a free port; --clients threads each hold a
keep-alive connection and send their share of --requests (one to three sentences of --source, mixed
beam/nbest/attention settings) until all are sent or --max-seconds pass. Reports the statuses (only
200 and the designed 503s are expected), p50/p95/p99 latency, sentences/s, and the server's RSS
after / before. With --faults (batching on): the issue's blow-up request (413, RSS flat), 200 clients
that hang up mid-request (no work done for them), a 10 MB body (413), slow clients, and SIGTERM under
load (every request answered or refused with 503; exit 0 within --drain-timeout). Every loop is
bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

from common import MULTI30K, health, run_threads, start_server

MIXES = [{}, {"beam_size": 1}, {"beam_size": 3, "nbest": 2}, {"attention": True}, {"beam_size": 5}]
# A bound on waiting for the server to exit after SIGTERM; the figure reported is the measured time.
EXIT_WAIT_S = 120
BLOW_UP = {"text": ["Ein Hund läuft über eine Wiese."] * 100, "beam_size": 16, "nbest": 16, "attention": True}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(port: int, body: bytes, timeout: float = 60, conn=None) -> tuple[int, bytes]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/translate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def soak(port: int, sentences: list[str], clients: int, requests: int, max_seconds: float) -> dict:
    """`clients` threads sending `requests` in all; statuses, latencies and sentences answered."""
    statuses: Counter = Counter()
    latencies: list[float] = []
    answered = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds
    per_client = -(-requests // clients)

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(per_client):
            if time.monotonic() > stop_at:
                break
            n = c * per_client + i
            lines = [sentences[(n + k) % len(sentences)] for k in range(1 + n % 3)]
            start = time.perf_counter()
            try:
                status, _ = post(port, json.dumps({"text": lines, **MIXES[n % len(MIXES)]}).encode(), conn=conn)
            except (OSError, http.client.HTTPException) as err:
                status, conn = type(err).__name__, http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                    answered[0] += len(lines)
        conn.close()

    wall = run_threads(client, clients)
    latencies.sort()
    pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)  # noqa: E731
    return {"clients": clients, "statuses": dict(statuses), "seconds": round(wall, 1),
            "sentences_per_s": round(answered[0] / wall, 1), "requests_per_s": round(sum(statuses.values()) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p95_ms": pick(0.95) if latencies else None, "p99_ms": pick(0.99) if latencies else None}


def hang_ups(port: int, count: int) -> None:
    """`count` clients that send a request and close their connection at once."""
    body = json.dumps({"text": ["Ein Hund läuft über eine Wiese."] * 3, "beam_size": 5}).encode()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))


def slow_client(port: int, body: bytes, pause_s: float) -> int:
    """A client that sends its body in two halves `pause_s` apart; the status it got."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[:len(body) // 2])
        time.sleep(pause_s)
        sock.sendall(body[len(body) // 2:])
        return int(sock.recv(64).split()[1])


def faults(args, sentences: list[str]) -> dict:
    process, port = start_server(args.run_dir, ["--drain-timeout", str(args.drain_timeout)],
                                 Path("/tmp/serve_soak_faults.log"))
    found: dict = {}
    try:
        before = rss_mb(process.pid)
        status, body = post(port, json.dumps(BLOW_UP).encode())
        found["blow_up"] = {"status": status, "detail": json.loads(body)["detail"],
                            "rss_mb": [round(before), round(rss_mb(process.pid))]}
        sent = health(port)["sentences"]
        hang_ups(port, 200)
        time.sleep(2)  # the server notices the hang-ups; nothing is measured against this pause
        after = health(port)
        found["hang_ups"] = {"clients": 200, "sentences_decoded_for_them": after["sentences"] - sent,
                             "dropped": after["dropped"], "healthy": after["status"] == "ok"}
        found["body_10mb"] = post(port, b'{"text": "' + b"w" * 10_000_000 + b'"}')[0]
        slow = [0] * 8
        threads = [threading.Thread(target=lambda i=i: slow.__setitem__(i, slow_client(
            port, json.dumps({"text": sentences[i]}).encode(), 3.0))) for i in range(len(slow))]
        for thread in threads:
            thread.start()
        found["during_slow_clients"] = soak(port, sentences, 4, 40, 30)["statuses"]
        for thread in threads:
            thread.join(60)
        found["slow_clients"] = Counter(slow)
        found["sigterm"] = sigterm_under_load(process, port, sentences)
    finally:
        if process.poll() is None:
            process.kill()
    return found


def sigterm_under_load(process, port: int, sentences: list[str]) -> dict:
    result: dict = {}
    loader = threading.Thread(target=lambda: result.update(soak(port, sentences, 32, 3200, 60)))
    loader.start()
    time.sleep(3)  # under load before the signal
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=EXIT_WAIT_S)
    exit_s = round(time.monotonic() - start, 1)
    loader.join(120)
    return {"exit_code": code, "exit_seconds": exit_s, "statuses": result.get("statuses")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--source", default=str(MULTI30K / "test_2016_flickr.de"))
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--modes", default="on,off", help="batching modes to soak")
    parser.add_argument("--drain-timeout", type=float, default=10)
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    sentences = [line for line in Path(args.source).read_text(encoding="utf-8").splitlines() if line.strip()]
    figures: dict = {"soak": []}
    for mode in args.modes.split(","):
        process, port = start_server(args.run_dir, [] if mode == "on" else ["--no-batching"],
                                     Path(f"/tmp/serve_soak_{mode}.log"))
        try:
            soak(port, sentences, 4, 40, 30)  # warm-up
            before = rss_mb(process.pid)
            row = soak(port, sentences, args.clients, args.requests, args.max_seconds)
            row.update(batching=mode, rss_after_before=round(rss_mb(process.pid) / before, 3))
            figures["soak"].append(row)
            print(json.dumps(row), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
    if args.faults:
        figures["faults"] = faults(args, sentences)
        print(json.dumps(figures["faults"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
