"""Two proxy replicas behind nginx, as `make stack PROXIES=2` runs them (`python -m serving.devstack
--proxies 2`), on one registry with two real versions. What makes a replica stateless is shown
for real: limits counted in the shared Redis, keys read from the shared Vault, the champion read
from the shared registry by each replica's own supervisor, and a balancer that routes around a
lost replica. Tests run in file order and share one stack; the last one kills a replica.

Every key is limited (RATE_LIMIT_PER_KEY applies to all roles), so the load uses a pool of
predict keys, each used fewer times than the limit within the test's minutes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.keys.vault_store import VaultKeyStore
from tests.support.stack import (
    SERVED_TIMEOUT_S,
    RunningStack,
    TrainedRegistry,
    launch_stack,
    set_champion,
)
from valuation.config import load_config

pytestmark = pytest.mark.slow

RATE_LIMIT = 100  # per key and minute, for the whole stack
POOL_KEYS = 60  # predict keys made for the load (OpenBao refuses a key table of ~110)
KEY_USES = RATE_LIMIT - 5  # uses of one pool key, below its limit whatever window they fall in
WINDOW_S = 60
WINDOW_LATEST_START_S = 30  # a burst starts in the first half of a window, so it ends in it
REVOKE_SLACK_S = 5  # beyond vault.refresh_s: the poll itself, a busy machine
LOAD_THREADS = 4
LOAD_PAUSE_S = 0.1  # between one load thread's requests
SETTLE_S = 3  # load before and after the event under test
SURVIVOR_WATCH_S = 10  # /ready of the survivor is watched this long after the kill


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"RATE_LIMIT_PER_KEY": f"{RATE_LIMIT}/minute"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str],
          trained_registry: TrainedRegistry) -> Iterator[RunningStack]:
    """Two replicas on the registry's store, its older version the champion."""
    set_champion(trained_registry.tracking_uri, trained_registry.versions[0])
    root = tmp_path_factory.mktemp("replicas")
    running = launch_stack(root, trained_registry.tracking_uri, stack_env, proxies=2)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key_store(stack: RunningStack) -> Iterator[VaultKeyStore]:
    """The stack's key table in Vault, as an operator's CLI writes it (the AppRole of the stack)."""
    state = json.loads((stack.state_dir / "stack.json").read_text())
    settings = load_config([f"vault.addr={state['endpoints']['vault']}",
                            f"vault.approle_file={state['approle_file']}"], config_name="serving")
    store = VaultKeyStore.from_settings(settings, bootstrap_key=None)
    yield store
    store.close()


class KeyPool:
    """Predict keys handed out KEY_USES times each, so no request of the load meets the limit."""

    def __init__(self, keys: list[str]):
        self._keys = iter(keys)
        self._lock = threading.Lock()
        self._current = ""
        self._uses = KEY_USES

    def fresh(self) -> str:
        """A key no one used, which the pool will not hand out again."""
        with self._lock:
            key = self._next()
            self._uses = KEY_USES
            return key

    def take(self) -> str:
        with self._lock:
            self._uses += 1
            return self._current if self._uses <= KEY_USES else self._next()

    def _next(self) -> str:
        key = next(self._keys, None)
        if key is None:
            raise RuntimeError(f"all {POOL_KEYS} pool keys used; raise POOL_KEYS")
        self._current, self._uses = key, 1
        return key


@pytest.fixture(scope="module")
def keys(key_store: VaultKeyStore) -> KeyPool:
    return KeyPool([key_store.create("replicas-test", "predict")[0] for _ in range(POOL_KEYS)])


def predict(client: httpx.Client, url: str, key: str) -> httpx.Response:
    return client.post(f"{url}/predict", json=SPEC_PREDICT_BODY, headers={"X-API-Key": key})


def wait_until_served(urls: tuple[str, ...], keys: KeyPool, version: str,
                      previous: str | None = None) -> None:
    """Until each of `urls` predicts with `version` (`previous` may answer meanwhile; before the
    first champion is served, 503)."""
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    with httpx.Client(timeout=30, trust_env=False) as client:
        for url in urls:
            while True:
                answer = predict(client, url, keys.take())
                if answer.status_code == 200 and answer.json()["model_version"] == version:
                    break
                if answer.status_code == 200:
                    assert answer.json()["model_version"] == previous, (url, answer.text)
                else:
                    assert previous is None and answer.status_code == 503, (url, answer.text)
                assert time.monotonic() < deadline, f"{url} never served {version}: {answer.text}"
                time.sleep(1)


@pytest.fixture(scope="module")
def champion(stack: RunningStack, keys: KeyPool, trained_registry: TrainedRegistry) -> str:
    version = trained_registry.versions[0]
    wait_until_served(stack.replica_urls, keys, version)
    return version


