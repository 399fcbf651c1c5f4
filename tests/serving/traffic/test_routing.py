"""Shadow and canary traffic through real model servers: two versions trained by the project's
pipeline (champion v1, challenger v2), served by the real supervisor with `mlflow models serve`,
the proxy app with its real micro-batcher, the prediction store on real PostgreSQL, the run-time
setting in the real Redis. Fractions 1.0 and 0.0 make every assertion exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from serving.cli.main import app as cli
from serving.model_servers.supervisor import ModelServerSupervisor
from serving.monitoring.gate import paired_rows
from serving.ports import free_port
from serving.prediction_store.engine import open_engine
from serving.prediction_store.queries import predictions_window
from serving.settings import get_settings
from tests.serving.prediction.support import metrics_value as metric
from tests.serving.prediction.support import synthetic_rows, unbatched_prices
from tests.support.serving import MODEL_NAME, serving_settings, wait_for
from tests.support.stack import supervisor_settings
from tests.support.store import pg_schema_url
from valuation.registry import alias_version

pytestmark = pytest.mark.slow

SERVED_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def versions(trained_registry) -> Iterator[tuple[str, str]]:
    """Champion v1 and challenger v2 for this module; the aliases are put back afterwards."""
    uri = trained_registry.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = {alias: alias_version(client, MODEL_NAME, alias) for alias in ("champion", "challenger")}
    champion, challenger = trained_registry.versions
    client.set_registered_model_alias(MODEL_NAME, "champion", champion)
    client.set_registered_model_alias(MODEL_NAME, "challenger", challenger)
    yield champion, challenger
    for alias, version in before.items():
        if version is None:
            client.delete_registered_model_alias(MODEL_NAME, alias)
        else:
            client.set_registered_model_alias(MODEL_NAME, alias, version)


@pytest.fixture(scope="module")
def supervisor(trained_registry, versions, tmp_path_factory) -> Iterator[ModelServerSupervisor]:
    """Serves the champion only: the challenger's server is started by the proxies' traffic
    switch while shadow or canary traffic is on."""
    settings = supervisor_settings(tmp_path_factory.mktemp("traffic-servers"), free_port())
    supervisor = ModelServerSupervisor(settings, trained_registry.tracking_uri)
    supervisor.start()
    wait_for(lambda: supervisor.current() is not None, SERVED_TIMEOUT_S,
             "the champion to be served", 0.5)
    yield supervisor
    supervisor.stop()


@pytest.fixture
def store_url(pg_schema) -> str:
    return pg_schema_url(pg_schema)


def proxy_settings(tmp_path: Path, trained_registry, store_url: str, **traffic):
    return serving_settings(tmp_path, trained_registry.tracking_uri,
                            traffic={"refresh_s": 0.2, **traffic},
                            prediction_store={"url": store_url, "flush_interval_s": 0.1})


def predict(client, auth, rows, **extra) -> dict:
    answer = client.post("/predict", headers=auth,
                         json={"model_name": MODEL_NAME, "features": rows, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


def challenger_served(supervisor, version: str) -> bool:
    served = supervisor.served(alias="challenger")
    return served is not None and served.version == version


def proxy_with_challenger(make_client, supervisor, challenger: str, settings):
    """The app, once the supervisor serves the challenger its traffic switch asked for."""
    client = make_client(supervisor=supervisor, settings=settings)
    wait_for(lambda: challenger_served(supervisor, challenger), SERVED_TIMEOUT_S,
             "the challenger to be served for the shadow/canary traffic", 0.5)
    return client


def stored(store_url: str, count: int):
    """The store's prediction rows, once there are `count` of them (written off the hot path)."""
    engine = open_engine(store_url)
    try:
        wait_for(lambda: len(predictions_window(engine)) >= count, 30,
                 f"{count} stored prediction rows", 0.1)
        return predictions_window(engine)
    finally:
        engine.dispose()


