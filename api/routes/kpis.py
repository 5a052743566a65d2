"""ISO 22400 KPIs with their evidence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import ServiceDep, SettingsDep, instant

router = APIRouter(prefix="/api/v1", tags=["kpis"])


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
        "`energy_per_standard_hour_kwh` are always weighted."
    ),
)
def kpis(
    service: ServiceDep,
    settings: SettingsDep,
    asset: Annotated[str | None, Query(description="asset path site/area/line/asset")] = None,
    line: Annotated[str | None, Query(description="line path site/area/line")] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="ISO 8601 or now-7d; default: kpi.current")
    ] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current")] = None,
) -> dict[str, Any]:
    cur = settings.kpi.current
    start, end = instant(from_, cur.start, "from"), instant(to, cur.end, "to")
    return service.kpis(start, end, asset=asset, line=line)
