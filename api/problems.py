"""Errors as RFC 9457 problem responses: every exception handler of the API, in one place.

Every error the API answers is ``application/problem+json``: the error tree (``_STATUS``),
invalid requests (422), HTTP errors (404, 405 with ``Allow``), parameters out of range or
over a configured limit (400, :class:`BadParameter`), and any unexpected exception (500 with
an ``id`` that the log line carrying the traceback also holds; the response never carries the
traceback). Details never carry an absolute file path, a URL's credentials or a configured
secret, and echo at most :data:`ECHO_MAX` characters of any one input. ``install_openapi``
declares these responses, with the :class:`Problem` schema, on every operation."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.errors import ConfigError, KpiError, NotFoundError, StoreError, TierproofError

__all__ = [
    "ECHO_MAX", "PROBLEM", "BadParameter", "Problem", "echo", "install_problem_handlers",
    "problem",
]

log = logging.getLogger("api")

PROBLEM = "application/problem+json"
#: characters of one input that an error message repeats at most
ECHO_MAX = 200
#: characters of a problem's detail at most (a backstop: messages echo through ``echo``)
_DETAIL_MAX = 2000


class BadParameter(TierproofError):
    """A request parameter the API understood but will not serve: an instant outside the
    range of stored times, a window or page over a configured limit. Answered 400, naming
    the parameter and, when a setting is the reason, the setting and its value."""

    def __init__(self, parameter: str, message: str, limit: tuple[str, object] | None = None
                 ) -> None:
        super().__init__(f"parameter {parameter!r}: {message}")
        self.parameter = parameter
        self.limit = limit


# first match wins: subclasses before their bases
_STATUS: list[tuple[type[TierproofError], int]] = [
    (BadParameter, 400),
    (NotFoundError, 404),
    (KpiError, 422),
    (ConfigError, 422),
    (StoreError, 503),
    (TierproofError, 500),
]


class ParameterProblem(BaseModel):
    parameter: str = Field(description="where: query.from, path.tag_path, ...")
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every error of the API."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"type": "about:blank", "title": "NotFoundError", "status": 404,
         "detail": "no tag 'demo/machining/line1/lathe-09/state'; GET /api/v1/tags lists them"},
        {"type": "about:blank", "title": "BadParameter", "status": 400,
         "detail": "parameter 'limit': 500000 is more than api.max_samples (100000): ask for fewer "
                   "samples per request", "parameter": "limit",
         "limit": {"name": "api.max_samples", "value": 100000}}]})

    type: str = Field(default="about:blank", description="always about:blank: see `title`")
    title: str = Field(description="the kind of error: BadParameter, NotFoundError, KpiError, "
                                   "StoreError, Invalid request, HTTP error, Internal error")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what was wrong, naming the parameter; inputs are echoed "
                                    f"at most {ECHO_MAX} characters long")
    id: str | None = Field(default=None, description="500 only: the id of the log line that "
                                                     "holds the traceback")
    parameter: str | None = Field(default=None, description="400: the parameter at fault")
    limit: dict[str, Any] | None = Field(
        default=None, description="400 over a limit: the setting (`name`) and its `value`")
    errors: list[ParameterProblem] | None = Field(default=None,
                                                  description="422: one entry per invalid parameter")


def echo(value: object, n: int = ECHO_MAX) -> str:
    """``repr`` of an input for an error message, cut to ``n`` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= n:
        return repr(text)
    return f"{text[:n]!r}... ({len(text)} characters)"


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# an absolute file path of two or more components, not an API path
_ABS_PATH = re.compile(r"(?<![\w.:/~])/(?!api/)(?:[\w.@+=,-]+/)+[\w.@+=,-]*")
_LONG_TOKEN = re.compile(rf"\S{{{ECHO_MAX + 1},}}")


def _secret_values(obj: Any, out: set[str]) -> set[str]:
    """Every SecretStr value in a settings object (walked like a JSON document)."""
    if isinstance(obj, SecretStr):
        if v := obj.get_secret_value():
            out.add(v)
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            _secret_values(getattr(obj, name), out)
    elif isinstance(obj, dict):
        for v in obj.values():
            _secret_values(v, out)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _secret_values(v, out)
    return out


def scrub(text: str, secret_values: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """``text`` fit for a response: no configured secret, no URL credentials, file paths cut
    to their last component, long tokens cut to ECHO_MAX characters, at most _DETAIL_MAX."""
    for s in secret_values:
        text = text.replace(s, "<redacted>")
    text = _USERINFO.sub("<redacted>@", text)
    text = _ABS_PATH.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1] or "/", text)
    text = _LONG_TOKEN.sub(lambda m: f"{m.group()[:ECHO_MAX]}...({len(m.group())} characters)",
                           text)
    if len(text) > _DETAIL_MAX:
        text = f"{text[:_DETAIL_MAX]}...({len(text)} characters)"
    return text


def _secrets_of(request: Request | None) -> set[str]:
    settings = getattr(request.app.state, "settings", None) if request is not None else None
    if settings is None:
        return set()
    cached: set[str] | None = getattr(request.app.state, "problem_secrets", None)  # type: ignore[union-attr]
    if cached is None:
        cached = _secret_values(settings, set())
        request.app.state.problem_secrets = cached  # type: ignore[union-attr]
    return cached


