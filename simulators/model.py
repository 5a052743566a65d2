"""Ground-truth machine model: a deterministic, vectorised timeline of one machine.

A :class:`Timeline` is a step function of (state, operation mode, channel mode, power) made of
segments, plus the completion instants of parts and whether each part was good. Codes are the
canonical ones of :mod:`config.signals` (OPC 40001-1 state and operation mode, OPC 40501
channel mode).

The model generates one *chunk* at a time: a local calendar day, split in two at
``improvement_at`` when that falls inside the day. A chunk depends only on
``(seed, asset, day, part)``, the calendar and the regime, never on the window that asked for
it, so any window's timeline is the same however it is generated (a partly made part is lost
at a chunk boundary; that is the only artifact).

How a chunk is made, all with numpy:

1. The chunk's planned busy time (shifts minus planned stops minus holidays) is laid end to
   end as a *planned clock* ``u`` in ``[0, U)``.
2. Interruptions are drawn on the *run-time* axis (a failure every ~MTBF of running, minor
   stops, setups every ~setup_every_h of running), each with a duration. Laid end to end, an
   interruption at run time ``r`` starts at planned time ``r + (durations before it)``: downtime
   pushes later events back, as on a real machine.
3. The planned clock maps back to wall-clock time through the planned intervals; outside
   planned busy time the machine idles (NotExecuting, mode None).
4. Parts complete on a *production clock* (time in Executing + Processing) every
   ``ideal_cycle_time_s / speed`` seconds with a little jitter; a part in progress when the
   machine stops completes after it restarts. Each part is good with ``1 - defect_rate``.

Timestamps: segment boundaries lie on whole milliseconds, and part completions one nanosecond
after a whole millisecond. Window edges and counter resets made from ``datetime`` values are
whole microseconds, so a part never coincides with an edge: "parts in [start, end)" is never
ambiguous.
"""

from __future__ import annotations

import itertools
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from config.settings import Asset, Regime, SimulationSettings
from config.signals import ChannelMode, MachineState, OperationMode
from config.times import Calendar

from .calendar import ShiftCalendar, datetime_ns

