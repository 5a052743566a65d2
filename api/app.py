"""FastAPI application: the composition root. Its lifespan owns the store and the collectors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.errors import ConfigError, KpiError, NotFoundError, StoreError, TierproofError
from config.settings import Settings, parse_instant
from config.signals import Quality
from store.base import Store
from store.batch import TS_UNKNOWN

from .gateway import Gateway
from .service import KpiService, iso, to_ns

VERSION = "0.1.0"
PROBLEM = "application/problem+json"
_STATUS: list[tuple[type[TierproofError], int]] = [
    (NotFoundError, 404),
    (KpiError, 422),
    (ConfigError, 422),
    (StoreError, 503),
    (TierproofError, 500),
]


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def quality_name(code: int) -> str:
    try:
        return Quality(code).name.lower()
    except ValueError:
        return f"code {code}"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


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


def _spool_out(spool: object) -> dict[str, Any]:
    """Spool figures for the API: times as ISO 8601 (``oldest_ns`` -> ``oldest``)."""
    out: dict[str, Any] = {}
    for k, v in dict(spool).items() if isinstance(spool, dict) else ():
        if k.endswith("_ns"):
            out[k.removesuffix("_ns")] = iso(v) if isinstance(v, int) else None
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- response models


class TagOut(BaseModel):
    path: str
    tag_id: int
    asset: str
    role: str
    unit: str
    device: str
    protocol: str
    enum: dict[int, str] | None = None


class LatestOut(BaseModel):
    path: str
    ts: str | None = Field(description="sample time, ISO 8601 UTC")
    value: float | None = Field(description="engineering value; null for a NaN or a text")
    text: str | None = None
    quality: str = Field(description="good, uncertain, bad, ...")


class SamplesOut(BaseModel):
    """Parallel lists, one entry per sample in time order."""

    path: str
    window: dict[str, str | None]
    count: int
    truncated: bool
    ts: list[str | None] = Field(
        description="sample time, ISO 8601 UTC: the source timestamp where the protocol has one"
        " (the time KPIs use)"
    )
    value: list[float | None]
    quality: list[int]
    server_ts: list[str | None] = Field(
        description="the server's timestamp (OPC UA ServerTimestamp); null when unknown"
    )
    gateway_ts: list[str | None] = Field(
        description="the gateway's clock when the sample arrived; null when not recorded"
    )


class AssetOut(BaseModel):
    path: str
    line: str
    description: str
    ideal_cycle_time_s: float | None
    key_equipment: bool
    control: str
    tags: list[str]


def create_app(
    settings: Settings, *, store: Store | None = None, collect: bool = True
) -> FastAPI:
    """Build the API for ``settings``. ``collect=False`` serves stored data only."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Gateway(settings, store=store, collect=collect) as gw:
            app.state.gateway = gw
            app.state.service = KpiService(settings, gw.store)
            yield

    app = FastAPI(
        title="tierproof",
        version=VERSION,
        summary="Smart-factory KPIs with their evidence, from OPC UA / Modbus / MQTT telemetry",
        lifespan=lifespan,
    )

    def gw(request: Request) -> Gateway:
        gateway: Gateway = request.app.state.gateway
        return gateway

    # ------------------------------------------------------------------ errors as RFC 9457

    @app.exception_handler(TierproofError)
    async def _tierproof(_: Request, exc: TierproofError) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return problem(status, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"parameter": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTP error", str(exc.detail))

    def instant(value: str | None, default: str, name: str) -> datetime:
        try:
            return parse_instant(value if value is not None else default)
        except ValueError as exc:
            raise KpiError(f"parameter {name!r}: {exc}") from exc

    # ------------------------------------------------------------------ routes

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/api/v1/health", tags=["gateway"], summary="Gateway, store and collector health")
    def health(request: Request) -> dict[str, Any]:
        g = gw(request)
        devices = g.supervisor.status() if g.supervisor else []
        stats = g.store.stats()
        connected = sum(1 for d in devices if d.state == "connected")
        return {
            "status": "ok",
            "version": VERSION,
            "time": datetime.now(UTC).isoformat(),
            "store": {
                "type": settings.store.type,
                "batches_written": stats.batches_written,
                "points_written": stats.points_written,
                **{k: v for k, v in stats.extra.items() if isinstance(v, int | float | str)},
                **({"spool": _spool_out(stats.extra["spool"])} if "spool" in stats.extra else {}),
            },
            "devices": {"total": len(devices), "connected": connected},
        }

    @app.get("/api/v1/assets", tags=["plant"], summary="Assets (work units) of the plant")
    def assets() -> list[AssetOut]:
        by_asset: dict[str, list[str]] = {}
        for _, t in settings.all_tags():
            by_asset.setdefault(t.asset, []).append(t.path)
        return [
            AssetOut(
                path=a.path, line=a.line, description=a.description,
                ideal_cycle_time_s=a.ideal_cycle_time_s, key_equipment=a.key_equipment,
                control=a.control, tags=by_asset.get(a.path, []),
            )
            for a in settings.assets
        ]

    @app.get("/api/v1/tags", tags=["tags"], summary="Configured tags")
    def tags(
        request: Request,
        asset: Annotated[str | None, Query(description="only this asset's tags")] = None,
    ) -> list[TagOut]:
        out = [TagOut(**dataclasses.asdict(t)) for t in gw(request).store.tags()]
        return [t for t in out if asset is None or t.asset == asset]

    def tag_id(request: Request, path: str) -> int:
        tid = gw(request).tag_id(path)
        if tid is None:
            raise NotFoundError(f"no tag {path!r}; GET /api/v1/tags lists them")
        return tid

    @app.get("/api/v1/tags/{tag_path:path}/latest", tags=["tags"], summary="Latest sample of a tag")
    def latest(request: Request, tag_path: str) -> LatestOut:
        tid = tag_id(request, tag_path)
        got = gw(request).store.latest([tid]).get(tid)
        if got is None:
            return LatestOut(path=tag_path, ts=None, value=None, quality="no data")
        return LatestOut(
            path=tag_path, ts=iso(got.ts_ns), value=_num(got.value), text=got.text,
            quality=quality_name(got.quality),
        )

    @app.get(
        "/api/v1/tags/{tag_path:path}/samples", tags=["tags"],
        summary="Raw samples of a tag in a window (the data every KPI is traceable to)",
    )
    def samples(
        request: Request,
        tag_path: str,
        from_: Annotated[str | None, Query(alias="from", description="ISO 8601 or now-1h")] = None,
        to: Annotated[str | None, Query(description="ISO 8601 or now")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> SamplesOut:
        tid = tag_id(request, tag_path)
        start, end = instant(from_, "now-1h", "from"), instant(to, "now", "to")
        store = gw(request).store
        s = store.read(tid, to_ns(start), to_ns(end), prior=False)
        n = len(s.ts_ns)
        ts, val, q = s.ts_ns[:limit], s.value[:limit], s.quality[:limit]
        server, gateway = _other_times(store, tid, to_ns(start), to_ns(end), ts)
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

    @app.get(
        "/api/v1/kpis", tags=["kpis"],
        summary="ISO 22400 KPIs per asset, per line and in total, with evidence",
        description=(
            "Ratios are fractions (0.85 = 85 %). Time elements are seconds inside planned busy "
            "time; quantities count over the whole window. Lines and the total sum elements "
            "before dividing. `coverage` is the share of planned busy time whose machine state is "
            "known; gaps are never filled in."
        ),
    )
    def kpis(
        request: Request,
        asset: Annotated[str | None, Query(description="asset path site/area/line/asset")] = None,
        line: Annotated[str | None, Query(description="line path site/area/line")] = None,
        from_: Annotated[
            str | None, Query(alias="from", description="ISO 8601 or now-7d; default: kpi.current")
        ] = None,
        to: Annotated[str | None, Query(description="ISO 8601 or now; default: kpi.current")] = None,
    ) -> dict[str, Any]:
        cur = settings.kpi.current
        start, end = instant(from_, cur.start, "from"), instant(to, cur.end, "to")
        service: KpiService = request.app.state.service
        return service.kpis(start, end, asset=asset, line=line)

    @app.get(
        "/api/v1/store/spool", tags=["gateway"],
        summary="Store-and-forward spool: waiting, dropped and quarantined points",
        description=(
            "Present when the store is remote (InfluxDB). Spooled points are accepted and durable "
            "but not yet in the store, so KPIs do not see them until they drain. `dropped_points` "
            "counts every point lost on purpose: spool full (drop_oldest / refuse_newest), "
            "quarantine full, or `tierproof spool drop`; `partial_write_dropped_points` the points "
            "InfluxDB itself dropped from writes it otherwise stored (e.g. older than its retention)."
        ),
    )
    def store_spool(request: Request) -> dict[str, Any]:
        extra = gw(request).store.stats().extra
        if "spool" not in extra:
            raise NotFoundError(f"store type {settings.store.type!r} has no spool (only influx has)")
        return _spool_out(extra["spool"])

    @app.get("/api/v1/collector/status", tags=["gateway"], summary="Health of every device")
    def collector_status(request: Request) -> list[dict[str, Any]]:
        g = gw(request)
        if g.supervisor is None:
            return []
        out = []
        for h in g.supervisor.status():
            d = dataclasses.asdict(h)
            for k in ("last_success", "gap_open_since"):
                if isinstance(d.get(k), int):
                    d[k] = iso(d[k])
            out.append(d)
        return out

    return app
