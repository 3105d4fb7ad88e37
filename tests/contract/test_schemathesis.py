"""The published contract holds: schemathesis ``run --checks all`` against a real ``bentoml serve`` of the tiny BART
finds no failure (issue 13: "A contract that holds").

``--checks all`` runs every check schemathesis has; those that find nothing to check here say so themselves:
- not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance: every answer, errors included, is one the document lists, with its schema
  (ErrorBody for every error status);
- negative_data_rejection / positive_data_acceptance: the request schemas carry exactly the service's limits
  (a body the schema refuses gets a 4xx, one it accepts gets a 200: min_new_tokens above max_new_tokens is
  accepted for that reason, serving/protocol.py);
- unsupported_method, allow_header_conformance: a wrong method gets 405 with ``Allow``;
- ignored_auth: with API keys on (the second run), every protected operation declares the bearer scheme and
  its 401; the check sends no key and a wrong one and expects 401;
- missing_required_header, object_level_authorization: the document declares no required header and no
  per-object access (one key sees everything), so they have nothing to try;
- use_after_free, ensure_resource_availability: stateful checks over resources created and deleted through
  links; the service has none (the stateful phase reports "not applicable").

Bounded for CI: a fixed seed and few examples per operation (about 50 s with API keys off, 30 s with them on,
on two cores: most of it the tiny model's generation for the accepted bodies); ``SCHEMATHESIS_MAX_EXAMPLES`` /
``SCHEMATHESIS_SEED`` widen or vary it locally.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import bentoml_serve

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "13")
API_KEY = "contract-test-key-0123456789abcdef"


@pytest.mark.parametrize("api_keys", [False, True], ids=["api keys off", "api keys on"])
def test_schemathesis_finds_no_failure(api_keys, tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, **({"SUMMARIZER_API_KEYS": API_KEY, "SUMMARIZER_METRICS_REQUIRE_KEY": "true"}
                                   if api_keys else {}))
    with bentoml_serve(tmp_path / "serve.log", env) as server:
        output, returncode = _schemathesis(server.url, tmp_path, MAX_EXAMPLES if not api_keys else MAX_EXAMPLES // 2,
                                           ["-H", f"Authorization: Bearer {API_KEY}"] if api_keys else [])
    summary = re.search(r"=+ SUMMARY =+(.*)", output, re.S)
    assert returncode == 0, "schemathesis found contract failures:\n" + (
        output[output.find("FAILURES"):] if "FAILURES" in output else output[-6000:])
    assert summary and "No issues found" in output, output[-3000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) >= 7, "every operation of the document was tested:\n" + summary.group(1)


def _schemathesis(url: str, tmp_path: Path, max_examples: int, extra: list[str]) -> tuple[str, int]:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [str(schemathesis), "run", f"{url}/docs.json", "--checks", "all", *extra,
               "--max-examples", str(max_examples), "--seed", SEED, "--workers", "2", "--request-timeout", "60",
               "--no-color", "--output-truncate", "false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    return done.stdout + done.stderr, done.returncode
