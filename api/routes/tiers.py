"""Tier assessment: every tier's criteria judged on the plant's measured and declared evidence."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response

from config import load_tiers
from config.errors import NotFoundError
from config.times import to_ns
from kpi import ALGORITHM_VERSION

from ..assessment import assess
from ..deps import NowDep, RunnerDep, ServiceDep, SettingsDep
from ..flight import json_body
from ..kpi_models import AssessmentOut
from ..plant_time import DateQuery, ShiftQuery, ZonesDep, respond
from ..problems import echo
from .kpis import _SHARED, assessment_windows, check_windows, explicit
from .params import BaselineFromQuery, BaselineToQuery, FromQuery, ToQuery

router = APIRouter(prefix="/api/v1", tags=["tiers"])


@router.get(
    "/tiers/assessment",
    summary="Which smart-factory tier the plant meets, criterion by criterion, with evidence",
    description=(
        "Per tier and criterion: value, 95 % day-block bootstrap interval, threshold, verdict "
        "(met, point_estimate_only, not_met, insufficient_data), coverage, and what is missing. "
        "Each figure carries its unit (rates are fractions; energy is kWh per standard hour of "
        "good output). The answer also holds the current window's KPIs (assets, lines, total: "
        "as /api/v1/kpis, without the per-tag evidence) and deltas (per figure the "
        "baseline→current delta, its interval and both windows' values). Windows default to "
        "kpi.current and kpi.baseline; both are resolved against one 'now' and recorded, with "
        "the criteria version, algorithm version and config fingerprint. Every read of one "
        "assessment sees one snapshot of the store." + _SHARED
    ),
    # the answer is pre-rendered JSON (api.flight): the model documents it, never filters it
    response_model=AssessmentOut,
)
async def get_assessment(
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    tier: Annotated[str | None, Query(description="one tier (default: every tier)",
                                      examples=["basic"])] = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    baseline_from: BaselineFromQuery = None,
    baseline_to: BaselineToQuery = None,
    shift: ShiftQuery = None,
    date: DateQuery = None,
) -> Response:
    criteria = await asyncio.to_thread(load_tiers)  # a file read: not in the event loop
    names = [t.name for t in criteria.tiers]
    if tier is not None and tier not in names:  # as assess says it, before any key is made
        raise NotFoundError(f"no tier {echo(tier)} in criteria {criteria.version}; tiers: {', '.join(names)}")
    start, end, b_start, b_end = assessment_windows(
        settings, zones, now, from_=from_, to=to, baseline_from=baseline_from,
        baseline_to=baseline_to, shift=shift, day=date)
    check_windows(settings, start, end, b_start, b_end)
    ends = [to_ns(t) for t in (start, end, b_start, b_end) if t is not None]

    def compute() -> bytes:
        with service.snapshot():  # the whole assessment in this one worker thread
            return json_body(assess(
                settings, service, criteria, tier=tier, from_=explicit(start), to=explicit(end),
                baseline_from=explicit(b_start), baseline_to=explicit(b_end), now=now))

    key = ("assessment", ALGORITHM_VERSION, service.fingerprint, criteria.version, tier, *ends)
    body = await runner.run(key, max(ends), compute)
    return await respond(body, zones)
