"""The web pages as the proxy serves them (in process, the real app with the real Redis and env
key store): the HTML and every asset it names come from the proxy itself, with the security
headers; nothing is loaded from elsewhere and no script or style is inline (the policy forbids
both, so a page that had them would break in a browser). The pages in a browser are tested in
test_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from serving.ui.headers import DASHBOARD_CSP, PAGES_CSP
from serving.ui.pages import STATIC_DIR

PAGES = ("/ui", "/ui/ops")


class _Assets(HTMLParser):
    """What a page loads (src/href), and any inline script or style it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name):
                self.urls.append(attributes[name])
        if "style" in attributes or any(name.startswith("on") for name in attributes):
            self.inline.append(f"<{tag}> with {sorted(attributes)}")
        if tag == "style":
            self.inline.append("<style>")
        self._in_script = tag == "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(f"<script> {data.strip()[:40]}")

    def handle_endtag(self, tag):
        self._in_script = False


def _assets(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_security_headers(client, path) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == PAGES_CSP
    assert "script-src 'self';" in PAGES_CSP and "unsafe-inline" not in PAGES_CSP
    assert "frame-ancestors 'none'" in PAGES_CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_comes_from_the_proxy_and_nothing_is_inline(client, path) -> None:
    found = _assets(client.get(path).text)
    assert found.inline == []
    assets = [url for url in found.urls if url.startswith("/ui/static/")]
    assert assets, "the page loads no asset of its own"
    for url in found.urls:
        assert url.startswith("/"), f"{path} loads {url} from elsewhere"
    for url in assets:
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["x-content-type-options"] == "nosniff", url
        expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        assert answer.headers["content-type"].startswith(expected[Path(url).suffix]), url


def test_no_asset_names_another_origin() -> None:
    """No CDN, no tile server, no web font: the pages work with the proxy alone (offline)."""
    for asset in STATIC_DIR.iterdir():
        text = asset.read_text()
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)
        # The SVG namespace is a name, never fetched.
        assert [u for u in urls if "www.w3.org/2000/svg" not in u] == [], asset.name


def test_the_pages_are_in_the_openapi_schema(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in PAGES:
        assert "text/html" in paths[path]["get"]["responses"]["200"]["content"], path
    assert "/model_rules" in paths and "/jobs" in paths


def test_the_api_keeps_its_own_headers(client) -> None:
    """/docs loads Swagger UI from a CDN: the pages' policy must not reach it."""
    assert "content-security-policy" not in client.get("/docs").headers
    assert "content-security-policy" not in client.get("/health").headers


def test_the_dashboard_asks_for_a_key_and_has_its_own_policy(client) -> None:
    answer = client.get("/rq/queues")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic ")
    assert "missing API key" in answer.json()["detail"]
    assert answer.headers["content-security-policy"] == DASHBOARD_CSP
    assert client.get("/rq/queues", auth=("admin", "not-a-key")).status_code == 401


def test_an_admin_key_opens_the_dashboard_by_header_or_as_a_basic_password(client, api_key) -> None:
    by_header = client.get("/rq/queues", headers={"X-API-Key": api_key})
    assert by_header.status_code == 200, by_header.text
    assert "RQ dashboard" in by_header.text
    by_password = client.get("/rq/queues/json", auth=("anyone", api_key))
    assert by_password.status_code == 200, by_password.text
    assert isinstance(by_password.json(), list)


def test_a_change_from_another_site_is_refused_before_the_dashboard(client, api_key) -> None:
    """A browser sends remembered Basic credentials with a cross-site request too."""
    answer = client.delete("/rq/job/no-such-job", auth=("anyone", api_key),
                           headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert "its own pages" in answer.json()["detail"]


def test_the_icon_browsers_ask_for_is_served(client) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
