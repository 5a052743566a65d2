"""The downtime reason tree: reasons -> categories -> loss types (the six big losses).

A stop's *reason* says why a machine stopped (``mechanical_failure``, ``changeover``,
``material_shortage``, ...); each reason belongs to a *category*, and each category to one of
the six big losses (:data:`LOSS_TYPES`). tierproof ships a default tree
(:data:`DEFAULT_CATEGORIES`, :data:`DEFAULT_REASONS`); a plant adds its own categories and
reasons under ``reasons:`` (or drops the defaults with ``defaults: false``). A
``stop_reason`` tag's ``enum`` maps the PLC's raw codes to reason ids; the check that every
such id exists is in :func:`config.settings.cross_check`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from .base import Model, Name

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_REASONS",
    "LOSS_TYPES",
    "STOP_LOSS_TYPES",
    "UNASSIGNED",
    "LossType",
    "Reason",
    "ReasonCategory",
    "ReasonSettings",
    "ReasonTree",
    "event_cross_check",
    "reasons_cross_check",
]

#: the six big losses, in the order reports list them
LOSS_TYPES: Final = ("planned_downtime", "breakdown", "changeover_setup", "small_stop",
                     "speed_loss", "scrap_rework")
LossType = Literal["planned_downtime", "breakdown", "changeover_setup", "small_stop",
                   "speed_loss", "scrap_rework"]
#: loss types a stop can have (speed loss and scrap are not stops)
STOP_LOSS_TYPES: Final = LOSS_TYPES[:4]
#: the reason of a stop that no source explains (reserved: no configured reason has this id)
UNASSIGNED: Final = "unassigned"


class ReasonCategory(Model):
    """A group of reasons and the loss type they are."""

    id: Name
    label: str = ""
    loss_type: LossType


class Reason(Model):
    """One reason a machine can stop for."""

    id: Name
    label: str = ""
    category: Name = Field(description="id of a category (shipped or under reasons.categories)")


#: shipped categories (a plant's own are added to these)
DEFAULT_CATEGORIES: Final[tuple[ReasonCategory, ...]] = (
    ReasonCategory(id="planned", label="Planned stop", loss_type="planned_downtime"),
    ReasonCategory(id="equipment", label="Equipment failure", loss_type="breakdown"),
    ReasonCategory(id="logistics", label="Material and staffing", loss_type="breakdown"),
    ReasonCategory(id="changeover", label="Changeover and setup", loss_type="changeover_setup"),
    ReasonCategory(id="minor", label="Minor stop", loss_type="small_stop"),
)
#: shipped reasons (the simulators draw theirs from these)
DEFAULT_REASONS: Final[tuple[Reason, ...]] = (
    Reason(id="planned_maintenance", label="Planned maintenance", category="planned"),
    Reason(id="no_order", label="No order", category="planned"),
    Reason(id="break", label="Break or meeting", category="planned"),
    Reason(id="mechanical_failure", label="Mechanical failure", category="equipment"),
    Reason(id="electrical_failure", label="Electrical failure", category="equipment"),
    Reason(id="tool_breakage", label="Tool breakage", category="equipment"),
    Reason(id="material_shortage", label="Material shortage", category="logistics"),
    Reason(id="no_operator", label="No operator", category="logistics"),
    Reason(id="changeover", label="Product changeover", category="changeover"),
    Reason(id="adjustment", label="Setup adjustment", category="changeover"),
    Reason(id="jam", label="Jam", category="minor"),
    Reason(id="blocked", label="Blocked by downstream", category="minor"),
    Reason(id="sensor_trip", label="Sensor trip", category="minor"),
)


class ReasonTree:
    """The resolved tree: reason id -> (reason, category); reason codes are positions in
    :attr:`ids` (the KPI core's integer codes of a reason)."""

    def __init__(self, categories: tuple[ReasonCategory, ...], reasons: tuple[Reason, ...]) -> None:
        self.categories = {c.id: c for c in categories}
        self.reasons = {r.id: r for r in reasons}
        self.ids: tuple[str, ...] = tuple(self.reasons)
        self.code = {rid: i for i, rid in enumerate(self.ids)}

    def loss_type(self, reason: str) -> LossType:
        return self.categories[self.reasons[reason].category].loss_type

    def category(self, reason: str) -> ReasonCategory:
        return self.categories[self.reasons[reason].category]

    def label(self, reason: str) -> str:
        return self.reasons[reason].label or reason


class ReasonSettings(Model):
    """``reasons:`` -- the reason tree and how stops are classified."""

    defaults: bool = Field(
        default=True, description="include the shipped categories and reasons (docs/kpis.md)")
    small_stop_s: float = Field(
        default=300.0, gt=0, le=86_400,
        description=(
            "a stop shorter than this (seconds) is a small stop, whatever its reason, unless "
            "its reason is a planned stop or a changeover"
        ),
    )
    event_tolerance_s: float = Field(
        default=10.0, ge=0, le=3_600,
        description=(
            "an OPC UA event (reason_event tag) up to this many seconds before a stop begins "
            "gives that stop its reason (an event inside a stop gives it anyway)"
        ),
    )
    categories: list[ReasonCategory] = Field(
        default_factory=list, description="the plant's own categories, added to the shipped")
    reasons: list[Reason] = Field(
        default_factory=list, description="the plant's own reasons, added to the shipped")

    def tree(self) -> ReasonTree:
        cats = (DEFAULT_CATEGORIES if self.defaults else ()) + tuple(self.categories)
        reasons = (DEFAULT_REASONS if self.defaults else ()) + tuple(self.reasons)
        return ReasonTree(cats, reasons)


def reasons_cross_check(r: ReasonSettings) -> list[tuple[str, str]]:
    """(field path, reason) of each problem of the tree: a duplicate or reserved id, a
    reason whose category does not exist."""
    problems: list[tuple[str, str]] = []
    cats: set[str] = {c.id for c in DEFAULT_CATEGORIES} if r.defaults else set()
    for i, c in enumerate(r.categories):
        if c.id in cats:
            problems.append((f"reasons.categories[{i}].id", f"{c.id!r} is already a category"))
        cats.add(c.id)
    ids: set[str] = {x.id for x in DEFAULT_REASONS} if r.defaults else set()
    for i, x in enumerate(r.reasons):
        if x.id == UNASSIGNED:
            problems.append((f"reasons.reasons[{i}].id",
                             f"{UNASSIGNED!r} is reserved for stops without a reason"))
        elif x.id in ids:
            problems.append((f"reasons.reasons[{i}].id", f"{x.id!r} is already a reason"))
        ids.add(x.id)
        if x.category not in cats:
            problems.append((f"reasons.reasons[{i}].category",
                             f"no category {x.category!r}; known: {', '.join(sorted(cats))}"))
    return problems


def event_cross_check(loc: str, tag: Any, reason_ids: set[str]) -> list[tuple[str, str]]:
    """(field path, reason) of each problem of a tag's event mapping (``config.opcua``): a
    reason that is not in the tree; a reason_event role on a tag that cannot subscribe to
    events (only OPC UA tags can)."""
    problems: list[tuple[str, str]] = []
    events = getattr(tag, "events", None)
    if tag.role == "reason_event" and events is None:
        problems.append((f"{loc}.role", "reason_event is for OPC UA tags with events: "
                         "(an event subscription); use stop_reason for a reason code"))
    for k, rule in enumerate(events.map if events is not None else ()):
        if rule.reason not in reason_ids:
            problems.append((f"{loc}.events.map[{k}].reason", f"no reason {rule.reason!r} in "
                             "reasons: (a shipped one or reasons.reasons)"))
    return problems
