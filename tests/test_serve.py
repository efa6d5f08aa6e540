"""nmt-serve through a real server on 127.0.0.1: answers equal Translator's and nmt-translate's, bad input
is refused with its status and a one-line message, concurrent clients share batches, SIGTERM drains."""

import dataclasses
import http.client
import json
import re
import signal
import socket
import threading
import time

import numpy as np
import pytest

from conftest import call, free_port, run_cli, serving
from nmt import Translator
from nmt.errors import NmtError
from nmt.serve.config import ServeConfig

LIMITS = ServeConfig()  # `served` runs with the default flags


@pytest.fixture(scope="module")
def translator(reverse_run):
    return Translator.load(reverse_run[0] / "run")


def test_translations_keep_order_and_equal_translator(reverse_run, served, translator):
    lines = (reverse_run[1] / "test.src").read_text().splitlines()[:60]
    lines[7:7] = ["", "   "]
    for beam in (None, 3):
        status, answer = call(served.url + "/translate", {"text": lines, **({"beam_size": beam} if beam else {})})
        assert status == 200
        assert [t["text"] for t in answer["translations"]] == translator.translate(lines, beam_size=beam)
    assert answer["translations"][7] == {"text": "", "score": 0.0, "finished": True, "tokens": [], "source_tokens": [],
                                         "truncated": False}
    status, answer = call(served.url + "/translate", {"text": lines[0]})  # a string: a list of one
    assert status == 200 and [t["text"] for t in answer["translations"]] == translator.translate(lines[:1])
    status, answer = call(served.url + "/translate", {"text": ""})
    assert status == 200 and answer["translations"][0]["text"] == ""


def test_nbest_and_attention_equal_nmt_translate_json(reverse_run, served):
    root, corpus, _ = reverse_run
    lines = (corpus / "test.src").read_text().splitlines()[:12]
    cli = run_cli("nmt-translate", str(root / "run"), "--format", "json", "--attention", "--nbest", "3",
                  "--beam-size", "3", stdin="\n".join(lines) + "\n")
    assert cli.returncode == 0, cli.stderr
    expected = [json.loads(line)["nbest"] for line in cli.stdout.splitlines()]
    status, answer = call(served.url + "/translate", {"text": lines, "nbest": 3, "beam_size": 3, "attention": True})
    assert status == 200 and len(answer["translations"]) == len(lines)
    for line, got, want in zip(lines, answer["translations"], expected):
        pieces = got["source_tokens"]
        assert pieces[-1] == "</s>" and "".join(pieces[:-1]).replace("▁", " ").strip() == line
        # The best hypothesis's weights are sent once, in nbest[0].
        assert "attention" not in got and got["truncated"] is False
        assert {k: v for k, v in got.items() if k not in ("nbest", "source_tokens", "truncated")} == {
            k: v for k, v in got["nbest"][0].items() if k != "attention"}
        assert [h["text"] for h in got["nbest"]] == [h["text"] for h in want]
        assert [h["tokens"] for h in got["nbest"]] == [h["tokens"] for h in want]
        np.testing.assert_allclose([h["score"] for h in got["nbest"]], [h["score"] for h in want], atol=2e-4)
        for hyp, ref in zip(got["nbest"], want):
            weights = np.array(hyp["attention"])
            assert weights.shape == np.array(ref["attention"]).shape
            assert weights.shape == (len(hyp["tokens"]) + hyp["finished"], len(got["source_tokens"]))
            np.testing.assert_allclose(weights, ref["attention"], atol=1e-4)
            np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-4)  # a distribution over the source


