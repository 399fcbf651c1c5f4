"""Rate limits per key, counted in the real Redis (a unique key prefix per test); Redis outages
with a redis-server of our own that the test kills."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest
from mlflow import MlflowClient
from redis import Redis
from rq.job import JobStatus

from serving.api.schemas import SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from serving.jobs.queue import enqueue_training, fetch_job, training_queue
from serving.jobs.status import describe_job
from serving.keys.env_store import EnvKeyStore
from serving.keys.records import hash_key, new_key_record
from serving.ratelimit import InvalidRate, Rate, RateLimiter, parse_rate
from serving.roles import Role
from tests.support.serving import (
    TINY_PIPELINE,
    FixedSupervisor,
    child_env,
    serving_settings,
    wait_for,
)

RECHECK_S = 2.0  # limiters built directly: how long Redis is not asked again after a failure

class RoleKeyStore(EnvKeyStore):
    """The env key store with one extra key per role (EnvKeyStore only knows one admin key)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.keys: dict[str, str] = {}
        for role in Role:
            key = f"pv_test_{role.value}_{uuid.uuid4().hex}"
            self._table[hash_key(key)] = new_key_record(hash_key(key), f"rl-{role.value}", role)
            self.keys[role.value] = key

    def header(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


@pytest.fixture
def prefix(redis_conn: Redis):
    prefix = f"test-rl-{uuid.uuid4().hex[:12]}"
    yield prefix
    for key in redis_conn.scan_iter(f"{prefix}:*"):
        redis_conn.delete(key)


def _limited_settings(tmp_path, empty_registry, prefix, **rate_limit):
    return serving_settings(tmp_path, empty_registry,
                            rate_limit={"key_prefix": prefix, "per_key": "5/second", **rate_limit})


@pytest.mark.parametrize(("text", "rate"), [
    ("100/second", Rate(100, 1)), ("6000/minute", Rate(6000, 60)), (" 5 / s ", Rate(5, 1)),
    ("10/hours", Rate(10, 3600)), ("1/day", Rate(1, 86400)), (None, None), ("", None), ("none", None),
])
def test_rates_parse(text, rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "0/second", "5/fortnight", "-1/minute", "five/second"])
def test_bad_rates_are_refused_with_the_expected_form(text) -> None:
    with pytest.raises(InvalidRate, match="N/second"):
        parse_rate(text)


def test_the_counter_is_shared_by_limiters_on_one_redis(redis_conn, prefix) -> None:
    # Two limiters = two proxy replicas: together they allow the limit once per window.
    now = 1_000_000.2
    first, second = (RateLimiter(redis_conn, Rate(3, 10), prefix=prefix, clock=lambda: now,
                                 recheck_after_failure_s=RECHECK_S) for _ in range(2))
    allowed = [limiter.hit("k1", "predict").allowed for limiter in (first, second, first, second)]
    assert allowed == [True, True, True, False]
    refused = second.hit("k1", "predict")
    assert refused.retry_after_s == 10  # window [1_000_000, 1_000_010) ends in 9.8 s -> 10
    assert first.hit("k2", "predict").allowed  # another key has its own counter
    ttl = redis_conn.ttl(f"{prefix}:k1:10:{int(now // 10)}")
    assert 0 < ttl <= 11  # counters expire: nothing accumulates in Redis


def test_the_proxys_async_check_counts_on_the_same_counter(redis_conn, prefix) -> None:
    # The proxy counts with hit_async (asyncio client, Lua script); a replica counting with the
    # sync hit, or another event loop, must see the same count: the limit holds across replicas.
    now = 2_000_000.5
    proxy, other = (RateLimiter(redis_conn, Rate(3, 10), prefix=prefix, clock=lambda: now,
                                recheck_after_failure_s=RECHECK_S) for _ in range(2))

    async def two_async_hits() -> list[bool]:
        try:
            return [(await proxy.hit_async("k1", "predict")).allowed for _ in range(2)]
        finally:
            await proxy.aclose()

    assert asyncio.run(two_async_hits()) == [True, True]
    assert other.hit("k1", "predict").allowed
    assert not other.hit("k1", "predict").allowed
    refused = asyncio.run(two_async_hits())  # a new loop: the limiter opens a new client
    assert refused == [False, False]
    assert int(redis_conn.get(f"{prefix}:k1:10:{int(now // 10)}")) == 6
    assert 0 < redis_conn.ttl(f"{prefix}:k1:10:{int(now // 10)}") <= 11


