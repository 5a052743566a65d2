"""Declared evidence through the API: read, supply and audit the declared items (``api.declared``).

Reads are GETs, changes PUT and DELETE (the ``write`` scope, decided centrally from the
method). Who supplied a version is :func:`caller`: the API key's name once requests carry one
(``request.state.api_key``), else the ``X-Supplied-By`` header, which is then required.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Union
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, create_model

from config.base import Model
from config.errors import ConfigError, NotFoundError
from config.times import Calendar, iso, to_ns

from ..declared import ITEMS, DeclaredEvidence, DeclaredInvalid, config_path, validate
from ..deps import NowDep, instant
from ..kpi_models import DeclaredVersionOut
from ..plant_time import ZonesDep
from ..problems import ECHO_MAX, PROBLEM, problem
from ..service import KpiService

__all__ = ["ITEM_MODELS", "DeclaredItemName", "DeclaredOut", "caller", "router"]

#: the largest body a change may send: an asset register of a thousand machines is ~250 kB
MAX_BODY_BYTES: Final = 1 << 20


class _BoundedRoute(APIRoute):
    """A route whose request body is read at most MAX_BODY_BYTES far: a larger one is a 413
    problem before anything is parsed (every request is bounded in memory)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            if request.method in ("PUT", "POST", "PATCH"):
                declared_length = request.headers.get("content-length", "")
                if declared_length.isdigit() and int(declared_length) > MAX_BODY_BYTES:
                    return _too_large(request)
                body = bytearray()
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return _too_large(request)
                request._body = bytes(body)  # what request.body() answers from now on
            return await handler(request)

        return bounded


def _too_large(request: Request) -> JSONResponse:
    return problem(413, "HTTP error", f"the request body is larger than {MAX_BODY_BYTES} bytes",
                   request=request)


router = APIRouter(prefix="/api/v1", tags=["declared"], route_class=_BoundedRoute)


class DeclaredItemName(StrEnum):
    """A declared item, as the API names it (``api.declared.ITEMS``)."""

    assets = "assets"
    calendar = "calendar"
    planned_downtime = "planned-downtime"
    labour_hours = "labour-hours"
    operating_cost = "operating-cost"
    ai_scenarios = "ai-scenarios"
    maturity = "maturity"
    energy_benchmark = "energy-benchmark"
    emission_factor = "emission-factor"
    references = "references"


assert {i.value for i in DeclaredItemName} == set(ITEMS)

_LABOUR_EXAMPLE: list[dict[str, Any]] = [
    {"period": "2026-11", "amount": 5200, "unit": "h", "source": "MES labour report 2026-11"}]


class _DeclaredOutBase(BaseModel):
    """Every item's answer (its fields are ``_item_model``'s, in the answers' order)."""


_REJECTED_DOC = ("why the latest version supplied is not in force (it no longer fits the "
                 "configuration file, e.g. a tag names an asset it lacks); null when it is")


#: the shift calendar as the ``calendar`` item answers it: the configuration's Calendar without
#: its planned stops (those are the ``planned-downtime`` item)
_CALENDAR_FIELDS: dict[str, Any] = {name: (f.annotation, f) for name, f in
                                    Calendar.model_fields.items() if name != "planned_stops"}
ShiftCalendar = create_model(
    "ShiftCalendar", __base__=Model, __doc__="The shift calendar: time zone, shifts and holidays "
    "(its planned stops are the planned-downtime item).", **_CALENDAR_FIELDS)


def _value_type(item: str) -> Any:
    """The type of ``item``'s value in an answer: the configuration's own (``ITEMS``)."""
    return ShiftCalendar if item == "calendar" else ITEMS[item].value_type


def _item_model(item: str) -> type[_DeclaredOutBase]:
    """One item's answer: ``item`` fixed to its name, ``value`` of the item's own type (the
    fields in the order the answers have always had)."""
    spec = ITEMS[item]
    fields: dict[str, Any] = {
        "item": (Literal[item], Field(description="the item's name in the API")),
        "config_path": (str, Field(description="where the item lives in the configuration file")),
        "version": (DeclaredVersionOut, ...),
        "in_force": (bool, Field(description="this version is the one KPIs and assessments use")),
        "value": (_value_type(item), Field(description=f"the item's value, as `{spec.path}` of "
                                           "the configuration file holds it")),
        "rejected": (str | None, Field(default=None, description=_REJECTED_DOC)),
    }
    title = "".join(p.title() for p in item.split("-"))
    return create_model(f"Declared{title}Out", __base__=_DeclaredOutBase,
                        __doc__=f"Declared `{item}`: {spec.summary}.", **fields)


