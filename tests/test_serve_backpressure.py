"""Backpressure, deadlines, disconnects, 500s, the API key and the bounded drain, on a real port of an
in-process server whose decoding waits at a gate the test opens: the queue fills deterministically,
with no race against a model's speed."""

import contextlib
import http.client
import json
import logging
import signal
import socket
import threading
import time

import pytest

from conftest import call

pytest.importorskip("fastapi", reason="nmt-serve needs the serve extra: pip install -e '.[serve]'")
from nmt import Translator  # noqa: E402
from nmt.serve.app import create_app  # noqa: E402
from nmt.serve.config import ServeConfig  # noqa: E402
from nmt.serve.server import server_for  # noqa: E402

POLL_S = 0.02
WAIT_S = 60  # a bound on every wait: a hung test fails instead of hanging


class Gated:
    """A Translator whose decoding first waits for `gate`; `decoded` lists the lines it decoded."""

    def __init__(self, translator, fail: bool = False):
        self._translator, self.fail = translator, fail
        self.gate, self.entered, self.decoded = threading.Event(), threading.Event(), []

    def __getattr__(self, name):
        return getattr(self._translator, name)

    def translate_hyps(self, lines, **options):
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        if self.fail:
            raise RuntimeError("a bug in decoding")
        self.decoded.extend(lines)
        return self._translator.translate_hyps(lines, **options)


@pytest.fixture(scope="module")
def translator(reverse_run):
    return Translator.load(reverse_run[0] / "run")


@contextlib.contextmanager
def in_process(translator, api_key=None, **flags):
    """An app from create_app behind uvicorn on a free port of 127.0.0.1, in a thread."""
    cfg = ServeConfig(**flags)
    app = create_app(translator, cfg, {"model": "gated"}, api_key)
    server = server_for(app, access_log=False, keep_alive_s=5, drain_s=cfg.drain_timeout,
                        log_level="warning")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        if isinstance(translator, Gated):
            translator.gate.set()
        server.should_exit = True
        thread.join(WAIT_S)


