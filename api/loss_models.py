"""Response models of ``/api/v1/stops`` and ``/api/v1/losses`` (answers rendered once in a
worker thread, as the KPI routes' are: the models document them and tests validate live
answers against them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .kpi_models import Window

__all__ = ["AnnotationOut", "AnnotationsOut", "LossesOut", "ReasonIn", "StopOut", "StopsOut"]

LossType = Literal["planned_downtime", "breakdown", "changeover_setup", "small_stop",
                   "speed_loss", "scrap_rework"]
StopLossType = Literal["planned_downtime", "breakdown", "changeover_setup", "small_stop"]
Element = Literal["malfunction", "minor_stop", "asut", "maintenance", "not_available", "other"]

_WINDOW: dict[str, Any] = {"from": "2026-12-06T00:00:00Z", "to": "2026-12-07T00:00:00Z"}


class StopOut(BaseModel):
    """One stop event: a stretch of stop time in known planned busy time with one reason."""

    id: str = Field(description="the stop's id, `<asset>@<start ns>`: POST "
                                "/api/v1/stops/{id}/reason annotates it")
    asset: str
    start: str = Field(description="ISO 8601 (UTC, or tz's)")
    end: str
    duration_s: float
    reason: str = Field(description="reason id (reasons:), or `unassigned`")
    reason_label: str
    category: str | None = Field(description="the reason's category; null when unassigned")
    loss_type: StopLossType
    element: Element = Field(description="ISO 22400 element of the stop's time (kpi.oee)")
    reason_source: Literal["tag", "opcua_event", "operator"] | None = Field(
        description="where the reason came from: `tag` (the asset's stop_reason tag), "
                    "`opcua_event` (an OPC UA event of its reason_event tag), `operator` (an "
                    "annotation); null when unassigned. Precedence: tag, then event; an "
                    "annotation replaces a machine's reason only with override: true")
    source_tag: str | None = Field(description="path of the tag that gave the machine's reason")
    machine_reason: str | None = Field(
        description="the reason the machine gave (its stop_reason tag or an OPC UA event), "
                    "kept when an annotation replaced it; null when it gave none")
    event_source: str | None = Field(
        default=None, description="the OPC UA event's SourceName (who), when an event gave "
                                  "the machine's reason")
    event_time: str | None = Field(default=None, description="the event's Time (ISO 8601)")
    event_message: str | None = Field(default=None, description="the event's Message text")
    annotated_by: str | None = Field(description="who gave the annotation in force")
    annotated_at: str | None = Field(description="when (ISO 8601)")
    note: str | None = Field(description="the annotation's note")


class StopsOut(BaseModel):
    """Stop events of the selected assets over a window, in time order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "window": _WINDOW, "small_stop_s": 300.0, "count": 1, "truncated": False,
        "stops": [{
            "id": "demo/machining/line1/lathe-01@1765012324118000000",
            "asset": "demo/machining/line1/lathe-01", "start": "2026-12-06T09:12:04.118Z",
            "end": "2026-12-06T09:41:30.002Z", "duration_s": 1765.884,
            "reason": "mechanical_failure", "reason_label": "Mechanical failure",
            "category": "equipment", "loss_type": "breakdown", "element": "malfunction",
            "reason_source": "tag", "source_tag": "demo/machining/line1/lathe-01/stop_reason",
            "machine_reason": "mechanical_failure", "event_source": None, "event_time": None,
            "event_message": None, "annotated_by": None, "annotated_at": None,
            "note": None}],
    }]})

    window: Window
    small_stop_s: float = Field(description="reasons.small_stop_s: shorter stops are small stops")
    count: int = Field(description="stops matching the query (before `limit`)")
    truncated: bool = Field(description="true when `count` > `limit`: narrow the window")
    stops: list[StopOut]


class LossTypeOut(BaseModel):
    loss_type: LossType
    seconds: float
    hours: float
    parts: float | None = Field(description="seconds / PRU (scrap: PQ - GQ); null when a unit "
                                            "has no PRU")
    share_of_known: float | None = Field(description="seconds / known_s")


class ReasonOut(BaseModel):
    reason: str = Field(description="reason id, or `unassigned`")
    label: str
    category: str | None
    stops: int
    seconds: float
    hours: float
    parts: float | None
    share_of_known: float | None
    loss_types: dict[str, float] = Field(description="loss type -> seconds of this reason")


