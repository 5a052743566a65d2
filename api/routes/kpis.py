"""ISO 22400 KPIs with their evidence, and their baseline-to-current deltas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Response

from config import load_tiers
from config.errors import KpiError
from config.settings import Settings
from config.times import iso, to_ns
from kpi import ALGORITHM_VERSION

from ..assessment import assess, resolve_windows
from ..deps import NowDep, RunnerDep, ServiceDep, SettingsDep, check_window
from ..flight import Answer, KpiRunner, json_body
from ..kpi_models import DeltasOut, KpisOut
from ..plant_time import DateQuery, ShiftQuery, Zones, ZonesDep, respond, shift_window
from ..service import KpiService
from ..tabular import tabular
from .params import (
    AssetQuery,
    BaselineFromQuery,
    BaselineToQuery,
    FromQuery,
    LineQuery,
    ToQuery,
    kpi_window,
)
from .series import kpi_columns, kpi_rows

router = APIRouter(prefix="/api/v1", tags=["kpis"])

_SHARED = (
    " Identical requests (same resolved windows and selection) in flight together are computed "
    "once; results whose windows closed are cached until a write touches them (docs/api.md). "
    "Relative instants are resolved against 'now' rounded down to the second. A window that "
    "has not closed (the default, today) may be answered with the same request's computation "
    "for a 'now' up to api.kpi_max_age_s (5 s) earlier, renewed in the background: the `Age` "
    "header gives its age in seconds and `X-KPI-As-Of` the 'now' it was computed for."
)


async def recent(runner: KpiRunner, settings: Settings, zones: Zones, now: datetime,
                 spec: tuple[object, ...], key: tuple[object, ...], end_ns: int,
                 compute: Callable[[], bytes]) -> Response:
    """The answer of an open-window request (``api.flight.KpiRunner.run_recent``), with the
    ``Age`` (whole seconds) and ``X-KPI-As-Of`` of the computation it is."""
    now_ns = to_ns(now)
    got: Answer = await runner.run_recent(spec, key, end_ns, compute, now_ns=now_ns,
                                          max_age_s=settings.api.kpi_max_age_s)
    response = await respond(got.body, zones)
    response.headers["Age"] = str(max(0, now_ns - got.as_of_ns) // 1_000_000_000)
    response.headers["X-KPI-As-Of"] = iso(got.as_of_ns, tz=zones.output) or ""  # as the body's times
    return response


#: the headers of every /kpis and /kpis/deltas answer (api.flight.KpiRunner.run_recent)
AGE_HEADERS = {200: {"headers": {
    "Age": {"description": "seconds between the 'now' this answer was computed for and the "
                           "request's (0: computed for this request); at most "
                           "api.kpi_max_age_s", "schema": {"type": "integer", "example": 2}},
    "X-KPI-As-Of": {"description": "the 'now' this answer was computed for (ISO 8601)",
                    "schema": {"type": "string", "example": "2026-12-07T08:20:21Z"}},
}}}


def check_windows(settings: Settings, start: datetime, end: datetime, b_start: datetime | None,
                  b_end: datetime | None) -> None:
    """Both windows of an assessment or deltas request within api.max_kpi_window_days."""
    check_window(settings, start, end)
    if b_start is not None and b_end is not None:
        check_window(settings, b_start, b_end, ("baseline_from", "baseline_to"))


def assessment_windows(
    settings: Settings, zones: Zones, now: datetime, *, from_: str | None, to: str | None,
    baseline_from: str | None, baseline_to: str | None, shift: str | None, day: str | None,
) -> tuple[datetime, datetime, datetime | None, datetime | None]:
    """The resolved windows of a deltas or assessment request: the current one from
    ``shift``/``date`` or ``from``/``to`` (bare times in the request's zone), else
    kpi.current; the baseline from its parameters, else kpi.baseline (api.plant_time)."""
    named = shift_window(settings, zones, shift, day, from_, to)
    if named is not None:
        from_, to = named[0].isoformat(), named[1].isoformat()
    return resolve_windows(settings, from_=from_, to=to, baseline_from=baseline_from,
                           baseline_to=baseline_to, now=now, tz=zones.inputs)


def explicit(t: datetime | None) -> str | None:
    """A resolved instant as a parameter that resolves to itself (with its offset)."""
    return None if t is None else t.isoformat()


@router.get(
    "/kpis",
    summary="ISO 22400 KPIs per asset, per line and in total, with evidence",
    description=(
        "Ratios are fractions (0.85 = 85 %). Time elements are seconds inside planned busy "
        "time; quantities count over the whole window. Lines and the total sum elements "
        "before dividing. `coverage` is the share of planned busy time whose machine state is "
        "known; gaps are never filled in. Parts of different products are weighted by their "
        "ideal cycle time: a line's or the total's `throughput_per_h` and `energy_per_unit_kwh` "
        "are null unless all its assets share one; `standard_output_rate` and "
        "`energy_per_standard_hour_kwh` are always weighted. The window defaults to "
        "kpi.current, resolved against one 'now' per request, and is recorded in `window`; "
        "every read of the request sees one snapshot of the store." + _SHARED
    ),
    # the answer is pre-rendered JSON (api.flight): the model documents it, never filters it
    response_model=KpisOut,
    responses=AGE_HEADERS,  # type: ignore[arg-type]
)
@tabular(kpi_rows, columns=kpi_columns, name="kpis")
async def get_kpis(
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    asset: AssetQuery = None,
    line: LineQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    shift: ShiftQuery = None,
    date: DateQuery = None,
) -> Response:
    return await kpis_answer(service, runner, settings, now, zones, asset=asset, line=line,
                             from_=from_, to=to, shift=shift, date=date)


async def kpis_answer(service: KpiService, runner: KpiRunner, settings: Settings, now: datetime,
                      zones: Zones, *, asset: str | None = None, line: str | None = None,
                      from_: str | None = None, to: str | None = None, shift: str | None = None,
                      date: str | None = None) -> Response:
    """``GET /api/v1/kpis``'s JSON answer for its parameters once FastAPI has read them (also
    answered so by ``api.fastlane`` for the plain requests)."""
    named = shift_window(settings, zones, shift, date, from_, to)
    if named is not None:
        start, end = named
        check_window(settings, start, end)
    else:
        start, end = kpi_window(settings, from_, to, now, zones)
    key = ("kpis", ALGORITHM_VERSION, service.fingerprint, to_ns(start), to_ns(end), asset, line)
    # the request before 'now' resolves it: what a recent answer must have been asked as
    spec = ("kpis", ALGORITHM_VERSION, service.fingerprint, from_, to, shift, date, zones.inputs,
            asset, line)
    return await recent(runner, settings, zones, now, spec, key, to_ns(end),
                        lambda: json_body(service.kpis(start, end, asset=asset, line=line)))


@router.get(
    "/kpis/deltas",
    summary="Baseline-to-current deltas of the plant's ratio figures, with 95 % intervals",
    description=(
        "Per figure of the tier assessment (CNC and networking rates, automation rate, defect "
        "rate, production efficiency, energy and carbon per standard hour and per part, output "
        "per labour hour): "
        "the relative change current / baseline - 1 with its day-block bootstrap interval, "
        "computed exactly as the tier assessment does (same days, seed and resamples). Windows "
        "default to kpi.current and kpi.baseline, resolved against one 'now' and recorded in "
        "`window` and `baseline_window`; a baseline is required. A figure whose delta cannot be "
        "computed is null." + _SHARED
    ),
    response_model=DeltasOut,
    responses=AGE_HEADERS,  # type: ignore[arg-type]
)
async def get_kpi_deltas(
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    baseline_from: BaselineFromQuery = None,
    baseline_to: BaselineToQuery = None,
    shift: ShiftQuery = None,
    date: DateQuery = None,
) -> Response:
    if settings.kpi.baseline is None and (baseline_from is None or baseline_to is None):
        raise KpiError("deltas need a baseline: configure kpi.baseline or give baseline_from "
                       "and baseline_to")
    criteria = await asyncio.to_thread(load_tiers)  # a file read: not in the event loop
    start, end, b_start, b_end = assessment_windows(
        settings, zones, now, from_=from_, to=to, baseline_from=baseline_from,
        baseline_to=baseline_to, shift=shift, day=date)
    check_windows(settings, start, end, b_start, b_end)
    ends = [to_ns(t) for t in (start, end, b_start, b_end) if t is not None]

    def compute() -> bytes:
        with service.snapshot():  # the windows as resolved above, offsets and all
            result = assess(settings, service, criteria, from_=explicit(start), to=explicit(end),
                            baseline_from=explicit(b_start), baseline_to=explicit(b_end), now=now)
        return json_body({
            "window": result["window"],
            "baseline_window": result["baseline_window"],
            "criteria_version": result["criteria_version"],
            "algorithm_version": result["algorithm_version"],
            "config_fingerprint": result["config_fingerprint"],
            "bootstrap": result["bootstrap"],
            "deltas": result["deltas"],
        })

    key = ("deltas", ALGORITHM_VERSION, service.fingerprint, criteria.version, *ends)
    spec = ("deltas", ALGORITHM_VERSION, service.fingerprint, criteria.version, from_, to,
            baseline_from, baseline_to, shift, date, zones.inputs)
    return await recent(runner, settings, zones, now, spec, key, max(ends), compute)
