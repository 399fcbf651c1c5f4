"""The proxy under load while its model server is killed: the real app behind a real uvicorn
server, a real supervisor running `mlflow models serve` for a real trained model, and client
threads posting /predict throughout."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf
from redis import Redis

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.app import create_app
from serving.keys.env_store import EnvKeyStore
from serving.ports import free_port
from serving.processes import kill_group
from tests.support.serving import purge_queue, serve_app, serving_settings, wait_for
from tests.support.stack import set_champion, supervisor_settings

CLIENTS = 3
CLIENT_TIMEOUT_S = 30.0  # far above a prediction; a request this slow counts as hung
PAUSE_S = 0.05           # between one client's requests: load without starving the 2-core machine
START_DEADLINE_S = 240.0


@dataclass
class Load:
    """Client threads posting /predict until stopped; every outcome is kept in order."""

    url: str
    headers: dict[str, str]
    statuses: list[int] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each status
    errors: list[str] = field(default_factory=list)  # timeouts, resets: anything but an answer
    bodies_503: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post(f"{self.url}/predict", json=SPEC_PREDICT_BODY,
                                         headers=self.headers)
                except httpx.HTTPError as error:
                    with self.lock:
                        self.errors.append(repr(error))
                else:
                    with self.lock:
                        self.statuses.append(answer.status_code)
                        self.answered_at.append(time.monotonic())
                        if answer.status_code == 503:
                            self.bodies_503.append(answer.json())
                time.sleep(PAUSE_S)

    def count(self, status: int, since: int = 0) -> int:
        with self.lock:
            return self.statuses[since:].count(status)

    def seen(self) -> int:
        with self.lock:
            return len(self.statuses)


@pytest.fixture
def proxy(trained_registry, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], object]]:
    """The proxy app on a real port, with a real supervisor serving the registry's first version
    (restart backoff of the stack tests: 1 s, doubled up to 5 s)."""
    from serving.model_servers.supervisor import ModelServerSupervisor

    uri = trained_registry.tracking_uri
    set_champion(uri, trained_registry.versions[0])
    timings = supervisor_settings(tmp_path / "model-servers", free_port()).model_server
    settings = serving_settings(tmp_path, uri,
                                model_server=OmegaConf.to_container(timings, resolve=True))
    supervisor = ModelServerSupervisor(settings, uri)
    supervisor.start()
    redis = Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    api_key = "pv_test_faults_" + os.urandom(12).hex()
    app = create_app(supervisor=supervisor, key_store=EnvKeyStore(api_key), redis=redis,
                     settings=settings)
    try:
        with serve_app(app) as url:
            wait_for(lambda: supervisor.current() is not None, START_DEADLINE_S,
                     "the champion served")
            yield url, {"X-API-Key": api_key}, supervisor
    finally:
        supervisor.stop()
        purge_queue(redis, settings.jobs.queue)
        redis.close()


@pytest.mark.slow
def test_killed_model_server_under_load_gives_only_503_then_recovers(proxy, record_property) -> None:
    url, headers, supervisor = proxy
    load = Load(url, headers)
    pumps = [threading.Thread(target=load.pump, daemon=True) for _ in range(CLIENTS)]
    for pump in pumps:
        pump.start()
    try:
        wait_for(lambda: load.count(200) >= 20, 60, "predictions to flow")
        [server] = supervisor.status()["servers"]
        killed_at = load.seen()
        killed_clock = time.monotonic()
        kill_group(server["pid"])  # the model server dies, uvicorn child and all

        wait_for(lambda: load.count(503, since=killed_at) >= 1, 60, "503s during the gap")
        first_503 = killed_at + load.statuses[killed_at:].index(503)
        wait_for(lambda: load.count(200, since=first_503) >= 20, START_DEADLINE_S,
                 "predictions to resume after the automatic restart", 0.5)
    finally:
        load.stop.set()
        for pump in pumps:
            pump.join(CLIENT_TIMEOUT_S + 10)

    assert not any(pump.is_alive() for pump in pumps), "a client is stuck in a request"
    assert load.errors == [], load.errors[:5]  # no timeout (hung request), no reset
    assert set(load.statuses) == {200, 503}, sorted(set(load.statuses))
    assert all("retry shortly" in body["detail"] for body in load.bodies_503), load.bodies_503[:3]
    # 200s before the kill, then the gap, then 200s again: one outage, no flapping after it.
    assert set(load.statuses[:killed_at]) == {200}
    last_503 = len(load.statuses) - 1 - load.statuses[::-1].index(503)
    assert load.count(200, since=last_503) >= 20
    [restarted] = supervisor.status()["servers"]
    assert restarted["pid"] != server["pid"]
    # The figures for the hardening report (shown with `pytest -s`; in the junit file for bench.faults).
    print(f"\nmodel server killed under load: {load.count(200)} x 200, {load.count(503)} x 503, "
          f"{len(load.errors)} client errors, {CLIENTS} clients")
    for name, value in (("answers_200", load.count(200)), ("answers_503", load.count(503)),
                        ("client_errors", len(load.errors)), ("clients", CLIENTS),
                        ("kill_to_recovery_s", round(load.answered_at[last_503 + 1] - killed_clock, 1))):
        record_property(name, value)
