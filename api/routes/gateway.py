"""The gateway itself: health, the collectors' devices and the store's spool."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from config.errors import NotFoundError
from config.times import iso

from ..deps import GatewayDep, SettingsDep

router = APIRouter(prefix="/api/v1", tags=["gateway"])


def _spool_out(spool: object) -> dict[str, Any]:
    """Spool figures for the API: times as ISO 8601 (``oldest_ns`` -> ``oldest``)."""
    out: dict[str, Any] = {}
    for k, v in dict(spool).items() if isinstance(spool, dict) else ():
        if k.endswith("_ns"):
            out[k.removesuffix("_ns")] = iso(v) if isinstance(v, int) else None
        else:
            out[k] = v
    return out


@router.get("/health", summary="Gateway, store and collector health")
def health(request: Request, g: GatewayDep, settings: SettingsDep) -> dict[str, Any]:
    devices = g.supervisor.status() if g.supervisor else []
    stats = g.store.stats()
    connected = sum(1 for d in devices if d.state == "connected")
    return {
        "status": "ok",
        "version": request.app.version,
        "time": datetime.now(UTC).isoformat(),
        "store": {
            "type": settings.store.type,
            "batches_written": stats.batches_written,
            "points_written": stats.points_written,
            **{k: v for k, v in stats.extra.items() if isinstance(v, int | float | str)},
            **({"spool": _spool_out(stats.extra["spool"])} if "spool" in stats.extra else {}),
        },
        "devices": {"total": len(devices), "connected": connected},
        # single flight and the closed-result cache of the KPI routes (api.flight)
        **({"kpi": runner.status()} if (runner := getattr(request.app.state, "runner", None)) else {}),
    }


@router.get(
    "/store/spool",
    summary="Store-and-forward spool: waiting, dropped and quarantined points",
    description=(
        "Present when the store is remote (InfluxDB). Spooled points are accepted and durable "
        "but not yet in the store, so KPIs do not see them until they drain. `dropped_points` "
        "counts every point lost on purpose: spool full (drop_oldest / refuse_newest), "
        "quarantine full, or `tierproof spool drop`; `partial_write_dropped_points` the points "
        "InfluxDB itself dropped from writes it otherwise stored (e.g. older than its retention)."
    ),
)
def store_spool(g: GatewayDep, settings: SettingsDep) -> dict[str, Any]:
    extra = g.store.stats().extra
    if "spool" not in extra:
        raise NotFoundError(f"store type {settings.store.type!r} has no spool (only influx has)")
    return _spool_out(extra["spool"])


@router.get("/collector/status", summary="Health of every device")
def collector_status(g: GatewayDep) -> list[dict[str, Any]]:
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
