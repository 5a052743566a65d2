"""The plant as configured and as stored: assets, tags, and each tag's latest and raw samples."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from config.errors import NotFoundError
from config.signals import Quality
from config.times import iso, to_ns
from store.base import SamplePage
from store.batch import TS_UNKNOWN

from ..cursor import MAX_CURSOR, Cursor, decode_cursor, encode_cursor, next_link
from ..deps import GatewayDep, NowDep, SettingsDep, instant
from ..gateway import Gateway
from ..models import AssetOut, LatestOut, SamplesOut, TagOut
from ..plant_time import ZonesDep
from ..problems import echo
from ..state_names import names_of
from ..tabular import parallel, tabular
from .params import row_limit

router = APIRouter(prefix="/api/v1")
#: CSV of samples: a row per sample, a column per list of the answer
_sample_rows, _SAMPLE_COLUMNS = parallel(SamplesOut)

#: what a cursor looks like (opaque: take `next_cursor` of the previous page as it is)
CURSOR_EXAMPLE = encode_cursor(Cursor("demo/machining/line1/lathe-01/state", 1_765_000_000 * 10**9,
                                      1_765_003_600 * 10**9, 1_765_001_800 * 10**9, 1))

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
@tabular(columns=AssetOut, name="assets")
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
@tabular(columns=TagOut, name="tags")
def get_tags(
    g: GatewayDep,
    asset: Annotated[str | None, Query(description="only this asset's tags",
                                       examples=["demo/machining/line1/lathe-01"])] = None,
) -> list[TagOut]:
    # read from the store itself, not the gateway's index: the listing shows what the file
    # holds now (also what another process registered), and it is no per-request look-up
    out = [TagOut(**dataclasses.asdict(t)) for t in g.store.tags()]
    return [t for t in out if asset is None or t.asset == asset]


def _names(g: Gateway, tid: int, values: list[float | None]) -> list[str | None] | None:
    """Canonical state/mode names of ``values`` of tag ``tid`` (api.state_names)."""
    return names_of(g.tags.by_id(tid), values)


@router.get("/tags/{tag_path:path}/latest", tags=["tags"], summary="Latest sample of a tag",
            response_model=LatestOut)
async def get_tag_latest(g: GatewayDep, zones: ZonesDep, tag_path: TagPath) -> Response:
    # A coroutine: with the embedded store it reads on the event loop, since one tag's newest
    # sample is a point query plus the in-memory summaries of recent writes (~20 us), less
    # than handing the request to a worker thread and back (docs/benchmarks.md, issue 12);
    # a recent write not summarised yet (its row to decode) or another store (InfluxDB, a
    # network round trip) is read from a worker thread. The body is encoded here, once, not
    # validated again against the model it was built from.
    tid = _tag_id(g, tag_path)
    if g.latest_on_loop():
        got = g.store.latest([tid]).get(tid)
    else:
        got = (await run_in_threadpool(g.store.latest, [tid])).get(tid)
    if got is None:
        out = LatestOut(path=tag_path, ts=None, value=None, quality="no data")
    else:
        value = _num(got.value)
        out = LatestOut(
            path=tag_path, ts=iso(got.ts_ns, tz=zones.output), value=value,
            name=(_names(g, tid, [value]) or [None])[0], text=got.text,
            quality=quality_name(got.quality),
        )
    return Response(out.model_dump_json(), media_type="application/json")


@router.get(
    "/tags/{tag_path:path}/samples", tags=["tags"],
    summary="Raw samples of a tag in a window (the data every KPI is traceable to)",
    description=(
        "The first `limit` samples of the window in time order (default 10,000, at most "
        "`api.max_samples`: a larger limit is a 400 problem). `truncated` says whether the "
        "window holds more; then `next_cursor` (and the `Link: <...>; rel=\"next\"` header) "
        "continues exactly after the last sample of this answer, in the same window, with no "
        "sample repeated or missed even where samples share a timestamp. The store reads only "
        "what the page needs, whatever the window's length. CSV with `format=csv` or "
        "`Accept: text/csv` (one row per sample)."
    ),
)
@tabular(_sample_rows, columns=_SAMPLE_COLUMNS, name="samples")
def get_tag_samples(
    g: GatewayDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    request: Request,
    response: Response,
    tag_path: TagPath,
    from_: Annotated[str | None, Query(alias="from", description=(
        "ISO 8601 (without an offset: the plant's local time, or tz's) or now-1h"),
        examples=["now-1h", "2026-12-06T08:00:00+08:00"])] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or now",
                                    examples=["now", "2026-12-06T09:00:00+08:00"])] = None,
    limit: Annotated[int | None, Query(
        ge=1, description="samples at most (default 10,000, at most api.max_samples)",
        examples=[1000])] = None,
    cursor: Annotated[str | None, Query(
        description="`next_cursor` of the previous page: continue after its last sample (the "
        "cursor carries the window; `from` and `to` beside it are ignored)",
        max_length=MAX_CURSOR, examples=[CURSOR_EXAMPLE])] = None,
) -> SamplesOut:
    tid = _tag_id(g, tag_path)
    limit = row_limit(limit, settings.api.max_samples, "samples")
    if cursor is not None:
        c = decode_cursor(cursor, tag_path)
        start_ns, end_ns, at, skip = c.start_ns, c.end_ns, c.last_ns, c.skip
    else:
        start_ns = to_ns(instant(from_, "now-1h", "from", now, zones.inputs))
        end_ns = to_ns(instant(to, "now", "to", now, zones.inputs))
        at, skip = start_ns, 0
    page = g.store.read_page(tid, at, end_ns, limit + skip) if at < end_ns else None
    if page is None:
        ts_ns = np.empty(0, np.int64)
        page = SamplePage(ts_ns, np.empty(0), np.empty(0, np.uint8), ts_ns, ts_ns, False)
    # the samples at ``at`` that earlier pages delivered (fewer, if some were deleted since)
    drop = min(skip, int(np.searchsorted(page.ts_ns, at, "right")))
    ts_ns, value, quality = page.ts_ns[drop:], page.value[drop:], page.quality[drop:]
    server_ts, gateway_ts = page.server_ts[drop:], page.gateway_ts[drop:]
    more = page.more or len(ts_ns) > limit
    ts_ns, value, quality = ts_ns[:limit], value[:limit], quality[:limit]
    server_ts, gateway_ts = server_ts[:limit], gateway_ts[:limit]
    next_cursor = None
    if more and len(ts_ns):
        last = int(ts_ns[-1])
        run = len(ts_ns) - int(np.searchsorted(ts_ns, last, "left"))
        next_cursor = encode_cursor(Cursor(tag_path, start_ns, end_ns, last,
                                           run + (drop if last == at else 0)))
        response.headers["Link"] = f'<{next_link(request, next_cursor)}>; rel="next"'
    tz = zones.output

    def column(times: npt.NDArray[np.int64]) -> list[str | None]:
        return [None if t == TS_UNKNOWN else iso(t, tz=tz) for t in times.tolist()]

    values = [None if math.isnan(v) else v for v in value.tolist()]
    return SamplesOut(
        path=tag_path,
        window={"from": iso(start_ns, tz=tz), "to": iso(end_ns, tz=tz)},
        count=len(ts_ns),
        truncated=more,
        next_cursor=next_cursor,
        ts=[iso(int(t), tz=tz) for t in ts_ns.tolist()],
        value=values,
        name=_names(g, tid, values),
        quality=quality.astype(int).tolist(),
        server_ts=column(server_ts),
        gateway_ts=column(gateway_ts),
    )