def problem(status: int, title: str, detail: str, *, request: Request | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response; ``detail`` is scrubbed (see ``scrub``)."""
    body = {"type": "about:blank", "title": title, "status": status,
            "detail": scrub(detail, _secrets_of(request)), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _new_id() -> str:
    return secrets.token_hex(6)


def _where(scope: Scope) -> str:
    return f"{scope.get('method', '?')} {str(scope.get('path', '?'))[:ECHO_MAX]}"


def _internal(request: Request | None, error_id: str) -> JSONResponse:
    return problem(500, "Internal error",
                   f"an unexpected error; the gateway's log holds it under id {error_id}",
                   request=request, id=error_id)


async def _tierproof(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for cls, code in _STATUS if isinstance(exc, cls))
    if status == 500:  # an error of the tree that no narrower class answers: a bug
        error_id = _new_id()
        log.error("unexpected error %s in %s: %s", error_id, _where(request.scope), exc,
                  exc_info=exc)
        return _internal(request, error_id)
    extra: dict[str, Any] = {}
    if isinstance(exc, BadParameter):
        extra["parameter"] = exc.parameter
        if exc.limit is not None:
            extra["limit"] = {"name": exc.limit[0], "value": exc.limit[1]}
    return problem(status, type(exc).__name__, str(exc), request=request, **extra)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"])[:ECHO_MAX],
         "reason": scrub(str(e["msg"]))[:ECHO_MAX * 2]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in errors)
    return problem(422, "Invalid request", detail, request=request, errors=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # 405 carries Allow (Starlette sets it on the exception)
    return problem(exc.status_code, "HTTP error", str(exc.detail), request=request,
                   headers=dict(exc.headers) if exc.headers else None)


class _Unexpected:
    """ASGI middleware (inside Starlette's ServerErrorMiddleware, outside the exception
    handlers): an exception no handler answers becomes a 500 problem with an id, logged once
    with its traceback under that id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            error_id = _new_id()
            log.error("unexpected error %s in %s", error_id, _where(scope), exc_info=exc)
            if started:  # too late for a problem: the client sees the connection end
                return
            await _internal(None, error_id)(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer the error tree, invalid requests, HTTP errors (404, 405) and unexpected
    exceptions with problems, and declare them in the OpenAPI (``install_openapi``)."""
    app.add_exception_handler(TierproofError, _tierproof)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_middleware(_Unexpected)
    install_openapi(app)


# --------------------------------------------------------------------------- OpenAPI

_WHY = {
    400: "A parameter out of range (an instant outside 1970..2262) or over a configured limit "
         "(`api.max_kpi_window_days`, `api.max_samples`): `parameter` and `limit` say which",
    404: "No such tag, tier or resource (or no such path)",
    405: "The path does not support the method; `Allow` lists those it does",
    422: "A parameter that is not understood (not an instant, not an integer, an empty window)",
    500: "An unexpected error: `id` names the log line that holds it (never a stack trace)",
    503: "The store could not be read (e.g. InfluxDB unreachable)",
}


def _problem_response(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": _WHY[status],
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 405:
        out["headers"] = {"Allow": {"description": "the methods the path supports",
                                    "schema": {"type": "string"}}}
    return out


def _statuses(path: str, op: dict[str, Any]) -> list[int]:
    out = [405, 500, 503]
    if op.get("parameters"):  # a tag, asset, line or tier that does not exist: 404
        out += [400, 404, 422]
    elif path.endswith("/spool"):  # a store without a spool
        out.append(404)
    return sorted(out)


_LOCAL_TIME = {"type": "string", "pattern": r"^\d\d:\d\d(:\d\d(\.\d{1,6})?)?$",
               "description": "a local time of day, HH:MM[:SS[.ffffff]] (no UTC offset)"}


def _local_times(node: Any) -> None:
    """pydantic declares a ``datetime.time`` as JSON Schema's ``format: time``, which requires
    a UTC offset (RFC 3339 full-time); the API's times of day (calendar shifts and stops)
    are local and have none: declare them as what they are."""
    if isinstance(node, dict):
        if node.get("format") == "time":
            node.pop("format")
            node.update({k: v for k, v in _LOCAL_TIME.items() if k not in node or k != "description"})
        for v in node.values():
            _local_times(v)
    elif isinstance(node, list):
        for v in node:
            _local_times(v)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare the problem responses of every operation (replacing
    FastAPI's own 422 schema, which is not what the API answers)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "problem_openapi", False):
            assert app.openapi_schema is not None
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        doc = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(doc.pop("$defs", {}))
        schemas["Problem"] = doc
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        _local_times(schemas)
        for path, item in schema.get("paths", {}).items():
            for op in item.values():
                responses = op.setdefault("responses", {})
                for status in _statuses(path, op):
                    problem, own = _problem_response(status), responses.get(str(status))
                    if own is not None and own.get("content") and status != 422:
                        # the route's own answer with this status (a degraded /health is a
                        # HealthOut, 503) stays declared, the problem beside it; FastAPI's own
                        # 422 (HTTPValidationError) is not what the API answers: replaced
                        own["content"].update(problem["content"])
                        own["description"] = f"{own['description']}; or a problem: {problem['description']}"
                    else:
                        responses[str(status)] = problem
        app.state.problem_openapi = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
