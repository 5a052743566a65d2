"""The gateway itself: health, the collectors' devices and the store's spool."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

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


class KpiRunnerStatus(BaseModel):
    """Single flight and the closed-result cache of the KPI routes (``api.flight``)."""

    computed: int = Field(description="computations started")
    joined: int = Field(description="requests that awaited a computation already in flight")
    cache_hits: int
    invalidated: int = Field(description="cached answers dropped because a write touched their windows")
    expired: int = Field(0, description="cached answers dropped as older than "
                         "api.kpi_closed_max_age_s (a process that cannot see every write)")
    recent_hits: int = Field(0, description="open-window requests answered with a recent "
                             "computation of the same request (api.kpi_max_age_s)")
    refreshes: int = Field(0, description="background computations renewing such answers")
    recent: int = Field(0, description="open-window requests whose recent answer is kept")
    cached: int
    cache_size: int
    cached_bytes: int
    cache_bytes: int
    in_flight: int
    single_flight: bool
    closed_check: str = Field("feed", description="how a cached closed answer is known current: "
                              "feed (this process's writes), version (any process's commits to "
                              "the embedded store), max_age (api.kpi_closed_max_age_s), none")


class HealthOut(BaseModel):
    """The gateway's health. ``ok`` only when every sink, device and the spool are healthy and
    no stored data is known damaged."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "degraded",
        "reasons": [{"part": "device", "name": "line1-plc",
                     "reason": "not connected, waiting to retry: connection refused"}],
        "version": "0.1.0", "time": "2026-12-07T02:05:35.353708+00:00",
        "store": {"type": "sqlite", "batches_written": 120, "points_written": 48210,
                  "chunks": 77, "tags": 128, "damaged_chunks": 0,
                  "damaged_ingest_rows": 0},
        "devices": {"total": 3, "connected": 2},
        "kpi": {"computed": 4, "joined": 0, "cache_hits": 9, "invalidated": 0, "cached": 3,
                "cache_size": 64, "cached_bytes": 90211, "cache_bytes": 33554432,
                "in_flight": 0, "single_flight": True}}]})

    status: Literal["ok", "degraded"]
    reasons: list[HealthReason] = Field(description="empty when ok")
    version: str
    time: str
    store: dict[str, Any] = Field(description="store counters (with InfluxDB: `spool`)")
    devices: HealthDevices
    kpi: KpiRunnerStatus | None = Field(default=None, description="single flight and cache of the KPI routes")


