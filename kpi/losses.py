"""Stop events and the loss analysis: why a unit lost time, summing exactly to 1 - OEE.

A unit's time in known planned busy time (the OEE's time basis, ``known_s``) is either
actual production time (APT) or a *stop*: any other element of :data:`kpi.oee.ELEMENT_TABLE`
(malfunction, minor stop, setup, maintenance, not available, no mode). A **stop event** is a
maximal stretch of stop time inside known PBT with one element and one reason: it ends where
production resumes, the plan ends (a break cuts a stop in two), the state becomes unknown (a
gap), or the element or the reason changes. A stop's reason is the code its reason signal
(a PLC's ``stop_reason`` tag) held over it, or unassigned (:data:`kpi.steps.UNKNOWN`) where
the signal is absent, unknown or holds a code no reason maps.

Each stop has one of the four stop loss types of the six big losses: its reason's (through
its category), or, unassigned, its element's (:data:`ELEMENT_LOSS`); a stop shorter than
``small_stop_s`` is a small stop unless its loss type is planned downtime or a changeover.
Then, with PRU the ideal cycle time and quantities in known PBT as OEE counts them:

- availability loss = Σ stop time = known - APT (ISO 22400 counts small stops here too: A =
  APT / known; the six big losses list them under performance, which is a relabelling, not a
  different sum),
- speed loss = APT - PRU x PQ (negative when the unit ran faster than its PRU),
- scrap and rework = PRU x (PQ - GQ),

and known x (1 - OEE) = known - PRU x GQ is their sum, exactly (OEE = A x E x Q =
PRU x GQ / known). Parts lost are the seconds / PRU (scrap: PQ - GQ). A unit without PRU has
no OEE: its stops are counted, its speed and scrap losses are not (``units_without_pru``).
Roll-ups add the seconds of their units; their ``std_gq_s`` (Σ PRU x GQ) over ``known_s`` is
the standard-time OEE of the roll-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from config.reasons import LOSS_TYPES

from .calendar import I64, overlap_seconds
from .oee import TimeElements, element_masks
from .steps import UNKNOWN, Step, combine

__all__ = ["ELEMENT_LOSS", "SOURCE_EVENT", "SOURCE_NONE", "SOURCE_TAG", "STOP_ELEMENTS", "Losses",
           "StopEvents", "classify", "event_reasons", "losses", "stop_events"]

F64 = npt.NDArray[np.float64]
#: the elements of known PBT that are stops (every one but APT)
STOP_ELEMENTS: Final = ("malfunction", "minor_stop", "asut", "maintenance", "not_available",
                        "other")
#: the loss type of an unassigned stop, by its element
ELEMENT_LOSS: Final[dict[str, str]] = {
    "malfunction": "breakdown",
    "minor_stop": "breakdown",  # a long unexplained stop while processing: unplanned downtime
    "asut": "changeover_setup",
    "maintenance": "planned_downtime",
    "not_available": "breakdown",
    "other": "breakdown",
}
_LT = {name: i for i, name in enumerate(LOSS_TYPES)}
_ELEMENT_LT = np.array([_LT[ELEMENT_LOSS[e]] for e in STOP_ELEMENTS], np.int64)
#: loss types a short stop keeps (a short planned stop or setup is still that)
_KEEP_SHORT = np.array([_LT["planned_downtime"], _LT["changeover_setup"]], np.int64)


#: where a stop's reason came from (:attr:`StopEvents.source`)
SOURCE_NONE, SOURCE_TAG, SOURCE_EVENT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class StopEvents:
    """Stop events of one unit, in time order."""

    start_ns: I64
    end_ns: I64
    reason: I64  # reason code (position in the reason tree), UNKNOWN: unassigned
    element: I64  # index into STOP_ELEMENTS
    #: per stop: SOURCE_TAG (the reason signal), SOURCE_EVENT (an event) or SOURCE_NONE;
    #: None: the reason signal's wherever a reason is given (no events were passed)
    source: I64 | None = None
    #: per stop: index of the event that gave its reason (UNKNOWN: none)
    event: I64 | None = None

    @property
    def seconds(self) -> F64:
        return (self.end_ns - self.start_ns).astype(np.float64) / 1e9

    def __len__(self) -> int:
        return int(self.start_ns.size)


def _empty() -> Step:
    return Step(np.empty(0, np.int64), np.empty(0, np.int64))


def _elements(st: I64, md: I64) -> I64:
    """Each interval's stop element (index into STOP_ELEMENTS), -1 for APT and unknown."""
    masks = element_masks(st, md)
    out: I64 = np.select([masks[e] for e in STOP_ELEMENTS], list(range(len(STOP_ELEMENTS))), -1)
    return out