def test_leases_spare_round_trips_and_two_replicas_never_admit_more_than_the_limit(
    redis_conn, prefix
) -> None:
    now = 3_000_000.5
    counter = f"{prefix}:k1:60:{int(now // 60)}"
    first, second = (RateLimiter(redis_conn, Rate(1000, 60), prefix=prefix, clock=lambda: now,
                                 recheck_after_failure_s=RECHECK_S, lease_fraction=0.01, max_lease=32)
                     for _ in range(2))
    assert first.lease_size(Rate(1000, 60)) == 10  # 1 % of the limit, under max_lease
    assert first.lease_size(Rate(10**9, 1)) == 32 and first.lease_size(Rate(50, 1)) == 1

    async def hits(limiter: RateLimiter, n: int) -> list[bool]:
        return [(await limiter.hit_async("k1", "predict")).allowed for _ in range(n)]

    async def load() -> tuple[list[bool], list[bool], int]:
        try:
            opening = await hits(first, 15)
            after_15 = int(redis_conn.get(counter))
            admitted = opening + await hits(second, 7)
            # Both replicas keep asking, in turns, well past the limit.
            for _ in range(120):
                admitted += await hits(first, 5) + await hits(second, 5)
            return opening, admitted, after_15
        finally:
            await first.aclose()
            await second.aclose()

    opening, admitted, after_15 = asyncio.run(load())
    assert opening == [True] * 15
    assert after_15 == 20  # two leases of 10: 2 round trips for 15 requests, not 15
    # Never more than the limit; at most (lease - 1) per replica left unspent at the end.
    assert 1000 - 2 * 9 <= sum(admitted) <= 1000
    assert not any(admitted[-10:])


def test_per_role_overrides(redis_conn, prefix) -> None:
    limiter = RateLimiter(redis_conn, Rate(1, 60), {"admin": None, "train": Rate(2, 60)},
                          prefix=prefix, recheck_after_failure_s=RECHECK_S)
    assert [limiter.hit("a", "admin").allowed for _ in range(5)] == [True] * 5
    assert [limiter.hit("t", "train").allowed for _ in range(3)] == [True, True, False]
    assert [limiter.hit("p", "predict").allowed for _ in range(2)] == [True, False]


def test_a_predict_key_gets_429_with_retry_after(
    make_client, fake_model_server, tmp_path, empty_registry, prefix
) -> None:
    keys = RoleKeyStore()
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), key_store=keys,
                         settings=_limited_settings(tmp_path, empty_registry, prefix))
    statuses = []
    limited = None
    for _ in range(25):
        answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=keys.header("predict"))
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            limited = answer
            break
    assert limited is not None, f"no 429 within 25 requests at 5/second: {statuses}"
    assert set(statuses[:-1]) == {200} and len(statuses) >= 6
    assert 1 <= int(limited.headers["Retry-After"]) <= 1
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert "X-RateLimit-Remaining" not in limited.headers  # no figure is sent that is not counted
    body = limited.json()
    assert "rate limit" in body["detail"] and "retry in" in body["detail"]
    assert body["request_id"] == limited.headers["X-Request-ID"]
    # Another key is not affected by this key's count.
    other = client.post("/predict", json=SPEC_PREDICT_BODY, headers=keys.header("train"))
    assert other.status_code == 200


def test_a_predict_key_gets_403_from_train_before_any_count(
    make_client, tmp_path, empty_registry, prefix, redis_conn
) -> None:
    keys = RoleKeyStore()
    client = make_client(key_store=keys, settings=_limited_settings(tmp_path, empty_registry, prefix))
    answer = client.post("/train", json=SPEC_TRAIN_BODY, headers=keys.header("predict"))
    assert answer.status_code == 403
    assert "predict" in answer.json()["detail"]
    assert list(redis_conn.scan_iter(f"{prefix}:*")) == []  # refused keys spend no quota


def test_role_overrides_from_the_environment(make_client, fake_model_server, tmp_path,
                                             empty_registry, prefix, monkeypatch) -> None:
    keys = RoleKeyStore()
    monkeypatch.setenv("RATE_LIMIT_PER_ROLE", '{"admin": null}')  # conf's rate_limit.per_role
    settings = _limited_settings(tmp_path, empty_registry, prefix, per_key="1/minute")
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), key_store=keys,
                         settings=settings)
    admin = [client.post("/predict", json=SPEC_PREDICT_BODY, headers=keys.header("admin"))
             for _ in range(3)]
    assert [a.status_code for a in admin] == [200, 200, 200]
    train = [client.post("/predict", json=SPEC_PREDICT_BODY, headers=keys.header("train"))
             for _ in range(2)]
    assert [t.status_code for t in train] == [200, 429]
    assert 1 <= int(train[1].headers["Retry-After"]) <= 60