class SpoolOut(BaseModel):
    """The store-and-forward spool of a remote store (InfluxDB) and its quarantine; times ISO
    8601 UTC (null when there is none)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "sink": "unavailable", "status": "InfluxDB unreachable: retrying every 5 s",
        "batches": 12, "points": 4800, "bytes": 96000, "max_bytes": 1073741824,
        "when_full": "drop_oldest", "oldest": "2026-12-07T01:00:00Z",
        "oldest_spooled": "2026-12-07T01:00:01Z", "dropped_points": 0, "dropped_batches": 0,
        "dropped_oldest_points": 0, "refused_newest_points": 0, "quarantined_batches": 0,
        "quarantined_points": 0, "quarantine_dropped_points": 0,
        "partial_write_dropped_points": 0, "direct_points": 100000, "spooled_points": 4800,
        "drained_points": 0, "lost_batches": 0, "lost_points": 0, "lost_batches_since_start": 0,
        "dropped_points_since_start": 0, "damage": [], "drain_error": None,
        "last_error": "connection refused", "last_error_at": "2026-12-07T01:00:00Z",
        "retry_at": "2026-12-07T01:00:05Z", "retry_delay_s": 5.0, "probe_interval_s": None,
        "probes": 0, "probes_answered": 0, "drained_after_probe_points": 0}]})

    sink: str = Field(description="the sink's state: ok, unavailable, unauthorized, ...")
    status: str = Field(description="the sink's state in a sentence")
    batches: int = Field(description="batches waiting in the spool")
    points: int
    bytes: int
    max_bytes: int
    when_full: str = Field(description="drop_oldest or refuse_newest")
    oldest: str | None = Field(description="earliest sample time in the spool")
    oldest_spooled: str | None = Field(description="when the oldest waiting batch was spooled")
    dropped_points: int = Field(description="every point lost on purpose (full spool or quarantine, "
                                            "`tierproof spool drop`)")
    dropped_batches: int
    dropped_oldest_points: int
    refused_newest_points: int
    quarantined_batches: int
    quarantined_points: int
    quarantine_dropped_points: int
    partial_write_dropped_points: int = Field(
        description="points InfluxDB itself dropped from writes it otherwise stored")
    direct_points: int
    spooled_points: int
    drained_points: int
    lost_batches: int = Field(description="damaged, truncated or deleted spool records")
    lost_points: int
    lost_batches_since_start: int
    dropped_points_since_start: int
    damage: list[str] = Field(description="the last damage reports")
    drain_error: str | None
    last_error: str | None
    last_error_at: str | None
    retry_at: str | None
    retry_delay_s: float | None
    probe_interval_s: float | None
    probes: int
    probes_answered: int
    drained_after_probe_points: int


class DeviceStatus(BaseModel):
    """What the supervisor knows about one device; times ISO 8601 UTC."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "line1-plc", "protocol": "modbus", "state": "connected",
        "last_success": "2026-12-07T02:05:34.120000Z", "last_error": None,
        "samples_delivered": 120000, "samples_stored": 8000, "bad_samples": 0, "non_finite": 0,
        "reconnects": 1, "gaps": 1, "gap_open_since": None, "tag_errors": {}, "dropped": {}, "stalls": 0,
        "stalled_s": 0.0}]})

    name: str
    protocol: str
    state: Literal["connecting", "connected", "backoff", "stopped", "disabled"]
    last_success: str | None = Field(description="gateway time of the last delivered batch")
    last_error: str | None
    samples_delivered: int
    samples_stored: int = Field(description="of those, written to the store (polled tags: on change)")
    bad_samples: int = Field(description="delivered with quality BAD or worse")
    non_finite: int = Field(description="of those, made BAD because the value was NaN or ±infinity")
    reconnects: int
    gaps: int = Field(description="gaps recorded since the gateway started (connection lost, "
                                   "collection stalled, part of the device gone)")
    gap_open_since: str | None = Field(description="start of the gap currently open")
    tag_errors: dict[str, str] = Field(description="tag path -> why it cannot be read")
    dropped: dict[str, int] = Field(
        description="messages dropped since the gateway started, per reason (MQTT)")
    stalls: int = Field(description="times the collectors could not run beyond the tolerance (each a gap)")
    stalled_s: float


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
    out = [HealthReason(part="store",
                        name=d.path or (f"tag id {d.tag_id}" if d.tag_id >= 0 else "unknown tags"),
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
def get_health(request: Request, g: GatewayDep, settings: SettingsDep) -> JSONResponse:
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
        kpi=KpiRunnerStatus.model_validate(runner.status()) if runner else None,
    )
    return JSONResponse(out.model_dump(mode="json", exclude_none=True),
                        status_code=200 if out.status == "ok" else 503)


@router.get(
    "/store/spool",
    summary="Store-and-forward spool: waiting, dropped and quarantined points",
    response_model=SpoolOut,
    description=(
        "Present when the store is remote (InfluxDB). Spooled points are accepted and durable "
        "but not yet in the store, so KPIs do not see them until they drain. `dropped_points` "
        "counts every point lost on purpose: spool full (drop_oldest / refuse_newest), "
        "quarantine full, or `tierproof spool drop`; `partial_write_dropped_points` the points "
        "InfluxDB itself dropped from writes it otherwise stored (e.g. older than its retention)."
    ),
)
def get_spool(g: GatewayDep, settings: SettingsDep) -> dict[str, Any]:
    extra = g.store.stats().extra
    if "spool" not in extra:
        raise NotFoundError(f"store type {settings.store.type!r} has no spool (only influx has)")
    return _spool_out(extra["spool"])


@router.get("/collector/status", summary="Health of every device", response_model=list[DeviceStatus])
@tabular(columns=DeviceHealth, name="collector-status")
def get_collector_status(g: GatewayDep) -> list[dict[str, Any]]:
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
