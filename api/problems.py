"""Errors as RFC 9457 problem responses: every exception handler of the API, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.errors import ConfigError, KpiError, NotFoundError, StoreError, TierproofError

__all__ = ["PROBLEM", "install_problem_handlers", "problem"]

PROBLEM = "application/problem+json"
# first match wins: subclasses before their bases
_STATUS: list[tuple[type[TierproofError], int]] = [
    (NotFoundError, 404),
    (KpiError, 422),
    (ConfigError, 422),
    (StoreError, 503),
    (TierproofError, 500),
]


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


async def _tierproof(_: Request, exc: Exception) -> JSONResponse:
    status = next(code for cls, code in _STATUS if isinstance(exc, cls))
    return problem(status, type(exc).__name__, str(exc))


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in errors)
    return problem(422, "Invalid request", detail, errors=errors)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, "HTTP error", str(exc.detail))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer the error tree, invalid requests and HTTP errors (404, 405) with problems."""
    app.add_exception_handler(TierproofError, _tierproof)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
