"""Stop events and loss analysis: why the machines stopped, and what it cost (docs/kpis.md,
"Losses and reasons")."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response

from config.errors import KpiError, NotFoundError
from config.reasons import UNASSIGNED
from config.settings import Asset, Settings
from config.times import iso, to_ns
from kpi import ALGORITHM_VERSION
from store.annotations import StopAnnotation, StopAnnotations, annotations_path

from ..deps import NowDep, RunnerDep, ServiceDep, SettingsDep, window, window_out
from ..flight import json_body
from ..loss_models import AnnotationOut, AnnotationsOut, LossesOut, ReasonIn, StopsOut
from ..losses import (
    STOP_COLUMNS,
    AssetStops,
    asset_stops,
    loss_body,
    parse_stop_id,
    stop_id,
    stop_rows,
    stops_body,
)
from ..plant_time import ZonesDep, respond
from ..problems import ECHO_MAX, PROBLEM, echo, problem
from ..service import KpiService
from ..tabular import tabular
from .params import AssetQuery, FromQuery, LineQuery, ToQuery, kpi_window, row_limit

router = APIRouter(prefix="/api/v1", tags=["losses"])

#: version of the stop and loss rules (kpi.losses), part of the cache keys
LOSS_VERSION = "losses/2"  # 2: OPC UA events as a reason source

ReasonQuery = Annotated[str | None, Query(
    description="only the stops of this reason id (`unassigned`: those without a reason)",
    examples=["mechanical_failure", "unassigned"])]
LimitQuery = Annotated[int | None, Query(
    ge=1, description="stops at most (default 10,000, at most api.max_samples)",
    examples=[1000])]


def annotations_of(app: FastAPI) -> StopAnnotations:
    """The gateway's stop annotations (``store.annotations``), opened on first use."""
    reg: StopAnnotations | None = getattr(app.state, "stop_annotations", None)
    if reg is None:
        reg = app.state.stop_annotations = StopAnnotations(
            annotations_path(app.state.settings.store))
    return reg


def _lock(app: FastAPI) -> asyncio.Lock:
    lock: asyncio.Lock | None = getattr(app.state, "stop_annotation_lock", None)
    if lock is None:
        lock = app.state.stop_annotation_lock = asyncio.Lock()
    return lock


def _items(service: KpiService, settings: Settings, assets: list[Asset], start_ns: int,
           end_ns: int, notes: StopAnnotations) -> list[AssetStops]:
    tree = settings.reasons.tree()
    small = settings.reasons.small_stop_s
    with service.snapshot():  # every asset's reads from the same data
        return [asset_stops(service, a, start_ns, end_ns, tree, small, notes) for a in assets]


@router.get(
    "/stops",
    summary="Stop events: every stop in planned busy time, with its reason and loss type",
    description=(
        "Every stretch of stop time (known planned busy time that is not production) of the "
        "selected assets, with one element and one reason, in time order: its reason from the "
        "asset's `stop_reason` tag (its enum maps the PLC's codes to reason ids), else "
        "`unassigned`; its loss type from the reason's category, a small stop when shorter "
        "than `reasons.small_stop_s` (unless planned or a changeover). A stop is cut by the "
        "plan's edges and by gaps. The window defaults to kpi.current; bare times are "
        "plant-local. CSV with `format=csv` (one row per stop)."
    ),
    response_model=StopsOut,
)
@tabular(stop_rows, columns=STOP_COLUMNS, name="stops")
async def get_stops(
    request: Request,
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    asset: AssetQuery = None,
    line: LineQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    reason: ReasonQuery = None,
    limit: LimitQuery = None,
) -> Response:
    start, end = kpi_window(settings, from_, to, now, zones)
    limit = row_limit(limit, settings.api.max_samples, "stops")
    tree = settings.reasons.tree()
    if reason is not None and reason != UNASSIGNED and reason not in tree.code:
        raise NotFoundError(f"no reason {reason!r}; the reason tree is in GET /api/v1/config "
                            "(reasons) and docs/kpis.md")
    assets = service.assets_for(asset, line)
    s_ns, e_ns = to_ns(start), to_ns(end)
    notes = annotations_of(request.app)
    # every annotation changes the generation: no answer cached before it is served again
    key = ("stops", ALGORITHM_VERSION, LOSS_VERSION, service.fingerprint, notes.generation(),
           s_ns, e_ns, asset, line, reason, limit)

    def compute() -> bytes:
        items = _items(service, settings, assets, s_ns, e_ns, notes)
        return json_body(stops_body(items, tree, settings.reasons.small_stop_s,
                                    window_out(start, end), reason, limit))

    body = await runner.run(key, e_ns, compute)
    return await respond(body, zones)