#: one answer model per declared item, by name
ITEM_MODELS: Final[dict[str, type[_DeclaredOutBase]]] = {i: _item_model(i) for i in ITEMS}

_OUT_EXAMPLE: dict[str, Any] = {
    "item": "labour-hours", "config_path": "declared.labour_hours",
    "version": {"version": 3, "supplied_by": "mes-sync", "supplied_at": "2026-12-01T02:00:00Z",
                "source": "api", "reason": "November's figure from the MES"},
    "in_force": True,
    "value": [{**_LABOUR_EXAMPLE[0], "supplied_by": "mes-sync", "supplied_at": "2026-12-01"}],
    "rejected": None}


if TYPE_CHECKING:
    _AnyItemOut = _DeclaredOutBase
else:  # one of the item models, told apart by `item` (OpenAPI: oneOf with a discriminator)
    _AnyItemOut = Annotated[Union[tuple(ITEM_MODELS.values())], Field(discriminator="item")]  # noqa: UP007


class DeclaredOut(RootModel[_AnyItemOut]):
    """A declared item's value (in force, or the version asked for) and its version: one
    model per item (``item`` tells which), its ``value`` typed as the configuration holds it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_OUT_EXAMPLE]})


def declared_out(**fields: Any) -> DeclaredOut:
    """The answer of ``fields["item"]`` (its value validated by the item's own model)."""
    return DeclaredOut(ITEM_MODELS[fields["item"]](**fields))


class DeclaredIn(BaseModel):
    """A new version of a declared item."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"value": _LABOUR_EXAMPLE, "reason": "November's figure from the MES"}]})  # type: ignore[dict-item]

    value: Any = Field(description=(
        "the item's whole new value, as the configuration file would hold it under the item's "
        "config_path (a list replaces the whole list); entries of `declared:` may leave out "
        "supplied_by and supplied_at: the caller and today's plant date are filled in"))
    reason: str = Field(min_length=1, max_length=ECHO_MAX * 5,
                        description="why: kept in the audit trail")


class DeclaredChange(BaseModel):
    """One row of the audit trail: one version and the value it replaced (CSV-friendly:
    scalar columns, values as JSON text)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "item": "labour-hours", "version": 2, "old_version": 1,
        "supplied_at": "2026-12-01T02:00:00Z", "supplied_by": "mes-sync",
        "reason": "corrected November", "to_config": False,
        "old": '[{"amount": 5000.0, "period": "2026-11"}]',
        "new": '[{"amount": 5200.0, "period": "2026-11"}]'}]})

    item: str
    version: int = Field(ge=1)
    old_version: int = Field(ge=0, description="the version it replaced (0: the configuration's)")
    supplied_at: str = Field(description="ISO 8601 UTC")
    supplied_by: str
    reason: str
    to_config: bool = Field(description="the version returned the item to the configuration's value")
    old: str = Field(description="the replaced value, JSON text (version 0: the file's value now)")
    new: str = Field(description="the new value, JSON text")


_ITEM = Path(description="the declared item", examples=["labour-hours"],
             openapi_examples={i: {"value": i} for i in ("labour-hours", "calendar", "assets")})
_SUPPLIED_BY = Header(
    alias="X-Supplied-By", max_length=ECHO_MAX, examples=["mes-sync"],
    description="who supplies it, recorded in the audit trail: required unless the request "
                "carries an API key, whose name is recorded instead")
_BODY_EXAMPLES = {
    "labour-hours": {"summary": "labour hours of a month (PUT .../labour-hours)",
                     "value": {"value": _LABOUR_EXAMPLE, "reason": "November's figure from the MES"}},
    "calendar": {"summary": "shift calendar (PUT .../calendar)", "value": {
        "value": {"timezone": "Asia/Shanghai", "holidays": ["2026-12-25"],
                  "shifts": [{"name": "early", "start": "06:00", "end": "14:00",
                              "days": ["mon", "tue", "wed", "thu", "fri"]}]},
        "reason": "winter shift plan"}},
    "planned-downtime": {"summary": "planned stops (PUT .../planned-downtime)", "value": {
        "value": [{"name": "lunch", "start": "12:00", "end": "12:30"}], "reason": "canteen hours"}},
    "maturity": {"summary": "maturity assessment (PUT .../maturity)", "value": {
        "value": {"level": 3, "assessor": "CESI", "assessed_on": "2026-10-20",
                  "source": "assessment report R-2026-118"}, "reason": "new assessment"}},
}


class _Missing(Exception):
    pass


