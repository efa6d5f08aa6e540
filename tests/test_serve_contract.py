"""nmt-serve keeps the contract its /openapi.json states, as a client's tools read it: schemathesis (a
property-based API fuzzer) loads a real server's document, sends requests it allows and requests it
forbids to every operation, and runs all its checks on each answer: no 5xx, only documented statuses,
content types, headers and bodies, schema-valid requests accepted, schema-invalid ones refused, and with
an API key, no route that needs it answering without it. A failure fails the test with the fuzzer's
report: each case as a curl command.

The CLI runs it, not `schema.parametrize()`: that needs a schema at collection time (a server started
then), or `schemathesis.pytest.from_fixture`, which reads pytest's private `Node._nodeid`, gone in pytest
9.2 (schemathesis 4.32.5). The CLI runs
every phase too (coverage's boundary values, then fuzzing), each bounded by --max-examples, and
--generation-deterministic fixes what it sends."""

import subprocess
import sys
from pathlib import Path

from conftest import call, serving

# Per operation and phase. At 60 a document without the server's limits as bounds still passed (random
# integers are mostly small); 100 finds it, for about 6 s of fuzzing a server on 2 CPU cores.
MAX_EXAMPLES = 100
REQUEST_TIMEOUT_S = 30
RUN_TIMEOUT_S = 300

# The statuses a check accepts. Schema-valid requests may still be refused for what JSON Schema cannot
# state, and only with the two statuses that say so (both documented on /translate): 413, sizes summed
# over sentences, and 422, values that conflict with each other or with the model (nmt/serve/schema.py,
# MALFORMED, TOO_LARGE, CONFLICTING). A 400 on a schema-valid request is a document that says too little.
# "5xx" in both lists: a 500 is reported once, by not_a_server_error.
CHECKS = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "413", "422", "5xx"]
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "413", "422", "5xx"]
"""
API_KEY = "contract-test-key"


def fuzz(url: str, workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    """`schemathesis run` on `url` with all checks; its files (.hypothesis, .schemathesis) stay in `workdir`."""
    config = workdir / "schemathesis.toml"
    config.write_text(CHECKS)
    exe = Path(sys.executable).with_name("schemathesis")
    assert exe.exists(), "schemathesis is a dev dependency: pip install -c constraints.txt -e '.[dev]'"
    command = [str(exe), "--config-file", str(config), "run", url, "--checks", "all", "--workers", "1",
               "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--continue-on-failure",
               "--request-timeout", str(REQUEST_TIMEOUT_S), "--no-color",
               # Hypothesis's own timing of data generation: a loaded machine, not the contract.
               "--suppress-health-check", "too_slow", *flags]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def check(server, workdir: Path, headers: dict | None = None) -> None:
    """Fuzz `server`'s every operation; any failure fails the test with schemathesis's report."""
    status, document = call(server.url + "/openapi.json", headers=headers)
    assert status == 200, document
    operations = sum(len(methods) for methods in document["paths"].values())
    auth = [arg for name, value in (headers or {}).items() for arg in ("--header", f"{name}: {value}")]
    result = fuzz(server.url + "/openapi.json", workdir, *auth)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20_000:]
    assert f"{operations} selected / {operations} total" in report and f"Tested: {operations}" in report, report


def test_the_default_server_keeps_its_documented_contract(served, tmp_path):
    check(served, tmp_path)


def test_a_server_with_an_api_key_and_a_concurrency_limit_keeps_its_documented_contract(reverse_run, tmp_path):
    """The document then names the key's schemes, 401 on the routes that need it, and 503 for the
    limit; ignored_auth sends requests without the key to each of them."""
    (tmp_path / "key").write_text(API_KEY + "\n")
    flags = ["--api-key-file", str(tmp_path / "key"), "--limit-concurrency", "8"]
    with serving(reverse_run[0] / "run", tmp_path / "serve.log", *flags) as server:
        check(server, tmp_path, {"Authorization": f"Bearer {API_KEY}"})
