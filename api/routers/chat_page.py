"""GET /: the self-contained chat page (no build step, no external requests)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["chat page"])
_PAGE = Path(__file__).resolve().parents[1] / "static" / "chat.html"
# The page inlines its script and style; nothing may load from elsewhere.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"


@lru_cache(maxsize=1)
def _page() -> str:
    return _PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def chat_page() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})
