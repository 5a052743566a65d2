"""Response models of the API (their class names are the OpenAPI schema names)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from config.fingerprint import REDACTED
from config.times import Calendar

__all__ = ["AssetOut", "ConfigOut", "LatestOut", "SamplesOut", "TagOut"]


class TagOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "path": "demo/machining/line1/lathe-01/state", "tag_id": 1,
        "asset": "demo/machining/line1/lathe-01", "role": "state", "unit": "", "device": "line1-plc",
        "protocol": "modbus", "enum": {"0": "Executing", "1": "NotExecuting"}}]})

    path: str
    tag_id: int
    asset: str
    role: str
    unit: str
    device: str
    protocol: str
    enum: dict[int, str] | None = None


class LatestOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "path": "demo/machining/line1/lathe-01/good_count", "ts": "2026-12-07T02:05:34Z",
        "value": 288.0, "text": None, "quality": "good"}]})

    path: str
    ts: str | None = Field(description="sample time, ISO 8601 with its offset (UTC Z, or tz=)")
    value: float | None = Field(description="engineering value; null for a NaN or a text")
    name: str | None = Field(default=None, description=(
        "state, mode and channel_mode tags: the canonical name of the raw value (OPC 40001-1 / "
        "OPC 40501, e.g. Executing), through the tag's enum as the KPIs read it; null for "
        "other tags and for a raw value the enum does not map"))
    text: str | None = None
    quality: str = Field(description="good, uncertain, bad, ...")


class SamplesOut(BaseModel):
    """Parallel lists, one entry per sample in time order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "path": "demo/machining/line1/lathe-01/state",
        "window": {"from": "2026-12-07T01:00:00Z", "to": "2026-12-07T02:00:00Z"},
        "count": 2, "truncated": False,
        "ts": ["2026-12-07T01:12:03Z", "2026-12-07T01:40:44Z"], "value": [1.0, 0.0],
        "quality": [0, 0], "server_ts": ["2026-12-07T01:12:03Z", None],
        "gateway_ts": ["2026-12-07T01:12:03.004000Z", "2026-12-07T01:40:44.002000Z"]}]})

    path: str
    window: dict[str, str | None]
    count: int = Field(description="samples in this answer (at most `limit`)")
    truncated: bool = Field(description="the window holds more samples after the last of this "
                                        "answer: ask again with `cursor=next_cursor`")
    next_cursor: str | None = Field(
        default=None, description="opaque: pass as `cursor` for the samples after this answer's "
        "last (also in the `Link: <...>; rel=\"next\"` header); null when `truncated` is false")
    ts: list[str | None] = Field(
        description="sample time, ISO 8601 (UTC Z, or tz='s zone with its offset): the source "
        "timestamp where the protocol has one"
        " (the time KPIs use)"
    )
    value: list[float | None]
    name: list[str | None] | None = Field(default=None, description=(
        "state, mode and channel_mode tags: the canonical name of each raw value (as `name` of "
        "latest); null for other tags"))
    quality: list[int]
    server_ts: list[str | None] = Field(
        description="the server's timestamp (OPC UA ServerTimestamp); null when unknown"
    )
    gateway_ts: list[str | None] = Field(
        description="the gateway's clock when the sample arrived; null when not recorded"
    )


class AssetOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "path": "demo/machining/line1/lathe-01", "line": "demo/machining/line1",
        "description": "CNC lathe", "ideal_cycle_time_s": 45.0, "key_equipment": True,
        "control": "cnc", "default_mode": None,
        "tags": ["demo/machining/line1/lathe-01/state", "demo/machining/line1/lathe-01/mode"]}]})

    path: str
    line: str
    description: str
    ideal_cycle_time_s: float | None
    key_equipment: bool
    control: str
    default_mode: str | None = Field(
        default=None, description="configured operation mode used when the asset has no mode tag")
    tags: list[str]


class ConfigOut(BaseModel):
    """The configuration in force, for an auditor to check against the file."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "config_fingerprint": "77fbd1a2f9faf98f", "runtime_overrides": ["store.path"],
        "redacted_as": REDACTED,
        "calendar": {"timezone": "Asia/Shanghai", "shifts": [
            {"name": "early", "start": "06:00", "end": "14:00", "days": ["mon", "tue"]}],
            "planned_stops": [], "holidays": ["2026-12-25"]},
        "settings": {"site": "demo", "store": {"type": "sqlite", "path": "data/demo.db"}}}]})

    config_fingerprint: str = Field(
        description="first 16 hex digits of the SHA-256 of the configuration as the file states "
        "it (canonical JSON of every field, defaults included; secrets count only as set or "
        "not; runtime overrides excluded): `tierproof check-config FILE` prints the same, until "
        "declared evidence is supplied through the API (/api/v1/declared), which counts in it"
    )
    runtime_overrides: list[str] = Field(
        description="field paths whose value in force was set at runtime, not by the file "
        "(e.g. the demo's store.path, the embedded MQTT broker's devices[i].broker)"
    )
    redacted_as: str = Field(default=REDACTED, description="how every secret reads in `settings`")
    calendar: Calendar = Field(description="the shift calendar in force (planned busy time)")
    settings: dict[str, Any] = Field(
        description="every setting in force, defaults included, runtime overrides applied, "
        "secrets (passwords, tokens, a URL's user:password@) redacted"
    )
