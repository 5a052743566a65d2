"""Tier assessment: every tier's criteria judged on the plant's measured and declared evidence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from config import load_tiers

from ..assessment import assess
from ..deps import NowDep, ServiceDep, SettingsDep

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
        "assessment sees one snapshot of the store."
    ),
)
def assessment(
    service: ServiceDep,
    settings: SettingsDep,
    now: NowDep,
    tier: Annotated[str | None, Query(description="one tier (default: every tier)")] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="ISO 8601 or now-7d; default: kpi.current")
    ] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current")] = None,
    baseline_from: Annotated[str | None, Query(description="default: kpi.baseline")] = None,
    baseline_to: Annotated[str | None, Query(description="default: kpi.baseline")] = None,
) -> dict[str, Any]:
    criteria = load_tiers()
    with service.snapshot():
        return assess(settings, service, criteria, tier=tier, from_=from_, to=to,
                      baseline_from=baseline_from, baseline_to=baseline_to, now=now)
