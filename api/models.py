"""Response models of the API (their class names are the OpenAPI schema names)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from config.fingerprint import REDACTED
from config.times import Calendar

__all__ = ["AssetOut", "ConfigOut", "LatestOut", "SamplesOut", "TagOut"]


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
    count: int = Field(description="samples in this answer (at most `limit`)")
    truncated: bool = Field(description="the window holds more samples after the last of this "
                                        "answer: ask again with `cursor=next_cursor`")
    next_cursor: str | None = Field(
        default=None, description="opaque: pass as `cursor` for the samples after this answer's "
        "last (also in the `Link: <...>; rel=\"next\"` header); null when `truncated` is false")
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
    default_mode: str | None = Field(
        default=None, description="configured operation mode used when the asset has no mode tag")
    tags: list[str]


class ConfigOut(BaseModel):
    """The configuration in force, for an auditor to check against the file."""

    config_fingerprint: str = Field(
        description="first 16 hex digits of the SHA-256 of the configuration as the file states "
        "it (canonical JSON of every field, defaults included; secrets count only as set or "
        "not; runtime overrides excluded): `tierproof check-config FILE` prints the same"
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