def test_no_setting_means_no_limit(make_client, fake_model_server, tmp_path, empty_registry,
                                   prefix, redis_conn) -> None:
    keys = RoleKeyStore()
    settings = serving_settings(tmp_path, empty_registry,
                                rate_limit={"key_prefix": prefix, "per_key": None})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), key_store=keys,
                         settings=settings)
    statuses = {client.post("/predict", json=SPEC_PREDICT_BODY,
                            headers=keys.header("predict")).status_code for _ in range(12)}
    assert statuses == {200}
    assert list(redis_conn.scan_iter(f"{prefix}:*")) == []


# --- Redis down: our own redis-server, killed for real ----------------------------------------


def test_redis_down_predictions_flow_training_is_503(
    make_client, fake_model_server, tmp_path, empty_registry, prefix, own_redis, capsys
) -> None:
    process, connection, restart = own_redis
    keys = RoleKeyStore()
    settings = _limited_settings(tmp_path, empty_registry, prefix, recheck_after_failure_s=0.3)
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), key_store=keys,
                         redis=connection, settings=settings)
    assert client.post("/predict", json=SPEC_PREDICT_BODY,
                       headers=keys.header("predict")).status_code == 200
    process.kill()
    process.wait(timeout=10)
    time.sleep(0.1)

    for _ in range(8):  # beyond 5/second: the limit is not enforced (fail open) ...
        answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=keys.header("predict"))
        assert answer.status_code == 200, answer.text
    logged = capsys.readouterr().out
    assert "rate_limit_unavailable" in logged and "NOT enforced" in logged  # ... and says so

    refused = client.post("/train", json=SPEC_TRAIN_BODY, headers=keys.header("train"))
    assert refused.status_code == 503, refused.text
    assert "rate limiter (Redis) is unavailable" in refused.json()["detail"]

    restart()  # Redis is back: training is taken again and limits hold again
    time.sleep(0.5)  # past recheck_after_failure_s
    accepted = client.post("/train", json=SPEC_TRAIN_BODY, headers=keys.header("train"))
    assert accepted.status_code == 202, accepted.text
    statuses = [client.post("/predict", json=SPEC_PREDICT_BODY,
                            headers=keys.header("predict")).status_code for _ in range(25)]
    assert 429 in statuses


@pytest.mark.slow
def test_a_queued_job_survives_a_redis_kill_and_then_runs(own_redis, tmp_path) -> None:
    process, connection, restart = own_redis
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=tracking).search_experiments()  # the schema now, not in the job
    settings = serving_settings(tmp_path, tracking)
    overrides = " ".join(o for o in TINY_PIPELINE if not o.startswith("experiment_name="))
    queued = enqueue_training(training_queue(connection, settings), model="", overrides=overrides,
                              experiment_name="redis-kill", submitted_by="test", settings=settings)
    # With appendfsync everysec Redis may hold writes back for up to 2 s while an fsync is under
    # way (a loaded machine): the guarantee is for what reached the file, so wait for that.
    wait_for(lambda: connection.info("persistence")["aof_buffer_length"] == 0, 10,
             "Redis to write the queued job to its append-only file", 0.05)

    process.kill()  # SIGKILL: no shutdown save, only what the append-only file already holds
    process.wait(timeout=10)
    restart()

    job = fetch_job(connection, queued.id)
    assert job is not None, "the queued job was lost with Redis"
    assert job.get_status() == JobStatus.QUEUED
    assert training_queue(connection, settings).job_ids == [queued.id]
    assert job.kwargs == {"model": "", "overrides": overrides, "experiment_name": "redis-kill"}
    assert job.meta["submitted_by"] == "test"

    port = connection.connection_pool.connection_kwargs["port"]
    env = child_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port), TRAINING_QUEUE=settings.jobs.queue,
                    MLFLOW_TRACKING_URI=tracking)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "serving.worker", "--burst"], cwd=tmp_path,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert worker.wait(timeout=900) == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    status = describe_job(fetch_job(connection, queued.id))
    assert status["status"] == "finished", status
    assert status["version"] == "1", status
