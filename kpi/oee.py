"""ISO 22400-2 time elements and KPIs per work unit, and roll-ups across units.

Time elements are measured inside planned busy time (PBT, from the shift calendar). A, E and
Q share one time basis, the *known* part of PBT (state and mode known): A = APT / known PBT,
and each counter increase is attributed to the time it happened in (between the two samples
that bound it, in proportion to the production time there); only what falls in known PBT
counts for E and Q, the rest is reported as unattributed (unknown time) or outside the plan.
Roll-ups sum elements and quantities first, then divide: ratios are never averaged. Ratios
are fractions; a ratio whose denominator is zero is None (not 0).

Part counts of different products do not add up: a roll-up's throughput (parts per busy
hour) and energy per unit (kWh per good part) are reported only when all its units share one
PRU (``shared_pru_s``; a unit without PRU shares none), else None. What a roll-up reports
instead weights every part by its standard time, PRU x GQ ("standard output"):

- ``standard_output_rate`` = Σ PRU x GQ in known PBT / Σ busy time (APT + ASUT + ADET) of
  the same units: standard hours of good output per busy hour, a fraction (``std_gq_s`` /
  ``std_busy_s``, over the units with a PRU and a measured good quantity, ``std_units``);
- ``energy_per_standard_hour_kwh`` = Σ kWh / Σ PRU x GQ (whole window, hours) over the units
  that have an energy meter, a PRU and a measured good quantity (``energy_std_kwh`` /
  ``energy_std_gq_s``): a unit without meter has ``energy_kwh`` 0 and would otherwise add
  standard output at no energy.

Per asset both are defined too, and throughput and energy per unit keep their meaning;
energy per unit is over a unit with a meter and a measured good quantity (``metered_kwh`` /
``metered_gq``), so a unit without meter has None, not 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Final, TypedDict

import numpy as np
import numpy.typing as npt

from config.signals import ChannelMode, MachineState, OperationMode

from .calendar import I64, clip, overlap_seconds
from .steps import UNKNOWN, CounterDelta, Intervals, Step, combine

F64 = npt.NDArray[np.float64]
F3 = npt.NDArray[np.float64]  # (known PBT, unknown PBT, outside PBT)
_S = MachineState
_M = OperationMode

#: version of :data:`ELEMENT_TABLE`; part of :data:`ALGORITHM_VERSION`
ELEMENT_TABLE_VERSION = "elements/2"
#: OPC 40001-1 MachineryItemState x MachineryOperationMode -> ISO 22400-2 time element, per
#: the companion spec's annex: rows are tried in order, the first match wins, and a mode of
#: None matches any mode, unknown included (the state alone decides). A state or mode that
#: no row matches (unknown) is unknown time. Version 2: a minor stop (NotExecuting while in
#: Processing) is a unit delay, like a malfunction (ISO 22400-2 ADET: malfunctions and minor
#: stops); version 1 counted only OutOfService as ADET.
ELEMENT_TABLE: Final[tuple[tuple[MachineState, OperationMode | None, str], ...]] = (
    (_S.NotAvailable, None, "not_available"),  # not available: no element of the unit's time
    (_S.OutOfService, None, "malfunction"),  # ADET
    (_S.Executing, _M.Processing, "apt"),  # APT
    (_S.NotExecuting, _M.Processing, "minor_stop"),  # ADET
    (_S.Executing, _M.Setup, "asut"),  # ASUT
    (_S.NotExecuting, _M.Setup, "asut"),  # ASUT
    (_S.Executing, _M.Maintenance, "maintenance"),
    (_S.NotExecuting, _M.Maintenance, "maintenance"),
    (_S.Executing, _M.NoMode, "other"),
    (_S.NotExecuting, _M.NoMode, "other"),
)
#: the table's elements that make up ADET (actual unit delay time)
ADET_ELEMENTS: Final[frozenset[str]] = frozenset({"malfunction", "minor_stop"})
#: 3: standard-time weighted roll-ups (std_* and energy_std_* elements); energy per unit only
#: over metered units; a roll-up's raw throughput and energy per unit need one shared PRU;
#: quality and scrap ratio need every unit's good quantity measured (gq_known).
#: 4: a window's reads of gaps reach back to the step samples in force at its start, so a
#: gap between such a sample and the start makes the value unknown there (until the next
#: sample), as in any longer window: a local day computed on its own no longer counts as
#: known what the whole window counts unknown (issue 12)
#: 5: a part counter's plausible increase allows ``kpi.counter_stamp_tolerance_s`` of stamping
#: lateness: (elapsed + tolerance) x rate + 1, so a sample stamped late by a gateway starved of
#: CPU no longer makes the next real rise "implausible" and excluded from PQ; and (before 5
#: was released, so under the same version) a roll-up row's ``extra`` names its tags by role
#: code and prior sample only, no path or id (``api.rollups.encode``; the row layout is in
#: the roll-up key, so rows of the former layout are recomputed, not misread)
ALGORITHM_VERSION = f"tierproof-kpi/5+{ELEMENT_TABLE_VERSION}"


@dataclass(frozen=True, slots=True)
class TimeElements:
    """Additive inputs of the KPIs for one work unit (or a sum of units) over one window."""

    window_s: float = 0.0
    pbt_s: float = 0.0  # planned busy time
    known_s: float = 0.0  # PBT during which state and mode are known
    apt_s: float = 0.0  # Executing & Processing
    asut_s: float = 0.0  # (Executing | NotExecuting) & Setup
    adet_s: float = 0.0  # OutOfService (malfunction) + NotExecuting & Processing (minor stops)
    idle_s: float = 0.0  # NotExecuting & Processing: the minor stops, a part of ADET
    maintenance_s: float = 0.0  # mode Maintenance, not OutOfService
    not_available_s: float = 0.0
    other_s: float = 0.0  # known, but none of the above (e.g. NotExecuting & None)
    apt_auto_s: float = 0.0  # APT in channel mode Automatic
    apt_mode_known_s: float = 0.0  # APT whose channel mode is known
    apt_outside_plan_s: float = 0.0  # Executing & Processing outside PBT (reported, not used)
    pq: float = 0.0  # produced quantity, whole window (increases dated by their later sample)
    gq: float = 0.0  # good quantity, whole window
    sq: float = 0.0  # scrap (reject) quantity, whole window
    pq_plan: float = 0.0  # PQ attributed to known PBT: the basis of E and Q
    gq_plan: float = 0.0  # GQ attributed to known PBT
    sq_plan: float = 0.0  # SQ attributed to known PBT
    pq_unattributed: float = 0.0  # PQ attributed to PBT whose state is unknown (gaps)
    pq_outside_plan: float = 0.0  # PQ attributed to time outside PBT (overtime)
    ideal_s: float = 0.0  # PRU x PQ in known PBT: the time that output takes at ideal speed
    apt_pru_s: float = 0.0  # APT of the units whose PRU is known: effectiveness' denominator
    energy_kwh: float = 0.0  # every meter's increase (a unit without meter adds 0)
    metered_kwh: float = 0.0  # energy of the units with a meter and a measured GQ
    metered_gq: float = 0.0  # their GQ, whole window: energy per unit's denominator
    std_gq_s: float = 0.0  # PRU x GQ in known PBT, of the units with a PRU and a measured GQ
    std_busy_s: float = 0.0  # APT + ASUT + ADET of those units: standard output rate's denominator
    energy_std_kwh: float = 0.0  # energy of the units with a meter, a PRU and a measured GQ
    energy_std_gq_s: float = 0.0  # their PRU x GQ, whole window: energy per standard hour's basis
    counter_resets: int = 0
    implausible_increases: int = 0  # part-counter increases excluded as glitches (evidence lists them)
    units: int = 1
    pq_known: int = 1  # units whose produced quantity is measured (total or good + reject)
    gq_known: int = 1  # units whose good quantity is measured (good, or total and reject)
    units_without_pru: int = 0  # units without ideal_cycle_time_s: left out of effectiveness
    std_units: int = 0  # units in std_gq_s and std_busy_s (a PRU and a measured GQ)
    #: the PRU every unit of the sum has; None when they differ or one has none (not summed)
    shared_pru_s: float | None = None

    def __add__(self, other: TimeElements) -> TimeElements:
        return TimeElements(
            **{f: getattr(self, f) + getattr(other, f) for f in _SUMMED},
            window_s=max(self.window_s, other.window_s),
            shared_pru_s=self.shared_pru_s if self.shared_pru_s == other.shared_pru_s else None,
        )

    def as_dict(self) -> dict[str, float | None]:
        # the fields' values as they are (plain numbers: dataclasses.asdict would deep-copy
        # each, which a month's answer of 500 assets pays for ~40 fields each)
        return {f: getattr(self, f) for f in _ELEMENT_NAMES}


_NOT_SUMMED: Final = frozenset({"window_s", "shared_pru_s"})
#: the fields ``+`` sums (``dataclasses.fields`` once, not per addition)
_SUMMED: Final = tuple(f.name for f in fields(TimeElements) if f.name not in _NOT_SUMMED)
_ELEMENT_NAMES: Final = tuple(f.name for f in fields(TimeElements))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(frozen=True, slots=True)
class Kpis:
    """KPIs derived from time elements (fractions; None when undefined)."""

    availability: float | None
    effectiveness: float | None
    quality_ratio: float | None
    oee: float | None
    nee: float | None
    technical_efficiency: float | None
    setup_rate: float | None
    scrap_ratio: float | None
    throughput_per_h: float | None  # a roll-up: only when its units share one PRU
    automation_rate: float | None
    automation_coverage: float | None  # APT whose channel mode is known / APT
    energy_per_unit_kwh: float | None  # a roll-up: only when its units share one PRU
    coverage: float | None
    standard_output_rate: float | None  # standard hours of good output per busy hour
    energy_per_standard_hour_kwh: float | None  # kWh per standard hour of good output

    @classmethod
    def of(cls, e: TimeElements) -> Kpis:
        # no known state at all is no measurement, not a machine that never ran
        # A, E and Q on one basis, the known part of PBT: unknown time neither lowers
        # availability nor leaves its output to inflate effectiveness
        a = _ratio(e.apt_s, e.known_s)
        counted = e.pq_known == e.units  # every unit's output is measured
        # units without PRU have no effectiveness; a roll-up leaves them (their PRU x PQ and
        # their APT) out of it and counts them in ``units_without_pru``
        rated = e.units_without_pru < e.units
        eff = (
            _ratio(e.ideal_s, e.apt_pru_s)
            if counted and rated and (e.ideal_s > 0 or e.apt_pru_s > 0)
            else None
        )
        # a unit with a total counter only has no measured GQ or SQ: not 0 good parts
        graded = counted and e.gq_known == e.units
        q = _ratio(e.gq_plan, e.pq_plan) if graded else None
        oee = a * eff * q if a is not None and eff is not None and q is not None else None
        aupt = e.apt_s + e.asut_s
        nee_t = _ratio(aupt, e.known_s)
        nee = nee_t * eff * q if nee_t is not None and eff is not None and q is not None else None
        busy = e.apt_s + e.asut_s + e.adet_s  # ADET includes the minor stops
        # raw part counts add up only for one product (one PRU); one unit is one product
        one_pru = e.units == 1 or (e.units > 1 and e.shared_pru_s is not None)
        return cls(
            availability=a,
            effectiveness=eff,
            quality_ratio=q,
            oee=oee,
            nee=nee,
            technical_efficiency=_ratio(e.apt_s, e.apt_s + e.adet_s),
            setup_rate=_ratio(e.asut_s, aupt),
            scrap_ratio=_ratio(e.sq_plan, e.pq_plan) if graded else None,
            throughput_per_h=(
                (e.pq_plan / (busy / 3600.0)) if counted and busy > 0 and one_pru else None
            ),
            # over the APT whose channel mode is known; APT of unknown mode is not dropped
            # silently: it lowers automation_coverage
            automation_rate=_ratio(e.apt_auto_s, e.apt_mode_known_s),
            automation_coverage=_ratio(e.apt_mode_known_s, e.apt_s),
            energy_per_unit_kwh=_ratio(e.metered_kwh, e.metered_gq) if one_pru else None,
            coverage=_ratio(e.known_s, e.pbt_s),
            standard_output_rate=_ratio(e.std_gq_s, e.std_busy_s),
            energy_per_standard_hour_kwh=_ratio(e.energy_std_kwh, e.energy_std_gq_s / 3600.0),
        )

    def as_dict(self) -> dict[str, float | None]:
        return {f: getattr(self, f) for f in _KPI_NAMES}


_KPI_NAMES: Final = tuple(f.name for f in fields(Kpis))


@dataclass(frozen=True, slots=True)
class UnitSignals:
    """What one work unit's KPIs are computed from (codes already canonical)."""

    state: Step | None
    mode: Step | None
    channel: Step | None
    total: CounterDelta | None
    good: CounterDelta | None
    reject: CounterDelta | None
    energy: CounterDelta | None
    ideal_cycle_s: float | None
    manual_only: bool = False  # control manual/none: never automatic, whatever a tag says
    #: canonical OperationMode code configured for an asset without a mode tag (default_mode):
    #: a constant mode over the window; ignored when ``mode`` (a tag) is given
    default_mode: int | None = None


