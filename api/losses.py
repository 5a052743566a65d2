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

from config.reasons import LOSS_TYPES, UNASSIGNED, ReasonTree
from config.settings import Asset
from config.signals import Role, canonical_code
from config.times import iso
from kpi import Kpis, Step, asset_gaps, gap_intervals
from kpi.losses import STOP_ELEMENTS, Losses, StopEvents, classify, losses, stop_events
from kpi.steps import UNKNOWN
from store.annotations import StopAnnotation, StopAnnotations
from store.base import TagRecord

from .service import KpiService

__all__ = ["SOURCE_OPERATOR", "SOURCE_TAG", "STOP_COLUMNS", "AssetStops", "asset_stops",
           "loss_body", "parse_stop_id", "stop_id", "stop_rows", "stops_body"]

#: where a stop's reason came from: the asset's stop_reason tag, or a person's annotation
#: (``POST /api/v1/stops/{id}/reason``); OPC UA events are the next source
SOURCE_TAG = "tag"
SOURCE_OPERATOR = "operator"


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

    def source(self, i: int) -> str | None:
        if self.annotations and self.annotations[i] is not None:
            return SOURCE_OPERATOR
        return SOURCE_TAG if int(self.events.reason[i]) != UNKNOWN else None


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
    ev = stop_events(
        state, mode, reason, start_ns, end_ns, service._planned(start_ns, end_ns),
        gap_intervals(gaps, end_ns),
        default_mode=None if default_mode is None else canonical_code(Role.MODE, default_mode))
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
                      None if reason_tag is None else reason_tag.path, notes, machine)


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
                machine = rid if source == SOURCE_TAG else None
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
                "source_tag": it.reason_tag if machine is not None else None,
                "machine_reason": machine,
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
                "machine_reason", "annotated_by", "annotated_at", "note"]


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
