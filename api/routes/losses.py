"""Stop events and loss analysis: why the machines stopped, and what it cost (docs/kpis.md,
"Losses and reasons")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from config.errors import NotFoundError
from config.reasons import UNASSIGNED
from config.settings import Asset, Settings
from config.times import to_ns
from kpi import ALGORITHM_VERSION

from ..deps import NowDep, RunnerDep, ServiceDep, SettingsDep, check_window, window, window_out
from ..flight import json_body
from ..loss_models import LossesOut, StopsOut
from ..losses import STOP_COLUMNS, AssetStops, asset_stops, loss_body, stop_rows, stops_body
from ..plant_time import ZonesDep, respond
from ..problems import BadParameter
from ..service import KpiService
from ..tabular import tabular
from .params import AssetQuery, FromQuery, LineQuery, ToQuery

router = APIRouter(prefix="/api/v1", tags=["losses"])

#: version of the stop and loss rules (kpi.losses), part of the cache keys
LOSS_VERSION = "losses/1"

ReasonQuery = Annotated[str | None, Query(
    description="only the stops of this reason id (`unassigned`: those without a reason)",
    examples=["mechanical_failure", "unassigned"])]
LimitQuery = Annotated[int | None, Query(
    ge=1, description="stops at most (default 10,000, at most api.max_samples)",
    examples=[1000])]


def _items(service: KpiService, settings: Settings, assets: list[Asset], start_ns: int,
           end_ns: int) -> list[AssetStops]:
    tree = settings.reasons.tree()
    small = settings.reasons.small_stop_s
    with service.snapshot():  # every asset's reads from the same data
        return [asset_stops(service, a, start_ns, end_ns, tree, small) for a in assets]


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
    start, end = window(from_, to, settings.kpi.current, now, tz=zones.inputs,
                        plant_tz=zones.plant)
    check_window(settings, start, end)
    top = settings.api.max_samples
    if limit is None:
        limit = min(10_000, top)
    elif limit > top:
        raise BadParameter("limit", f"{limit} is more than api.max_samples ({top}): ask for "
                                    "fewer stops per request", limit=("api.max_samples", top))
    tree = settings.reasons.tree()
    if reason is not None and reason != UNASSIGNED and reason not in tree.code:
        raise NotFoundError(f"no reason {reason!r}; the reason tree is in GET /api/v1/config "
                            "(reasons) and docs/kpis.md")
    assets = service.assets_for(asset, line)
    s_ns, e_ns = to_ns(start), to_ns(end)
    key = ("stops", ALGORITHM_VERSION, LOSS_VERSION, service.fingerprint, s_ns, e_ns, asset,
           line, reason, limit)

    def compute() -> bytes:
        items = _items(service, settings, assets, s_ns, e_ns)
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
    start, end = window(from_, to, settings.kpi.current, now, tz=zones.inputs,
                        plant_tz=zones.plant)
    check_window(settings, start, end)
    assets = service.assets_for(asset, line)
    s_ns, e_ns = to_ns(start), to_ns(end)
    key = ("losses", ALGORITHM_VERSION, LOSS_VERSION, service.fingerprint, s_ns, e_ns, asset,
           line)

    def compute() -> bytes:
        items = _items(service, settings, assets, s_ns, e_ns)
        return json_body(loss_body(items, settings.reasons.tree(),
                                   settings.reasons.small_stop_s, window_out(start, end)))

    body = await runner.run(key, e_ns, compute)
    return await respond(body, zones)
