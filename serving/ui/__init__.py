"""The proxy's web pages: /ui (a valuation for a person), /ui/ops (the operator's view) and the
RQ dashboard at /rq, all served by the proxy itself (no CDN, no tile server: they work offline).

`install_ui(app, ...)` adds them to the app `serving.app.create_app` builds. The pages are static
files (HTML, CSS, JavaScript we wrote, under static/) that call the API with the key the person
types once (kept in the tab's sessionStorage); every HTML answer carries the security headers of
`serving.ui.headers`.
"""

from serving.ui.install import install_ui

__all__ = ["install_ui"]
