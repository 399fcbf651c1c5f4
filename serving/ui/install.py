"""Adds the web pages, their assets, the RQ dashboard and the pages' security headers to the
proxy app (called once by `serving.app.create_app`)."""

from __future__ import annotations

from fastapi import FastAPI
from omegaconf import DictConfig
from starlette.staticfiles import StaticFiles

from serving.ui.headers import DASHBOARD_CSP, PAGES_CSP, SecurityHeadersMiddleware
from serving.ui.pages import STATIC_DIR, STATIC_PATH, router
from serving.ui.rq_dashboard import build_dashboard


def install_ui(app: FastAPI, config: DictConfig) -> None:
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="ui-static")
    dashboard_path = str(config.ui.rq_dashboard_path)
    app.mount(dashboard_path, build_dashboard(config, dashboard_path), name="rq-dashboard")
    app.add_middleware(SecurityHeadersMiddleware,
                       prefixes={"/ui": PAGES_CSP, dashboard_path: DASHBOARD_CSP})
