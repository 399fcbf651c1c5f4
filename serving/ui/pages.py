"""GET /ui and GET /ui/ops: the two pages, as static HTML. They need no key to load (there is
nothing secret in them); the person types a key, and the pages' scripts send it to the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/ui/static"

router = APIRouter(tags=["ui"])

_HTML = {200: {"content": {"text/html": {}}, "description": "The page (HTML)"}}


@router.get(
    "/ui",
    response_class=FileResponse,
    responses=_HTML,
    summary="Web page: value a property (form, price, interval, explanation, comparables, map)",
    description="Needs a key with the `predict` capability, typed once in the page (kept in the "
                "tab's sessionStorage). Assets under /ui/static; no CDN.",
)
async def valuation_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get(
    "/ui/ops",
    response_class=FileResponse,
    responses=_HTML,
    summary="Web page for operators: champion and challenger, alias history, training jobs",
    description="Needs an admin key, typed once in the page. Links to the RQ dashboard (/rq).",
)
async def operations_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "ops.html", media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """Browsers ask for it on pages that name no icon (the RQ dashboard's, /docs): an answer
    instead of a 404 in every console."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
