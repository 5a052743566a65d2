"""The gateway itself: health, the collectors' devices and the store's spool."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from collector.supervisor import DeviceHealth
from config.errors import NotFoundError
from config.times import iso
from store.spool import spool_problems

from ..deps import GatewayDep, SettingsDep
from ..tabular import tabular

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


class HealthReason(BaseModel):
    """One thing that makes the gateway ``degraded``."""

    part: Literal["sink", "spool", "device", "store"] = Field(
        description="`sink`: the remote store (InfluxDB); `spool`: the store-and-forward spool "
        "or its quarantine; `device`: a collector's device; `store`: stored data found damaged "
        "(embedded store)")
    name: str = Field(description="which one: the store type, `spool`, the device's name, or "
                      "(`store`) the path of the tag whose stored data is damaged")
    reason: str = Field(description="why, in a sentence")


class HealthDevices(BaseModel):
    total: int
    connected: int


class HealthOut(BaseModel):
    """The gateway's health. ``ok`` only when every sink, device and the spool are healthy and
    no stored data is known damaged."""

    status: Literal["ok", "degraded"]
    reasons: list[HealthReason] = Field(description="empty when ok")
    version: str
    time: str
    store: dict[str, Any] = Field(description="store counters (with InfluxDB: `spool`)")
    devices: HealthDevices
    kpi: dict[str, Any] | None = Field(default=None, description="single flight and cache of the KPI routes")


#: an absolute file path inside a message: only its last part is shown (no layout of the host)
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"]+/)+(?=[^\s/'\"]*)")
#: store figures that are file locations, never shown
_PRIVATE_KEYS = frozenset({"path", "meta_path"})


def _public(value: Any) -> Any:
    """``value`` without absolute paths (in strings) or keys naming files, recursively."""
    if isinstance(value, str):
        return _ABS_PATH.sub(".../", value)
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if k not in _PRIVATE_KEYS}
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    return value


#: damaged chunks named one by one in /health; the rest are counted in one more reason
_DAMAGE_SHOWN = 10


def _damage_reasons(store: Any) -> list[HealthReason]:
    """A reason per damaged chunk of the embedded store (``SqliteStore.damage``), at most
    ``_DAMAGE_SHOWN`` and a count of the rest; none for stores that do not check."""
    damage = getattr(store, "damage", None)
    found = damage() if callable(damage) else []
    out = [HealthReason(part="store", name=d.path or f"tag id {d.tag_id}",
                        reason=f"stored data damaged: {d.samples} samples from {iso(d.start_ns)} to "
                        f"{iso(d.end_ns - 1)} ({d.reason}); read as a gap")
           for d in found[:_DAMAGE_SHOWN]]
    if len(found) > _DAMAGE_SHOWN:
        out.append(HealthReason(part="store", name="damage",
                                reason=f"{len(found) - _DAMAGE_SHOWN} more damaged chunks; "
                                "`tierproof store verify` lists them all"))
    return out


def _device_reason(d: Any) -> str:
    why = {"connecting": "connecting", "backoff": "not connected, waiting to retry",
           "stopped": "stopped"}.get(d.state, d.state)
    return f"{why}: {d.last_error}" if d.last_error else why


@router.get(
    "/health",
    summary="Gateway, store and collector health",
    response_model=HealthOut,
    response_model_exclude_none=True,
    description=(
        "`ok` (200) only when every sink, device and the spool are healthy; otherwise `degraded` "
        "(**503**) with `reasons`: the InfluxDB sink unavailable or refusing our credentials, a "
        "device not connected (disabled devices do not count), spooled batches lost to damage or "
        "points dropped since this start, the spool 90 % full, batches waiting in the quarantine, "
        "stored samples of the embedded store found damaged (per damaged range: the tag, its time "
        "range and why; read as a gap by KPIs). "
        "A load balancer takes 503 as out of service. The Docker image's HEALTHCHECK takes both "
        "200 and 503 as alive (a gateway that is collecting into its spool while InfluxDB is down "
        "must not be restarted: a restart cannot fix a remote outage, and would interrupt "
        "collection); only no answer in time makes the container unhealthy. No file paths or "
        "secrets appear in the answer."
    ),
    responses={503: {"model": HealthOut, "description": "degraded: `reasons` says what and why"}},
)
def health(request: Request, g: GatewayDep, settings: SettingsDep) -> JSONResponse:
    devices = g.supervisor.status() if g.supervisor else []
    stats = g.store.stats()
    connected = sum(1 for d in devices if d.state == "connected")
    reasons: list[HealthReason] = []
    spool = stats.extra.get("spool")
    if isinstance(spool, dict):
        for part, why in spool_problems(spool):
            reasons.append(HealthReason(part="sink" if part == "sink" else "spool",
                                        name=settings.store.type if part == "sink" else "spool",
                                        reason=why))
    for d in devices:
        if d.state not in ("connected", "disabled"):
            reasons.append(HealthReason(part="device", name=d.name, reason=_device_reason(d)))
    reasons += _damage_reasons(g.store)
    runner = getattr(request.app.state, "runner", None)
    out = HealthOut(
        status="degraded" if reasons else "ok",
        reasons=[HealthReason(part=r.part, name=r.name, reason=_public(r.reason)) for r in reasons],
        version=request.app.version,
        time=datetime.now(UTC).isoformat(),
        store=_public({
            "type": settings.store.type,
            "batches_written": stats.batches_written,
            "points_written": stats.points_written,
            **{k: v for k, v in stats.extra.items() if isinstance(v, int | float | str)},
            **({"spool": _spool_out(spool)} if isinstance(spool, dict) else {}),
        }),
        devices=HealthDevices(total=len(devices), connected=connected),
        # single flight and the closed-result cache of the KPI routes (api.flight)
        kpi=runner.status() if runner else None,
    )
    return JSONResponse(out.model_dump(mode="json", exclude_none=True),
                        status_code=200 if out.status == "ok" else 503)


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
@tabular(columns=DeviceHealth, name="collector-status")
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
