"""The plant as configured and as stored: assets, tags, and each tag's latest and raw samples."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Query

from config.errors import NotFoundError
from config.signals import Quality
from config.times import iso, to_ns
from store.base import Store
from store.batch import TS_UNKNOWN

from ..deps import GatewayDep, NowDep, SettingsDep, instant
from ..gateway import Gateway
from ..models import AssetOut, LatestOut, SamplesOut, TagOut

router = APIRouter(prefix="/api/v1")


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
        raise NotFoundError(f"no tag {path!r}; GET /api/v1/tags lists them")
    return tid


def _other_times(
    store: Store, tag_id: int, start_ns: int, end_ns: int, ts: npt.NDArray[np.int64]
) -> tuple[list[str | None], list[str | None]]:
    """Server and gateway timestamps (ISO, None when unknown) of the samples at ``ts``.
    Matched by ts: the two reads are separate snapshots, and a sample written between them
    must not shift the others."""
    t, server, gateway = store.read_timestamps(tag_id, start_ns, end_ns)
    if not len(t):
        return [None] * len(ts), [None] * len(ts)
    pos = np.minimum(np.searchsorted(t, ts), len(t) - 1)
    found = t[pos] == ts

    def column(times: npt.NDArray[np.int64]) -> list[str | None]:
        picked = times[pos]
        known = found & (picked != TS_UNKNOWN)
        return [iso(x) if k else None for x, k in zip(picked.tolist(), known.tolist(), strict=True)]

    return column(server), column(gateway)


@router.get("/assets", tags=["plant"], summary="Assets (work units) of the plant")
def assets(settings: SettingsDep) -> list[AssetOut]:
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
def tags(
    g: GatewayDep,
    asset: Annotated[str | None, Query(description="only this asset's tags")] = None,
) -> list[TagOut]:
    out = [TagOut(**dataclasses.asdict(t)) for t in g.store.tags()]
    return [t for t in out if asset is None or t.asset == asset]


@router.get("/tags/{tag_path:path}/latest", tags=["tags"], summary="Latest sample of a tag")
def latest(g: GatewayDep, tag_path: str) -> LatestOut:
    tid = _tag_id(g, tag_path)
    got = g.store.latest([tid]).get(tid)
    if got is None:
        return LatestOut(path=tag_path, ts=None, value=None, quality="no data")
    return LatestOut(
        path=tag_path, ts=iso(got.ts_ns), value=_num(got.value), text=got.text,
        quality=quality_name(got.quality),
    )


@router.get(
    "/tags/{tag_path:path}/samples", tags=["tags"],
    summary="Raw samples of a tag in a window (the data every KPI is traceable to)",
)
def samples(
    g: GatewayDep,
    now: NowDep,
    tag_path: str,
    from_: Annotated[str | None, Query(alias="from", description="ISO 8601 or now-1h")] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> SamplesOut:
    tid = _tag_id(g, tag_path)
    start, end = instant(from_, "now-1h", "from", now), instant(to, "now", "to", now)
    s = g.store.read(tid, to_ns(start), to_ns(end), prior=False)
    n = len(s.ts_ns)
    ts, val, q = s.ts_ns[:limit], s.value[:limit], s.quality[:limit]
    server, gateway = _other_times(g.store, tid, to_ns(start), to_ns(end), ts)
    return SamplesOut(
        path=tag_path,
        window={"from": iso(to_ns(start)), "to": iso(to_ns(end))},
        count=n,
        truncated=n > limit,
        ts=[iso(int(t)) for t in ts],
        value=[None if np.isnan(v) else float(v) for v in val],
        quality=q.astype(int).tolist(),
        server_ts=server,
        gateway_ts=gateway,
    )