def caller(request: Request) -> str:
    """Who is supplying: the API key's name when the request carries one (set by the auth
    middleware as ``request.state.api_key``), else the ``X-Supplied-By`` header."""
    key = getattr(request.state, "api_key", None)
    if key is not None:
        name = getattr(key, "name", None) or getattr(key, "id", None) or key
        return str(name)[:ECHO_MAX]
    who = request.headers.get("x-supplied-by", "").strip()
    if not who:
        raise _Missing
    return who[:ECHO_MAX]


def _invalid(request: Request, errors: list[tuple[str, str]]) -> JSONResponse:
    rows = [{"parameter": p[:ECHO_MAX], "reason": r[:ECHO_MAX * 2]} for p, r in errors]
    return problem(422, "Invalid declared evidence",
                   "; ".join(f"{e['parameter']}: {e['reason']}" for e in rows),
                   request=request, errors=rows)


def _no_caller(request: Request) -> JSONResponse:
    return _invalid(request, [("header.X-Supplied-By", "say who supplies the value (or use an "
                                                       "API key, whose name is recorded)")])


def _evidence(request: Request) -> DeclaredEvidence:
    ev: DeclaredEvidence = request.app.state.declared
    return ev


def _lock(app: FastAPI) -> asyncio.Lock:
    lock: asyncio.Lock | None = getattr(app.state, "declared_lock", None)
    if lock is None:
        lock = app.state.declared_lock = asyncio.Lock()
    return lock


def _apply(app: FastAPI, ev: DeclaredEvidence, elements: bool) -> None:
    """Put ``ev.settings`` in force: a new KPI service (its config fingerprint, which keys every
    cached result, is of the new settings), and, when the item changes what time elements rest
    on (calendar, planned downtime, assets), the roll-up maintainer on it (new roll-up keys)."""
    gw = app.state.gateway
    service = KpiService(ev.settings, gw.store, declared_versions=ev.versions())
    app.state.settings = ev.settings
    app.state.service = service
    gw.settings = ev.settings  # the central gateway discovers the register's assets' tags
    maintainer = getattr(app.state, "rollups", None)
    if elements and maintainer is not None:
        maintainer.retarget(service)


def _out(ev: DeclaredEvidence, item: str) -> DeclaredOut:
    v = ev.version(item).as_dict()
    return declared_out(item=item, config_path=config_path(item), version=DeclaredVersionOut(**v),
                        in_force=True, value=ev.value(item), rejected=ev.rejected.get(item))


