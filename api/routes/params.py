"""Query parameters that the KPI routes (``/kpis``, ``/kpis/deltas``, ``/kpis/series``,
``/tiers/assessment``) share: one description and set of examples for each. Windows default to
``kpi.current`` and ``kpi.baseline``; bare dates and times are plant-local (``api.plant_time``);
relative instants resolve against the request's one ``now``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from config.settings import Settings

from ..deps import check_window, window
from ..plant_time import Zones
from ..problems import BadParameter

__all__ = ["AssetQuery", "BaselineFromQuery", "BaselineToQuery", "FromQuery", "LineQuery",
           "ToQuery", "row_limit"]

_FROM = ("ISO 8601 (e.g. 2026-12-01T00:00:00+08:00; a date or time without an offset is the "
         "plant's local time, calendar.timezone, or tz's) or now-7d")
#: examples of the window parameters (relative instants resolve against the request's now)
FROM_EXAMPLES = ["now-7d", "2026-12-01T00:00:00+08:00"]
TO_EXAMPLES = ["now", "2026-12-08T00:00:00+08:00"]
BASELINE_FROM_EXAMPLES = ["now-14d", "2026-11-24T00:00:00+08:00"]
BASELINE_TO_EXAMPLES = ["now-7d", "2026-12-01T00:00:00+08:00"]
#: the query parameters the KPI routes share (the window defaults to kpi.current and
#: kpi.baseline; bare times are plant-local, api.plant_time)
AssetQuery = Annotated[str | None, Query(description="asset path site/area/line/asset",
                                         examples=["demo/machining/line1/lathe-01"])]
LineQuery = Annotated[str | None, Query(description="line path site/area/line",
                                        examples=["demo/machining/line1"])]
FromQuery = Annotated[str | None, Query(alias="from", description=f"{_FROM}; default: kpi.current",
                                        examples=FROM_EXAMPLES)]
ToQuery = Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current",
                                      examples=TO_EXAMPLES)]
BaselineFromQuery = Annotated[str | None, Query(description="default: kpi.baseline",
                                                examples=BASELINE_FROM_EXAMPLES)]
BaselineToQuery = Annotated[str | None, Query(description="default: kpi.baseline",
                                              examples=BASELINE_TO_EXAMPLES)]


def row_limit(limit: int | None, top: int, what: str) -> int:
    """The rows a request may have: ``limit``, or 10,000 (at most ``top``, api.max_samples)
    when unset; a ``limit`` above ``top`` is a 400 problem naming the setting."""
    if limit is None:
        return min(10_000, top)
    if limit > top:
        raise BadParameter("limit", f"{limit} is more than api.max_samples ({top}): ask for "
                                    f"fewer {what} per request", limit=("api.max_samples", top))
    return limit


def kpi_window(settings: Settings, from_: str | None, to: str | None, now: datetime,
               zones: Zones) -> tuple[datetime, datetime]:
    """A KPI request's window: ``from``/``to`` (bare times in the request's zone), else
    ``kpi.current`` (bare times plant-local), checked against ``api.max_kpi_window_days``."""
    start, end = window(from_, to, settings.kpi.current, now, tz=zones.inputs, plant_tz=zones.plant)
    check_window(settings, start, end)
    return start, end
