"""API-key checks on every protected endpoint: 401, 403 by role, 503 when the store is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from serving.api.schemas import SPEC_BEST_MODEL_BODY, SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from serving.keys.records import generate_key
from serving.keys.vault_store import VaultKeyStore
from serving.vault import VaultCredentials, VaultSession
from tests.support.bao import BaoServer, start_bao
from tests.support.serving import queue_length

PROTECTED = [
    ("post", "/predict", SPEC_PREDICT_BODY),
    ("post", "/train", SPEC_TRAIN_BODY),
    ("get", "/job_status/0123456789abcdef", None),
    ("post", "/best_model", SPEC_BEST_MODEL_BODY),
    ("get", "/models", None),
    ("get", "/model_rules", None),
    ("get", "/jobs", None),
]


def _call(client, method, path, body, headers=None):
    kwargs = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(path, **kwargs)


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_key_is_401(client, method, path, body) -> None:
    answer = _call(client, method, path, body)
    assert answer.status_code == 401, answer.text
    assert "X-API-Key" in answer.json()["detail"]
    assert answer.headers["WWW-Authenticate"].startswith("ApiKey")
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_wrong_key_is_401(client, method, path, body) -> None:
    answer = _call(client, method, path, body, {"X-API-Key": "pv_not-a-key"})
    assert answer.status_code == 401, answer.text
    assert answer.json()["detail"] == "invalid API key"


def test_wrong_key_enqueues_nothing(client, redis_conn, api_settings) -> None:
    before = queue_length(redis_conn, api_settings)
    answer = client.post("/train", json=SPEC_TRAIN_BODY, headers={"X-API-Key": "wrong"})
    assert answer.status_code == 401
    assert queue_length(redis_conn, api_settings) == before


def test_the_env_key_is_admin_and_passes(client, auth) -> None:
    answer = client.get("/job_status/no-such-job", headers=auth)
    assert answer.status_code == 404  # authenticated, then the job is unknown


# --- roles and outages need the Vault-backed store: a real OpenBao dev server ------------------


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_bao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


def _vault_store(bao: BaoServer, **kwargs) -> VaultKeyStore:
    session = VaultSession(bao.addr, VaultCredentials(token=bao.root_token), timeout_s=1.0)
    options = {"kv_mount": "secret", "keys_path": f"api-tests/{uuid.uuid4().hex}",
               "cache_ttl_s": 60.0, "refresh_s": 15.0, "bootstrap_key": None, **kwargs}
    store = VaultKeyStore(session, **options)
    store.start()
    return store


@pytest.mark.slow
def test_roles_limit_what_a_key_may_do(make_client, bao, redis_conn, api_settings) -> None:
    store = _vault_store(bao)
    try:
        predict_key, _ = store.create("api-test-predictor", "predict")
        train_key, _ = store.create("api-test-trainer", "train")
        client = make_client(key_store=store)
        before = queue_length(redis_conn, api_settings)

        refused = client.post("/train", json=SPEC_TRAIN_BODY, headers={"X-API-Key": predict_key})
        assert refused.status_code == 403, refused.text
        assert "predict" in refused.json()["detail"] and "train" in refused.json()["detail"]
        assert queue_length(redis_conn, api_settings) == before

        promote = client.post("/best_model", json=SPEC_BEST_MODEL_BODY,
                              headers={"X-API-Key": train_key})
        assert promote.status_code == 403

        # A predict key gets past auth on /predict (503 here: nothing is served).
        served = client.post("/predict", json=SPEC_PREDICT_BODY, headers={"X-API-Key": predict_key})
        assert served.status_code == 503

        accepted = client.post("/train", json=SPEC_TRAIN_BODY, headers={"X-API-Key": train_key})
        assert accepted.status_code == 202, accepted.text
        assert queue_length(redis_conn, api_settings) == before + 1
    finally:
        store.close()


def test_a_key_created_after_the_proxy_started_works_on_its_first_request(
    make_client, bao
) -> None:
    keys_path = f"api-tests/{uuid.uuid4().hex}"
    proxy_store = _vault_store(bao, keys_path=keys_path)  # refresh_s=15: no periodic read in time
    operator = _vault_store(bao, keys_path=keys_path)  # what `valuation keys create` uses
    try:
        client = make_client(key_store=proxy_store)
        key, _ = operator.create("api-test-newcomer", "train")
        first = client.get("/job_status/nothing", headers={"X-API-Key": key})
        assert first.status_code == 404, first.text  # past auth: the job is what is unknown
        made_up = client.get("/job_status/nothing", headers={"X-API-Key": generate_key()})
        assert made_up.status_code == 401
    finally:
        operator.close()
        proxy_store.close()


@pytest.mark.slow
def test_key_store_outage_is_503_not_401(make_client, tmp_path) -> None:
    server = start_bao(tmp_path)
    store = _vault_store(server, cache_ttl_s=0.5, refresh_s=0.2)
    try:
        key, _ = store.create("api-test-outage", "admin")
        client = make_client(key_store=store)
        assert client.get("/job_status/nothing", headers={"X-API-Key": key}).status_code == 404
        server.stop()
        time.sleep(1.0)  # let the cached key table expire (cache_ttl_s=0.5)
        answer = client.get("/job_status/nothing", headers={"X-API-Key": key})
        assert answer.status_code == 503, answer.text
        assert "key store" in answer.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "key_store" in ready.json()["failed"]
    finally:
        store.close()
        server.stop()


def test_the_key_is_checked_before_the_body(client) -> None:
    # An anonymous caller learns nothing about what the API would accept.
    for body in ({"pipeline_config": {"model_module": "os", "model": "system"}},
                 {"unknown": 1}, {"features": "x"}):
        assert client.post("/train", json=body).status_code == 401
        assert client.post("/predict", json=body).status_code == 401