def event_reasons(
    state: Step | None,
    mode: Step | None,
    event_ts: I64,
    start_ns: int,
    end_ns: int,
    gaps: Sequence[tuple[int, int]] = (),
    *,
    tolerance_ns: int = 0,
    default_mode: int | None = None,
) -> Step:
    """The reason events give a unit over [start_ns, end_ns), as a step of *event indices*
    (positions in ``event_ts``; UNKNOWN: no event's reason in force).

    A *stretch* is a maximal run of time with one stop element (any element of known time
    but APT: see :data:`STOP_ELEMENTS`), planned time or not. An event inside a stretch
    gives it its reason: the first event of a stretch from the stretch's start, a later one
    from its own time (a new reason mid-stop, as a reason code that changes would). An event
    outside one gives its reason to the stretch beginning at most ``tolerance_ns`` after it
    (an alarm a moment before the machine stops), from that stretch's start; an event
    followed by no stretch within the tolerance gives nothing. A reason holds until the
    stretch ends -- the element changes, the unit produces again, or its state becomes
    unknown (a gap) -- so a stop cut in two by a break keeps its reason.
    ``event_ts`` must be sorted; events at the same instant: the first counts."""
    if mode is None and default_mode is not None:
        mode = Step.constant(default_mode, start_ns, gaps)
    iv = combine([state or _empty(), mode or _empty()], start_ns, end_ns, gaps)
    n = len(iv.start)
    if not n or not event_ts.size:
        return _empty()
    st, md = iv.codes
    element = _elements(st, md)
    down = element >= 0
    # a stretch starts at each down interval that follows a non-down one or one of another
    # element (or opens the window)
    prev_down = np.concatenate(([False], down[:-1]))
    same_el = np.concatenate(([False], element[1:] == element[:-1]))
    stretch_start = down & ~(prev_down & same_el)
    stretch_id = np.cumsum(stretch_start) - 1  # stretch of each interval (valid where down)
    first_of = iv.start[stretch_start]  # each stretch's start
    k = np.searchsorted(iv.start, event_ts, side="right") - 1
    next_down = np.minimum.accumulate(np.where(down, np.arange(n), n)[::-1])[::-1]
    ts_out: list[int] = []
    ev_out: list[int] = []
    claimed: set[int] = set()
    for e, (t, ki) in enumerate(zip(event_ts.tolist(), k.tolist(), strict=True)):
        if ki < 0 or t >= end_ns:
            continue
        if down[ki]:
            sid = int(stretch_id[ki])
            at = int(first_of[sid]) if sid not in claimed else t
        else:
            # the next down interval after this one (a stretch begins there)
            j = int(next_down[ki + 1]) if ki + 1 < n else n
            if j >= n:
                continue
            if iv.start[j] - t > tolerance_ns:
                continue
            sid = int(stretch_id[j])
            if sid in claimed:
                continue
            at = int(iv.start[j])
        claimed.add(sid)
        ts_out.append(at)
        ev_out.append(e)
    if not ts_out:
        return _empty()
    # the end of each stretch: its element changes, production resumes or the state
    # becomes unknown (an event at the same instant comes first, and wins)
    ends = iv.start[np.flatnonzero((stretch_start & prev_down) | (~down & prev_down))]
    ts = np.concatenate((np.array(ts_out, np.int64), ends))
    code = np.concatenate((np.array(ev_out, np.int64), np.full(ends.size, UNKNOWN, np.int64)))
    order = np.argsort(ts, kind="stable")
    ts, code = ts[order], code[order]
    keep = np.ones(ts.size, bool)
    keep[1:] = ts[1:] != ts[:-1]  # the first of one instant
    return Step(ts[keep], code[keep])


