"""How nmt-serve forms and decodes batches: the cut of a batch into parts by length (checked against
a plain computation), parts decoded on threads of their own answering as one batch would, and the
next batch under load waiting for the clients just answered. In-process servers whose decoding a test
gates, as in test_serve_backpressure.py (whose helpers these are)."""

import random
import threading

import pytest

from conftest import call

pytest.importorskip("fastapi", reason="nmt-serve needs the serve extra: pip install -e '.[serve]'")
from nmt import Translator  # noqa: E402
from nmt.serve.parts import balanced_parts  # noqa: E402
from test_serve_backpressure import WAIT_S, Gated, health, hold_and_queue, in_process, send  # noqa: E402


class Recorded(Gated):
    """A gated Translator that also records each decoding call: (thread name, lines)."""

    def __init__(self, translator):
        super().__init__(translator)
        self.calls: list[tuple[str, list[str]]] = []

    def translate_hyps(self, lines, **options):
        self.calls.append((threading.current_thread().name, list(lines)))
        return super().translate_hyps(lines, **options)


@pytest.fixture(scope="module")
def translator(reverse_run):
    return Translator.load(reverse_run[0] / "run")


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_balanced_parts_cut_the_lengths_into_runs_of_about_equal_cost(parts):
    rng = random.Random(parts)
    lengths = [rng.choice([0, 1, 3, 8, 20, 45]) for _ in range(40)]
    groups = balanced_parts(lengths, parts)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert 1 <= len(groups) <= parts and all(groups)
    for longer, shorter in zip(groups, groups[1:]):  # runs of the length order, longest first
        assert min(lengths[i] for i in longer) >= max(lengths[i] for i in shorter)
    costs = [sum(lengths[i] ** 2 for i in group) for group in groups]
    assert max(costs) <= sum(costs) / parts + max(length ** 2 for length in lengths)


def test_a_batch_decoded_in_parts_answers_as_one_batch(translator):
    recorded = Recorded(translator)
    recorded.gate.set()
    rng = random.Random(0)
    lines = [" ".join(f"w{rng.randrange(1, 9)}" for _ in range(rng.randrange(1, 12))) for _ in range(15)]
    with in_process(recorded, decode_threads=3) as (url, _):
        status, answer = call(url + "/translate", {"text": lines, "beam_size": 3, "nbest": 2})
    assert status == 200
    whole = translator.translate_hyps(lines, beam_size=3, nbest=2)  # one batch, on this thread
    assert [[h["text"] for h in t["nbest"]] for t in answer["translations"]] == [
        translator.tokenizer.decode([h.tokens for h in hyps]) for hyps in whole]
    threads = {name for name, _ in recorded.calls}
    assert len(recorded.calls) == 3 and len(threads) == 3 and all(name.startswith("nmt-part") for name in threads)
    assert sorted(line for _, part in recorded.calls for line in part) == sorted(lines)


def test_under_load_the_next_batch_waits_for_the_clients_just_answered(translator):
    recorded = Recorded(translator)
    with in_process(recorded, batch_wait_ms=WAIT_S * 1000 / 2, decode_threads=1) as (url, _):
        first, queued, threads = hold_and_queue(url, recorded, "w3")
        again = []
        recorded.gate.set()
        threads[0].join(WAIT_S)
        assert first[0][0] == 200 and health(url)["queued"] == 1  # "w3" waits for the answered client
        threads.append(send(url, {"text": "w4 w5"}, again))  # ... which sends its next request
        for thread in threads:
            thread.join(WAIT_S)
        assert [sorted(lines) for _, lines in recorded.calls] == [["w1 w2"], ["w3", "w4 w5"]]
        assert [status for status, _ in queued + again] == [200, 200]


def test_an_idle_server_decodes_a_lone_request_at_once_and_a_gathering_batch_ends_at_its_bound(translator):
    recorded = Recorded(translator)
    with in_process(recorded, batch_wait_ms=WAIT_S * 1000, decode_threads=1) as (url, _):
        recorded.gate.set()
        assert call(url + "/translate", {"text": "w1"}, timeout=WAIT_S / 4)[0] == 200  # no wait for company
    recorded = Recorded(translator)
    with in_process(recorded, batch_wait_ms=50, decode_threads=1) as (url, _):
        _, _, threads = hold_and_queue(url, recorded, "w3")
        recorded.gate.set()
        for thread in threads:
            thread.join(WAIT_S)  # no client comes back: "w3" goes alone once the wait is over
        assert [lines for _, lines in recorded.calls] == [["w1 w2"], ["w3"]]