def test_shadow_prices_go_to_the_store_and_the_client_gets_the_champions(
    make_client, supervisor, versions, trained_registry, store_url, tmp_path, auth
) -> None:
    champion, challenger = versions
    client = proxy_with_challenger(make_client, supervisor, challenger, proxy_settings(
        tmp_path, trained_registry, store_url, shadow=1.0))
    rows = synthetic_rows(4, seed=41)
    expected = unbatched_prices(supervisor.current().base_url, rows)
    shadowed = unbatched_prices(supervisor.served(alias="challenger").base_url, rows)
    assert shadowed != pytest.approx(expected, rel=1e-6), "both versions price alike"

    answers = [predict(client, auth, [row]) for row in rows[:2]] + [predict(client, auth, rows[2:])]
    for answer in answers:
        assert (answer["served_alias"], answer["model_version"]) == ("champion", champion)
    assert [p for a in answers for p in a["predictions"]] == pytest.approx(expected, rel=1e-9)
    pinned = predict(client, auth, rows[:1], version=champion)  # explicit: never shadowed
    assert pinned["served_alias"] == "explicit"

    table = stored(store_url, 2 * len(rows) + 1)
    shadow = table[table.served_alias == "shadow"]
    assert set(shadow.model_version) == {challenger}
    assert set(shadow.request_id) == {a["request_id"] for a in answers}
    by_request = {a["request_id"]: a for a in answers}
    champion_rows = table[table.served_alias == "champion"]
    assert set(champion_rows.model_version) == {champion}
    shadow = shadow.sort_values(["created_at", "row_index"])
    assert sorted(shadow.price) == pytest.approx(sorted(shadowed), rel=1e-9)
    for request_id, group in shadow.groupby("request_id"):
        assert len(group) == len(by_request[request_id]["predictions"])
    assert set(table[table.served_alias == "explicit"].request_id) == {pinned["request_id"]}

    assert metric(client, "valuation_served_alias_requests_total", served_alias="shadow") == 3
    assert metric(client, "valuation_served_alias_requests_total", served_alias="champion") == 3
    assert metric(client, "valuation_traffic_fraction", kind="shadow") == 1.0
    assert metric(client, "valuation_traffic_background_pricings_total", purpose="shadow",
                  outcome="ok") == 3
    traffic = client.get("/models", headers=auth).json()["traffic"]
    assert (traffic["shadow"], traffic["canary"], traffic["source"]) == (1.0, 0.0, "config")
    assert traffic["challenger_served_version"] == challenger

    # Feedback on the shadowed rows pairs each challenger price with the champion's answer.
    observed_at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    feedback = client.post("/feedback", headers=auth, json={"observations": [
        {"request_id": a["request_id"], "row_index": 0, "observed_price": 20000.0,
         "observed_at": observed_at, "kind": "sale"} for a in answers]})
    assert feedback.status_code == 200, feedback.text
    engine = open_engine(store_url)
    try:
        paired = paired_rows(engine, champion, challenger, since=None)
    finally:
        engine.dispose()
    assert sorted(paired.request_id) == sorted(a["request_id"] for a in answers)
    first_shadow = shadow[shadow.row_index == 0].set_index("request_id").price
    for pair in paired.itertuples():
        assert pair.champion_price == pytest.approx(by_request[pair.request_id]["predictions"][0],
                                                    rel=1e-9)
        assert pair.challenger_price == pytest.approx(first_shadow[pair.request_id], rel=1e-9)