def stop_events(
    state: Step | None,
    mode: Step | None,
    reason: Step | None,
    start_ns: int,
    end_ns: int,
    planned: tuple[I64, I64],
    gaps: Sequence[tuple[int, int]] = (),
    *,
    default_mode: int | None = None,
    events: tuple[Step, I64] | None = None,
) -> StopEvents:
    """The stop events of one unit over [start_ns, end_ns) (see the module docstring);
    ``reason`` carries reason codes (UNKNOWN where none), ``default_mode`` as in
    :class:`kpi.oee.UnitSignals`. ``events``: the step of :func:`event_reasons` and each
    event's reason code: where the reason signal gives none, the event in force does (the
    signal is the machine's own word and wins; ``StopEvents.source`` says which gave it)."""
    if mode is None and default_mode is not None:
        mode = Step.constant(default_mode, start_ns, gaps)
    signals = [state or _empty(), mode or _empty(), reason or _empty()]
    if events is not None:
        signals.append(events[0])
    iv = combine(signals, start_ns, end_ns, gaps, cuts=planned)
    if not len(iv.start):
        z = np.empty(0, np.int64)
        return StopEvents(z, z, z, z, None if events is None else z, None if events is None else z)
    in_plan = overlap_seconds(planned, iv.start, iv.end) > 0  # each wholly in or out
    st, md, rs = iv.codes[0], iv.codes[1], iv.codes[2]
    element = _elements(st, md)
    stop = in_plan & (element >= 0)
    rs = np.where(stop, rs, UNKNOWN)
    src = np.where(rs != UNKNOWN, SOURCE_TAG, SOURCE_NONE)
    ev = np.full(rs.size, UNKNOWN, np.int64)
    if events is not None:
        codes = events[1]
        ev = np.where(stop & (rs == UNKNOWN), iv.codes[3], UNKNOWN)
        ev_code = np.where(ev >= 0, codes[np.maximum(ev, 0)] if codes.size else UNKNOWN, UNKNOWN)
        ev = np.where(ev_code != UNKNOWN, ev, UNKNOWN)
        src = np.where(ev >= 0, SOURCE_EVENT, src)
        rs = np.where(ev >= 0, ev_code, rs)
    # a run goes on while the next interval is a stop with the same element, reason and source
    same = np.zeros(stop.size, bool)
    same[1:] = (stop[1:] & stop[:-1] & (element[1:] == element[:-1]) & (rs[1:] == rs[:-1])
                & (src[1:] == src[:-1]))
    first = stop & ~same
    last = stop & ~np.append(same[1:], False)
    i0, i1 = np.flatnonzero(first), np.flatnonzero(last)
    return StopEvents(iv.start[i0], iv.end[i1], rs[i0].astype(np.int64),
                      element[i0].astype(np.int64),
                      None if events is None else src[i0].astype(np.int64),
                      None if events is None else ev[i0].astype(np.int64))


def classify(ev: StopEvents, reason_loss: Sequence[str], small_stop_s: float) -> I64:
    """Each stop's loss type (index into LOSS_TYPES): its reason's (``reason_loss[code]``),
    or its element's when unassigned; a small stop when shorter than ``small_stop_s``,
    unless planned downtime or a changeover."""
    by_reason = np.array([_LT[t] for t in reason_loss] or [0], np.int64)
    assigned = (ev.reason >= 0) & (ev.reason < len(reason_loss))
    lt = np.where(assigned, by_reason[np.where(assigned, ev.reason, 0)],
                  _ELEMENT_LT[np.maximum(ev.element, 0)])
    small = (ev.seconds < small_stop_s) & ~np.isin(lt, _KEEP_SHORT)
    return np.where(small, _LT["small_stop"], lt).astype(np.int64)


def _zeros() -> dict[str, float]:
    return dict.fromkeys(LOSS_TYPES, 0.0)


