"""The audit trail: one append-only JSON line per prediction, training request, promotion and key
operation, in its own file (not the application log).

Each line: `at` (UTC ISO time), `action`, `status` (HTTP status, or `ok`/`error` for the CLI),
`request_id`, `key_id`, `role`, `actor`, `model_name`, `model_version` (the version actually
served), `inputs`, `outputs`, `latency_ms`, `detail`. API keys, their hashes, Vault tokens and
passwords are never passed in; `key_id` (12 hex digits of the hash) names a key.

Where: `audit.path` in conf/serving.yaml (env AUDIT_LOG_PATH wins; relative paths are under the
project root). The file is opened in append mode; every line is one write followed by a flush.
Retention: the file rotates at UTC midnight (`audit.jsonl.YYYY-MM-DD`) and rotated files older
than `audit.retention_days` are deleted (`logging.handlers.TimedRotatingFileHandler`). Several
processes may append to one file (the CLI appends without rotating); each line is written whole.
Only one process should rotate a file, so give each proxy replica its own path in production (or
ship the lines to a store of your choice). A rotation never overwrites an existing rotated file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from omegaconf import DictConfig

from serving.logging import get_logger
from valuation.config import resolve_path

log = get_logger(__name__)

AUDIT_PATH_ENV = "AUDIT_LOG_PATH"


def audit_path(settings: DictConfig) -> Path:
    configured = os.environ.get(AUDIT_PATH_ENV) or str(settings.audit.path)
    return resolve_path(configured)


class _NeverOverwritingRotation(logging.handlers.TimedRotatingFileHandler):
    """Daily rotation whose target name never replaces an existing file: the standard handler
    deletes `audit.jsonl.<date>` if it exists, which would erase lines another writer rotated."""

    def rotation_filename(self, default_name: str) -> str:
        name, n = default_name, 0
        while os.path.exists(name):
            n += 1
            name = f"{default_name}.{n}"
        return name


class AuditLog:
    """Appends audit events to a JSON-lines file, rotated daily by the proxy (`rotate=True`);
    short-lived writers such as the CLI append without rotating (`rotate=False`)."""

    def __init__(self, path: Path, retention_days: int = 90, max_input_rows: int = 1000,
                 rotate: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_input_rows = int(max_input_rows)
        self._handler: logging.FileHandler
        if rotate:
            self._handler = _NeverOverwritingRotation(
                self.path, when="midnight", backupCount=int(retention_days), utc=True,
                encoding="utf-8",
            )
        else:
            self._handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        # A logger of its own, outside logging's registry: nothing propagates to the app log.
        self._logger = logging.Logger(f"audit:{self.path}", level=logging.INFO)
        self._logger.addHandler(self._handler)

    @classmethod
    def from_settings(cls, settings: DictConfig, rotate: bool = True) -> AuditLog:
        section = settings.audit
        return cls(audit_path(settings), int(section.retention_days), int(section.max_input_rows),
                   rotate=rotate)

    def record(
        self,
        action: str,
        *,
        status: int | str,
        request_id: str | None = None,
        key_id: str | None = None,
        role: str | None = None,
        actor: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        inputs: Any = None,
        outputs: Any = None,
        latency_ms: float | None = None,
        detail: Any = None,
        cache: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
        served_alias: str | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "action": action,
            "status": status,
            "request_id": request_id,
            "key_id": key_id,
            "role": role,
            "actor": actor or key_id,
            "model_name": model_name,
            "model_version": model_version,
            "inputs": self._bounded(inputs, event_field="inputs"),
            "outputs": self._bounded(outputs, event_field="outputs"),
            "latency_ms": latency_ms,
            "detail": detail,
        }
        if cache is not None:  # rows answered from the prediction cache (serving/prediction/cache.py)
            event["cache"] = cache
        if served_alias is not None:  # who answered a prediction: champion, canary, explicit...
            event["served_alias"] = served_alias
        if extras:  # what /predict returned beside prices (e.g. that comparables were returned)
            event["extras"] = extras
        try:
            line = orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            self._logger.info(line)  # the handler writes the line and flushes
        except Exception as error:  # the audit must never turn a served request into a 500
            log.error("audit_write_failed", action=action, error=repr(error), path=str(self.path))

    def _bounded(self, value: Any, event_field: str) -> Any:
        if isinstance(value, list) and len(value) > self.max_input_rows:
            return {"first_rows": value[: self.max_input_rows], "total_rows": len(value),
                    "truncated": True, "field": event_field}
        return value

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
