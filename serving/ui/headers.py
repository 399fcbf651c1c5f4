"""Security headers of the web pages (/ui, and the RQ dashboard mounted at /rq).

Our own pages run no inline script or style and load nothing from elsewhere: their policy allows
the proxy's own origin only. The RQ dashboard's templates (rq-dashboard-fast) carry inline
`<script>` blocks and `style=` attributes, so its policy must allow inline code; everything else
(origin, framing, form targets) is as strict. The API's JSON answers and /docs (whose Swagger UI
comes from a CDN) keep their own headers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGES_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
COMMON_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate CSP level 2
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def page_headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-security-policy", csp.encode())] + [
        (name.encode(), value.encode()) for name, value in COMMON_HEADERS.items()
    ]


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP answer whose path starts with one of `prefixes`
    (a mapping of path prefix to its Content-Security-Policy)."""

    def __init__(self, app: ASGIApp, prefixes: dict[str, str]) -> None:
        self.app = app
        self.prefixes = {prefix: page_headers(csp) for prefix, csp in prefixes.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = self._headers_for(scope) if scope["type"] == "http" else None
        if headers is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in headers if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]] | None:
        path = scope.get("path", "")
        for prefix, headers in self.prefixes.items():
            if _under(path, prefix):
                return headers
        return None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