_WRITE: dict[int | str, dict[str, Any]] = {
    422: {"description": (
        "A value the configuration's models or cross-field checks refuse: `errors` names each "
        "field by its configuration path (declared.labour_hours[2].amount)")},
    413: {"description": f"A request body larger than {MAX_BODY_BYTES} bytes",
          "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}


@router.get(
    "/declared/audit", response_model=list[DeclaredChange],
    summary="The audit trail of declared evidence: who changed which item when, old → new",
    description="Every version supplied through the API in the window (by the time it was "
                "supplied), oldest first, each with the value it replaced. `from`/`to` bound "
                "the time of supply; without them, the whole trail.",
)
async def get_declared_audit(
    request: Request,
    now: NowDep,
    zones: ZonesDep,
    item: Annotated[DeclaredItemName | None, Query(description="only this item",
                                                   examples=["labour-hours"])] = None,
    from_: Annotated[str | None, Query(alias="from", description="supplied at or after (ISO 8601 "
                                       "or now-30d)", examples=["now-30d"])] = None,
    to: Annotated[str | None, Query(description="supplied before (ISO 8601 or now)",
                                    examples=["now"])] = None,
) -> list[DeclaredChange]:
    lo = None if from_ is None else to_ns(instant(from_, "now", "from", now, zones.inputs))
    hi = None if to is None else to_ns(instant(to, "now", "to", now, zones.inputs))
    ev = _evidence(request)
    rows = await asyncio.to_thread(ev.audit, None if item is None else item.value, lo, hi)
    return [DeclaredChange(**{**r, "old": json.dumps(r["old"], sort_keys=True),
                              "new": json.dumps(r["new"], sort_keys=True)}) for r in rows]


@router.get(
    "/declared", response_model=list[DeclaredOut],
    summary="Every declared item in force, with its version",
    description="Per item its value in force: the latest version supplied through the API, "
                "else the configuration file's (version 0).",
)
async def get_declared_items(request: Request) -> list[DeclaredOut]:
    ev = _evidence(request)
    return [_out(ev, item) for item in ITEMS]


@router.get(
    "/declared/{item}", response_model=DeclaredOut,
    summary="One declared item: its value in force (or an earlier version) and who supplied it",
)
async def get_declared(
    request: Request,
    item: Annotated[DeclaredItemName, _ITEM],
    version: Annotated[int | None, Query(ge=0, le=2**62, examples=[1], description=(
        "an earlier version (0: the configuration file's); default: the one in force"))] = None,
) -> DeclaredOut:
    ev = _evidence(request)
    name = item.value
    if version is None or version == ev.version(name).version:
        return _out(ev, name)
    if version == 0:
        value = ev.config_value(name)
        v: dict[str, Any] = {"version": 0, "supplied_by": "config", "supplied_at": None,
                             "source": "config", "reason": "the configuration file"}
    else:
        got = await asyncio.to_thread(ev.registry.version, name, version)
        if got is None:
            raise NotFoundError(f"no version {version} of declared {name}; GET "
                                f"/api/v1/declared/audit?item={name} lists them")
        value = ev.config_value(name) if got.value is None else got.value
        v = {"version": got.version, "supplied_by": got.supplied_by,
             "supplied_at": iso(got.supplied_at_ns), "source": "api", "reason": got.reason}
    try:
        return declared_out(item=name, config_path=config_path(name),
                            version=DeclaredVersionOut(**v), in_force=False, value=value)
    except ValidationError as exc:  # stored by a release whose model was laxer than this one's
        raise ConfigError(f"version {version} of declared {name} does not fit the item's model "
                          "any more, so it cannot be answered", [
                              (config_path(name, tuple(e["loc"])[1:]),
                               str(e["msg"]).removeprefix("Value error, "))
                              for e in exc.errors() if e["loc"][:1] == ("value",)]) from exc


async def _change(request: Request, name: str, value: Callable[[str, DeclaredEvidence], Any],
                  reason: str) -> DeclaredOut | JSONResponse:
    """Record ``name``'s next version, ``value(who, evidence)`` (a validated model object; None:
    back to the configuration's), and put it in force: one change at a time (the app's lock),
    checked across fields first; who supplies it is the caller (``caller``)."""
    try:
        who = caller(request)
    except _Missing:
        return _no_caller(request)
    ev = _evidence(request)
    async with _lock(request.app):
        try:
            got = value(who, ev)
            settings = ev.propose(name, got)
        except DeclaredInvalid as exc:
            return _invalid(request, exc.errors)
        stored = await asyncio.to_thread(ev.record, name, got, who, reason)
        ev.adopt(name, got, stored, settings)  # in the loop, as every read of it
        _apply(request.app, ev, ITEMS[name].elements)
        return _out(ev, name)


@router.put(
    "/declared/{item}", response_model=DeclaredOut, responses=_WRITE,
    summary="Supply a new version of a declared item (validated like the configuration)",
    description=(
        "The body's `value` replaces the item's whole value, validated by the configuration's "
        "own models and cross-field checks; it becomes the item's next version, recorded with "
        "the caller, the time and the `reason`, and is in force at once: KPI results cached "
        "under the old settings are not served again, and a calendar, planned-downtime or "
        "asset change makes the hourly roll-ups recompute under the new settings."),
)
async def put_declared(
    request: Request,
    item: Annotated[DeclaredItemName, _ITEM],
    body: Annotated[DeclaredIn, Body(openapi_examples=_BODY_EXAMPLES)],
    supplied_by: Annotated[str | None, _SUPPLIED_BY] = None,  # read by caller(request)
) -> DeclaredOut | JSONResponse:
    def value(who: str, ev: DeclaredEvidence) -> Any:
        today = datetime.now(ZoneInfo(ev.settings.calendar.timezone)).date()
        return validate(item.value, body.value, who, today)

    return await _change(request, item.value, value, body.reason)


@router.delete(
    "/declared/{item}", response_model=DeclaredOut, responses=_WRITE,
    summary="Return a declared item to the configuration file's value (a new version)",
    description="Records a new version that puts the configuration file's value back in force; "
                "the versions before stay in the audit trail.",
)
async def delete_declared(
    request: Request,
    item: Annotated[DeclaredItemName, _ITEM],
    reason: Annotated[str, Query(min_length=1, max_length=ECHO_MAX * 5, examples=["back to the file"],
                                 description="why: kept in the audit trail")],
    supplied_by: Annotated[str | None, _SUPPLIED_BY] = None,  # read by caller(request)
) -> DeclaredOut | JSONResponse:
    return await _change(request, item.value, lambda who, ev: None, reason)
