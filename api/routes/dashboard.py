"""The browser dashboard: one static page that reads the API."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def get_dashboard() -> str:
    return resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")
