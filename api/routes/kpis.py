"""ISO 22400 KPIs with their evidence, and their baseline-to-current deltas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from config import load_tiers
from config.errors import KpiError

from ..assessment import assess
from ..deps import NowDep, ServiceDep, SettingsDep, window

router = APIRouter(prefix="/api/v1", tags=["kpis"])

_FROM = "ISO 8601 (e.g. 2026-12-01T00:00:00+08:00; a bare date is UTC midnight) or now-7d"


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
        "every read of the request sees one snapshot of the store."
    ),
)
def kpis(
    service: ServiceDep,
    settings: SettingsDep,
    now: NowDep,
    asset: Annotated[str | None, Query(description="asset path site/area/line/asset")] = None,
    line: Annotated[str | None, Query(description="line path site/area/line")] = None,
    from_: Annotated[
        str | None, Query(alias="from", description=f"{_FROM}; default: kpi.current")
    ] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current")] = None,
) -> dict[str, Any]:
    start, end = window(from_, to, settings.kpi.current, now)
    return service.kpis(start, end, asset=asset, line=line)


@router.get(
    "/kpis/deltas",
    summary="Baseline-to-current deltas of the plant's ratio figures, with 95 % intervals",
    description=(
        "Per figure (automation rate, defect rate, production efficiency, energy per unit): "
        "the relative change current / baseline - 1 with its day-block bootstrap interval, "
        "computed exactly as the tier assessment does (same days, seed and resamples). Windows "
        "default to kpi.current and kpi.baseline, resolved against one 'now' and recorded in "
        "`window` and `baseline_window`; a baseline is required. A figure whose delta cannot be "
        "computed is null."
    ),
)
def deltas(
    service: ServiceDep,
    settings: SettingsDep,
    now: NowDep,
    from_: Annotated[
        str | None, Query(alias="from", description=f"{_FROM}; default: kpi.current")
    ] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current")] = None,
    baseline_from: Annotated[str | None, Query(description="default: kpi.baseline")] = None,
    baseline_to: Annotated[str | None, Query(description="default: kpi.baseline")] = None,
) -> dict[str, Any]:
    if settings.kpi.baseline is None and (baseline_from is None or baseline_to is None):
        raise KpiError("deltas need a baseline: configure kpi.baseline or give baseline_from "
                       "and baseline_to")
    criteria = load_tiers()
    with service.snapshot():
        result = assess(settings, service, criteria, from_=from_, to=to,
                        baseline_from=baseline_from, baseline_to=baseline_to, now=now)
    got = result.get("deltas")
    if got is None:  # before the assessment carried its deltas on their own
        got = {f: entry["delta"] for f, entry in result["figures"].items()}
    return {
        "window": result["window"],
        "baseline_window": result["baseline_window"],
        "criteria_version": result["criteria_version"],
        "algorithm_version": result["algorithm_version"],
        "config_fingerprint": result["config_fingerprint"],
        "bootstrap": result["bootstrap"],
        "deltas": got,
    }
