"""The prediction cache (serving/prediction/cache.py) in the real Redis (a unique key prefix per
test), in front of real model servers: hits, what is stored, alias moves, and Redis going down
(a redis-server of our own, killed)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.ports import free_port
from serving.prediction.cache import row_digest
from tests.serving.prediction.support import metrics_value, synthetic_rows, unbatched_prices
from tests.support.serving import MODEL_NAME, serving_settings, wait_for
from tests.support.stack import set_champion

pytestmark = pytest.mark.slow


def cache_settings(tmp_path, tracking_uri, prefix, **cache):
    return serving_settings(tmp_path, tracking_uri, prediction_cache={
        "enabled": True, "key_prefix": prefix, "ttl_s": 600, **cache})


def predict(client, auth, *rows, **extra) -> httpx.Response:
    return client.post("/predict", headers=auth,
                       json={"model_name": MODEL_NAME, "features": list(rows), **extra})


def audit_of(settings, answer) -> dict:
    lines = [json.loads(line) for line in Path(settings.audit.path).read_text().splitlines()]
    [line] = [line for line in lines if line["request_id"] == answer.json()["request_id"]]
    return line


def test_a_repeated_row_is_answered_from_the_cache(
    make_client, serving_supervisor, trained_model, tmp_path, redis_conn, prefix, auth
) -> None:
    settings = cache_settings(tmp_path, trained_model.tracking_uri, prefix)
    client = make_client(supervisor=serving_supervisor, settings=settings)
    first_row, second_row = synthetic_rows(2, seed=21)
    version = serving_supervisor.current().version

    first = predict(client, auth, first_row)
    assert first.status_code == 200, first.text
    key = f"{prefix}:{MODEL_NAME}:{version}:{row_digest(first_row)}"
    wait_for(lambda: redis_conn.exists(key), 10, "the price to be stored", 0.05)
    assert 0 < redis_conn.ttl(key) <= 600
    assert float(redis_conn.get(key)) == first.json()["predictions"][0]
    assert "cache" not in audit_of(settings, first)

    # A hit is the stored value: change it, and the answer follows. The row is the same row
    # with its fields in another order and 3.0 rooms written 3 (one canonical JSON).
    redis_conn.set(key, "12345.5", ex=600)
    respelled = {name: first_row[name] for name in reversed(list(first_row))}
    respelled["n_rooms"] = int(first_row["n_rooms"])
    again = predict(client, auth, second_row, respelled)
    assert again.status_code == 200, again.text
    assert again.json()["predictions"][1] == 12345.5
    assert again.json()["predictions"][0] == pytest.approx(
        unbatched_prices(serving_supervisor.current().base_url, [second_row])[0], rel=1e-9)
    assert audit_of(settings, again)["cache"] == {"hit_rows": [1], "hits": 1, "misses": 1}
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="hit") == 1
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="miss") == 2


def test_only_prices_are_stored_never_refusals(
    make_client, serving_supervisor, trained_model, tmp_path, redis_conn, prefix, auth
) -> None:
    client = make_client(supervisor=serving_supervisor,
                         settings=cache_settings(tmp_path, trained_model.tracking_uri, prefix))
    good, = synthetic_rows(1, seed=22)
    refused = predict(client, auth, good, {**good, "sector": "atlantis"})
    assert refused.status_code == 422
    assert predict(client, auth, good, version="999").status_code == 404
    assert list(redis_conn.scan_iter(f"{prefix}:*")) == []


def test_skipped_lookups_still_price_and_store_every_row(
    make_client, serving_supervisor, trained_model, tmp_path, redis_conn, prefix, auth
) -> None:
    # A floor no traffic reaches and no probe within the test: after the first lookup misses,
    # every request skips the lookup, is priced by the model server, and is stored.
    settings = cache_settings(tmp_path, trained_model.tracking_uri, prefix,
                              lookup_hit_rate_floor=1.0, hit_rate_window_rows=2, probe_every=1000)
    client = make_client(supervisor=serving_supervisor, settings=settings)
    rows = synthetic_rows(4, seed=23)
    version = serving_supervisor.current().version
    expected = unbatched_prices(serving_supervisor.current().base_url, rows)
    for row, price in zip(rows + rows, expected + expected, strict=True):
        answer = predict(client, auth, row)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx([price], rel=1e-9)
        assert "cache" not in audit_of(settings, answer)
    for row, price in zip(rows, expected, strict=True):
        key = f"{prefix}:{MODEL_NAME}:{version}:{row_digest(row)}"
        wait_for(lambda key=key: redis_conn.exists(key), 10, "the price to be stored", 0.05)
        assert float(redis_conn.get(key)) == pytest.approx(price, rel=1e-9)
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="miss") == 1
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="skipped") == 7
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="hit") == 0


def test_an_alias_move_never_serves_the_old_versions_price(
    make_client, supervisor_factory, trained_registry, tmp_path, redis_conn, prefix, auth
) -> None:
    old, new = trained_registry.versions
    set_champion(trained_registry.tracking_uri, old)
    supervisor = supervisor_factory(trained_registry.tracking_uri, free_port())
    supervisor.start()
    wait_for(lambda: supervisor.current() is not None, 300, "the champion to be served", 0.5)
    client = make_client(supervisor=supervisor,
                         settings=cache_settings(tmp_path, trained_registry.tracking_uri, prefix))
    row = dict(SPEC_PREDICT_BODY["features"][0])
    before = predict(client, auth, row)
    assert before.json()["model_version"] == old
    wait_for(lambda: redis_conn.exists(f"{prefix}:{MODEL_NAME}:{old}:{row_digest(row)}"), 10,
             "the old version's price to be stored", 0.05)

    set_champion(trained_registry.tracking_uri, new)
    wait_for(lambda: supervisor.current() is not None and supervisor.current().version == new,
             300, "the new champion to be served", 0.5)
    expected = unbatched_prices(supervisor.current().base_url, [row])[0]
    assert expected != pytest.approx(before.json()["predictions"][0], rel=1e-6), \
        "the two versions price the row alike: the test would prove nothing"
    for _ in range(2):  # a miss under the new version, then a hit of the new version's price
        after = predict(client, auth, row)
        assert after.status_code == 200, after.text
        assert after.json()["model_version"] == new
        assert after.json()["predictions"] == pytest.approx([expected], rel=1e-9)
        wait_for(lambda: redis_conn.exists(f"{prefix}:{MODEL_NAME}:{new}:{row_digest(row)}"), 10,
                 "the new version's price to be stored", 0.05)
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="hit") == 1


def test_redis_down_prices_without_the_cache_counted_and_logged_once(
    make_client, serving_supervisor, trained_model, tmp_path, redis_conn, own_redis, prefix,
    auth, capsys
) -> None:
    process, connection, restart = own_redis
    port = connection.connection_pool.connection_kwargs["port"]
    settings = cache_settings(tmp_path, trained_model.tracking_uri, prefix,
                              recheck_after_failure_s=0.2, unavailable_log_every_s=60)
    settings.redis.port = port  # the cache's Redis; the app's own (rate limits, jobs) stays up
    client = make_client(supervisor=serving_supervisor, redis=redis_conn, settings=settings)
    row = dict(SPEC_PREDICT_BODY["features"][0])
    priced = predict(client, auth, row).json()["predictions"]
    wait_for(lambda: connection.dbsize() > 0, 10, "the price to be stored", 0.05)

    process.kill()
    process.wait(timeout=10)
    capsys.readouterr()
    for _ in range(4):
        answer = predict(client, auth, row)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx(priced, rel=1e-9)
        assert "cache" not in audit_of(settings, answer)  # priced by the model server
    logged = capsys.readouterr().out
    assert logged.count("prediction_cache_unavailable") == 1, logged
    assert metrics_value(client, "valuation_prediction_cache_rows_total", outcome="bypass") == 4
    assert metrics_value(client, "valuation_prediction_cache_unavailable_total",
                         operation="lookup") >= 1

    restart()  # back: after recheck_after_failure_s the cache is asked again

    def cache_asked_again() -> bool:
        assert predict(client, auth, row).status_code == 200
        return sum(metrics_value(client, "valuation_prediction_cache_rows_total", outcome=outcome)
                   for outcome in ("hit", "miss")) >= 2

    wait_for(cache_asked_again, 10, "the cache to be used again", 0.3)


def test_the_cache_is_off_by_default(make_client, serving_supervisor, auth) -> None:
    client = make_client(supervisor=serving_supervisor)
    assert predict(client, auth, dict(SPEC_PREDICT_BODY["features"][0])).status_code == 200
    assert client.app.state.pricing.cache is None