def test_canary_requests_are_answered_by_the_challenger_and_explicit_ones_never(
    make_client, supervisor, versions, trained_registry, store_url, tmp_path, auth
) -> None:
    champion, challenger = versions
    settings = proxy_settings(tmp_path, trained_registry, store_url, canary=1.0)
    client = proxy_with_challenger(make_client, supervisor, challenger, settings)
    rows = synthetic_rows(2, seed=42)
    by_champion = unbatched_prices(supervisor.current().base_url, rows)
    by_challenger = unbatched_prices(supervisor.served(alias="challenger").base_url, rows)

    canary = predict(client, auth, rows)
    assert (canary["served_alias"], canary["model_version"]) == ("canary", challenger)
    assert canary["predictions"] == pytest.approx(by_challenger, rel=1e-9)
    pinned = predict(client, auth, rows, version=champion)
    assert (pinned["served_alias"], pinned["model_version"]) == ("explicit", champion)
    aliased = predict(client, auth, rows, alias="champion")
    assert (aliased["served_alias"], aliased["model_version"]) == ("champion", champion)
    assert pinned["predictions"] == aliased["predictions"] == pytest.approx(by_champion, rel=1e-9)

    lines = [json.loads(line) for line in Path(settings.audit.path).read_text().splitlines()]
    audited = {line["request_id"]: line for line in lines if line["action"] == "predict"}
    assert audited[canary["request_id"]]["served_alias"] == "canary"
    assert audited[canary["request_id"]]["model_version"] == challenger
    assert audited[pinned["request_id"]]["served_alias"] == "explicit"

    # The canary rows, and the champion's background prices of the same rows (for the gate).
    table = stored(store_url, 4 * len(rows))
    of_canary = table[table.request_id == canary["request_id"]].sort_values("row_index")
    answered = of_canary[of_canary.served_alias == "canary"]
    reference = of_canary[of_canary.served_alias == "shadow"]
    assert set(answered.model_version) == {challenger}
    assert list(answered.price) == pytest.approx(by_challenger, rel=1e-9)
    assert set(reference.model_version) == {champion}
    assert list(reference.price) == pytest.approx(by_champion, rel=1e-9)
    assert metric(client, "valuation_served_alias_requests_total", served_alias="canary") == 1
    assert metric(client, "valuation_traffic_fraction", kind="canary") == 1.0


def test_traffic_set_changes_what_a_running_proxy_does(
    make_client, supervisor, versions, trained_registry, store_url, tmp_path, auth, monkeypatch,
    redis_conn
) -> None:
    champion, challenger = versions
    settings = proxy_settings(tmp_path, trained_registry, store_url)  # both off
    client = make_client(supervisor=supervisor, settings=settings)
    rows = synthetic_rows(1, seed=43)
    before = predict(client, auth, rows)
    assert (before["served_alias"], before["model_version"]) == ("champion", champion)
    assert client.get("/models", headers=auth).json()["traffic"]["source"] == "config"

    monkeypatch.setenv("TRAFFIC_REDIS_KEY", settings.traffic.redis_key)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(tmp_path / "cli-audit.jsonl"))
    runner = CliRunner()

    def traffic(*args: str):
        get_settings.cache_clear()
        result = runner.invoke(cli, ["traffic", *args])
        assert result.exit_code == 0, result.output
        return result

    try:
        traffic("set", "--canary", "1")
        # The proxy reads the setting within refresh_s, then the challenger's server starts.
        wait_for(lambda: predict(client, auth, rows)["served_alias"] == "canary",
                 SERVED_TIMEOUT_S, "the running proxy to canary", 0.5)
        now = client.get("/models", headers=auth).json()["traffic"]
        assert (now["canary"], now["source"], now["challenger_served_version"]) == \
            (1.0, "runtime", challenger)
        assert now["set_by"].startswith("cli")

        traffic("set", "--canary", "0")
        wait_for(lambda: predict(client, auth, rows)["served_alias"] == "champion", 30,
                 "the running proxy to stop canarying", 0.2)
        # Both fractions off: the challenger's server is given back and drains.
        wait_for(lambda: supervisor.served(alias="challenger") is None, 60,
                 "the challenger's server to be given up", 0.5)
        assert metric(client, "valuation_traffic_fraction", kind="canary") == 0.0
    finally:
        redis_conn.delete(settings.traffic.redis_key)


def test_a_canary_the_challenger_cannot_answer_is_answered_by_the_champion(
    make_client, supervisor, versions, trained_registry, store_url, tmp_path, auth
) -> None:
    champion, challenger = versions
    client = proxy_with_challenger(make_client, supervisor, challenger, proxy_settings(
        tmp_path, trained_registry, store_url, canary=1.0))
    bad = client.post("/predict", headers=auth, json={
        "model_name": MODEL_NAME, "features": [{**synthetic_rows(1, seed=44)[0], "n_rooms": -3}]})
    # A bad row is the client's error whoever checks it: the same 422 as without canary.
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "n_rooms"
    assert metric(client, "valuation_canary_fallbacks_total", status="422") == 1