#: :data:`ELEMENT_TABLE` with plain int codes (numpy compares an enum member far slower)
_TABLE_CODES: Final = tuple((int(s), None if m is None else int(m), name) for s, m, name in ELEMENT_TABLE)


def element_masks(state: I64, mode: I64) -> dict[str, npt.NDArray[np.bool_]]:
    """Element name -> where (state, mode) codes map to it by :data:`ELEMENT_TABLE`."""
    masks = {name: np.zeros(state.shape, bool) for _, _, name in ELEMENT_TABLE}
    taken = np.zeros(state.shape, bool)
    for s, m, name in _TABLE_CODES:
        hit = (state == s) & ~taken
        if m is not None:
            hit &= mode == m
        masks[name] |= hit
        taken |= hit
    return masks


def _empty_step() -> Step:
    return Step(np.empty(0, np.int64), np.empty(0, np.int64))


def _attribution(
    iv: Intervals, start_ns: int, in_plan: F64, out_plan: F64, known: npt.NDArray[np.bool_],
    apt: npt.NDArray[np.bool_], clip_ns: int | None = None,
) -> Callable[[CounterDelta | None], F3]:
    """How a counter's increases are attributed to the time they happened in: each increase
    is spread over the span between its two bounding samples, in proportion to where output
    can have been made there, never before ``clip_ns`` (the window's start; default
    ``start_ns``, where ``iv`` begins). Returns a function giving a counter's (in known PBT,
    in unknown PBT, outside PBT) shares."""
    clip = start_ns if clip_ns is None else clip_ns
    # where output can have been made: production in known PBT, unknown PBT, or outside PBT
    # (producing, or unknown); when the known state says nothing was produced between the two
    # samples, the increase is spread over that wall time instead
    known_in = np.where(known, in_plan, 0.0)
    weights = (np.where(apt, in_plan, 0.0), in_plan - known_in,
               np.where(apt | ~known, out_plan, 0.0))
    wall = (known_in, in_plan - known_in, out_plan)
    edges = np.append(iv.start, iv.end[-1:]) - start_ns
    # each weight's cumulative sum at the interval edges: computed once (when first needed)
    # for all the counters, not per counter and end
    cum_weights: list[F64] = []
    cum_wall: list[F64] = []

    def cumulative(w: tuple[F64, F64, F64], held: list[F64]) -> list[F64]:
        if not held:
            held.extend(np.concatenate(([0.0], np.cumsum(x))) for x in w)
        return held

    def attribute(c: CounterDelta | None) -> F3:
        """(in known PBT, in unknown PBT, outside PBT) shares of a counter's increases."""
        if c is None or not len(c.inc):
            return np.zeros(3)
        lo = np.maximum(c.t0_ns, clip) - start_ns
        hi = np.maximum(c.t1_ns - start_ns, lo + 1)  # a zero-length span: its later instant
        at = np.concatenate((hi, lo))  # one interpolation for both ends
        n = len(hi)

        def spans(w: tuple[F64, F64, F64], held: list[F64]) -> F64:
            rows = []
            for cs in cumulative(w, held):
                v = np.interp(at, edges, cs)
                rows.append(v[:n] - v[n:])
            return np.stack(rows)

        share = spans(weights, cum_weights)
        total = share.sum(axis=0)
        none = total <= 0
        if none.any():
            share[:, none] = spans(wall, cum_wall)[:, none]
            total = share.sum(axis=0)
        return np.asarray((share / total * c.inc).sum(axis=1), np.float64)

    return attribute


