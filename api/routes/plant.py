"""The plant as configured and as stored: assets, tags, and each tag's latest and raw samples."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Path, Query

from config.errors import NotFoundError
from config.signals import Quality
from config.times import iso, to_ns
from store.batch import TS_UNKNOWN

from ..deps import GatewayDep, NowDep, SettingsDep, instant
from ..gateway import Gateway
from ..models import AssetOut, LatestOut, SamplesOut, TagOut
from ..plant_time import ZonesDep
from ..problems import BadParameter, echo
from ..state_names import names_of

router = APIRouter(prefix="/api/v1")

#: a tag path, as `GET /api/v1/tags` lists them
TagPath = Annotated[str, Path(description="the tag's path site/area/line/asset/signal",
                              examples=["demo/machining/line1/lathe-01/state"])]


def quality_name(code: int) -> str:
    try:
        return Quality(code).name.lower()
    except ValueError:
        return f"code {code}"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _tag_id(g: Gateway, path: str) -> int:
    """The store id of ``path``: configured, discovered (OPC UA browse) or stored earlier."""
    tid = g.tag_id(path)
    if tid is None:
        raise NotFoundError(f"no tag {echo(path)}; GET /api/v1/tags lists them")
    return tid


@router.get("/assets", tags=["plant"], summary="Assets (work units) of the plant")
def get_assets(settings: SettingsDep) -> list[AssetOut]:
    by_asset: dict[str, list[str]] = {}
    for _, t in settings.all_tags():
        by_asset.setdefault(t.asset, []).append(t.path)
    return [
        AssetOut(
            path=a.path, line=a.line, description=a.description,
            ideal_cycle_time_s=a.ideal_cycle_time_s, key_equipment=a.key_equipment,
            control=a.control, default_mode=a.default_mode, tags=by_asset.get(a.path, []),
        )
        for a in settings.assets
    ]


@router.get("/tags", tags=["tags"], summary="Configured tags")
def get_tags(
    g: GatewayDep,
    asset: Annotated[str | None, Query(description="only this asset's tags",
                                       examples=["demo/machining/line1/lathe-01"])] = None,
) -> list[TagOut]:
    out = [TagOut(**dataclasses.asdict(t)) for t in g.store.tags()]
    return [t for t in out if asset is None or t.asset == asset]


def _names(g: Gateway, tid: int, values: list[float | None]) -> list[str | None] | None:
    """Canonical state/mode names of ``values`` of tag ``tid`` (api.state_names)."""
    return names_of(next((t for t in g.store.tags() if t.tag_id == tid), None), values)


@router.get("/tags/{tag_path:path}/latest", tags=["tags"], summary="Latest sample of a tag")
def get_tag_latest(g: GatewayDep, zones: ZonesDep, tag_path: TagPath) -> LatestOut:
    tid = _tag_id(g, tag_path)
    got = g.store.latest([tid]).get(tid)
    if got is None:
        return LatestOut(path=tag_path, ts=None, value=None, quality="no data")
    value = _num(got.value)
    return LatestOut(
        path=tag_path, ts=iso(got.ts_ns, tz=zones.output), value=value,
        name=(_names(g, tid, [value]) or [None])[0], text=got.text,
        quality=quality_name(got.quality),
    )


@router.get(
    "/tags/{tag_path:path}/samples", tags=["tags"],
    summary="Raw samples of a tag in a window (the data every KPI is traceable to)",
    description=(
        "The first `limit` samples of the window in time order (default 10,000, at most "
        "`api.max_samples`: a larger limit is a 400 problem). `truncated` says whether the "
        "window holds more: ask again from just after the last `ts`. The store reads only "
        "what the page needs, whatever the window's length."
    ),
)
def get_tag_samples(
    g: GatewayDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    tag_path: TagPath,
    from_: Annotated[str | None, Query(alias="from", description=(
        "ISO 8601 (without an offset: the plant's local time, or tz's) or now-1h"),
        examples=["now-1h", "2026-12-06T08:00:00+08:00"])] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now",
                                    examples=["now", "2026-12-06T09:00:00+08:00"])] = None,
    limit: Annotated[int | None, Query(
        ge=1, description="samples at most (default 10,000, at most api.max_samples)",
        examples=[1000])] = None,
) -> SamplesOut:
    tid = _tag_id(g, tag_path)
    top = settings.api.max_samples
    if limit is None:
        limit = min(10_000, top)
    elif limit > top:
        raise BadParameter("limit", f"{limit} is more than api.max_samples ({top}): ask for "
                                    "fewer samples per request", limit=("api.max_samples", top))
    start = instant(from_, "now-1h", "from", now, zones.inputs)
    end = instant(to, "now", "to", now, zones.inputs)
    page = g.store.read_page(tid, to_ns(start), to_ns(end), limit)
    tz = zones.output

    def column(times: npt.NDArray[np.int64]) -> list[str | None]:
        return [None if t == TS_UNKNOWN else iso(t, tz=tz) for t in times.tolist()]

    values = [None if math.isnan(v) else v for v in page.value.tolist()]
    return SamplesOut(
        path=tag_path,
        window={"from": iso(to_ns(start), tz=tz), "to": iso(to_ns(end), tz=tz)},
        count=len(page.ts_ns),
        truncated=page.more,
        ts=[iso(int(t), tz=tz) for t in page.ts_ns.tolist()],
        value=values,
        name=_names(g, tid, values),
        quality=page.quality.astype(int).tolist(),
        server_ts=column(page.server_ts),
        gateway_ts=column(page.gateway_ts),
    )