__all__ = [
    "DEFAULT_CYCLE_S",
    "NATIVE_CODES",
    "Behaviour",
    "DayClock",
    "MachineModel",
    "MachineProfile",
    "Timeline",
    "datetime_ns",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

NS = 1_000_000_000
MS = 1_000_000
_NS_PER_H = 3600 * NS

#: cycle time the model runs at for an asset that declares no ideal_cycle_time_s
DEFAULT_CYCLE_S = 60.0

_EXEC = int(MachineState.Executing)
_NOT_EXEC = int(MachineState.NotExecuting)
_OOS = int(MachineState.OutOfService)
_PROC = int(OperationMode.Processing)
_SETUP_MODE = int(OperationMode.Setup)
_AUTO = int(ChannelMode.Automatic)
_MDI = int(ChannelMode.MDI)
_MANUAL = int(ChannelMode.Manual)

# Kinds of piece on the planned clock; the index into the lookup tables below.
_RUN, _FAIL, _MINOR, _SETUP, _OFF = 0, 1, 2, 3, 4
_STATE_OF = np.array([_EXEC, _OOS, _NOT_EXEC, _EXEC, _NOT_EXEC], np.uint8)
# A failure is repaired in Maintenance mode (OPC 40001-1); ADET counts it by its state.
_MODE_OF = np.array(
    [_PROC, int(OperationMode.Maintenance), _PROC, _SETUP_MODE, int(OperationMode.NoMode)],
    np.uint8,
)

#: How the simulated machines' own firmware encodes state and modes on the wire (the Modbus
#: register map uses these). They deliberately differ from the canonical codes so that a
#: config's ``enum`` mapping is exercised. role -> canonical name -> native raw value.
NATIVE_CODES: dict[str, dict[str, int]] = {
    "state": {"NotAvailable": 0, "NotExecuting": 1, "Executing": 2, "OutOfService": 4},
    "mode": {"None": 0, "Processing": 1, "Setup": 2, "Maintenance": 3},
    # Fanuc-like: MDI=0, MEM (memory, automatic)=1, JOG=5 (HANDLE=4 is never written)
    "channel_mode": {"MDI": 0, "Automatic": 1, "Manual": 5},
    # the PLC's stop reason register: reason id (config.reasons' shipped ones) -> code; 0 is
    # "no reason" (running, outside the plan, or a stop the PLC does not explain)
    "stop_reason": {
        "mechanical_failure": 11, "electrical_failure": 12, "tool_breakage": 13,
        "changeover": 21, "adjustment": 22,
        "jam": 31, "blocked": 32, "sensor_trip": 33,
        "material_shortage": 41, "no_operator": 42,
    },
}

#: The reason codes each kind of interruption is drawn from, with their chances (seeded per
#: chunk, from a stream of its own: the timeline's other draws are unchanged). A tenth of the
#: minor stops carry no code (0): stops no signal explains are part of a real plant.
_REASON_DRAWS: dict[int, tuple[tuple[int, ...], tuple[float, ...]]] = {
    _FAIL: ((11, 12, 13), (0.5, 0.3, 0.2)),
    _MINOR: ((31, 32, 33, 41, 42, 0), (0.35, 0.2, 0.15, 0.12, 0.08, 0.10)),
    _SETUP: ((21, 22), (0.75, 0.25)),
}


# --------------------------------------------------------------------------- timeline


def _changes(*codes: npt.NDArray[np.generic]) -> Bools:
    """Mask of segments that differ from their predecessor in any of ``codes`` (first: True)."""
    diff = np.zeros(len(codes[0]), bool)
    diff[0] = True
    for c in codes:
        diff[1:] |= c[1:] != c[:-1]
    return diff


@dataclass(frozen=True, slots=True, eq=False)
class Timeline:
    """Machine behaviour over ``[start_ns, end_ns)``.

    Segment ``i`` covers ``[seg_ns[i], seg_ns[i + 1])`` (the last one ends at ``end_ns``);
    adjacent segments always differ in some code or in power. ``part_ns`` is sorted.
    """

    start_ns: int
    end_ns: int
    seg_ns: I64
    state: U8
    mode: U8
    channel: U8
    power_kw: F64
    part_ns: I64
    part_good: Bools
    #: the stop reason code the PLC shows (NATIVE_CODES["stop_reason"]; 0: none) per segment
    reason: U8

    @property
    def seg_end(self) -> I64:
        return np.append(self.seg_ns[1:], np.int64(self.end_ns))

    @property
    def running(self) -> Bools:
        """Segments in Executing + Processing (where parts are made)."""
        return (self.state == _EXEC) & (self.mode == _PROC)

    def index_at(self, t_ns: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Index of the segment holding each time (times must lie in the timeline)."""
        return np.searchsorted(self.seg_ns, np.asarray(t_ns, np.int64), side="right") - 1

    def energy_kwh(self) -> float:
        dur_h = (self.seg_end - self.seg_ns) / _NS_PER_H
        return float(np.sum(self.power_kw * dur_h))

    def clip(self, start_ns: int, end_ns: int) -> Timeline:
        """The part inside ``[start_ns, end_ns)``, which must lie within this timeline."""
        if start_ns < self.start_ns or end_ns > self.end_ns or end_ns <= start_ns:
            raise ValueError("clip window must be a non-empty part of the timeline")
        i0 = int(np.searchsorted(self.seg_ns, start_ns, side="right")) - 1
        i1 = int(np.searchsorted(self.seg_ns, end_ns, side="left"))
        seg = self.seg_ns[i0:i1].copy()
        seg[0] = start_ns
        p0, p1 = np.searchsorted(self.part_ns, [start_ns, end_ns], side="left")
        return Timeline(
            start_ns, end_ns, seg, self.state[i0:i1], self.mode[i0:i1], self.channel[i0:i1],
            self.power_kw[i0:i1], self.part_ns[p0:p1], self.part_good[p0:p1],
            self.reason[i0:i1],
        )

    @classmethod
    def concat(cls, parts: Sequence[Timeline]) -> Timeline:
        """Join contiguous timelines, merging equal segments at the seams."""
        if not parts:
            raise ValueError("nothing to concatenate")
        for a, b in itertools.pairwise(parts):
            if a.end_ns != b.start_ns:
                raise ValueError("timelines to concatenate must be contiguous")
        if len(parts) == 1:
            return parts[0]
        seg = np.concatenate([p.seg_ns for p in parts])
        state = np.concatenate([p.state for p in parts])
        mode = np.concatenate([p.mode for p in parts])
        channel = np.concatenate([p.channel for p in parts])
        power = np.concatenate([p.power_kw for p in parts])
        reason = np.concatenate([p.reason for p in parts])
        keep = _changes(state, mode, channel, power, reason)
        return cls(
            parts[0].start_ns, parts[-1].end_ns, seg[keep], state[keep], mode[keep],
            channel[keep], power[keep],
            np.concatenate([p.part_ns for p in parts]),
            np.concatenate([p.part_good for p in parts]),
            reason[keep],
        )

    def same_as(self, other: Timeline) -> bool:
        """Exactly equal (every array, bit for bit)."""
        return (
            self.start_ns == other.start_ns and self.end_ns == other.end_ns
            and all(
                np.array_equal(getattr(self, f), getattr(other, f))
                for f in ("seg_ns", "state", "mode", "channel", "power_kw", "part_ns", "part_good",
                          "reason")
            )
        )


# --------------------------------------------------------------------------- per-asset profile


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """What makes one simulated machine differ from its siblings (drawn from the seed).

    Multipliers apply to both regimes alike, so that a regime change moves every machine in
    the same direction.
    """

    key: int  # stable id of the asset in random seeds (crc32 of its path)
    cycle_s: float  # ideal cycle time the machine runs at (PRU)
    mtbf_f: float
    mttr_f: float
    minor_f: float
    defect_f: float
    speed_f: float
    auto_delta: float
    power_f: float
    manual_only: bool  # no automatic operation (control manual / none)
    nominal_rpm: float
    ambient_c: float
    temp_rise_c: float
    reset_phase_s: float  # fraction of a counter period, [0, 1)

    @classmethod
    def of(cls, asset: Asset, seed: int) -> MachineProfile:
        key = zlib.crc32(asset.path.encode())
        rng = np.random.default_rng([seed, key])
        u = rng.uniform(size=10).tolist()
        cnc = asset.control == "cnc"
        return cls(
            key=key,
            cycle_s=asset.ideal_cycle_time_s or DEFAULT_CYCLE_S,
            mtbf_f=0.7 + 0.6 * u[0],
            mttr_f=0.8 + 0.45 * u[1],
            minor_f=0.8 + 0.45 * u[2],
            defect_f=0.7 + 0.6 * u[3],
            speed_f=0.97 + 0.05 * u[4],
            auto_delta=-0.05 + 0.1 * u[5],
            power_f=0.7 + 0.7 * u[6],
            manual_only=asset.control in ("manual", "none"),
            nominal_rpm=round(6000 + 6000 * u[7], -2) if cnc else round(900 + 900 * u[7], -1),
            ambient_c=21.0 + 3.0 * u[8],
            temp_rise_c=12.0 + 13.0 * u[9],
            reset_phase_s=float(rng.uniform()),
        )


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A regime as applied to one machine, in seconds and kW."""

    mtbf_s: float
    mttr_s: float
    setup_every_s: float
    setup_s: float
    minor_every_s: float
    minor_s: float
    speed: float
    cycle_s: float  # actual mean cycle time = ideal / speed
    defect_rate: float
    auto_share: float
    power_run_kw: float
    power_setup_kw: float
    power_idle_kw: float
    power_standby_kw: float  # outside planned busy time

    @classmethod
    def of(cls, regime: Regime, p: MachineProfile) -> Behaviour:
        speed = min(regime.speed * p.speed_f, 1.5)
        run = regime.power_kw_running * p.power_f
        idle = regime.power_kw_idle * p.power_f
        return cls(
            mtbf_s=regime.mtbf_min * 60 * p.mtbf_f,
            mttr_s=regime.mttr_min * 60 * p.mttr_f,
            setup_every_s=regime.setup_every_h * 3600,
            setup_s=regime.setup_min * 60,
            minor_every_s=regime.minor_stop_every_min * 60 / p.minor_f,
            minor_s=regime.minor_stop_s * p.minor_f,
            speed=speed,
            cycle_s=p.cycle_s / speed,
            defect_rate=min(regime.defect_rate * p.defect_f, 0.99),
            auto_share=(
                0.0 if p.manual_only else float(np.clip(regime.auto_share + p.auto_delta, 0, 1))
            ),
            power_run_kw=run,
            power_setup_kw=idle + 0.3 * (run - idle),
            power_idle_kw=idle,
            power_standby_kw=0.5 * idle,
        )

    def power_table(self) -> F64:
        """Power by piece kind (_RUN, _FAIL, _MINOR, _SETUP, _OFF)."""
        return np.array(
            [self.power_run_kw, self.power_idle_kw, self.power_idle_kw, self.power_setup_kw,
             self.power_standby_kw],
            np.float64,
        )


# --------------------------------------------------------------------------- calendar days


class DayClock:
    """Local calendar days of a shift calendar and their planned busy time (cached)."""

    def __init__(self, calendar: Calendar, cache_size: int = 1024) -> None:
        self.calendar = calendar
        self.shifts = ShiftCalendar(calendar)
        self.tz = ZoneInfo(calendar.timezone)
        self._planned: OrderedDict[tuple[int, int], tuple[I64, I64]] = OrderedDict()
        self._cache_size = cache_size

    def day_of(self, t_ns: int) -> int:
        """Proleptic ordinal of the local date holding ``t_ns``."""
        # floor to a second: local midnights are whole seconds, so the day is exact
        return datetime.fromtimestamp(t_ns // NS, self.tz).date().toordinal()

    def bounds(self, day: int) -> tuple[int, int]:
        d = date.fromordinal(day)
        # local midnights as the calendar reads them (where midnight is skipped: the jump)
        return (
            self.shifts.first_reading(datetime.combine(d, time(0))),
            self.shifts.first_reading(datetime.combine(d + timedelta(days=1), time(0))),
        )

    def planned(self, start_ns: int, end_ns: int) -> tuple[I64, I64]:
        """Planned busy time within [start_ns, end_ns), sorted disjoint (starts, ends)."""
        key = (start_ns, end_ns)
        hit = self._planned.get(key)
        if hit is None:
            hit = self.shifts.intervals(start_ns, end_ns)
            self._planned[key] = hit
            if len(self._planned) > self._cache_size:
                self._planned.popitem(last=False)
        return hit


# --------------------------------------------------------------------------- the model


def _arrivals(rng: np.random.Generator, mean_s: float, horizon_s: float) -> F64:
    """Poisson arrival times in [0, horizon_s)."""
    if horizon_s <= 0:
        return np.empty(0, np.float64)
    n = int(horizon_s / mean_s * 1.5) + 16
    pos = np.cumsum(rng.exponential(mean_s, n))
    while pos[-1] < horizon_s:  # rare: draw more, continuing the same stream
        pos = np.concatenate((pos, pos[-1] + np.cumsum(rng.exponential(mean_s, n))))
    return pos[pos < horizon_s]


def _periodic(rng: np.random.Generator, every_s: float, horizon_s: float) -> F64:
    """Roughly periodic times in [0, horizon_s), random phase, +-15 % spacing."""
    if horizon_s <= 0:
        return np.empty(0, np.float64)
    # gaps are >= 0.85 * every_s except the first, so n of them always reach the horizon
    n = int(horizon_s / (0.85 * every_s)) + 2
    gaps = every_s * rng.uniform(0.85, 1.15, n)
    gaps[0] = every_s * rng.uniform(0.1, 1.0)
    pos = np.cumsum(gaps)
    return pos[pos < horizon_s]


def _interruptions(rng: np.random.Generator, b: Behaviour, horizon: float) -> tuple[F64, F64, U8]:
    """Failures, minor stops and setups within ``horizon`` planned seconds: their start and
    end on the planned clock (seconds) and their kind."""
    # 1. interruptions on the run-time axis, with their durations (seconds)
    f_r = _arrivals(rng, b.mtbf_s, horizon)
    f_d = rng.gamma(2.0, b.mttr_s / 2.0, f_r.size)
    m_r = _arrivals(rng, b.minor_every_s, horizon)
    m_d = rng.gamma(4.0, b.minor_s / 4.0, m_r.size)
    s_r = _periodic(rng, b.setup_every_s, horizon)
    s_d = np.maximum(rng.normal(b.setup_s, 0.15 * b.setup_s, s_r.size), 0.0)
    r = np.concatenate((f_r, m_r, s_r))
    d = np.concatenate((f_d, m_d, s_d))
    kind = np.concatenate((
        np.full(f_r.size, _FAIL, np.uint8), np.full(m_r.size, _MINOR, np.uint8),
        np.full(s_r.size, _SETUP, np.uint8),
    ))
    order = np.argsort(r, kind="stable")
    r, d, kind = r[order], d[order], kind[order]
    keep = d > 1e-3
    r, d, kind = r[keep], d[keep], kind[keep]
    # 2. on the planned clock each starts after all earlier downtime
    u0 = r + np.cumsum(d) - d
    keep = u0 < horizon
    u0, d, kind = u0[keep], d[keep], kind[keep]
    u1 = np.minimum(u0 + d, horizon)
    return u0, u1, kind


def _reasons(rng: np.random.Generator, kind: U8) -> U8:
    """The stop reason code of each piece (0 for runs and time off), drawn by its kind."""
    out = np.zeros(kind.size, np.uint8)
    for k, (codes, p) in _REASON_DRAWS.items():
        sel = kind == k
        out[sel] = rng.choice(np.array(codes, np.uint8), size=int(sel.sum()), p=p)
    return out


def _parts(rng: np.random.Generator, b: Behaviour, a: I64, e: I64) -> tuple[I64, Bools]:
    """Part completion instants (ns) and whether each part is good, for the producing
    segments [a, e)."""
    rc = np.concatenate(([0], np.cumsum(e - a))).astype(np.int64)
    prod_s = float(rc[-1]) / NS
    n = int(prod_s / (b.cycle_s * 0.85)) + 8  # cycles >= 0.85 x mean: n always suffice
    cycles = b.cycle_s * np.clip(1.0 + 0.03 * rng.standard_normal(n), 0.85, 1.3)
    v = np.cumsum(cycles)
    v_ns = (v[v < prod_s] * NS).astype(np.int64)
    ii = np.searchsorted(rc[1:], v_ns, side="right")
    part_ns = (a[ii] + (v_ns - rc[ii])) // MS * MS + 1
    good = rng.random(part_ns.size) >= b.defect_rate
    return part_ns, good


class MachineModel:
    """One simulated machine: its timeline over any window, generated per chunk and cached."""

    def __init__(
        self,
        asset: Asset,
        clock: DayClock,
        simulation: SimulationSettings,
        improvement_ns: int,
        *,
        cache_size: int = 96,
    ) -> None:
        self.asset = asset
        self.clock = clock
        self.seed = simulation.seed
        self.profile = MachineProfile.of(asset, simulation.seed)
        self.baseline = Behaviour.of(simulation.baseline, self.profile)
        self.improved = Behaviour.of(simulation.improved, self.profile)
        # floored to a millisecond, so that chunk boundaries stay on the millisecond grid
        self.improvement_ns = improvement_ns // MS * MS
        self._cache: OrderedDict[tuple[int, int], Timeline] = OrderedDict()
        self._cache_size = cache_size

    def behaviour_at(self, t_ns: int) -> Behaviour:
        return self.improved if t_ns >= self.improvement_ns else self.baseline

    def chunks(self, start_ns: int, end_ns: int) -> list[tuple[int, int, int, int]]:
        """(day, part, chunk start, chunk end) of the chunks covering [start_ns, end_ns)."""
        out: list[tuple[int, int, int, int]] = []
        imp = self.improvement_ns
        for day in range(self.clock.day_of(start_ns), self.clock.day_of(end_ns - 1) + 1):
            c0, c1 = self.clock.bounds(day)
            if c0 < imp < c1:
                out += [(day, 0, c0, imp), (day, 1, imp, c1)]
            else:
                out.append((day, 0, c0, c1))
        return out

    def timeline(self, start_ns: int, end_ns: int) -> Timeline:
        """Behaviour over [start_ns, end_ns)."""
        if end_ns <= start_ns:
            raise ValueError("empty window")
        parts = [self._chunk(*c) for c in self.chunks(start_ns, end_ns)]
        return Timeline.concat(parts).clip(start_ns, end_ns)

    def _chunk(self, day: int, part: int, c0: int, c1: int) -> Timeline:
        key = (day, part)
        hit = self._cache.get(key)
        if hit is not None and hit.start_ns == c0 and hit.end_ns == c1:
            self._cache.move_to_end(key)
            return hit
        tl = self._generate(day, part, c0, c1)
        self._cache[key] = tl
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tl

    def _generate(self, day: int, part: int, c0: int, c1: int) -> Timeline:
        b = self.behaviour_at(c0)
        rng = np.random.default_rng([self.seed, self.profile.key, day, part])
        ps, pe = self.clock.planned(c0, c1)
        cum = np.concatenate(([0], np.cumsum(pe - ps))).astype(np.int64)
        horizon = float(cum[-1]) / NS
        power_of = b.power_table()

        if horizon <= 0:  # no planned time at all (Sunday, holiday)
            return Timeline(
                c0, c1, np.array([c0], np.int64), _STATE_OF[[_OFF]], _MODE_OF[[_OFF]],
                np.array([_AUTO], np.uint8), power_of[[_OFF]],
                np.empty(0, np.int64), np.empty(0, bool), np.zeros(1, np.uint8),
            )

        # 1.-2. interruptions, placed on the planned clock
        u0, u1, kind = _interruptions(rng, b, horizon)

        # pieces alternate run, event, run, ..., run (runs may be empty)
        m = u0.size
        p_start = np.empty(2 * m + 1, np.float64)
        p_start[0::2] = np.concatenate(([0.0], u1))
        p_start[1::2] = u0
        p_kind = np.zeros(2 * m + 1, np.uint8)
        p_kind[1::2] = kind
        auto = rng.random(m + 1) < b.auto_share
        p_chan = np.full(2 * m + 1, -1, np.int16)  # -1: keeps the channel it had
        p_chan[0::2] = np.where(auto, _AUTO, _MANUAL)
        p_chan[p_kind == _SETUP] = _MDI  # setting up is done by hand input
        p_reason = _reasons(np.random.default_rng([self.seed, self.profile.key, day, part, 19]),
                            p_kind)

        # 3. planned clock -> wall clock (floored to ms; stays inside its interval)
        u_ns = np.round(p_start * NS).astype(np.int64)
        iv = np.minimum(np.searchsorted(cum[1:], u_ns, side="right"), ps.size - 1)
        t = (ps[iv] + (u_ns - cum[iv])) // MS * MS

        cand = np.unique(np.concatenate((np.array([c0], np.int64), ps, pe, t)))
        cand = cand[cand < c1]
        j = np.searchsorted(ps, cand, side="right") - 1
        in_plan = (j >= 0) & (cand < pe[np.maximum(j, 0)])
        # zero-length pieces map onto their successor's start; side="right" picks the latter
        k = np.maximum(np.searchsorted(t, cand, side="right") - 1, 0)
        kind_w = np.where(in_plan, p_kind[k], _OFF)
        reason_w = np.where(in_plan, p_reason[k], 0).astype(np.uint8)
        chan = np.where(in_plan, p_chan[k], -1)
        filled = np.maximum.accumulate(np.where(chan >= 0, np.arange(chan.size), -1))
        chan_w = np.where(filled >= 0, chan[np.maximum(filled, 0)], _AUTO).astype(np.uint8)

        state, mode, power = _STATE_OF[kind_w], _MODE_OF[kind_w], power_of[kind_w]
        keep = _changes(state, mode, chan_w, power, reason_w)
        seg, state, mode, chan_w, power, reason_w = (
            cand[keep], state[keep], mode[keep], chan_w[keep], power[keep], reason_w[keep]
        )
        seg_end = np.append(seg[1:], np.int64(c1))

        # 4. parts on the production clock
        run = (state == _EXEC) & (mode == _PROC)
        part_ns, good = _parts(rng, b, seg[run], seg_end[run])
        return Timeline(c0, c1, seg, state, mode, chan_w, power, part_ns, good, reason_w)