@dataclass
class Load:
    """LOAD_THREADS clients posting /predict through the balancer until stopped; every answer's
    status and served version, and the failures (anything but 200) with their time."""

    url: str
    keys: KeyPool
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=60, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    answer = predict(client, self.url, self.keys.take())
                    served = answer.json().get("model_version", answer.text) \
                        if answer.status_code == 200 else answer.text
                    self.answers.append((time.monotonic(), answer.status_code, str(served)))
                except httpx.HTTPError as error:
                    self.answers.append((time.monotonic(), 0, repr(error)))
                time.sleep(LOAD_PAUSE_S)

    def failures(self) -> list[tuple[float, int, str]]:
        return [answer for answer in self.answers if answer[1] != 200]


def test_both_replicas_and_the_balancer_are_up(stack: RunningStack, champion: str):
    state = json.loads((stack.state_dir / "stack.json").read_text())
    assert {"proxy-1", "proxy-2", "balancer"} <= set(state["parts"])
    assert state["endpoints"]["proxy"] == stack.url
    with httpx.Client(timeout=30, trust_env=False) as client:
        for url in (*stack.replica_urls, stack.url):
            ready = client.get(f"{url}/ready")
            assert ready.status_code == 200, (url, ready.text)
            assert ready.json()["checks"]["model_server"]["version"] == champion


def test_a_rate_limit_is_counted_once_across_replicas(stack: RunningStack, keys: KeyPool,
                                                      champion: str):
    key = keys.fresh()
    # RATE_LIMIT requests to each replica directly, all at once, within one window: counted in
    # the shared Redis, RATE_LIMIT pass in all; counted per replica, all of them would.
    while time.time() % WINDOW_S > WINDOW_LATEST_START_S:
        time.sleep(1)
    targets = [url for _ in range(RATE_LIMIT) for url in stack.replica_urls]  # interleaved
    with httpx.Client(timeout=60, trust_env=False) as client, \
            ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda url: predict(client, url, key), targets))
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {200: RATE_LIMIT, 429: len(targets) - RATE_LIMIT}, codes
    by_replica = {url: Counter(a.status_code for t, a in zip(targets, answers, strict=True)
                               if t == url) for url in stack.replica_urls}
    assert all(counts[200] for counts in by_replica.values()), by_replica  # both served some


def test_a_key_revoked_in_vault_is_refused_by_both_replicas(
    stack: RunningStack, key_store: VaultKeyStore, champion: str
):
    key, record = key_store.create("replicas-revoked", "predict")
    urls = (*stack.replica_urls, stack.url)
    with httpx.Client(timeout=30, trust_env=False) as client:
        for url in urls:
            assert predict(client, url, key).status_code == 200, url
        assert key_store.revoke(record.key_id)
        revoked_at = time.monotonic()
        refresh_s = float(load_config(config_name="serving").vault.refresh_s)
        for url in urls:
            while (answer := predict(client, url, key)).status_code != 401:
                assert answer.status_code == 200, (url, answer.text)
                assert time.monotonic() - revoked_at < refresh_s + REVOKE_SLACK_S, \
                    f"{url} still accepts the revoked key"
                time.sleep(0.1)


def test_a_champion_move_reaches_both_replicas_with_no_failed_request(
    stack: RunningStack, keys: KeyPool, trained_registry: TrainedRegistry, champion: str
):
    old, new = trained_registry.versions
    with Load(stack.url, keys) as load:
        time.sleep(SETTLE_S)
        set_champion(trained_registry.tracking_uri, new)
        wait_until_served(stack.replica_urls, keys, new, previous=old)
        switched_at = time.monotonic()
        time.sleep(SETTLE_S)
    assert load.failures() == [], load.failures()[:5]
    served = Counter(version for _, _, version in load.answers)
    assert set(served) == {old, new} and served[old] and served[new], served
    after = [version for at, _, version in load.answers if at > switched_at]
    assert after and set(after) == {new}, Counter(after)


def test_killing_a_replica_loses_no_request_and_the_survivor_stays_ready(
    stack: RunningStack, keys: KeyPool
):
    state = json.loads((stack.state_dir / "stack.json").read_text())
    victim = state["parts"]["proxy-2"]["pid"]
    survivor = stack.replica_urls[0]
    readiness: list[int] = []
    with Load(stack.url, keys) as load, httpx.Client(timeout=30, trust_env=False) as client:
        time.sleep(SETTLE_S)
        os.killpg(victim, signal.SIGKILL)  # the replica and everything in its process group
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < SURVIVOR_WATCH_S:
            readiness.append(client.get(f"{survivor}/ready").status_code)
            time.sleep(0.2)
    assert load.failures() == [], load.failures()[:5]
    assert sum(1 for at, _, _ in load.answers if at > killed_at) > LOAD_THREADS, load.answers[-5:]
    assert readiness and set(readiness) == {200}, Counter(readiness)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.replica_urls[1]}/health", timeout=5, trust_env=False)
    assert stack.process.poll() is None  # the stack goes on with one replica
    assert "proxy-2 exited" in stack.text() and "routes around it" in stack.text()
