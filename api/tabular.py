"""CSV for every tabular answer: one mechanism, not code per route.

A route whose answer is a table (a list of rows, or parallel columns) is decorated with
:func:`tabular`, naming how its answer becomes rows (``rows``) and its columns (``columns``,
known without any row, so that an answer with no rows is a header). The decorator adds the
``format`` query parameter (``json`` | ``csv``); with ``format=csv``, or an ``Accept`` header
that prefers ``text/csv`` to JSON, the route's own answer (a model, a list of models, or the
JSON bytes of a pre-rendered ``Response``) is turned into ``text/csv`` and streamed
(:func:`csv_stream`): a header row, then the rows, a few hundred at a time. Numbers are
written in full precision (``repr``: a float reads back as the same float), times as the JSON
answer gives them (ISO 8601 with an offset), nulls as empty fields, nested objects as dotted
columns (``elements.apt_s``), lists and free-form objects as JSON text in one field. Headers
the route set (``Link`` for the next page) are kept. :func:`install_csv_openapi` declares
``text/csv`` beside JSON in the 200 response of every tabular operation.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import io
import json
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

__all__ = ["CSV", "Rows", "columns_of", "csv_stream", "install_csv_openapi", "parallel",
           "tabular", "wants_csv"]

CSV = "text/csv"
#: rows written per chunk of the streamed answer
_CHUNK_ROWS = 500

Rows = Callable[[Any], Iterable[Mapping[str, Any]]]

FormatQuery = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="`csv`: the answer as text/csv with a header row (as "
          "`Accept: text/csv` asks); `json` (default): JSON, whatever `Accept` says",
          examples=["csv"]),
]


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    """How a route's answer is a table: its rows, and its columns (header order)."""

    rows: Rows
    columns: Callable[[], Sequence[str]]
    name: str


def _q(params: str) -> float:
    for p in params.split(";"):
        k, _, v = p.strip().partition("=")
        if k.strip() == "q":
            try:
                return float(v)
            except ValueError:
                return 0.0
    return 1.0


def wants_csv(request: Request, fmt: str | None) -> bool:
    """``format`` decides when given; else ``Accept``: CSV when it lists ``text/csv`` with a
    quality at least that of ``application/json`` (wildcards do not count for JSON: a client
    that names text/csv and */* wants the CSV)."""
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    csv_q = json_q = 0.0
    for item in accept.split(","):
        kind, _, params = item.partition(";")
        kind = kind.strip().lower()
        if kind == CSV:
            csv_q = max(csv_q, _q(params))
        elif kind == "application/json":
            json_q = max(json_q, _q(params))
    return csv_q > 0 and csv_q >= json_q


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # the shortest text that reads back as the same float
    if isinstance(v, int | str):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _lookup(row: Mapping[str, Any], column: str) -> Any:
    """A row's value of ``column``: its own key, else a dotted path into nested objects."""
    if column in row:
        return row[column]
    v: Any = row
    for part in column.split("."):
        if not isinstance(v, Mapping) or part not in v:
            return None
        v = v[part]
    return v


