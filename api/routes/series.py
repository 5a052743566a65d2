"""Time series: KPIs per bucket of a window (``/kpis/series``), a tag's history per bucket
(``/tags/{path}/history``); buckets on the plant calendar's clock (``api.buckets``)."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from config.errors import KpiError
from config.times import Window, iso, to_ns
from kpi import ALGORITHM_VERSION, Kpis, TimeElements, group_by_line, roll_up

from ..buckets import HISTORY_BUCKETS, SERIES_BUCKETS, Bucket, buckets
from ..deps import GatewayDep, NowDep, RunnerDep, ServiceDep, SettingsDep, check_window, window
from ..flight import json_body
from ..history import aggregate, aggregate_text, tag_gaps
from ..plant_time import ZonesDep, respond
from ..rollups import HOUR_NS
from ..service import KpiService
from ..tabular import tabular
from .params import AssetQuery, FromQuery, LineQuery, ToQuery, kpi_window
from .plant import TagPath, _tag_id

__all__ = ["HistoryOut", "KpiSeriesOut", "kpi_rows", "router"]

router = APIRouter(prefix="/api/v1")

_FROM = "ISO 8601 (e.g. 2026-12-01T00:00:00+08:00) or now-7d"

# ---------------------------------------------------------------------------- models

_EXAMPLE_KPIS: dict[str, float | None] = {
    "availability": 0.8, "effectiveness": 0.9, "quality_ratio": 0.98, "oee": 0.7056,
    "nee": 0.75, "technical_efficiency": 0.9, "setup_rate": 0.05, "scrap_ratio": 0.02,
    "throughput_per_h": 100.0, "automation_rate": 1.0, "automation_coverage": 1.0,
    "energy_per_unit_kwh": 0.05, "coverage": 1.0, "standard_output_rate": 0.72,
    "energy_per_standard_hour_kwh": 6.0,
}

SeriesBucketBase: type[BaseModel] = create_model(  # the KPI figures, as /kpis names them
    "KpiFigures",
    __config__=ConfigDict(populate_by_name=True),
    **{f.name: (float | None, Field(default=None)) for f in fields(Kpis)},  # type: ignore[call-overload]
)


class SeriesBucket(SeriesBucketBase):  # type: ignore[misc, valid-type]
    """One bucket: its window, the KPIs of the selection over it and their elements, exactly
    as ``/kpis`` answers for that window (the asset's entry, the line's, or the total)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="the bucket's start, ISO 8601")
    to: str = Field(description="the bucket's end (exclusive), ISO 8601")
    shift: str | None = Field(default=None, description="bucket=shift: the shift's name")
    date: str | None = Field(default=None, description="bucket=shift: the local date the "
                             "shift starts on")
    elements: TimeElements = Field(description="ISO 22400 time elements (seconds inside "
                                   "planned busy time) and quantities, as /kpis gives them")


class KpiSeriesOut(BaseModel):
    """KPIs per bucket of a window."""

    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [{
        "window": {"from": "2026-12-05T00:00:00Z", "to": "2026-12-05T02:00:00Z"},
        "bucket": "1h", "timezone": "UTC", "selection": {"asset": None, "line": None},
        "algorithm_version": ALGORITHM_VERSION, "config_fingerprint": "0123456789abcdef",
        "buckets": [{"from": "2026-12-05T00:00:00Z", "to": "2026-12-05T01:00:00Z",
                     **_EXAMPLE_KPIS, "elements": {"window_s": 3600.0, "pbt_s": 3600.0}}],
    }]})

    window: dict[str, str | None] = Field(description="the resolved window, ISO 8601")
    bucket: str
    timezone: str = Field(description="calendar.timezone: the clock the buckets follow")
    selection: dict[str, str | None] = Field(description="`asset` or `line` asked for; both "
                                             "null: the total of every asset")
    algorithm_version: str
    config_fingerprint: str
    buckets: list[SeriesBucket]


class HistoryBucket(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="the bucket's start, ISO 8601")
    to: str = Field(description="the bucket's end (exclusive), ISO 8601")
    shift: str | None = Field(default=None, description="bucket=shift: the shift's name")
    date: str | None = Field(default=None, description="bucket=shift: the local date")
    value: float | str | None = Field(description="the aggregate; null when the bucket has no "
                                      "usable sample (mean: no known time); a text tag's "
                                      "`last` is its text")
    count: int = Field(description="usable samples in the bucket (quality below bad, finite)")
    bad: int = Field(description="other samples in the bucket (bad quality, NaN), left out")
    known_s: float | None = Field(default=None, description="agg=mean: the seconds of the "
                                  "bucket whose value is known (the mean's weight)")