def until(condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(POLL_S)


def send(url: str, body: dict, results: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(call(url + "/translate", body, WAIT_S)))
    thread.start()
    return thread


def hold_and_queue(url: str, gated: Gated, queued_text) -> tuple[list, list, list[threading.Thread]]:
    """Send "w1 w2" and wait until the worker holds it at the gate, then send `queued_text` and wait
    until it is queued: (the first's results, the queued one's, both threads)."""
    first, queued = [], []
    threads = [send(url, {"text": "w1 w2"}, first)]
    assert gated.entered.wait(WAIT_S)
    threads.append(send(url, {"text": queued_text}, queued))
    until(lambda: health(url)["queued"] == 1)
    return first, queued, threads


def health(url: str) -> dict:
    return call(url + "/health")[1]


def test_a_full_queue_answers_503_with_retry_after_and_ready_says_so(translator):
    gated = Gated(translator)
    with in_process(gated, max_queue=2) as (url, _):
        first, queued, threads = hold_and_queue(url, gated, ["w3", "w4"])
        request = http.client.HTTPConnection(url.removeprefix("http://"), timeout=WAIT_S)
        request.request("POST", "/translate", body=json.dumps({"text": "w5"}))
        response = request.getresponse()
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert json.loads(response.read())["detail"] == ("the queue holds 2 sentences; this server queues at "
                                                          "most 2")
        assert call(url + "/ready")[0] == 503
        gated.gate.set()
        for thread in threads:
            thread.join(WAIT_S)
        assert [status for status, _ in first + queued] == [200, 200]
        assert call(url + "/ready")[0] == 200


def test_requests_beyond_the_concurrency_limit_get_one_json_line_in_their_apis_shape_and_probes_answer(translator):
    gated = Gated(translator)
    with in_process(gated, limit_concurrency=1) as (url, _):
        first = []
        thread = send(url, {"text": "w1 w2"}, first)
        assert gated.entered.wait(WAIT_S)
        request = http.client.HTTPConnection(url.removeprefix("http://"), timeout=WAIT_S)
        request.request("POST", "/translate", body=json.dumps({"text": "w3"}))
        response = request.getresponse()
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert json.loads(response.read()) == {"detail": "1 requests are in flight; this server takes at most 1 "
                                                         "at once"}
        assert call(url + "/health")[0] == 200 and call(url + "/ready")[0] == 200
        message = {"error": "1 requests are in flight; this server takes at most 1 at once"}
        for path, body in (("/translate", {"q": "w3"}), ("/translate?q=w3", b""), ("/detect", {"q": "w3"})):
            assert call(url + path, body) == (429, message), path  # LibreTranslate's status and shape
        gated.gate.set()
        thread.join(WAIT_S)
        assert first[0][0] == 200 and call(url + "/translate", {"text": "w3"})[0] == 200
        assert 'nmt_serve_requests_total{route="/translate",status="503"} 1.0' in _metrics(url)


def test_a_request_past_its_deadline_gets_504_and_is_never_decoded(translator):
    gated = Gated(translator)
    with in_process(gated, timeout=0.5) as (url, _):
        first, late = [], []
        threads = [send(url, {"text": "w1 w2"}, first)]
        assert gated.entered.wait(WAIT_S)
        threads.append(send(url, {"text": "w7 w8 w9"}, late))
        for thread in threads:
            thread.join(WAIT_S)  # both pass their deadline while the gate is shut
        assert [(status, answer["detail"]) for status, answer in late] == [
            (504, "the request was not answered within this server's --timeout")]
        assert health(url)["dropped"] == 1
        gated.gate.set()
        until(lambda: not health(url)["decoding"])
    assert "w7 w8 w9" not in gated.decoded and gated.decoded == ["w1 w2"]


def test_a_client_that_hangs_up_is_dropped_before_decoding(translator):
    gated = Gated(translator)
    with in_process(gated) as (url, _):
        first = []
        thread = send(url, {"text": "w1 w2"}, first)
        assert gated.entered.wait(WAIT_S)
        leaving = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = json.dumps({"text": "w4 w5 w6"}).encode()
        leaving.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        until(lambda: health(url)["queued"] == 1)
        leaving.close()  # a real disconnect: the server sees the connection end
        until(lambda: health(url)["dropped"] == 1)
        assert health(url)["queued"] == 0
        gated.gate.set()
        thread.join(WAIT_S)
        assert first[0][0] == 200
        until(lambda: not health(url)["decoding"])
        assert 'nmt_serve_dropped_requests_total{reason="cancelled"} 1.0' in _metrics(url)
    assert gated.decoded == ["w1 w2"]


def test_an_internal_error_is_one_json_line_with_a_request_id_in_the_log_in_either_apis_shape(translator, caplog):
    gated = Gated(translator, fail=True)
    gated.gate.set()
    with caplog.at_level(logging.ERROR, logger="nmt.serve"), in_process(gated) as (url, _):
        status, answer = call(url + "/translate", {"text": "w1 w2"})
        assert status == 500 and set(answer) == {"detail", "request_id"} and answer["detail"] == "internal error"
        assert call(url + "/health")[0] == 200  # one failed request does not stop the worker
        status, libre = call(url + "/translate", {"q": "w1 w2"})
        logged = libre["error"].removeprefix("internal error (logged as request ").removesuffix(")")
        assert status == 500 and list(libre) == ["error"] and len(logged) == 16
    for request_id in (answer["request_id"], logged):
        assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_an_api_key_is_asked_for_and_compared(translator, tmp_path):
    from nmt.serve.guard import load_api_key

    (tmp_path / "key").write_text("s3cret\n")
    with in_process(translator, api_key=load_api_key(str(tmp_path / "key"))) as (url, _):
        status, answer = call(url + "/translate", {"text": "w1"})
        assert status == 401 and answer["detail"].startswith("an API key is required")
        assert call(url + "/translate", {"text": "w1"}, headers={"X-API-Key": "wrong"})[0] == 401
        assert call(url + "/translate", {"text": "w1"}, headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(url + "/info", headers={"X-API-Key": "s3cret"})[0] == 200
        assert call(url + "/health")[0] == 200 and call(url + "/ready")[0] == 200  # probes need no key


@pytest.mark.parametrize("key", ["clé", "tab\tkey"])
def test_a_key_no_http_header_can_carry_is_refused_at_start_up(tmp_path, monkeypatch, key):
    """A header arrives as bytes read as latin-1: a key outside printable ASCII would answer every request 401."""
    from nmt.errors import NmtError
    from nmt.serve.guard import API_KEY_ENV, load_api_key

    (tmp_path / "key").write_text(key + "\n", encoding="utf-8")
    with pytest.raises(NmtError, match="must be printable ASCII"):
        load_api_key(str(tmp_path / "key"))
    monkeypatch.setenv(API_KEY_ENV, key)
    with pytest.raises(NmtError, match=f"\\${API_KEY_ENV}: .*must be printable ASCII"):
        load_api_key("")


def test_shutdown_refuses_what_is_unanswered_after_the_drain_with_503(translator):
    gated = Gated(translator)
    with in_process(gated, drain_timeout=0.3) as (url, server):
        decoding, queued, threads = hold_and_queue(url, gated, "w3")
        server.handle_exit(signal.SIGTERM, None)
        for thread in threads:
            thread.join(WAIT_S)
        assert [(status, answer["detail"]) for status, answer in decoding + queued] == [
            (503, "the server shut down before answering (--drain-timeout)")] * 2
        assert server.batcher.abandoned
    assert "w3" not in gated.decoded


def _metrics(url: str) -> str:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=WAIT_S)
    connection.request("GET", "/metrics")
    return connection.getresponse().read().decode()
