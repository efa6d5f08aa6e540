"""decode.workers: batches decoded on several threads give each batch what it gives alone, in input order."""

import threading

import pytest
import torch

from conftest import run_cli
from nmt import Translator
from nmt.translate import decoding, speed_check
from nmt.translate.workers import Shares, shares

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_one_worker_per_cpu_thread_never_more_than_the_batches():
    assert shares(0, 10, CPU, cpu_threads=2) == Shares(2, 1)
    assert shares(0, 10, CPU, cpu_threads=8) == Shares(8, 1)
    assert shares(0, 1, CPU, cpu_threads=2) == Shares(1, 2)  # one batch keeps every thread
    assert shares(0, 3, CPU, cpu_threads=8) == Shares(3, 2)
    assert shares(0, 10, CUDA, cpu_threads=8) == Shares(1, 8)
    assert shares(4, 10, CPU, cpu_threads=2) == Shares(4, 1)  # asked for: given, at least one thread each
    assert shares(1, 10, CPU, cpu_threads=2) == Shares(1, 2)


@pytest.fixture
def one_torch_thread():
    """Every worker then runs torch on one thread, as the main thread does: the same kernels either way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def threads_seen(monkeypatch):
    """The names of the threads that ran a search."""
    seen, search = set(), decoding.search

    def recording(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return search(*args, **kwargs)

    monkeypatch.setattr(decoding, "search", recording)
    return seen


def shuffled_lines(corpus, n: int = 40) -> list[str]:
    lines = (corpus / "test.src").read_text().splitlines()[:n]
    return [lines[(7 * i) % n] for i in range(n)] + [""]  # lengths mixed, and an empty line


@pytest.mark.parametrize("settings", [{"beam_size": 1}, {"beam_size": 4, "nbest": 2},
                                      {"sampling": True, "nbest": 2}], ids=["greedy", "beam", "sampling"])
def test_workers_give_each_line_what_one_thread_gives(reverse_run, one_torch_thread, threads_seen, settings):
    root, corpus, _ = reverse_run
    translator, lines = Translator.load(root / "run", device="cpu"), shuffled_lines(corpus)
    alone = translator.translate_hyps(lines, batch_size=3, workers=1, **settings)
    assert threads_seen == {threading.current_thread().name}
    threads_seen.clear()
    parted = translator.translate_hyps(lines, batch_size=3, workers=3, **settings)
    assert len(threads_seen) > 1 and all(name.startswith("nmt-decode") for name in threads_seen)
    # Every worker runs the same one-thread kernels on the same batches: the same bits, in input order.
    assert [[(h.tokens, h.score, h.finished) for h in hyps] for hyps in parted] == \
           [[(h.tokens, h.score, h.finished) for h in hyps] for hyps in alone]


def test_workers_decode_under_the_translators_precision(reverse_run, monkeypatch):
    monkeypatch.setattr(speed_check, "SLOWER", float("inf"))  # the tiny model's bf16 would be refused here
    root, corpus, _ = reverse_run
    translator = Translator.load(root / "run", device="cpu", dtype="bf16")
    enabled, search = [], decoding.search

    def recording(*args, **kwargs):
        enabled.append(torch.is_autocast_enabled("cpu"))
        return search(*args, **kwargs)

    monkeypatch.setattr(decoding, "search", recording)
    translator.translate(shuffled_lines(corpus, 12), batch_size=2, workers=2)
    assert enabled and all(enabled)


def test_nmt_translate_takes_workers_and_refuses_a_bad_count(reverse_run):
    root, corpus, _ = reverse_run
    lines = shuffled_lines(corpus, 20)
    out = run_cli("nmt-translate", str(root / "run"), "--workers", "2", "--batch-size", "4",
                  stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split("\n")[:-1]) == len(lines) and out.stdout.split("\n")[-2] == ""
    out = run_cli("nmt-translate", str(root / "run"), "--workers", "-1", stdin="a\n")
    assert out.returncode == 2 and "--workers" in out.stderr and "Traceback" not in out.stderr