class HistoryOut(BaseModel):
    """A tag's samples aggregated per bucket."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "path": "demo/machining/line1/lathe-01/spindle_speed",
        "window": {"from": "2026-12-05T00:00:00Z", "to": "2026-12-05T02:00:00Z"},
        "bucket": "1h", "agg": "mean", "timezone": "UTC",
        "buckets": [{"from": "2026-12-05T00:00:00Z", "to": "2026-12-05T01:00:00Z",
                     "value": 1180.25, "count": 3600, "bad": 0, "known_s": 3600.0}],
    }]})

    path: str
    window: dict[str, str | None]
    bucket: str
    agg: str
    timezone: str
    buckets: list[HistoryBucket]


def kpi_columns() -> list[str]:
    """CSV columns of a KPI row: level, path, the figures, then the elements."""
    return ["level", "path", *(f.name for f in fields(Kpis)),
            *(f"elements.{f.name}" for f in fields(TimeElements)),
            "rollups.whole_hours", "rollups.from_rollups", "rollups.from_raw_samples"]


def kpi_rows(data: dict[str, Any]) -> Any:
    """``/kpis`` as rows: one per asset, per line and the total (evidence is JSON only)."""
    for level, key in (("asset", "assets"), ("line", "lines")):
        for path, entry in data.get(key, {}).items():
            yield {"level": level, "path": path, **entry}
    if "total" in data:
        yield {"level": "total", "path": None, **data["total"]}


#: a series bucket's CSV columns: its window first, then the figures and the elements
_SERIES_COLUMNS = ["from", "to", "shift", "date", *(f.name for f in fields(Kpis)),
                   *(f"elements.{f.name}" for f in fields(TimeElements))]


def _series_rows(data: dict[str, Any]) -> Any:
    return data["buckets"]


def _history_rows(data: dict[str, Any]) -> Any:
    return data["buckets"]


# ---------------------------------------------------------------------------- /kpis/series

def series_body(service: KpiService, bks: list[Bucket], asset: str | None, line: str | None
                ) -> list[dict[str, Any]]:
    """Each bucket's figures, computed exactly as ``/kpis`` computes that window (its whole
    hours from roll-ups where they are usable for it), all from one snapshot of the store."""
    assets = service.assets_for(asset, line)
    out: list[dict[str, Any]] = []
    windows = [(b.start_ns, b.end_ns) for b in bks]
    # hours: no whole hour inside whose roll-up row /kpis of the bucket could use (a row is
    # the hour as part of a window that starts before it): each computed from raw samples,
    # as /kpis does, with every asset's samples read once per day of buckets
    short = bool(bks) and all(e - s <= HOUR_NS for s, e in windows) and all(
        a[1] <= b[0] for a, b in itertools.pairwise(windows))
    with service.snapshot():
        hourly = service.short_windows(assets, windows) if short else {}
        for k, b in enumerate(bks):
            if short:
                per_asset = {a.path: hourly[a.path][k] for a in assets}
            else:  # longer buckets: their whole hours from roll-ups, as /kpis of each does
                per_asset = {r.asset.path: r.elements
                             for r in service.results(b.start_ns, b.end_ns, assets)}
            if asset is not None:
                e = per_asset[asset]
            elif line is not None:
                e = group_by_line(per_asset)[line]
            else:
                e = roll_up(per_asset.values())
            out.append({"from": iso(b.start_ns), "to": iso(b.end_ns), "shift": b.shift,
                        "date": b.date, **Kpis.of(e).as_dict(), "elements": e.as_dict()})
    return out


@router.get(
    "/kpis/series", tags=["kpis"], response_model=KpiSeriesOut,
    summary="KPIs per hour, shift or local day of a window",
    description=(
        "One call for a day of hourly OEE: per bucket the KPIs (OEE and its parts, coverage, "
        "...) and their time elements and quantities of the selection (`asset`, `line`, or "
        "the total of every asset), each bucket exactly what `/kpis` answers for that window. "
        "Buckets follow the plant calendar's clock (`calendar.timezone`): `1h` local hours, "
        "`1d` local days (23 or 25 hours when the clocks change), `shift` every occurrence of "
        "the calendar's shifts (named, with their local date; time outside shifts is in no "
        "bucket); the first and last bucket are cut to the window. At most "
        "`api.max_series_buckets` buckets (400 naming `bucket`); the window at most "
        "`api.max_kpi_window_days`. CSV (`format=csv` or `Accept: text/csv`): a row per bucket."
    ),
    response_class=JSONResponse,  # the OpenAPI's content type: the answer is pre-rendered JSON
)
@tabular(_series_rows, columns=lambda: _SERIES_COLUMNS, name="kpi-series")
async def get_kpi_series(
    service: ServiceDep,
    runner: RunnerDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    asset: AssetQuery = None,
    line: LineQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    bucket: Annotated[SERIES_BUCKETS, Query(description="1h, shift or 1d",
                                            examples=["1h"])] = "1h",
) -> Response:
    start, end = kpi_window(settings, from_, to, now, zones)
    s_ns, e_ns = to_ns(start), to_ns(end)
    bks = buckets(bucket, settings.calendar, s_ns, e_ns, settings.api.max_series_buckets)
    service.assets_for(asset, line)  # 404 before any computation

    def compute() -> bytes:
        return json_body({
            "window": {"from": iso(s_ns), "to": iso(e_ns)}, "bucket": bucket,
            "timezone": settings.calendar.timezone, "selection": {"asset": asset, "line": line},
            "algorithm_version": ALGORITHM_VERSION, "config_fingerprint": service.fingerprint,
            "buckets": series_body(service, bks, asset, line),
        })

    key = ("series", ALGORITHM_VERSION, service.fingerprint, s_ns, e_ns, bucket, asset, line)
    return await respond(await runner.run(key, e_ns, compute), zones)


# ---------------------------------------------------------------------------- history

_DEFAULT_HISTORY = Window(start="now-24h", end="now")
_TEXT_AGGS = ("count", "last")


@router.get(
    "/tags/{tag_path:path}/history", tags=["tags"], response_model=HistoryOut,
    summary="A tag's samples aggregated per bucket (mean, min, max, last, count)",
    description=(
        "Per bucket of the window (default the last 24 hours) the aggregate `agg` of the "
        "tag's raw samples. `min`, `max`, `last`, `count`: over the usable samples in the "
        "bucket (quality below bad, a finite value); `mean` is **time-weighted**: each usable "
        "value holds until the tag's next sample (the window starts with the value in force), "
        "a bad or NaN sample makes the time to the next sample unknown, so do the gaps of the "
        "tag's device and time after now, and the mean is over the known time (`known_s`). "
        "A text tag (its latest sample is a text) takes `count` and `last` only (422 naming "
        "`agg`). Buckets as for "
        "`/kpis/series` (the plant's clock) plus 1m, 5m, 15m and 30m; at most "
        "`api.max_series_buckets`. Samples are read a page at a time: memory does not grow "
        "with the window. CSV: a row per bucket."
    ),
)
@tabular(_history_rows, columns=HistoryBucket, name="history")
def get_tag_history(
    g: GatewayDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    tag_path: TagPath,
    from_: Annotated[str | None, Query(alias="from", description=f"{_FROM}; default now-24h",
                                       examples=["now-24h"])] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now; default now",
                                    examples=["now"])] = None,
    bucket: Annotated[HISTORY_BUCKETS, Query(description="1m, 5m, 15m, 30m, 1h, shift or 1d",
                                             examples=["1h"])] = "1h",
    agg: Annotated[Literal["mean", "min", "max", "last", "count"], Query(
        description="mean (time-weighted), min, max, last or count", examples=["mean"])] = "mean",
) -> HistoryOut:
    tid = _tag_id(g, tag_path)
    start, end = window(from_, to, _DEFAULT_HISTORY, now, tz=zones.inputs)
    check_window(settings, start, end)
    s_ns, e_ns = to_ns(start), to_ns(end)
    bks = buckets(bucket, settings.calendar, s_ns, e_ns, settings.api.max_series_buckets)
    latest = g.store.latest([tid]).get(tid)
    values: list[float | str | None]
    known: list[float | None] = [None] * len(bks)
    if latest is not None and latest.text is not None:
        if agg not in _TEXT_AGGS:
            raise KpiError(f"parameter 'agg': {agg!r} does not apply to tag {tag_path!r}, which "
                           "holds texts: ask for agg=count or agg=last")
        count, bad, texts = aggregate_text(g.store, tid, bks)
        values = list(count.tolist()) if agg == "count" else list(texts)
    else:
        rec = g.tags.by_id(tid)
        now_ns = to_ns(now)
        gaps = tag_gaps(g.store, rec, s_ns, e_ns, now_ns) if rec is not None else []
        a = aggregate(g.store, tid, bks, now_ns, gaps=gaps)
        count, bad = a.count, a.bad
        pick = {"mean": a.mean(), "min": a.min, "max": a.max, "last": a.last}
        if agg == "count":
            values = [float(c) for c in a.count.tolist()]
        else:
            values = [None if math.isnan(v) else v for v in pick[agg].tolist()]
        if agg == "mean":
            known = a.known_s.tolist()
    tz = zones.output
    return HistoryOut(
        path=tag_path, window={"from": iso(s_ns, tz=tz), "to": iso(e_ns, tz=tz)}, bucket=bucket,
        agg=agg,
        timezone=settings.calendar.timezone,
        buckets=[HistoryBucket.model_validate({
                     "from": iso(b.start_ns, tz=tz), "to": iso(b.end_ns, tz=tz), "shift": b.shift,
                     "date": b.date, "value": v, "count": int(n), "bad": int(x), "known_s": k})
                 for b, v, n, x, k in zip(bks, values, count.tolist(), bad.tolist(), known,
                                          strict=True)],
    )