@dataclass(frozen=True, slots=True)
class _Quantities:
    """PQ, GQ, SQ of one unit over the window, and each attributed (in known PBT, in unknown
    PBT, outside PBT). PQ is the total counter, or good + reject; GQ the good counter, or
    total - reject; SQ the reject counter, or total - good."""

    pq: float
    gq: float
    sq: float
    pq_a: F64
    gq_a: F64
    sq_a: F64
    pq_known: bool

    @classmethod
    def of(cls, sig: UnitSignals, attribute: Callable[[CounterDelta | None], F3]) -> _Quantities:
        tot = sig.total
        tot_a = attribute(tot)
        if tot is None and sig.good is not None and sig.reject is not None:
            tot = CounterDelta(sig.good.increase + sig.reject.increase, 0, 0)
            tot_a = attribute(sig.good) + attribute(sig.reject)
        pq = tot.increase if tot else 0.0
        gq = sig.good.increase if sig.good else (pq - sig.reject.increase if sig.reject and tot else 0.0)
        sq = sig.reject.increase if sig.reject else (pq - gq if sig.good and tot else 0.0)
        zero = np.zeros(3)
        gq_a = (attribute(sig.good) if sig.good
                else (tot_a - attribute(sig.reject) if sig.reject and tot else zero))
        sq_a = attribute(sig.reject) if sig.reject else (tot_a - gq_a if sig.good and tot else zero)
        return cls(pq, gq, sq, tot_a, gq_a, sq_a, tot is not None)