def csv_stream(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The CSV text of ``rows`` under a header of ``columns``, in chunks of rows; a row's
    nested objects are read by dotted column names; a column a row lacks is empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for n, row in enumerate(rows, 1):
        w.writerow([_cell(_lookup(row, c)) for c in columns])
        if n % _CHUNK_ROWS == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _model_of(annotation: Any) -> type[BaseModel] | type | None:
    """The model (pydantic or dataclass) an annotation holds, through ``X | None``."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel)
                                         or dataclasses.is_dataclass(annotation)):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        got = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return got[0] if len(got) == 1 else None
    return None


def columns_of(model: type, prefix: str = "", skip: Sequence[str] = ()) -> list[str]:
    """The columns of rows shaped like ``model`` (pydantic model or dataclass): its fields
    in order, a nested model's fields as dotted columns; ``skip``: fields left out."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        items = [(f.alias or name, f.annotation) for name, f in model.model_fields.items()]
    else:
        hints = typing.get_type_hints(model)
        items = [(f.name, hints[f.name]) for f in dataclasses.fields(model)]  # type: ignore[arg-type]
    out: list[str] = []
    for name, ann in items:
        if name in skip:
            continue
        sub = _model_of(ann)
        if sub is not None:
            out += columns_of(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def parallel(model: type[BaseModel]) -> tuple[Rows, Callable[[], Sequence[str]]]:
    """Rows and columns of an answer of parallel lists (``SamplesOut``): a column per list
    field of ``model``, a row per index."""

    def columns() -> list[str]:
        return [f.alias or n for n, f in model.model_fields.items()
                if typing.get_origin(f.annotation) is list]

    def rows(data: Any) -> Iterator[dict[str, Any]]:
        names = columns()
        cols = [data[c] for c in names]
        for i in range(len(cols[0]) if cols else 0):
            yield {c: col[i] for c, col in zip(names, cols, strict=True)}

    return rows, functools.cache(columns)


def _data(result: Any) -> Any:
    """The route's answer as JSON data (what its JSON answer holds)."""
    if isinstance(result, Response):
        return json.loads(bytes(result.body))
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    if isinstance(result, list):
        return [_data(r) if isinstance(r, BaseModel) else r for r in result]
    return result


def _answer(table: Table, result: Any, request: Request, fmt: str | None,
            sub: Response) -> Any:
    if not wants_csv(request, fmt):
        return result
    if isinstance(result, Response) and (result.status_code != 200
                                         or not isinstance(result.body, bytes | memoryview)):
        return result  # not the table (e.g. a 503 answer): as it is
    rows = table.rows(_data(result))
    headers = {k: v for k, v in sub.headers.items()
               if k.lower() not in ("content-length", "content-type")}
    if isinstance(result, Response):
        headers.update({k: v for k, v in result.headers.items()
                        if k.lower() not in ("content-length", "content-type")})
    headers["content-disposition"] = f'inline; filename="{table.name}.csv"'
    return StreamingResponse(csv_stream(table.columns(), rows), media_type=f"{CSV}; charset=utf-8",
                             headers=headers)


def tabular(rows: Rows | None = None, *, columns: Sequence[str] | Callable[[], Sequence[str]]
            | type, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a route answer CSV on request (see the module). ``rows``: the rows of its JSON
    answer (default: the answer itself, a list of objects); ``columns``: the header, or a
    model (pydantic or dataclass) whose fields are the columns; ``name``: the file name
    offered (``Content-Disposition``). Put it below ``@router.get(...)``."""
    if isinstance(columns, type):
        model = columns
        cols: Callable[[], Sequence[str]] = functools.cache(lambda: columns_of(model))
    elif callable(columns):
        cols = columns
    else:
        fixed = list(columns)
        cols = lambda: fixed  # noqa: E731
    table = Table(rows or (lambda data: data), cols, name)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        # FastAPI fills one parameter per request of type Request and one of type Response:
        # the route's own where it has them, else added here
        names: dict[type, str] = {}
        added: list[inspect.Parameter] = []
        for kind, name in ((Request, "tabular_request_"), (Response, "tabular_response_")):
            own = next((p.name for p in params if p.annotation is kind), None)
            names[kind] = own or name
            if own is None:
                added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                               annotation=kind))
        added.append(inspect.Parameter("format_", inspect.Parameter.KEYWORD_ONLY,
                                       annotation=FormatQuery, default=None))
        kw_only = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        rest = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        new_sig = sig.replace(parameters=rest + kw_only + added)
        req_name, resp_name = names[Request], names[Response]
        own_names = {p.name for p in params}

        def split(kw: dict[str, Any]) -> tuple[Request, Response, str | None]:
            fmt = kw.pop("format_", None)
            req = kw[req_name] if req_name in own_names else kw.pop(req_name)
            resp = kw[resp_name] if resp_name in own_names else kw.pop(resp_name)
            return req, resp, fmt

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kw: Any) -> Any:
                req, resp, fmt = split(kw)
                return _answer(table, await fn(*args, **kw), req, fmt, resp)
        else:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kw: Any) -> Any:
                req, resp, fmt = split(kw)
                return _answer(table, fn(*args, **kw), req, fmt, resp)

        wrapper.__signature__ = new_sig  # type: ignore[attr-defined]
        wrapper.__tabular__ = table  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI >= 0.16x keeps an included
    router as one route holding the original; the routers' own prefixes are in the paths)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (inner := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(inner.routes)


def install_csv_openapi(app: FastAPI) -> None:
    """Declare ``text/csv`` (with its header row as the example) in the 200 response of every
    operation whose route is :func:`tabular`."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "csv_openapi", False):
            assert app.openapi_schema is not None
            return app.openapi_schema
        schema = build()
        for route in _api_routes(app.routes):
            table = getattr(route.endpoint, "__tabular__", None)
            if table is None:
                continue
            for method in route.methods or ():
                op = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                ok = op.setdefault("responses", {}).setdefault("200", {"description": "OK"})
                ok.setdefault("content", {})[CSV] = {
                    "schema": {"type": "string", "description": "CSV (RFC 4180) with a header "
                               "row: " + ",".join(table.columns())},
                    "example": ",".join(table.columns()) + "\r\n",
                }
        app.state.csv_openapi = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
