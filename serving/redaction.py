"""URIs made safe to print: credentials never reach a log line or a message."""

from __future__ import annotations


def redact_uri(uri: str) -> str:
    """`scheme://user:password@host/...` -> `scheme://***@host/...`; other URIs unchanged."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
