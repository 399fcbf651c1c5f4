"""Issue 5's acceptance check, automated against the real stack as `make stack` runs it
(`python -m serving.devstack`) with RATE_LIMIT_PER_KEY=5/second:

- a `predict` key (made with `valuation keys create`, as an operator would) gets 403 from /train
  with a message naming its role;
- 25 quick predictions with it meet at least one 429 with a positive integer Retry-After;
- schemathesis (its CLI, `st run`) against the stack's /openapi.json, authenticated as admin,
  finds no server error in any operation.

The 5/second limit is every key's but the admin's: the stack also gets RATE_LIMIT_PER_ROLE
'{"admin": null}' (conf/serving.yaml's rate_limit.per_role), so the admin key schemathesis uses
is not limited and the fuzz runs unpaced, while the `predict` key of the 429 check keeps the
5/second limit (the check asserts X-RateLimit-Limit: 5 on its 429s). The fuzz still asserts that
none of its requests was rate limited: every generated request reached its endpoint. It runs last
because the /train bodies it generates queue training jobs, which only the stack's stop clears.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serving.api.schemas import SPEC_BEST_MODEL_BODY, SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from tests.support.stack import RunningStack, champion_through_api, operator_key

pytestmark = pytest.mark.slow

RATE_LIMIT = 5  # per second, as in the acceptance check
QUICK_REQUESTS = 25
KEY_KNOWN_TIMEOUT_S = 120  # the proxy re-reads the key table every vault.refresh_s (15 s)
FUZZ_EXAMPLES = 15  # per operation and phase; bounded so the run stays a few minutes
# The specification's training body on the synthetic sample (CI has no client data).
SAMPLE_TRAIN_BODY = {**SPEC_TRAIN_BODY,
                     "db_config": {"db_type": "sample", "db_config": {"n_train": 800, "n_test": 200}}}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    # Admin keys unlimited (the fuzz's), the others at RATE_LIMIT (the predict key's).
    return {"RATE_LIMIT_PER_KEY": f"{RATE_LIMIT}/second",
            "RATE_LIMIT_PER_ROLE": json.dumps({"admin": None})}


@pytest.fixture(scope="module")
def predict_key(stack: RunningStack, stack_client: httpx.Client) -> str:
    """A `predict` key created with the operator's CLI against the stack's Vault, once the proxy
    knows it (until its next key-table refresh it answers 401)."""
    key = operator_key(stack, "acceptance", "predict")
    deadline = time.monotonic() + KEY_KNOWN_TIMEOUT_S
    # /train refuses this role before counting the request, so waiting costs no rate budget.
    while stack_client.post("/train", json=SAMPLE_TRAIN_BODY, headers=stack.headers(key)).status_code == 401:
        assert time.monotonic() < deadline, "the proxy never learnt the new key"
        time.sleep(1)
    return key


@pytest.fixture(scope="module")
def champion(stack: RunningStack, stack_client: httpx.Client) -> str:
    """A served champion, trained through the API, so /predict and /ready answer 200 (the state
    after `make train`); without one they answer 503 by design, which schemathesis reports."""
    return champion_through_api(stack_client, stack, SAMPLE_TRAIN_BODY, SPEC_BEST_MODEL_BODY,
                                SPEC_PREDICT_BODY)


def test_a_predict_key_gets_403_from_train_naming_its_role(
    stack: RunningStack, stack_client: httpx.Client, predict_key: str
):
    answer = stack_client.post("/train", json=SAMPLE_TRAIN_BODY, headers=stack.headers(predict_key))
    assert answer.status_code == 403, answer.text
    detail = answer.json()["detail"]
    assert "predict" in detail and "train" in detail, detail
    assert predict_key not in answer.text


def test_quick_predictions_meet_429_with_retry_after(
    stack: RunningStack, stack_client: httpx.Client, predict_key: str, champion: str
):
    def predict(_: int) -> httpx.Response:
        return stack_client.post("/predict", json=SPEC_PREDICT_BODY, headers=stack.headers(predict_key))

    # All at once: on a busy machine one-by-one requests could each fall in their own window.
    with ThreadPoolExecutor(max_workers=QUICK_REQUESTS) as pool:
        answers = list(pool.map(predict, range(QUICK_REQUESTS)))

    codes = [answer.status_code for answer in answers]
    limited = [answer for answer in answers if answer.status_code == 429]
    served = [answer for answer in answers if answer.status_code == 200]
    assert limited, f"no 429 in {QUICK_REQUESTS} quick requests: {codes}"
    assert len(limited) + len(served) == QUICK_REQUESTS, codes  # nothing else, no 5xx
    assert served, codes  # the limit lets the first requests of a window through
    for answer in served:
        assert answer.json()["model_version"] == champion
    for answer in limited:
        retry_after = answer.headers.get("Retry-After", "")
        assert retry_after.isdigit() and int(retry_after) > 0, answer.headers
        assert answer.headers["X-RateLimit-Limit"] == str(RATE_LIMIT)
        assert "rate limit" in answer.json()["detail"]


def test_schemathesis_finds_no_server_error(
    stack: RunningStack, champion: str, tmp_path: Path
):
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/openapi.json",
         "--header", f"X-API-Key: {stack.api_key}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--workers", "1", "--max-examples", str(FUZZ_EXAMPLES),
         "--report", "json", "--report-json-path", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False,
    )
    output = run.stdout[-6000:] + run.stderr[-2000:]
    assert report.exists(), output
    result = json.loads(report.read_text())
    assert result["failures"] == [] and result["errors"] == [], output
    assert run.returncode == 0 and result["exit_code"] == 0, output
    operations = result["operations"]
    assert operations["total"] >= 8 and operations["tested"] == operations["total"], operations
    assert result["test_cases"]["generated"] > 0
    assert result["warnings"]["rate_limited"] == [], output  # the fuzz reached every endpoint
    assert stack.api_key not in run.stdout + run.stderr  # schemathesis filters the header
