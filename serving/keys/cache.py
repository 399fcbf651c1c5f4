"""The key table in memory, and when to read it again.

A verification costs no round trip: keys are matched against the cached table. The table is read
again
- when it is `refresh_s` old, by a background thread, so a revoked key is refused within
  `refresh_s` while Vault answers (a request that finds it older starts that read itself);
- at once when a request brings a well-formed key the table does not hold (a key created a moment
  ago works on its first request), at most once per `refresh_s`: a flood of unknown keys costs
  Vault one read per interval beside the periodic one, not one per request.
When Vault stops answering, the cached table keeps working until it is `cache_ttl_s` old; then
`KeyStoreUnavailable` (fail closed: the proxy answers 503 rather than trusting stale keys).
A table's age counts from the moment its read began.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from serving.keys.records import KeyRecord
from serving.keys.store import KeyStoreError, KeyStoreUnavailable

KeyTable = dict[str, KeyRecord]


class KeyTableCache:
    """The last key table read by `load`, with its age, and the threads that keep it fresh.

    `load` reads the table from its source, raising KeyStoreUnavailable when the source does not
    answer (remembered for `failure_backoff_s`, so an outage does not make every request wait for
    its own timeout) or KeyStoreError when it answers with something unusable.
    """

    def __init__(
        self,
        load: Callable[[], KeyTable],
        *,
        source: str,
        refresh_s: float,
        cache_ttl_s: float,
        failure_backoff_s: float,
        close_wait_s: float,
        clock: Callable[[], float],
    ) -> None:
        if not 0 < refresh_s <= cache_ttl_s:
            raise ValueError(
                f"vault.refresh_s ({refresh_s}) must be > 0 and <= vault.cache_ttl_s ({cache_ttl_s})"
            )
        self._load = load
        self._source = source
        self._refresh_s = float(refresh_s)
        self._cache_ttl_s = float(cache_ttl_s)
        self._failure_backoff_s = float(failure_backoff_s)
        self._close_wait_s = float(close_wait_s)
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._refresh_lock = threading.Lock()  # one read of the source at a time
        self._table: KeyTable | None = None
        self._loaded_at = float("-inf")
        self._last_failure_at = float("-inf")
        self._last_miss_read_at = float("-inf")
        self._background_refresh: threading.Thread | None = None
        self._stop = threading.Event()
        self._periodic: threading.Thread | None = None

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> KeyTable:
        """Read the table from the source now (after any read already under way)."""
        with self._refresh_lock:
            return self._read()

    def remember(self, table: KeyTable, read_at: float | None = None) -> KeyTable:
        """Take `table` as the current one, as of `read_at` (default now: what a write just
        stored), unless the cached one is newer (a write that ended during a slower read)."""
        with self._lock:
            as_of = self._clock() if read_at is None else read_at
            if as_of >= self._loaded_at:
                self._table, self._loaded_at = table, as_of
        return table

    def usable(self) -> KeyTable | None:
        """The cached table while within its TTL (read again in the background once it is older
        than refresh_s), else None: only the source can answer now. Never waits on I/O."""
        with self._lock:
            table, age = self._table, self._age()
        if table is not None and age < self._refresh_s:
            return table
        if table is not None and age < self._cache_ttl_s:
            self._refresh_in_background()
            return table
        return None

    def current(self) -> KeyTable:
        """The usable cached table, else one read now (which may raise KeyStoreUnavailable)."""
        table = self.usable()
        return table if table is not None else self._refresh_blocking()

    def fresh(self) -> bool:
        """Whether the cached table is younger than refresh_s."""
        with self._lock:
            return self._table is not None and self._age() < self._refresh_s

    # -- a well-formed key the table does not hold ----------------------------------------------
    def miss_read_due(self) -> bool:
        """Whether a miss may read the table again now (none did within refresh_s, and the
        source has not just failed). Never waits on I/O."""
        with self._lock:
            return self._miss_read_due()

    def read_after_miss(self) -> KeyTable | None:
        """The table read again for a miss when one is due, else None (also when the read fails:
        the cached table stands, and the failure is remembered)."""
        with self._lock:
            if not self._miss_read_due():
                return None
            self._last_miss_read_at = self._clock()
        try:
            return self.refresh()
        except KeyStoreError:
            return None

    def _miss_read_due(self) -> bool:
        now = self._clock()
        return (
            now - self._last_miss_read_at >= self._refresh_s
            and now - self._last_failure_at >= self._failure_backoff_s
        )

    # -- background ---------------------------------------------------------------------------
    def start(self) -> None:
        """Keep the table fresh in a daemon thread until `close()`."""
        if self._periodic is None:
            self._stop.clear()
            self._periodic = threading.Thread(
                target=self._refresh_periodically, name="api-key-refresh", daemon=True
            )
            self._periodic.start()

    def close(self) -> None:
        self._stop.set()
        if self._periodic is not None:
            self._periodic.join(timeout=self._close_wait_s)
            self._periodic = None

    def _refresh_periodically(self) -> None:
        delay = self._refresh_s
        while not self._stop.wait(delay):
            with self._lock:
                age = self._age()
            if age < self._refresh_s:  # a miss or a write read it meanwhile
                delay = self._refresh_s - age
                continue
            self._refresh_if_stale()
            delay = self._refresh_s

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._background_refresh is not None and self._background_refresh.is_alive():
                return
            self._background_refresh = threading.Thread(
                target=self._refresh_if_stale, name="api-key-refresh-once", daemon=True
            )
            self._background_refresh.start()

    def _refresh_if_stale(self) -> None:
        """Read the table unless a read that ended while waiting made it fresh (the periodic
        thread and a request's background read meet here). Failures are logged where they are
        raised; the cache serves until its TTL."""
        with self._refresh_lock, contextlib.suppress(KeyStoreError):
            with self._lock:
                fresh = self._table is not None and self._age() < self._refresh_s
            if not fresh:
                self._read()

    # -- internals ----------------------------------------------------------------------------
    def _refresh_blocking(self) -> KeyTable:
        # One caller at a time asks the source; the others reuse its answer (or its failure, for
        # a moment, so an outage does not make every request wait for its own timeout).
        with self._refresh_lock:
            with self._lock:
                table, age = self._table, self._age()
                failed_recently = self._clock() - self._last_failure_at < self._failure_backoff_s
            if table is not None and age < self._cache_ttl_s:
                return table
            if failed_recently:
                raise KeyStoreUnavailable(
                    f"cannot verify API keys: {self._source} is unavailable and the cached "
                    "keys have expired"
                )
            return self._read()

    def _read(self) -> KeyTable:
        """Caller holds _refresh_lock."""
        started = self._clock()
        try:
            table = self._load()
        except KeyStoreUnavailable:
            with self._lock:
                self._last_failure_at = self._clock()
            raise
        return self.remember(table, read_at=started)

    def _age(self) -> float:
        return self._clock() - self._loaded_at
