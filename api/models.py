"""Response models of the API (their class names are the OpenAPI schema names)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["AssetOut", "LatestOut", "SamplesOut", "TagOut"]


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
    default_mode: str | None = Field(
        default=None, description="configured operation mode used when the asset has no mode tag")
    tags: list[str]
