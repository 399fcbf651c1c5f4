"""Vault going away for real: cached keys serve until the TTL, then the store fails closed;
Vault coming back: the store works again. Also token expiry and re-login.

Time is a controllable clock handed to the store so the assertions do not depend on timing;
the outage itself is real (the bao process is terminated).
"""

from __future__ import annotations

import time

import pytest
from omegaconf import OmegaConf

from serving.keys.store import NOT_CACHED, KeyStoreUnavailable
from serving.keys.vault_store import VaultKeyStore
from serving.vault import VaultCredentials, VaultSession
from serving.vault_init import bootstrap
from tests.support.bao import start_bao, vault_settings


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.slow
def test_outage_serves_cache_until_ttl_then_fails_closed_then_recovers(tmp_path) -> None:
    server = start_bao(tmp_path)
    try:
        settings = vault_settings(server.addr)
        bootstrap(server.addr, server.root_token, api_key="boot-key", settings=settings)
        clock = ManualClock()
        # The root token, not AppRole: a restarted dev server has forgotten the AppRole role (it
        # keeps everything in memory) but gets the same root token id, so this store reconnects.
        session = VaultSession(
            server.addr, VaultCredentials(token=server.root_token), timeout_s=0.5, clock=clock
        )
        store = VaultKeyStore(
            session,
            kv_mount="secret",
            keys_path=settings.vault.keys_path,
            cache_ttl_s=2.0,
            refresh_s=0.5,
            clock=clock,
        )
        key, record = store.create("alice", "predict")
        assert store.verify("boot-key").role == "admin"

        server.stop()
        with pytest.raises(KeyStoreUnavailable, match="unavailable"):
            store.refresh()  # Vault is really gone

        clock.advance(1.0)  # stale (past refresh_s) but within the TTL: the cache answers
        assert store.verify_cached(key) == record  # what the API's event loop asks first
        assert store.verify(key) == record
        assert store.verify("boot-key").role == "admin"
        assert store.verify("not-a-key") is None
        refresher = store._cache._background_refresh  # the refresh that verify started, failing now
        assert refresher is not None
        refresher.join(timeout=5)

        clock.advance(1.5)  # 2.5 s after the last good read: past the TTL
        assert store.verify_cached(key) is NOT_CACHED  # the API then asks verify, in a thread
        with pytest.raises(KeyStoreUnavailable, match="Vault at .* unavailable"):
            store.verify(key)
        with pytest.raises(KeyStoreUnavailable):
            store.verify("boot-key")
        assert store.healthy() is False

        server.restart()
        # What `make stack` / the compose init container does when Vault comes back.
        bootstrap(server.addr, server.root_token, api_key="boot-key", settings=settings)
        clock.advance(1.0)
        assert store.verify("boot-key").role == "admin"
        assert store.healthy() is True
    finally:
        server.stop()


def short_lived_role_settings(bao, keys_path):
    settings = vault_settings(bao.addr, keys_path)
    return OmegaConf.merge(
        settings,
        {"vault": {"approle_role": f"short-{keys_path[-8:]}", "token_ttl": "2s",
                   "token_max_ttl": "2s"}},
    )


def test_approle_token_near_expiry_is_replaced_before_use(bao, keys_path) -> None:
    settings = short_lived_role_settings(bao, keys_path)
    result = bootstrap(bao.addr, bao.root_token, api_key="boot", settings=settings)
    clock = ManualClock()
    session = VaultSession(
        bao.addr,
        VaultCredentials(role_id=result.role_id, secret_id=result.secret_id),
        timeout_s=2.0,
        clock=clock,
    )
    first = session.call(lambda c: c.token)
    assert session.call(lambda c: c.token) == first  # still fresh: same token
    clock.advance(1.5)  # 2 s lifetime, less than half left: log in again
    assert session.call(lambda c: c.token) != first


@pytest.mark.slow
def test_expired_approle_token_is_replaced_after_403(bao, keys_path) -> None:
    settings = short_lived_role_settings(bao, keys_path)
    result = bootstrap(bao.addr, bao.root_token, api_key="boot", settings=settings)
    frozen = ManualClock()  # the session believes no time passes, so only Vault's 403 tells it
    session = VaultSession(
        bao.addr,
        VaultCredentials(role_id=result.role_id, secret_id=result.secret_id),
        timeout_s=2.0,
        clock=frozen,
    )
    store = VaultKeyStore(
        session, kv_mount="secret", keys_path=keys_path, cache_ttl_s=60, refresh_s=15
    )
    store.refresh()
    first = session.call(lambda c: c.token)
    time.sleep(3)  # the token's real 2 s lifetime runs out
    assert store.refresh()  # 403 -> new AppRole login -> retried read succeeds
    assert session.call(lambda c: c.token) != first