class _Standard(TypedDict):
    energy_kwh: float
    metered_kwh: float
    metered_gq: float
    std_gq_s: float
    std_busy_s: float
    energy_std_kwh: float
    energy_std_gq_s: float


def _standard(sig: UnitSignals, gq: float, gq_plan: float, busy_s: float) -> _Standard:
    """One unit's energy and standard-output elements (see the module docstring): each is 0
    unless the unit has what it needs -- a measured GQ (a good counter, or total and reject),
    and a PRU for the standard ones, an energy meter for the energy ones."""
    pru = sig.ideal_cycle_s
    gq_known = _gq_known(sig)
    energy = sig.energy.increase if sig.energy else 0.0
    metered = sig.energy is not None and gq_known
    std = pru if pru is not None and gq_known else 0.0  # 0: not in the standard figures
    return {  # the elements' meanings: TimeElements
        "energy_kwh": energy,
        "metered_kwh": energy if metered else 0.0,
        "metered_gq": gq if metered else 0.0,
        "std_gq_s": std * gq_plan,
        "std_busy_s": busy_s if std else 0.0,
        "energy_std_kwh": energy if std and metered else 0.0,
        "energy_std_gq_s": std * gq if metered else 0.0,
    }


def _gq_known(sig: UnitSignals) -> bool:
    """Whether the unit's good quantity is measured: a good counter, or total and reject."""
    return sig.good is not None or (sig.total is not None and sig.reject is not None)