BAD = [
    (b'{"text": ', 400, "malformed JSON: Expecting value"),
    (b'\xff\xfe{', 400, "malformed JSON"),
    (b"[" * 100_000, 400, "malformed JSON: nested too deeply"),
    (b'["w1"]', 400, 'expected a JSON object such as {"text": "..."}, got ["w1"]'),
    (b"{}", 400, "text: required"),
    (b'{"text": 5}', 400, "text: expected a string or a list of strings, got 5"),
    (b'{"text": ["w1", null]}', 400, "text[1]: expected a string, got null"),
    (b'{"text": "w1", "beam": 2}', 400, "beam: unknown setting; did you mean beam_size?"),
    (b'{"text": "w1", "colour": 2}', 400, "colour: unknown setting; known: text, beam_size, nbest"),
    (b'{"text": "w1", "a\\nb": 2}', 400, '"a\\nb": unknown setting; known: text'),
    (b'{"text": "w1", "beam_size": 0}', 400, "beam_size: input should be greater than or equal to 1, got 0"),
    (b'{"text": "w1", "beam_size": "5"}', 400, 'beam_size: input should be a valid integer, got "5"'),
    (b'{"text": "w1", "attention": "yes"}', 400, "attention: input should be a valid boolean"),
    (b'{"text": "w1", "length_penalty": -1}', 400, "length_penalty: input should be greater than or equal to 0"),
    (json.dumps({"text": "w1", "beam_size": LIMITS.max_beam_size + 1}).encode(), 400,
     f"beam_size: at most {LIMITS.max_beam_size} on this server, got {LIMITS.max_beam_size + 1}"),
    (b'{"text": "w1", "nbest": 3, "beam_size": 2}', 422, "nbest: 3 needs beam_size of at least 3, got 2"),
    (b'{"text": "w1", "beam_size": 2.5}', 400, "beam_size: input should be a valid integer, got 2.5"),
    (json.dumps({"text": ["w1"] * (LIMITS.max_sentences + 1)}).encode(), 413,
     f"{LIMITS.max_sentences + 1} sentences; this server takes at most {LIMITS.max_sentences} per request"),
    (json.dumps({"text": "w1 " * (LIMITS.max_chars // 3 + 1)}).encode(), 413,
     f"{3 * (LIMITS.max_chars // 3 + 1)} characters; this server takes at most {LIMITS.max_chars}"),
]


@pytest.mark.parametrize("body,status,message", BAD, ids=[f"{s}-{m[:30]}" for _, s, m in BAD])
def test_bad_requests_get_their_status_and_one_line(served, body, status, message):
    got_status, answer = call(served.url + "/translate", body)
    assert (got_status, answer["detail"][:len(message)]) == (status, message)
    assert "\n" not in answer["detail"]


# The longest body a request within --max-chars can need: its characters spelled as JSON escapes, one
# outside the Basic Multilingual Plane as two (a surrogate pair: 12 bytes), as json.dumps spells it.
LONGEST = b'{"text": "' + b"\\ud83d\\ude42" * LIMITS.max_chars + b'"}'


def body_limit(served) -> int:
    """The limit that a request declaring a body of 1 GB (and sending none) is refused by at once."""
    conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", "/translate")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders()
    response = conn.getresponse()
    detail = json.loads(response.read())["detail"]
    conn.close()
    found = re.fullmatch(r"request body of 1000000000 bytes; this server takes at most (\d+)", detail)
    assert response.status == 413 and found, detail
    return int(found[1])


def test_a_body_within_max_chars_is_never_refused_for_its_bytes(served):
    assert json.loads(LONGEST)["text"] == "\U0001f642" * LIMITS.max_chars  # max_chars characters
    assert body_limit(served) >= len(LONGEST)
    status, answer = call(served.url + "/translate", LONGEST)
    assert status == 200 and len(answer["translations"]) == 1


def test_a_chunked_body_over_the_limit_is_refused_while_read(served, translator):
    limit = body_limit(served)
    conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=30)
    chunks = (b'{"text": "' if i == 0 else b"w" * 10_000 for i in range(limit // 10_000 + 2))
    conn.request("POST", "/translate", body=chunks, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["detail"] == f"request body over {limit} bytes"
    conn.close()
    # The server is unharmed and still answers correctly.
    status, answer = call(served.url + "/translate", {"text": ["w1 w2 w3"]})
    assert status == 200 and answer["translations"][0]["text"] == translator.translate(["w1 w2 w3"])[0]


def test_health_info_and_openapi(served, translator):
    status, health = call(served.url + "/health")
    assert status == 200 and health["status"] == "ok" and health["decoding"] is False
    status, info = call(served.url + "/info")
    assert status == 200
    assert (info["source_language"], info["target_language"]) == ("src", "tgt")
    assert info["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert info["decode"] == dataclasses.asdict(translator.cfg.decode)  # the checkpoint's, not the defaults
    assert info["architecture"] == dataclasses.asdict(translator.cfg.model)
    assert set(info["limits"]) == {"max_sentences", "max_chars", "max_beam_size", "max_length_penalty",
                                   "max_hypotheses", "max_attention", "max_queue", "timeout"}
    assert info["limits"] == {key: getattr(LIMITS, key) for key in info["limits"]}
    batching = {"enabled": LIMITS.batching, "wait_ms": LIMITS.batch_wait_ms, "sentences": LIMITS.batch_sentences}
    assert {key: info["batching"][key] for key in batching} == batching and info["batching"]["decode_threads"] >= 1
    status, schema = call(served.url + "/openapi.json")
    post = schema["paths"]["/translate"]["post"]
    assert {"200", "400", "403", "413", "422", "500", "503", "504"} <= set(post["responses"])
    assert "401" not in post["responses"] and "security" not in post  # no key asked for
    # Our body, or LibreTranslate's (tests/test_serve_libre.py): the routing rule is by their fields.
    body, libre = post["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert set(body["properties"]) == {"text", "beam_size", "nbest", "length_penalty", "attention", "alignments",
                                       "prefix", "source", "target"}
    assert set(libre["properties"]) == {"q", "source", "target", "format", "alternatives", "api_key"}
    fields, limits = body["properties"], info["limits"]  # this server's limits are the schema's bounds
    assert fields["nbest"]["maximum"] == fields["beam_size"]["anyOf"][0]["maximum"] == limits["max_beam_size"]
    assert fields["length_penalty"]["anyOf"][0]["maximum"] == limits["max_length_penalty"]
    assert fields["text"]["anyOf"][1]["maxItems"] == limits["max_sentences"]
    assert [shape["properties"]["text"]["type"] for shape in body["oneOf"]] == ["string", "array"]
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [
        "text/plain; version=1.0.0; charset=utf-8"]  # what prometheus-client's text format is served as


def test_32_clients_share_batches_and_get_their_own_answers_in_order(reverse_run, served, translator):
    clients, per_client = 32, 10
    lines = (reverse_run[1] / "train.src").read_text().splitlines()[:clients * per_client]
    expected = translator.translate(lines)
    answers: dict[int, list[str]] = {}
    before = call(served.url + "/health")[1]

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=30)  # keep-alive
        got = []
        for i in range(per_client):
            conn.request("POST", "/translate", body=json.dumps({"text": lines[c * per_client + i]}))
            got.append(json.loads(conn.getresponse().read())["translations"][0]["text"])
        answers[c] = got
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert time.monotonic() - start < 120 and len(answers) == clients
    for c in range(clients):
        assert answers[c] == expected[c * per_client:(c + 1) * per_client]
    after = call(served.url + "/health")[1]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == clients * per_client and after["sentences"] - before["sentences"] == requests
    assert batches < requests / 2, (batches, requests)  # concurrent requests were decoded together


def test_health_answers_during_a_long_batch_and_sigterm_answers_in_flight_requests(reverse_run, tmp_path, translator):
    lines = (reverse_run[1] / "train.src").read_text().splitlines()[:1500] * 2
    result = {}
    with serving(reverse_run[0] / "run", tmp_path / "serve.log", "--max-sentences", "5000",
                 "--max-chars", "200000", "--max-hypotheses", "5000", "--timeout", "0") as server:
        body = {"text": lines, "beam_size": 8}
        thread = threading.Thread(target=lambda: result.update(answer=call(server.url + "/translate", body, 120)))
        thread.start()
        deadline = time.monotonic() + 60
        while True:
            health = call(server.url + "/health", timeout=10)[1]
            if health["decoding"] or not thread.is_alive():
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health["decoding"], "the long batch ended before /health saw it"
        # The event loop stays free while the worker thread decodes: a blocked loop would answer only
        # once the batch is done, with decoding false. (Latency is measured by scripts/bench_serve.py,
        # not bounded here: a loaded machine must not fail the suite.)
        for _ in range(5):
            assert call(server.url + "/health", timeout=30)[1]["decoding"]
        server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        assert server.process.wait(timeout=60) == 0
    status, answer = result["answer"]
    assert status == 200 and len(answer["translations"]) == len(lines)
    sample = slice(0, 1500, 50)
    assert [t["text"] for t in answer["translations"][sample]] == translator.translate(lines[sample], beam_size=8)
    assert [t["text"] for t in answer["translations"][:1500]] == [t["text"] for t in answer["translations"][1500:]]


def test_command_line_errors_are_one_line_and_exit_2(reverse_run):
    run = str(reverse_run[0] / "run")
    out = run_cli("nmt-serve", run, str(reverse_run[0] / "no-such-run"))
    assert out.returncode == 2 and "no-such-run" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("nmt-serve", run, "--batch-sentences", "0")
    assert out.returncode == 2 and out.stderr.strip() == "error: --batch-sentences: 0 is below the minimum 1"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("nmt-serve", run, "--port", str(port))
    assert out.returncode == 2 and f"error: 127.0.0.1:{port}: cannot listen" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("nmt-serve", "--help")
    for flag in ("--host", "--port", "--batch-wait-ms", "--batch-sentences", "--no-batching", "--decode-threads",
                 "--max-sentences", "--max-chars", "--max-beam-size", "--limit-concurrency", "--device", "--dtype",
                 "--access-log", "ensemble", "int8"):
        assert flag in out.stdout
    # A --no-X flag says what its absence does; "(default: True)" beside it read backwards.
    no_batching = out.stdout.split("--no-batching ")[1].split("\n  --")[0]
    assert "on by default" in no_batching and "default: True" not in no_batching


def test_an_ensemble_is_served(reverse_run, tmp_path):
    """Two RUN_DIRs serve their ensemble (of a model with itself: exactly the model's output)."""
    root, corpus, _ = reverse_run
    run = root / "run"
    lines = (corpus / "test.src").read_text().splitlines()[:12]
    with serving(run, tmp_path / "serve.log", str(run)) as server:
        status, info = call(server.url + "/info")
        assert status == 200 and info["ensemble"] == 2 and info["model"] == "run + run" and info["dtype"] == "fp32"
        status, answer = call(server.url + "/translate", {"text": lines, "beam_size": 3})
    assert status == 200
    alone = Translator.load(run, device="cpu").translate(lines, beam_size=3)
    assert [t["text"] for t in answer["translations"]] == alone


def test_int8_is_served_as_translator_loads_it_or_refused_at_start_up_alike(reverse_run, tmp_path):
    """--dtype int8 serves what Translator.load(dtype="int8") translates; where int8 is not faster than
    fp32 on this CPU (on a model this small, quantizing costs more than the products), nmt-serve stops
    before it listens, with Translator.load's one line."""
    root, corpus, _ = reverse_run
    run, lines = root / "run", (corpus / "test.src").read_text().splitlines()[:12]
    try:
        expected = Translator.load(run, device="cpu", dtype="int8").translate(lines, beam_size=3)
    except NmtError as err:
        out = run_cli("nmt-serve", str(run), "--port", str(free_port()), "--dtype", "int8")
        said = out.stderr.strip().splitlines()
        # The same line but for the milliseconds measured, which are the serving process's own.
        assert out.returncode == 2 and len(said) == 1 and said[0].endswith("; use --dtype fp32"), out.stderr
        assert said[0].startswith(f"error: {str(err).split(' takes ')[0]} takes "), (said, err)
        return
    with serving(run, tmp_path / "serve.log", "--dtype", "int8") as server:
        status, answer = call(server.url + "/translate", {"text": lines, "beam_size": 3})
    assert status == 200 and [t["text"] for t in answer["translations"]] == expected