"""What the benchmarks share: where the repository and the shared corpus are, the clock, a server.

Each script here imports this module as its sibling (Python puts a script's own folder first on
sys.path) and `nmt` as Python finds it: the installed package, or another checkout's with
`PYTHONPATH=OTHER_CHECKOUT` (bench_ab.py runs bench.py so, on two checkouts in turns).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nmt

REPO = Path(__file__).resolve().parents[2]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"  # Multi30k de-en as ../shared/data holds it


def nmt_code() -> str:
    """The checkout (or site-packages) whose `nmt` this process measures."""
    return str(Path(nmt.__file__).resolve().parents[1])


def clock() -> float:
    """CPU time of this process with one thread (robust to other load), else the wall clock."""
    import torch

    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run_dir: str, flags: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """`nmt-serve RUN_DIR FLAGS` on a free port of 127.0.0.1, once /health answers (at most 120 s)."""
    port = free_port()
    exe = Path(sys.executable).with_name("nmt-serve")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(exe), run_dir, "--port", str(port), *flags], stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"nmt-serve exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit("nmt-serve did not start in 120 s")


def health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    return json.loads(conn.getresponse().read())


def run_threads(client, count: int) -> float:
    """Run `client(index)` in `count` threads at once; the wall seconds until the last one ends."""
    threads = [threading.Thread(target=client, args=(c,)) for c in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start
