"""The browser dashboard: one static page that reads the API, and its static files under
``/static/`` (its ES modules app.js, core.js, i18n.js, charts.js, views/*.js, style.css, and the
vendored Apache ECharts, api/static/vendor/echarts: no CDN, no build step, works offline)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter()

#: the package's static directory; package-data ships it with ``pip install .``
STATIC_DIR = resources.files("api").joinpath("static")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def get_dashboard() -> str:
    return STATIC_DIR.joinpath("index.html").read_text(encoding="utf-8")


def static_files() -> StaticFiles:
    """``/static/...`` (auth leaves it open: it holds no plant data)."""
    return StaticFiles(directory=str(STATIC_DIR))
