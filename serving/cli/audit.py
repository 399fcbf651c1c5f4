"""The audit-trail line of each operator action (serving/audit.py), with who ran it."""

from __future__ import annotations

import getpass

from serving.settings import get_settings


def audit(action: str, status: str = "ok", **fields) -> None:
    """One line in the audit trail; never the key itself."""
    from serving.audit import AuditLog

    trail = AuditLog.from_settings(get_settings(), rotate=False)  # the proxy owns rotation
    try:
        trail.record(action, status=status, actor=actor(), **fields)
    finally:
        trail.close()


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"