@dataclass(frozen=True, slots=True)
class Losses:
    """Additive loss figures of a unit (or a sum of units) over one window; seconds inside
    known PBT. Reasons are keyed by code (UNKNOWN: unassigned)."""

    known_s: float = 0.0
    unknown_s: float = 0.0  # PBT whose state is unknown: not in the OEE's time basis
    apt_s: float = 0.0
    std_gq_s: float = 0.0  # PRU x GQ in known PBT: the OEE's time (OEE x known)
    loss_s: dict[str, float] = field(default_factory=_zeros)  # loss type -> seconds
    loss_parts: dict[str, float] = field(default_factory=_zeros)  # loss type -> parts
    reason_s: dict[int, float] = field(default_factory=dict)
    reason_parts: dict[int, float] = field(default_factory=dict)
    reason_stops: dict[int, int] = field(default_factory=dict)
    reason_loss_s: dict[tuple[int, str], float] = field(default_factory=dict)
    stops: int = 0
    units: int = 1
    units_without_pru: int = 0

    def __add__(self, other: Losses) -> Losses:
        def add(a: dict, b: dict) -> dict:
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0) + v
            return out

        return Losses(
            self.known_s + other.known_s, self.unknown_s + other.unknown_s,
            self.apt_s + other.apt_s, self.std_gq_s + other.std_gq_s,
            add(self.loss_s, other.loss_s), add(self.loss_parts, other.loss_parts),
            add(self.reason_s, other.reason_s), add(self.reason_parts, other.reason_parts),
            add(self.reason_stops, other.reason_stops),
            add(self.reason_loss_s, other.reason_loss_s),
            self.stops + other.stops, self.units + other.units,
            self.units_without_pru + other.units_without_pru,
        )

    @property
    def total_s(self) -> float:
        """All the losses, seconds: known x (1 - OEE) for units with a PRU."""
        return float(sum(self.loss_s.values()))

    @property
    def oee(self) -> float | None:
        """1 - losses / known (Σ PRU x GQ / Σ known): the OEE of a unit, the standard-time
        OEE of a roll-up; None when a unit has no PRU or nothing is known."""
        if self.units_without_pru or self.known_s <= 0:
            return None
        return self.std_gq_s / self.known_s


def losses(ev: StopEvents, e: TimeElements, reason_loss: Sequence[str], small_stop_s: float,
           pru: float | None) -> Losses:
    """One unit's losses from its stop events and its time elements over the same window."""
    lt = classify(ev, reason_loss, small_stop_s)
    sec = ev.seconds
    loss_s, loss_parts = _zeros(), _zeros()
    per = 1.0 / pru if pru else 0.0
    for i, name in enumerate(LOSS_TYPES[:4]):
        loss_s[name] = float(sec[lt == i].sum())
        loss_parts[name] = loss_s[name] * per
    std_gq = 0.0
    if pru:
        loss_s["speed_loss"] = e.apt_s - e.ideal_s
        loss_parts["speed_loss"] = loss_s["speed_loss"] * per
        loss_s["scrap_rework"] = pru * (e.pq_plan - e.gq_plan)
        loss_parts["scrap_rework"] = e.pq_plan - e.gq_plan
        std_gq = pru * e.gq_plan
    reason_s: dict[int, float] = {}
    reason_stops: dict[int, int] = {}
    reason_loss_s: dict[tuple[int, str], float] = {}
    codes = ev.reason.tolist()
    for code, s, t in zip(codes, sec.tolist(), lt.tolist(), strict=True):
        reason_s[code] = reason_s.get(code, 0.0) + s
        reason_stops[code] = reason_stops.get(code, 0) + 1
        key = (code, LOSS_TYPES[t])
        reason_loss_s[key] = reason_loss_s.get(key, 0.0) + s
    return Losses(
        known_s=e.known_s, unknown_s=max(e.pbt_s - e.known_s, 0.0), apt_s=e.apt_s, std_gq_s=std_gq,
        loss_s=loss_s, loss_parts=loss_parts, reason_s=reason_s,
        reason_parts={k: v * per for k, v in reason_s.items()}, reason_stops=reason_stops,
        reason_loss_s=reason_loss_s, stops=len(ev), units=1, units_without_pru=int(not pru),
    )
