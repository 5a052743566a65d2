"""Stop events and loss analysis from the store: reads an asset's state, mode and
``stop_reason`` samples and feeds :mod:`kpi.losses` (the KPI service's reads, not a copy of
its arithmetic). Windows are computed from raw samples, never from roll-ups: the losses must
add up to the same window's time elements (computed raw too) to the last bit that matters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from collector.opcua.events import parse_event_text
from config.reasons import LOSS_TYPES, UNASSIGNED, ReasonTree
from config.settings import Asset
from config.signals import Quality, Role, canonical_code
from config.times import iso
from kpi import Kpis, Step, asset_gaps, gap_intervals
from kpi.losses import SOURCE_EVENT as SOURCE_EVENT_CODE
from kpi.losses import SOURCE_TAG as SOURCE_TAG_CODE
from kpi.losses import (
    STOP_ELEMENTS,
    Losses,
    StopEvents,
    classify,
    event_reasons,
    losses,
    stop_events,
)
from kpi.steps import UNKNOWN
from store.annotations import StopAnnotation, StopAnnotations
from store.base import TagRecord

from .service import KpiService

__all__ = [
    "SOURCE_EVENT",
    "SOURCE_OPERATOR",
    "SOURCE_TAG",
    "STOP_COLUMNS",
    "AssetStops",
    "ReasonEvent",
    "asset_stops",
    "loss_body",
    "parse_stop_id",
    "read_events",
    "stop_id",
    "stop_rows",
    "stops_body",
]

#: where a stop's reason came from: the asset's stop_reason tag, an OPC UA event (its
#: reason_event tag), or a person's annotation (``POST /api/v1/stops/{id}/reason``)
SOURCE_TAG = "tag"
SOURCE_EVENT = "opcua_event"
SOURCE_OPERATOR = "operator"
#: how far before a window events are read: an event gives its reason to the stop it is in,
#: which may have begun before the window (a longer stop loses it at the window's start)
EVENT_LOOKBACK_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class ReasonEvent:
    """One stored OPC UA event (a reason_event tag's sample): when, the reason, who."""

    ts_ns: int
    reason: str
    source_name: str
    message: str
    event_type: str
    tag: str


def read_events(service: KpiService, tag: TagRecord, start_ns: int, end_ns: int,
                tree: ReasonTree) -> list[ReasonEvent]:
    """The events of a reason_event tag in [start_ns, end_ns), in time order; one whose
    reason is not in the tree (any more) or whose text is not an event's is left out."""
    out = []
    for ts, text, q in service.store.read_text(tag.tag_id, start_ns, end_ns):
        doc = parse_event_text(text) if q < Quality.BAD else None
        if doc is None or doc["reason"] not in tree.code:
            continue
        out.append(ReasonEvent(int(ts), doc["reason"], str(doc.get("source_name") or ""),
                               str(doc.get("message") or ""), str(doc.get("event_type") or ""),
                               tag.path))
    out.sort(key=lambda e: e.ts_ns)
    return out


def stop_id(asset: str, start_ns: int) -> str:
    """A stop's id: its asset and start (ns since the epoch), which the data fixes."""
    return f"{asset}@{start_ns}"


def parse_stop_id(text: str) -> tuple[str, int] | None:
    asset, sep, start = text.rpartition("@")
    if not sep or not asset or not start.isdigit() or len(start) > 19:
        return None
    return asset, int(start)


@dataclass(frozen=True, slots=True)
class AssetStops:
    asset: Asset
    events: StopEvents
    losses: Losses
    oee: float | None  # the KPI service's OEE of the same window (kpi.Kpis)
    reason_tag: str | None  # the stop_reason tag's path
    #: per event: its annotation in force (None: none), and the machine's own reason code
    #: (UNKNOWN: none) where an annotation replaced it
    annotations: tuple[StopAnnotation | None, ...] = ()
    machine_reason: tuple[int, ...] = ()
    #: the reason_event tag's events read (StopEvents.event indexes them)
    reason_events: tuple[ReasonEvent, ...] = ()

    def machine_source(self, i: int) -> str | None:
        """Who among the machines gave stop i its reason: its tag, an event, or none."""
        src = self.events.source
        if src is not None:
            return {SOURCE_TAG_CODE: SOURCE_TAG, SOURCE_EVENT_CODE: SOURCE_EVENT}.get(int(src[i]))
        code = self.machine_reason[i] if self.machine_reason else int(self.events.reason[i])
        return SOURCE_TAG if code != UNKNOWN else None

    def event_of(self, i: int) -> ReasonEvent | None:
        """The event that gave stop i its machine reason (None: none did)."""
        ev = self.events.event
        if ev is None or int(ev[i]) < 0:
            return None
        return self.reason_events[int(ev[i])]

    def source(self, i: int) -> str | None:
        if self.annotations and self.annotations[i] is not None:
            return SOURCE_OPERATOR
        return self.machine_source(i)


def _reason_lut(tag: TagRecord, tree: ReasonTree) -> dict[int, int]:
    """raw code -> reason code (position in the tree); a code the enum does not map, or maps
    to a reason no longer configured, is unassigned."""
    return {int(raw): tree.code[rid] for raw, rid in (tag.enum or {}).items() if rid in tree.code}


def asset_stops(service: KpiService, asset: Asset, start_ns: int, end_ns: int,
                tree: ReasonTree, small_stop_s: float,
                annotations: StopAnnotations | None = None) -> AssetStops:
    """One asset's stop events and losses over [start_ns, end_ns) (call inside
    ``service.snapshot()``); a stop's annotation in force gives its reason."""
    tags: dict[Role, TagRecord] = service._tags_by_asset().get(asset.path, {})
    result = service.asset_result(asset, start_ns, end_ns, tags, raw=True)

    def step(role: Role, lut: dict[int, int] | None) -> Step | None:
        tag = tags.get(role)
        if tag is None:
            return None
        s = service.store.read(tag.tag_id, start_ns, end_ns, prior=True)
        return Step.from_samples(s.ts_ns, s.value, s.quality, lut)

    reason_tag = tags.get(Role.STOP_REASON)
    state = step(Role.STATE, service._lut(tags[Role.STATE]) if Role.STATE in tags else None)
    mode = step(Role.MODE, service._lut(tags[Role.MODE]) if Role.MODE in tags else None)
    reason = None
    if reason_tag is not None:
        # a stop_reason tag without enum (a discovered one) maps no code: all unassigned
        reason = step(Role.STOP_REASON, _reason_lut(reason_tag, tree))
    devices = sorted({t.device for t in tags.values()})
    gaps = asset_gaps((g for d in devices for g in service.store.gaps(d, start_ns, end_ns)),
                      asset.path)
    default_mode = asset.default_mode if Role.MODE not in tags else None
    dmode = None if default_mode is None else canonical_code(Role.MODE, default_mode)
    event_tag = tags.get(Role.REASON_EVENT)
    found: list[ReasonEvent] = []
    events = None
    if event_tag is not None:
        ext = max(start_ns - EVENT_LOOKBACK_NS, 0)
        found = read_events(service, event_tag, ext, end_ns, tree)
        ts = np.array([e.ts_ns for e in found], np.int64)
        codes = np.array([tree.code[e.reason] for e in found], np.int64)
        ext_gaps = asset_gaps((g for d in devices for g in service.store.gaps(d, ext, end_ns)),
                              asset.path)
        ext_state = ext_mode = None
        if found:  # the state over the lookback too: the stop an early event is in
            if Role.STATE in tags:
                ext_state = _read_step(service, tags[Role.STATE], ext, end_ns)
            if Role.MODE in tags:
                ext_mode = _read_step(service, tags[Role.MODE], ext, end_ns)
        # tolerance in whole ns: the configured seconds as the KPI core counts time
        tol = round(service.settings.reasons.event_tolerance_s * 1e9)
        events = (event_reasons(ext_state, ext_mode, ts, ext, end_ns,
                                gap_intervals(ext_gaps, end_ns), tolerance_ns=tol,
                                default_mode=dmode), codes)
    ev = stop_events(
        state, mode, reason, start_ns, end_ns, service._planned(start_ns, end_ns),
        gap_intervals(gaps, end_ns), default_mode=dmode, events=events)
    notes: tuple[StopAnnotation | None, ...] = ()
    machine: tuple[int, ...] = ()
    held = annotations.in_force(asset.path, start_ns, end_ns) if annotations is not None else {}
    if held:
        # an annotation whose reason left the tree since is not in force (the audit keeps it)
        notes = tuple(a if a is not None and a.reason in tree.code else None
                      for a in (held.get(int(t)) for t in ev.start_ns))
        machine = tuple(int(c) for c in ev.reason)
        codes = np.array([tree.code[a.reason] if a is not None else int(c)
                          for a, c in zip(notes, ev.reason, strict=True)], np.int64)
        ev = dataclasses.replace(ev, reason=codes)
    reason_loss = [tree.loss_type(rid) for rid in tree.ids]
    lo = losses(ev, result.elements, reason_loss, small_stop_s, asset.ideal_cycle_time_s)
    return AssetStops(asset, ev, lo, Kpis.of(result.elements).oee,
                      None if reason_tag is None else reason_tag.path, notes, machine,
                      tuple(found))


def _read_step(service: KpiService, tag: TagRecord, start_ns: int, end_ns: int) -> Step:
    s = service.store.read(tag.tag_id, start_ns, end_ns, prior=True)
    return Step.from_samples(s.ts_ns, s.value, s.quality, service._lut(tag))


def _reason_id(code: int, tree: ReasonTree) -> str:
    return UNASSIGNED if code == UNKNOWN else tree.ids[code]


def stops_body(items: Iterable[AssetStops], tree: ReasonTree, small_stop_s: float,
               window: dict[str, Any], reason: str | None, limit: int) -> dict[str, Any]:
    """``/stops``: every stop event of the assets, in time order (then asset), those of
    ``reason`` only when given, the first ``limit``."""
    rows: list[tuple[int, str, dict[str, Any]]] = []
    reason_loss = [tree.loss_type(rid) for rid in tree.ids]
    for it in items:
        ev = it.events
        lt = classify(ev, reason_loss, small_stop_s)
        for i in range(len(ev)):
            rid = _reason_id(int(ev.reason[i]), tree)
            if reason is not None and rid != reason:
                continue
            s0, s1 = int(ev.start_ns[i]), int(ev.end_ns[i])
            assigned = rid != UNASSIGNED
            note = it.annotations[i] if it.annotations else None
            source = it.source(i)
            # the reason the machine itself gave (None: none), kept beside an annotation
            if note is not None:
                code = it.machine_reason[i]
                machine = None if code == UNKNOWN else tree.ids[code]
            else:
                machine = rid if source in (SOURCE_TAG, SOURCE_EVENT) else None
            event = it.event_of(i) if machine is not None else None
            source_tag = (event.tag if event is not None else it.reason_tag) \
                if machine is not None else None
            rows.append((s0, it.asset.path, {
                "id": stop_id(it.asset.path, s0),
                "asset": it.asset.path,
                "start": iso(s0),
                "end": iso(s1),
                "duration_s": (s1 - s0) / 1e9,
                "reason": rid,
                "reason_label": tree.label(rid) if assigned else "Unassigned",
                "category": tree.reasons[rid].category if assigned else None,
                "loss_type": LOSS_TYPES[int(lt[i])],
                "element": STOP_ELEMENTS[int(ev.element[i])],
                "reason_source": source,
                "source_tag": source_tag,
                "machine_reason": machine,
                "event_source": None if event is None else event.source_name,
                "event_time": None if event is None else iso(event.ts_ns),
                "event_message": None if event is None else event.message,
                "annotated_by": None if note is None else note.annotated_by,
                "annotated_at": None if note is None else iso(note.annotated_at_ns),
                "note": None if note is None else note.note,
            }))
    rows.sort(key=lambda r: (r[0], r[1]))
    return {"window": window, "small_stop_s": small_stop_s, "count": len(rows),
            "truncated": len(rows) > limit, "stops": [r[2] for r in rows[:limit]]}


def stop_rows(data: dict[str, Any]) -> Any:
    return data["stops"]


STOP_COLUMNS = ["id", "asset", "start", "end", "duration_s", "reason", "reason_label",
                "category", "loss_type", "element", "reason_source", "source_tag",
                "machine_reason", "event_source", "event_time", "event_message",
                "annotated_by", "annotated_at", "note"]


def _summary(lo: Losses, tree: ReasonTree, oee: float | None) -> dict[str, Any]:
    total = lo.total_s
    known = lo.known_s

    def share(s: float) -> float | None:
        return s / known if known > 0 else None

    reasons = []
    for code, s in sorted(lo.reason_s.items(), key=lambda kv: (-kv[1], kv[0])):
        rid = _reason_id(code, tree)
        assigned = rid != UNASSIGNED
        reasons.append({
            "reason": rid,
            "label": tree.label(rid) if assigned else "Unassigned",
            "category": tree.reasons[rid].category if assigned else None,
            "stops": lo.reason_stops[code],
            "seconds": s,
            "hours": s / 3600,
            "parts": lo.reason_parts.get(code, 0.0) if not lo.units_without_pru else None,
            "share_of_known": share(s),
            "loss_types": {t: v for (c, t), v in sorted(lo.reason_loss_s.items()) if c == code},
        })
    return {
        "known_s": known,
        "unknown_s": lo.unknown_s,
        "apt_s": lo.apt_s,
        "loss_s": total,
        "oee": lo.oee,
        "kpi_oee": oee,
        "stops": lo.stops,
        "units": lo.units,
        "units_without_pru": lo.units_without_pru,
        "loss_types": [{
            "loss_type": t,
            "seconds": lo.loss_s[t],
            "hours": lo.loss_s[t] / 3600,
            "parts": lo.loss_parts[t] if not lo.units_without_pru else None,
            "share_of_known": share(lo.loss_s[t]),
        } for t in LOSS_TYPES],
        "reasons": reasons,
    }


def _pareto(lo: Losses, tree: ReasonTree) -> list[dict[str, Any]]:
    """Stop reasons, speed loss and scrap, largest first, with their cumulative share of the
    positive losses."""
    items: list[tuple[str, str, str | None, float]] = []
    for code, s in lo.reason_s.items():
        rid = _reason_id(code, tree)
        label = tree.label(rid) if rid != UNASSIGNED else "Unassigned"
        items.append((rid, label, None, s))
    for t, label in (("speed_loss", "Speed loss"), ("scrap_rework", "Scrap and rework")):
        items.append((t, label, t, lo.loss_s[t]))
    items = [x for x in items if x[3] > 0]
    items.sort(key=lambda x: (-x[3], x[0]))
    whole = sum(x[3] for x in items)
    out, cum = [], 0.0
    for key, label, loss_type, s in items:
        cum += s
        out.append({"key": key, "label": label, "kind": "loss_type" if loss_type else "reason",
                    "seconds": s, "hours": s / 3600, "share": s / whole,
                    "cumulative_share": cum / whole})
    return out


def loss_body(items: list[AssetStops], tree: ReasonTree, small_stop_s: float,
              window: dict[str, Any]) -> dict[str, Any]:
    """``/losses``: the selection's summed losses, its Pareto, and each asset's summary."""
    total = Losses(units=0)
    for it in items:
        total = total + it.losses
    one = items[0].oee if len(items) == 1 else None
    return {
        "window": window,
        "small_stop_s": small_stop_s,
        **_summary(total, tree, one),
        "pareto": _pareto(total, tree),
        "assets": {it.asset.path: _summary(it.losses, tree, it.oee) for it in items},
    }