class ParetoOut(BaseModel):
    key: str = Field(description="reason id, `unassigned`, `speed_loss` or `scrap_rework`")
    label: str
    kind: Literal["reason", "loss_type"]
    seconds: float
    hours: float
    share: float = Field(description="of the positive losses listed")
    cumulative_share: float


class LossSummary(BaseModel):
    """Losses of an asset or of a selection (summed seconds)."""

    known_s: float = Field(description="known planned busy time: the OEE's time basis")
    unknown_s: float = Field(description="planned busy time whose state is unknown (not a loss)")
    apt_s: float
    loss_s: float = Field(description="Σ loss types = known_s x (1 - oee) exactly")
    oee: float | None = Field(description="1 - loss_s / known_s: an asset's OEE; a selection's "
                                          "standard-time OEE (Σ PRU x GQ / Σ known)")
    kpi_oee: float | None = Field(description="OEE of /kpis for an asset (null for a selection)")
    stops: int
    units: int
    units_without_pru: int = Field(description="assets without PRU: no speed or scrap loss, "
                                               "no parts")
    loss_types: list[LossTypeOut]
    reasons: list[ReasonOut] = Field(description="stop reasons, largest first")


class LossesOut(LossSummary):
    """Hours and parts lost per loss type and per reason, and their Pareto."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "window": _WINDOW, "small_stop_s": 300.0, "known_s": 57600.0, "unknown_s": 0.0,
        "apt_s": 50400.0, "loss_s": 9360.0, "oee": 0.8375, "kpi_oee": 0.8375, "stops": 3,
        "units": 1, "units_without_pru": 0,
        "loss_types": [{"loss_type": "breakdown", "seconds": 5400.0, "hours": 1.5,
                        "parts": 120.0, "share_of_known": 0.09375}],
        "reasons": [{"reason": "mechanical_failure", "label": "Mechanical failure",
                     "category": "equipment", "stops": 1, "seconds": 5400.0, "hours": 1.5,
                     "parts": 120.0, "share_of_known": 0.09375,
                     "loss_types": {"breakdown": 5400.0}}],
        "pareto": [{"key": "mechanical_failure", "label": "Mechanical failure",
                    "kind": "reason", "seconds": 5400.0, "hours": 1.5, "share": 0.577,
                    "cumulative_share": 0.577}],
        "assets": {},
    }]})

    window: Window
    small_stop_s: float
    pareto: list[ParetoOut]
    assets: dict[str, LossSummary] = Field(description="asset path -> its losses")


class ReasonIn(BaseModel):
    """An operator's reason for a stop."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "material_shortage", "note": "no blanks from the saw"},
        {"reason": "tool_breakage", "note": "insert broke, not a jam", "override": True}]})

    reason: str = Field(min_length=1, max_length=100,
                        description="a reason id of the reason tree (reasons:)")
    note: str = Field(default="", max_length=500)
    override: bool = Field(
        default=False,
        description="replace the reason the stop already has (the machine's, or an earlier "
                    "annotation); without it such a stop is a 409 problem: a reason is never "
                    "overwritten silently. The replaced reason stays in the audit.")


class AnnotationOut(BaseModel):
    """One annotation, as made (the audit keeps every one)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 7, "stop_id": "demo/machining/line1/lathe-01@1765012324118000000",
        "asset": "demo/machining/line1/lathe-01", "start": "2026-12-06T09:12:04.118Z",
        "reason": "material_shortage", "note": "no blanks from the saw",
        "annotated_by": "shift-lead", "annotated_at": "2026-12-06T10:02:11.5Z",
        "replaced_reason": None, "replaced_source": None}]})

    id: int
    stop_id: str
    asset: str
    start: str
    reason: str
    note: str
    annotated_by: str = Field(description="the API key's name (or X-Annotated-By without keys)")
    annotated_at: str
    replaced_reason: str | None = Field(description="the reason in force before; null: none")
    replaced_source: Literal["tag", "opcua_event", "operator"] | None = Field(
        description="where the replaced reason came from; null: none")


class AnnotationsOut(BaseModel):
    """Every annotation of the stops starting in a window, in the order they were made."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "window": _WINDOW, "annotations": [{
            "id": 7, "stop_id": "demo/machining/line1/lathe-01@1765012324118000000",
            "asset": "demo/machining/line1/lathe-01", "start": "2026-12-06T09:12:04.118Z",
            "reason": "material_shortage", "note": "no blanks from the saw",
            "annotated_by": "shift-lead", "annotated_at": "2026-12-06T10:02:11.5Z",
            "replaced_reason": None, "replaced_source": None}]}]})

    window: Window
    annotations: list[AnnotationOut]
