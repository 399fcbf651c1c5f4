"""The RQ dashboard (rq-dashboard-fast) mounted inside the proxy, for admin keys only.

rq-dashboard-fast has its own optional tokens (a YAML file of hashes); without them it lets
anyone in as admin. We leave its tokens off and put `AdminKeyGuard` in front of it instead, so
the proxy's key store, roles, rate limits and audit trail decide, as for every other endpoint:

- the key comes in the `X-API-Key` header (scripts), or as the password of HTTP Basic
  authentication (a browser: it asks once, any user name, and sends it on with every request
  under the mount, including the dashboard's own fetches);
- no or an unknown key: 401 with a Basic challenge; a key without the `rq_dashboard`
  capability: 403;
- a request that changes something (delete, requeue) coming from another site's page is refused:
  a browser sends remembered Basic credentials with any request, so its `Origin` /
  `Sec-Fetch-Site` must say it comes from this origin.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request
from omegaconf import DictConfig
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.auth import API_KEY_HEADER, require
from serving.api.errors import error_response
from serving.roles import Capability
from serving.settings import secret

BASIC_CHALLENGE = 'Basic realm="RQ dashboard: the password is an admin API key", charset="UTF-8"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def redis_url(config: DictConfig) -> str:
    """The proxy's Redis (conf/serving.yaml `redis:`, password from env REDIS_PASSWORD) as a URL,
    the form rq-dashboard-fast takes. It holds the password: never log it."""
    password = secret("REDIS_PASSWORD")
    credentials = f":{quote(password, safe='')}@" if password else ""
    return (f"redis://{credentials}{config.redis.host}:{int(config.redis.port)}"
            f"/{int(config.redis.db)}")


def build_dashboard(config: DictConfig, path: str) -> ASGIApp:
    """rq-dashboard-fast for the proxy's Redis, served under `path`, behind `AdminKeyGuard`.
    Builds nothing that connects: the dashboard opens Redis per request."""
    from rq_dashboard_fast import RedisQueueDashboard

    with warnings.catch_warnings():
        # It passes FastAPI's deprecated `root_path=`; its own choice, harmless under a mount.
        warnings.filterwarnings("ignore", message=".*root_path.*")
        dashboard = RedisQueueDashboard(redis_url(config), path, title="RQ dashboard",
                                        docs_url=None, redoc_url=None, openapi_url=None)
    return AdminKeyGuard(dashboard)


class AdminKeyGuard:
    """Lets a request through to `app` only with a key whose role grants `rq_dashboard`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._authenticate = require(Capability.RQ_DASHBOARD)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            if request.method not in SAFE_METHODS and not _same_origin(request):
                raise HTTPException(403, "a change to the RQ dashboard must come from its own "
                                         "pages (Origin / Sec-Fetch-Site of another site)")
            await self._authenticate(request, _presented_key(request))
        except HTTPException as error:
            headers = dict(error.headers or {})
            if error.status_code == 401:
                headers["WWW-Authenticate"] = BASIC_CHALLENGE
            response = error_response(request, error.status_code, error.detail, headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _presented_key(request: Request) -> str | None:
    header = request.headers.get(API_KEY_HEADER)
    if header:
        return header
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, _, password = decoded.partition(":")
    return password or None


def _same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another site. Clients that are not
    browsers send neither header (and hold the key themselves)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host")
