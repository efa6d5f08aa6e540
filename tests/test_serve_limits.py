"""nmt-serve's refusals through a real server on 127.0.0.1 (the shared `served` fixture, default flags):
unencodable text and non-finite numbers, bounds on the decode settings, the answer's budget, the Host
and Origin checks; and what it reports: truncation, /ready, /metrics, no /docs by default."""

import json
import urllib.request

import pytest

from conftest import call
from nmt.serve.config import ServeConfig

LIMITS = ServeConfig()  # `served` runs with the default flags
BLOW_UP = {"text": ["w1 w2 w3 w4 w5 w6 w7"] * 100, "beam_size": 16, "nbest": 16, "attention": True}
WIDE = {"text": ["w1 " * 60] * 100, "attention": True}  # 100 x 61 source x 101 rows at the output cap

REFUSED = [
    (b'{"text": "w1 \\ud800 w2"}', 400, "text: not valid Unicode (a lone surrogate at character 3)"),
    (b'{"text": ["w1", "\\udfff"]}', 400, "text[1]: not valid Unicode (a lone surrogate at character 0)"),
    (b'{"text": "w1", "\\ud800": 1}', 400, "a setting's name is not valid Unicode"),
    (b'{"text": "w1", "length_penalty": Infinity}', 400, "malformed JSON: Infinity is not a number"),
    (b'{"text": "w1", "length_penalty": NaN}', 400, "malformed JSON: NaN is not a number"),
    (b'{"text": "w1", "length_penalty": 1e400}', 400, "malformed JSON: 1e400 is out of range for a number"),
    (json.dumps({"text": "w1", "length_penalty": 2 * LIMITS.max_length_penalty, "beam_size": 4}).encode(), 400,
     f"length_penalty: at most {LIMITS.max_length_penalty} on this server"),
    (json.dumps({"text": "w1", "nbest": LIMITS.max_beam_size + 1}).encode(), 400,
     f"nbest: at most {LIMITS.max_beam_size} on this server, got {LIMITS.max_beam_size + 1}"),
    (json.dumps(BLOW_UP).encode(), 413,
     f"100 sentences x nbest 16 = 1600 hypotheses; this server answers at most {LIMITS.max_hypotheses}"),
    (json.dumps(WIDE).encode(), 413, "attention: up to "),
    # The weights alignments are made from cost the decoding worker as much, though none is sent.
    (json.dumps({**WIDE, "attention": False, "alignments": True}).encode(), 413, "alignments: up to "),
]


@pytest.mark.parametrize("body,status,message", REFUSED, ids=[f"{s}-{m[:30]}" for _, s, m in REFUSED])
def test_unencodable_non_finite_and_oversized_requests_are_refused_in_one_json_line(served, body, status, message):
    got_status, answer = call(served.url + "/translate", body)
    assert (got_status, answer["detail"][:len(message)]) == (status, message)
    assert "\n" not in answer["detail"] and set(answer) == {"detail"}


def test_the_blow_up_request_is_answered_within_the_budget_without_nbest(served):
    """The issue's 123 MB request, less its n-best: an answer no larger than its budget says,
    docs/serving.md's count of weights (per sentence: the output cap, max_len_a x source pieces +
    max_len_b, x the source pieces) at about 20 bytes of JSON each, within --max-attention."""
    request = {**BLOW_UP, "nbest": 1, "text": BLOW_UP["text"][:20]}
    with urllib.request.urlopen(urllib.request.Request(served.url + "/translate", json.dumps(request).encode()),
                                timeout=60) as response:
        raw = response.read()
    answer, decode = json.loads(raw), call(served.url + "/info")[1]["decode"]  # the model's own caps
    assert len(answer["translations"]) == 20
    budget = 0
    for t in answer["translations"]:
        columns = len(t["source_tokens"])
        cap = int(decode["max_len_a"] * columns) + decode["max_len_b"]
        assert len(t["attention"]) == len(t["tokens"]) + t["finished"] <= cap
        assert all(len(row) == columns for row in t["attention"])
        budget += cap * columns
    assert budget <= LIMITS.max_attention
    assert len(raw) <= 20 * budget, (len(raw), budget)


def test_a_long_input_says_it_was_truncated(served):
    status, answer = call(served.url + "/translate", {"text": ["w1 " * 6000, "w2 w3"]})
    assert status == 200
    long, short = answer["translations"]
    assert long["truncated"] is True and len(long["source_tokens"]) == 400 and long["source_tokens"][-1] == "</s>"
    assert short["truncated"] is False


def test_a_foreign_host_is_refused_with_400_and_the_own_names_are_served(served):
    port = served.url.rsplit(":", 1)[1]
    status, answer = call(served.url + "/translate", {"text": "w1"}, headers={"Host": f"evil.example:{port}"})
    assert status == 400 and answer["detail"] == (f"Host 'evil.example:{port}' is not a name of this server "
                                                  "(allow it with --allow-host)")
    for own in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert call(served.url + "/health", headers={"Host": own})[0] == 200


def test_a_foreign_origin_is_refused_with_403_whatever_the_content_type(served):
    for content_type in ("text/plain", "application/json"):
        status, answer = call(served.url + "/translate", b'{"text": "w1"}',
                              headers={"Origin": "http://evil.example", "Content-Type": content_type})
        assert status == 403 and answer["detail"].startswith("Origin 'http://evil.example' may not use this server")
    status, _ = call(served.url + "/translate", b'{"text": "w1"}', headers={"Origin": "null"})
    assert status == 403
    status, answer = call(served.url + "/translate", {"text": "w1"}, headers={"Origin": served.url})
    assert status == 200 and len(answer["translations"]) == 1  # the page, from its own origin


def test_ready_metrics_and_no_docs_by_default(served):
    status, ready = call(served.url + "/ready")
    assert status == 200 and ready["status"] == "ready"
    assert call(served.url + "/health")[1]["status"] == "ok"
    call(served.url + "/translate", {"text": ["w1 w2", "w3"]})
    call(served.url + "/translate", b"{}")
    text = _get(served.url + "/metrics")
    for name in ("nmt_serve_requests_total", "nmt_serve_sentences_total", "nmt_serve_batch_sentences_bucket",
                 "nmt_serve_queue_sentences", "nmt_serve_decode_seconds_bucket", "nmt_serve_request_seconds_bucket",
                 "nmt_serve_dropped_requests_total"):
        assert f"\n{name}" in text, name
    assert 'nmt_serve_requests_total{route="/translate",status="400"}' in text
    assert 'nmt_serve_dropped_requests_total{reason="timeout"} 0.0' in text
    assert call(served.url + "/docs")[0] == 404 and call(served.url + "/openapi.json")[0] == 200


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()