def time_elements(
    sig: UnitSignals,
    start_ns: int,
    end_ns: int,
    planned: tuple[I64, I64],
    gaps: Sequence[tuple[int, int]] = (),
    *,
    context_start_ns: int | None = None,
) -> TimeElements:
    """Time elements of one unit over [start_ns, end_ns).

    ``planned`` is the planned busy time (sorted disjoint intervals), ``gaps`` the intervals
    its device was unreachable.

    ``context_start_ns`` (<= ``start_ns``): the elements of the *part* [start_ns, end_ns) of a
    window that starts there, exactly as that window's own computation counts them, so that
    the parts of a window (its hours) add up to the window. The window's computation differs
    from a standalone one of the part in one respect: a counter increase dated in the part
    (by its later sample) whose earlier sample lies before ``start_ns`` is attributed over
    its whole span, clipped to the window's start, not to the part's. The signals and gaps
    must then be those the window sees (samples from the one before ``context_start_ns``,
    gaps overlapping [context_start_ns, end_ns)), counters dated in [start_ns, end_ns) (see
    ``counter_increase``), and ``planned`` must cover [context_start_ns, end_ns).
    ``docs/kpis.md`` (hourly roll-ups) gives the argument.
    """
    origin = start_ns
    if context_start_ns is not None:
        if context_start_ns > start_ns:
            raise ValueError("context_start_ns must not be after start_ns")
        t0 = [int(c.t0_ns.min()) for c in (sig.total, sig.good, sig.reject, sig.energy)
              if c is not None and len(c.t0_ns)]
        # the intervals must reach back to the earliest span an increase is spread over
        origin = max(context_start_ns, min([start_ns, *t0]))
    mode = sig.mode
    if mode is None and sig.default_mode is not None:
        mode = Step.constant(sig.default_mode, origin, gaps)
    steps = [sig.state or _empty_step(), mode or _empty_step(), sig.channel or _empty_step()]
    # cut at the plan's edges too: each interval is then wholly in or out of PBT
    cuts: Sequence[I64] = planned
    if origin < start_ns:  # and at the part's start: its own intervals are those after it
        cuts = (*planned, np.array([start_ns], np.int64))
    iv = combine(steps, origin, end_ns, gaps, cuts=cuts)
    in_plan = overlap_seconds(planned, iv.start, iv.end)
    out_plan = iv.seconds - in_plan
    st, md, ch = iv.codes
    el = element_masks(st, md)
    known = np.logical_or.reduce(list(el.values()))
    attribute = _attribution(iv, origin, in_plan, out_plan, known, el["apt"],
                             clip_ns=context_start_ns)
    if origin < start_ns:  # the time elements are the part's own intervals'
        own = iv.start >= start_ns
        in_plan, out_plan, ch, known = in_plan[own], out_plan[own], ch[own], known[own]
        el = {name: m[own] for name, m in el.items()}
    if context_start_ns is not None:
        planned = clip(planned, start_ns, end_ns)
    apt, asut, idle = el["apt"], el["asut"], el["minor_stop"]
    adet = np.logical_or.reduce([el[n] for n in sorted(ADET_ELEMENTS)])
    maint, na, other = el["maintenance"], el["not_available"], el["other"]

    def s(mask: np.ndarray, w: np.ndarray = in_plan) -> float:
        return float(w[mask].sum())

    pbt = float(np.sum(planned[1] - planned[0]) / 1e9)

    q = _Quantities.of(sig, attribute)
    pq, gq, sq, tot_a, gq_a, sq_a = q.pq, q.gq, q.sq, q.pq_a, q.gq_a, q.sq_a
    resets = sum(c.resets for c in (sig.total, sig.good, sig.reject, sig.energy) if c)
    return TimeElements(
        window_s=(end_ns - start_ns) / 1e9,
        pbt_s=pbt,
        known_s=s(known),
        apt_s=s(apt),
        asut_s=s(asut),
        adet_s=s(adet),
        idle_s=s(idle),
        maintenance_s=s(maint),
        not_available_s=s(na),
        other_s=s(other),
        # a manual machine's processing is known to be manual, with or without a channel tag
        apt_auto_s=0.0 if sig.manual_only else s(apt & (ch == ChannelMode.Automatic)),
        apt_mode_known_s=s(apt) if sig.manual_only else s(apt & (ch != UNKNOWN)),
        apt_outside_plan_s=s(apt, out_plan),
        pq=pq,
        gq=gq,
        sq=sq,
        pq_plan=float(tot_a[0]),
        gq_plan=float(gq_a[0]),
        sq_plan=float(sq_a[0]),
        pq_unattributed=float(tot_a[1]),
        pq_outside_plan=float(tot_a[2]),
        ideal_s=(sig.ideal_cycle_s or 0.0) * float(tot_a[0]),
        apt_pru_s=s(apt) if sig.ideal_cycle_s is not None else 0.0,
        counter_resets=resets,
        implausible_increases=sum(len(c.implausible) for c in (sig.total, sig.good, sig.reject) if c),
        pq_known=int(q.pq_known),
        gq_known=int(_gq_known(sig)),
        units_without_pru=int(sig.ideal_cycle_s is None),
        shared_pru_s=sig.ideal_cycle_s,
        std_units=int(sig.ideal_cycle_s is not None and _gq_known(sig)),
        **_standard(sig, gq, float(gq_a[0]), s(apt | asut | adet)),
    )


def roll_up(elements: Iterable[TimeElements]) -> TimeElements:
    """Sum time elements and quantities of several units (then compute Kpis.of the sum):
    ``e1 + e2 + ...`` in that order, the same floats, without an object per addition (an
    assessment sums 500 assets on each of 30 days)."""
    es = list(elements)
    if not es:
        return TimeElements(units=0)
    if len(es) == 1:
        return es[0]
    get = attrgetter(*_SUMMED)
    totals = list(get(es[0]))
    for e in es[1:]:
        for i, v in enumerate(get(e)):
            totals[i] += v
    pru = es[0].shared_pru_s
    if any(e.shared_pru_s != pru for e in es[1:]):
        pru = None
    return TimeElements(**dict(zip(_SUMMED, totals, strict=True)),
                        window_s=max(e.window_s for e in es), shared_pru_s=pru)


def group_by_line(per_asset: Mapping[str, TimeElements]) -> dict[str, TimeElements]:
    """Line path (site/area/line) -> summed elements of its assets."""
    lines: dict[str, list[TimeElements]] = {}
    for path, e in per_asset.items():
        lines.setdefault(path.rsplit("/", 1)[0], []).append(e)
    return {line: roll_up(es) for line, es in sorted(lines.items())}
