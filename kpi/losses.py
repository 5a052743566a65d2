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

__all__ = ["ELEMENT_LOSS", "STOP_ELEMENTS", "Losses", "StopEvents", "classify", "losses",
           "stop_events"]

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


@dataclass(frozen=True, slots=True)
class StopEvents:
    """Stop events of one unit, in time order."""

    start_ns: I64
    end_ns: I64
    reason: I64  # reason code (position in the reason tree), UNKNOWN: unassigned
    element: I64  # index into STOP_ELEMENTS

    @property
    def seconds(self) -> F64:
        return (self.end_ns - self.start_ns).astype(np.float64) / 1e9

    def __len__(self) -> int:
        return int(self.start_ns.size)


def _empty() -> Step:
    return Step(np.empty(0, np.int64), np.empty(0, np.int64))


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
) -> StopEvents:
    """The stop events of one unit over [start_ns, end_ns) (see the module docstring);
    ``reason`` carries reason codes (UNKNOWN where none), ``default_mode`` as in
    :class:`kpi.oee.UnitSignals`."""
    if mode is None and default_mode is not None:
        mode = Step.constant(default_mode, start_ns, gaps)
    iv = combine([state or _empty(), mode or _empty(), reason or _empty()], start_ns, end_ns,
                 gaps, cuts=planned)
    if not len(iv.start):
        z = np.empty(0, np.int64)
        return StopEvents(z, z, z, z)
    in_plan = overlap_seconds(planned, iv.start, iv.end) > 0  # each wholly in or out
    st, md, rs = iv.codes
    masks = element_masks(st, md)
    element = np.select([masks[e] for e in STOP_ELEMENTS], list(range(len(STOP_ELEMENTS))), -1)
    stop = in_plan & (element >= 0)
    rs = np.where(stop, rs, UNKNOWN)
    # a run goes on while the next interval is a stop with the same element and reason
    same = np.zeros(stop.size, bool)
    same[1:] = stop[1:] & stop[:-1] & (element[1:] == element[:-1]) & (rs[1:] == rs[:-1])
    first = stop & ~same
    last = stop & ~np.append(same[1:], False)
    i0, i1 = np.flatnonzero(first), np.flatnonzero(last)
    return StopEvents(iv.start[i0], iv.end[i1], rs[i0].astype(np.int64),
                      element[i0].astype(np.int64))


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
