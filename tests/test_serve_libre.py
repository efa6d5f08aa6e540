"""LibreTranslate's API and several pairs in one nmt-serve: the real libretranslatepy client against a
real server of two tiny models (src -> tgt and tgt -> src), each answer equal to our own API's; /detect
and `source: auto` against one of two models with real codes (de -> fr, en -> fr); and the
middleware's refusals in the shape of the API a request speaks."""

import functools
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import call, run_cli, serving

libretranslatepy = pytest.importorskip("libretranslatepy", reason="a dev dependency: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def two_way(reverse_run, backward_run, tmp_path_factory):
    forward, backward = reverse_run[0] / "run", backward_run[0] / "run"
    log = tmp_path_factory.mktemp("two-way") / "serve.log"
    with serving(f"src-tgt={forward}", log, f"tgt-src={backward}") as server:
        yield server


def ours(url: str, lines: list[str], source: str, target: str, **settings) -> list[dict]:
    status, answer = call(url + "/translate", {"text": lines, "source": source, "target": target, **settings})
    assert status == 200, answer
    return answer["translations"]


def post(url: str, data: bytes, content_type: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_libretranslatepy_lists_the_languages_and_translates_both_ways(two_way):
    client = libretranslatepy.LibreTranslateAPI(two_way.url)
    assert client.languages() == [{"code": "src", "name": "src", "targets": ["tgt"]},
                                  {"code": "tgt", "name": "tgt", "targets": ["src"]}]
    there = client.translate("w1 w2 w3", "src", "tgt")
    assert there == ours(two_way.url, ["w1 w2 w3"], "src", "tgt")[0]["text"]
    back = client.translate(there, "tgt", "src")
    assert back == ours(two_way.url, [there], "tgt", "src")[0]["text"]
    assert there.split() == ["v3", "v2", "v1"] and back.split() == ["w1", "w2", "w3"]  # the task, learnt


def test_an_unsupported_pair_and_a_missing_code_are_refused_in_libretranslates_shape(two_way):
    client = libretranslatepy.LibreTranslateAPI(two_way.url)
    with pytest.raises(urllib.error.HTTPError) as refused:
        client.translate("w1", "src", "src")
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {"error": "src to src is not supported; this server translates "
                                                         "src-tgt, tgt-src"}
    status, answer = call(two_way.url + "/translate", {"q": "w1", "target": "tgt"})
    assert status == 400 and answer == {"error": "source: required, as this server translates several pairs "
                                                 "(src-tgt, tgt-src)"}
    status, answer = call(two_way.url + "/translate", {"text": "w1"})  # ours too names the pair
    assert status == 400 and answer["detail"].startswith("source: required")


def test_auto_detects_among_the_sources_into_the_target_and_detect_needs_codes_it_knows(two_way):
    status, answer = call(two_way.url + "/translate", {"q": "w1 w2", "source": "auto", "target": "tgt"})
    assert status == 200 and answer == {"translatedText": ours(two_way.url, ["w1 w2"], "src", "tgt")[0]["text"],
                                        "detectedLanguage": {"confidence": 100.0, "language": "src"}}
    with pytest.raises(urllib.error.HTTPError) as refused:  # src and tgt are no language py3langid knows
        libretranslatepy.LibreTranslateAPI(two_way.url).detect("w1 w2")
    assert refused.value.code == 400 and "not among the identifier's languages" in json.loads(refused.value.read())[
        "error"]


def test_a_paragraph_is_translated_sentence_by_sentence_and_html_keeps_its_tags(two_way):
    from nmt.translate.paragraphs import segments

    paragraph = "w1 w2 w3. w4 w5.\nw6 w7 w8."
    parts = segments(paragraph, "src")
    assert len(parts.sentences) == 3
    expected = parts.join([t["text"] for t in ours(two_way.url, parts.sentences, "src", "tgt")])
    status, answer = call(two_way.url + "/translate", {"q": paragraph, "source": "src", "target": "tgt"})
    assert status == 200 and answer == {"translatedText": expected} and answer["translatedText"].count("\n") == 1
    fragment = '<p class="x">w1 w2 <b>w3 w4</b></p>'
    html = segments(fragment, "src", html=True)
    expected = html.join([t["text"] for t in ours(two_way.url, html.sentences, "src", "tgt")])
    status, answer = call(two_way.url + "/translate", {"q": fragment, "source": "src", "target": "tgt",
                                                        "format": "html"})
    assert status == 200 and answer == {"translatedText": expected}
    assert answer["translatedText"].startswith('<p class="x">') and "<b>" in expected and expected.endswith("</b></p>")


def test_json_form_and_query_string_get_the_same_answer(two_way):
    fields = {"q": "w4 w5", "source": "src", "target": "tgt"}
    expected = {"translatedText": ours(two_way.url, ["w4 w5"], "src", "tgt")[0]["text"]}
    assert call(two_way.url + "/translate", fields) == (200, expected)
    form = urllib.parse.urlencode(fields).encode()
    assert post(two_way.url + "/translate", form, "application/x-www-form-urlencoded") == (200, expected)
    assert post(two_way.url + "/translate?" + form.decode(), b"") == (200, expected)  # deep-translator's way
    listed = {**fields, "q": ["w4 w5", "w1"]}
    texts = [t["text"] for t in ours(two_way.url, ["w4 w5", "w1"], "src", "tgt")]
    assert call(two_way.url + "/translate", listed) == (200, {"translatedText": texts})


def test_lines_keep_their_newlines_and_alternatives_are_our_nbest(two_way):
    lines = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9"]
    expected = [t["text"] for t in ours(two_way.url, lines, "src", "tgt")]
    status, answer = call(two_way.url + "/translate", {"q": "\n".join(lines), "source": "src", "target": "tgt"})
    assert status == 200 and answer == {"translatedText": "\n".join(expected)}
    nbest = ours(two_way.url, ["w1 w2 w3"], "src", "tgt", nbest=3)[0]["nbest"]
    status, answer = call(two_way.url + "/translate", {"q": "w1 w2 w3", "source": "src", "target": "tgt",
                                                        "alternatives": 2})
    others = [h["text"] for h in nbest[1:] if h["text"] != nbest[0]["text"]]
    assert status == 200 and answer == {"translatedText": nbest[0]["text"], "alternatives": list(dict.fromkeys(others))}


def test_info_ready_and_metrics_are_per_pair(two_way):
    status, info = call(two_way.url + "/info")
    assert status == 200 and list(info["pairs"]) == ["src-tgt", "tgt-src"]
    assert (info["pairs"]["tgt-src"]["source_language"], info["source_language"]) == ("tgt", "src")
    status, ready = call(two_way.url + "/ready")
    assert status == 200 and set(ready["pairs"]) == {"src-tgt", "tgt-src"}
    with urllib.request.urlopen(two_way.url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    assert 'nmt_serve_pair_sentences_total{pair="tgt-src"}' in text
    assert 'nmt_serve_pair_queue_sentences{pair="src-tgt"}' in text


def test_inconsistent_model_arguments_are_one_line_errors(reverse_run):
    run = str(reverse_run[0] / "run")
    for args, message in (([f"de-en={run}"], "that run translates src to tgt"),
                          ([f"src-tgt={run}", run], "give every model as PAIR=RUN[,RUN]"),
                          ([f"src-tgt={run}", f"src-tgt={run}"], "given twice"),
                          (["src-tgt="], "expected PAIR=RUN[,RUN]")):
        result = run_cli("nmt-serve", *args, "--port", "0")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_api_key_a_field_or_a_header_and_ignored_without_a_key_file(reverse_run, two_way, tmp_path):
    fields = {"q": "w1 w2", "api_key": "anything"}  # one pair: source and target may be left out
    assert call(two_way.url + "/translate", {**fields, "source": "src", "target": "tgt"})[0] == 200  # no key file
    (tmp_path / "key").write_text("s3cret\n")
    with serving(reverse_run[0] / "run", tmp_path / "serve.log", "--api-key-file", str(tmp_path / "key")) as server:
        client = libretranslatepy.LibreTranslateAPI(server.url, api_key="s3cret")
        assert client.translate("w1 w2", "src", "tgt") == ours_keyed(server.url, "w1 w2")
        assert client.languages()[0]["code"] == "src"  # open, as LibreTranslate's
        assert call(server.url + "/translate", fields) == (403, {"error": "Invalid API key"})
        assert call(server.url + "/translate", {"q": "w1 w2"}, headers={"X-API-Key": "s3cret"})[0] == 200
        assert call(server.url + "/translate", {"text": "w1 w2"})[0] == 401  # ours, as before


def ours_keyed(url: str, line: str) -> str:
    status, answer = call(url + "/translate", {"text": line}, headers={"X-API-Key": "s3cret"})
    assert status == 200, answer
    return answer["translations"][0]["text"]


# Written for these tests (no corpus line): one sentence each, plainly German or English.
GERMAN = "Der alte Hund schläft heute neben dem warmen Ofen in der Küche."
ENGLISH = "The children are playing football in the park after school today."


@pytest.fixture(scope="module")
def into_french(real_codes, tmp_path_factory):
    log = tmp_path_factory.mktemp("into-french") / "serve.log"
    with serving(f"de-fr={real_codes['de-fr']}", log, f"en-fr={real_codes['en-fr']}") as server:
        yield server


@functools.lru_cache(maxsize=1)
def _py3langid(codes: tuple[str, ...]):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    model.set_languages(list(codes))
    return model


def identifier(text: str, codes: list[str]) -> list[dict]:
    """py3langid itself, restricted to `codes`: the ranking and percentages /detect must answer."""
    model = _py3langid(tuple(codes))
    return [{"confidence": round(100 * p, 2), "language": code} for code, p in model.rank(text)]


def test_detect_answers_the_real_code_best_first_as_the_identifier_ranks_it(into_french):
    client = libretranslatepy.LibreTranslateAPI(into_french.url)
    for text, code in ((GERMAN, "de"), (ENGLISH, "en")):
        found = client.detect(text)
        assert found == identifier(text, ["de", "en"]) and found[0]["language"] == code
        assert all(0 <= d["confidence"] <= 100 for d in found) and found[0]["confidence"] > 50


def test_auto_picks_the_pair_of_the_detected_language_and_answers_as_ours(into_french):
    client = libretranslatepy.LibreTranslateAPI(into_french.url)
    for text, code in ((GERMAN, "de"), (ENGLISH, "en")):
        expected = ours(into_french.url, [text], code, "fr")[0]["text"]
        assert client.translate(text, "auto", "fr") == expected
        status, answer = call(into_french.url + "/translate", {"q": text, "source": "auto", "target": "fr"})
        assert status == 200 and answer == {"translatedText": expected,
                                            "detectedLanguage": identifier(text, ["de", "en"])[0]}


def test_host_and_origin_refusals_take_the_shape_of_the_api_a_request_speaks(two_way):
    libre = {"q": "w1", "source": "src", "target": "tgt"}
    form = urllib.parse.urlencode(libre)
    host = "Host 'evil.example' is not a name of this server (allow it with --allow-host)"
    origin = "Origin 'http://evil.example' may not use this server (allow it with --allow-origin)"
    for header, status, message in (({"Host": "evil.example"}, 400, host),
                                    ({"Origin": "http://evil.example"}, 403, origin)):
        for path, body, kind in (("/translate", json.dumps(libre).encode(), "application/json"),
                                 ("/translate", form.encode(), "application/x-www-form-urlencoded"),
                                 ("/translate?" + form, b"", None),  # deep-translator's way
                                 ("/detect", b"q=w1", "application/x-www-form-urlencoded")):
            assert post(two_way.url + path, body, kind, header) == (status, {"error": message}), path
        request = urllib.request.Request(two_way.url + "/languages", headers=header)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert (refused.value.code, json.loads(refused.value.read())) == (status, {"error": message})
        assert post(two_way.url + "/translate", b'{"text": "w1"}', "application/json", header) == (
            status, {"detail": message})  # ours, as before


def test_the_document_states_detect_only_where_the_identifier_knows_the_sources(two_way, into_french):
    assert "/detect" not in call(two_way.url + "/openapi.json")[1]["paths"]  # src, tgt: every request 400
    detect = call(into_french.url + "/openapi.json")[1]["paths"]["/detect"]["post"]
    assert detect["requestBody"]["required"] and set(detect["requestBody"]["content"]) == {
        "application/json", "application/x-www-form-urlencoded"}
    assert set(detect["responses"]) == {"200", "400", "403", "413", "500"}
    error = {"$ref": "#/components/schemas/LibreError"}
    assert all(detect["responses"][status]["content"]["application/json"]["schema"] == error
               for status in ("400", "403", "413", "500"))