@router.get(
    "/losses",
    summary="Loss analysis: hours and parts lost per loss type and per reason, with a Pareto",
    description=(
        "The six big losses of the selected assets in seconds, hours and parts, per loss type "
        "and per stop reason, summing exactly to the OEE's losses: availability = Σ stop time "
        "by reason, speed loss = APT - PRU x PQ, scrap and rework = PRU x (PQ - GQ); "
        "`loss_s` = `known_s` x (1 - `oee`). `pareto` lists the reasons, speed loss and scrap "
        "largest first with their cumulative share. A selection sums its assets' seconds "
        "(its `oee` is the standard-time OEE, Σ PRU x GQ / Σ known). The window defaults to "
        "kpi.current; bare times are plant-local."
    ),
    response_model=LossesOut,
)
async def get_losses(
    request: Request,
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    asset: AssetQuery = None,
    line: LineQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> Response:
    start, end = kpi_window(settings, from_, to, now, zones)
    assets = service.assets_for(asset, line)
    s_ns, e_ns = to_ns(start), to_ns(end)
    notes = annotations_of(request.app)
    key = ("losses", ALGORITHM_VERSION, LOSS_VERSION, service.fingerprint, notes.generation(),
           s_ns, e_ns, asset, line)

    def compute() -> bytes:
        items = _items(service, settings, assets, s_ns, e_ns, notes)
        return json_body(loss_body(items, settings.reasons.tree(),
                                   settings.reasons.small_stop_s, window_out(start, end)))

    body = await runner.run(key, e_ns, compute)
    return await respond(body, zones)


# ------------------------------------------------------------------------- annotations

_DAY_NS = 86_400 * 1_000_000_000

StopId = Annotated[str, Path(
    description="the stop's `id` from GET /api/v1/stops: `<asset path>@<start, ns since the "
                "epoch>`", examples=["demo/machining/line1/lathe-01@1765012324118000000"])]


def _annotation_out(a: StopAnnotation) -> dict[str, Any]:
    return {"id": a.id, "stop_id": stop_id(a.asset, a.start_ns), "asset": a.asset,
            "start": iso(a.start_ns), "reason": a.reason, "note": a.note,
            "annotated_by": a.annotated_by, "annotated_at": iso(a.annotated_at_ns),
            "replaced_reason": a.replaced_reason, "replaced_source": a.replaced_source}


def _who(request: Request) -> str | None:
    key = getattr(request.state, "api_key", None)
    if key is not None:
        return str(getattr(key, "name", None) or getattr(key, "id", None) or key)[:ECHO_MAX]
    who = request.headers.get("x-annotated-by", "").strip()
    return who[:ECHO_MAX] or None


@router.post(
    "/stops/{stop_id:path}/reason",
    summary="Give a stop its reason (an operator's annotation), audited",
    description=(
        "Scope `write`. Records who (the API key's name), when and why; the reason is in force "
        "at once in /stops and /losses (`reason_source`: `operator`). A stop that already has "
        "a reason -- the machine's (its stop_reason tag) or an earlier annotation -- is a 409 "
        "problem unless `override` is true: a reason is never overwritten silently, and the "
        "replaced one stays in the annotation and in GET /api/v1/stops/annotations. The stop "
        "must be one GET /api/v1/stops lists (by its `id`)."
    ),
    response_model=AnnotationOut,
    responses={409: {"description": "the stop already has a reason: send override: true",
                     "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
)
async def annotate_stop(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    now: NowDep,
    stop_id: StopId,
    body: ReasonIn,
) -> Any:
    parsed = parse_stop_id(stop_id)
    if parsed is None:
        raise NotFoundError(f"{echo(stop_id)} is not a stop id (`<asset>@<start ns>` from "
                            "GET /api/v1/stops)")
    asset_path, start_ns = parsed
    (asset,) = service.assets_for(asset_path, None)
    tree = settings.reasons.tree()
    if body.reason not in tree.code:
        raise KpiError(f"no reason {echo(body.reason)} in the reason tree (reasons:, "
                       "docs/configuration.md); `unassigned` cannot be given")
    who = _who(request)
    if who is None:
        return problem(422, "KpiError", "say who annotates: an API key (its name is recorded) "
                                        "or the X-Annotated-By header", request=request)
    notes = annotations_of(request.app)
    end_ns = min(start_ns + _DAY_NS, to_ns(now))
    if end_ns <= start_ns:
        raise NotFoundError(f"no stop of {asset.path} starts at {iso(start_ns)}: that is not "
                            "in the past")

    def find() -> tuple[str | None, str | None] | None:
        """The stop's reason and its source, or None when no stop starts there."""
        with service.snapshot():
            it = asset_stops(service, asset, max(start_ns - _DAY_NS, 0), end_ns, tree,
                             settings.reasons.small_stop_s, notes)
        hit = [i for i, t in enumerate(it.events.start_ns.tolist()) if t == start_ns]
        if not hit:
            return None
        code = int(it.events.reason[hit[0]])
        return (None if code < 0 else tree.ids[code]), it.source(hit[0])

    async with _lock(request.app):  # the check and the record: one annotation at a time
        found = await asyncio.to_thread(find)
        if found is None:
            raise NotFoundError(f"no stop of {asset.path} starts at {iso(start_ns)}; GET "
                                "/api/v1/stops lists the stops and their ids")
        current, source = found
        if current is not None and not body.override:
            given = {"tag": "the machine (its stop_reason tag)",
                     "opcua_event": "the machine (an OPC UA event)"}.get(
                         source or "", "an earlier annotation")
            return problem(
                409, "Conflict", f"the stop already has the reason {current!r}, given by "
                f"{given}: send override: true to replace it (the replaced reason is kept "
                "in the audit)", request=request, reason=current, reason_source=source)
        made = await asyncio.to_thread(notes.add, asset.path, start_ns, body.reason, body.note,
                                       who, current, source)
    return _annotation_out(made)


@router.get(
    "/stops/annotations",
    summary="The audit of stop annotations: who gave which reason when, and what it replaced",
    description=(
        "Every annotation of the stops that start in the window (default kpi.current), in the "
        "order they were made, superseded ones included."
    ),
    response_model=AnnotationsOut,
)
async def get_stop_annotations(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    now: NowDep,
    zones: ZonesDep,
    asset: AssetQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> Any:
    start, end = window(from_, to, settings.kpi.current, now, tz=zones.inputs,
                        plant_tz=zones.plant)
    if asset is not None:
        service.assets_for(asset, None)
    rows = await asyncio.to_thread(annotations_of(request.app).history, asset, to_ns(start),
                                   to_ns(end))
    return {"window": window_out(start, end), "annotations": [_annotation_out(a) for a in rows]}
