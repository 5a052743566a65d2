"""A window's time elements are the sum of its hours' (issue 12, roll-ups), to 1e-9 relative.

Random machines (state, mode, channel, counters with resets, glitches and bad samples, an
energy meter), device gaps, a calendar whose shifts and planned stops start and end on hour
edges, in a time zone with a DST change inside the data. Each window is cut at the hours
between its ends; each part is computed with ``context_start_ns`` (the window's start) from
what the window's computation reads, and the parts must add up to the window's elements.

Where a standalone computation of each hour does *not* add up (and so why the context is
needed) is shown by ``test_standalone_hours_are_not_additive`` on hand-made cases.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, time
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pytest

from config.signals import ChannelMode, MachineState, OperationMode, Quality
from config.times import Calendar, DailyRange
from kpi import CounterDelta, Step, TimeElements, UnitSignals, counter_increase, planned_intervals
from kpi.oee import time_elements

S = 1_000_000_000
H = 3600 * S
#: a unit's own flags (1 per unit, whatever the window): equal in every part, not summed
PER_UNIT = frozenset({"units", "pq_known", "gq_known", "units_without_pru", "std_units"})
NOT_TIME_ADDITIVE = PER_UNIT | {"window_s", "shared_pru_s"}
ADDITIVE = [f.name for f in fields(TimeElements) if f.name not in NOT_TIME_ADDITIVE]
# Berlin: clocks go back on 2026-10-25 at 03:00 local (01:00 UTC)
T0 = int(datetime(2026, 10, 23, 0, tzinfo=UTC).timestamp()) * S
DAYS = 4
CAL = Calendar(
    timezone="Europe/Berlin",
    shifts=[DailyRange(start=time(6), end=time(22))],
    planned_stops=[DailyRange(start=time(12), end=time(13)), DailyRange(start=time(9, 30), end=time(10))],
)
STATES = [int(s) for s in (MachineState.Executing, MachineState.NotExecuting, MachineState.OutOfService,
                           MachineState.NotAvailable)]
MODES = [int(m) for m in (OperationMode.Processing, OperationMode.Setup, OperationMode.Maintenance)]
CHANNELS = [int(c) for c in (ChannelMode.Automatic, ChannelMode.Manual)]


@dataclass(frozen=True)
class Series:
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]

    def read(self, start_ns: int, end_ns: int) -> Series:
        """As ``Store.read(prior=True)``: [start, end) and the last sample before start."""
        lo = max(int(np.searchsorted(self.ts, start_ns, "left")) - 1, 0)
        hi = int(np.searchsorted(self.ts, end_ns, "left"))
        return Series(self.ts[lo:hi], self.value[lo:hi], self.quality[lo:hi])


@dataclass(frozen=True)
class Machine:
    state: Series
    mode: Series | None
    channel: Series
    total: Series
    good: Series
    energy: Series
    gaps: list[tuple[int, int]]
    pru: float | None
    default_mode: int | None
    late_s: float = 0.0  # the counters' stamping tolerance (kpi.counter_stamp_tolerance_s)


def _times(rng: np.random.Generator, mean_s: float, first: int = T0 - H) -> npt.NDArray[np.int64]:
    """Sample times from ``first`` to the data's end, some exactly on hour edges."""
    n = int(DAYS * 86400 / mean_s) + 10
    ts = first + np.cumsum(rng.exponential(mean_s * S, n)).astype(np.int64)
    edges = np.arange(T0, T0 + DAYS * 86400 * S, H)
    ts = np.unique(np.concatenate([ts, rng.choice(edges, len(edges) // 3)]))
    return ts[ts < T0 + DAYS * 86400 * S]


def _quality(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
    return np.where(rng.random(n) < 0.03, Quality.BAD, Quality.GOOD).astype(np.uint8)


def _step(rng: np.random.Generator, codes: list[int], mean_s: float) -> Series:
    ts = _times(rng, mean_s)
    return Series(ts, rng.choice(codes, len(ts)).astype(np.float64), _quality(rng, len(ts)))


def _counter(rng: np.random.Generator, mean_s: float, rate: float) -> Series:
    """A cumulative counter with resets and a few glitches (a drop to 0 and back)."""
    ts = _times(rng, mean_s)
    inc = rng.poisson(rate * np.diff(ts, prepend=ts[0]) / S).astype(np.float64)
    v = np.cumsum(inc)
    for r in rng.choice(len(v), 3, replace=False):  # resets: counts again from 0
        v[r:] -= v[r] - rng.integers(0, 3)
    glitch = rng.choice(len(v), 4, replace=False)
    v[glitch] = 0.0
    return Series(ts, v, _quality(rng, len(ts)))


def _machine(seed: int) -> Machine:
    rng = np.random.default_rng(seed)
    gaps = []
    for g in rng.choice(DAYS * 24, 5, replace=False):
        a = T0 + int(g) * H + int(rng.integers(-600, 600)) * S
        gaps.append((a, a + int(rng.integers(30, 7200)) * S))
    with_mode = bool(rng.random() < 0.7)
    return Machine(
        state=_step(rng, STATES, 300), mode=_step(rng, MODES, 1800) if with_mode else None,
        channel=_step(rng, CHANNELS, 900), total=_counter(rng, 40, 0.05), good=_counter(rng, 40, 0.045),
        energy=_counter(rng, 600, 0.01), gaps=sorted(gaps), pru=[None, 10.0, 20.0][seed % 3],
        default_mode=None if with_mode else int(OperationMode.Processing),
        # a stamping tolerance on odd seeds: 30 s x 0.15 or 0.075 parts/s more allowed per pair
        late_s=30.0 if seed % 2 else 0.0,
    )


def elements(m: Machine, start_ns: int, end_ns: int, context_start_ns: int | None = None) -> TimeElements:
    """As ``KpiService.asset_result`` computes them: every read from ``context_start_ns``
    (the window's start; default ``start_ns``), counters dated in [start_ns, end_ns)."""
    ctx = start_ns if context_start_ns is None else context_start_ns
    max_per_s = 1.5 / m.pru if m.pru else None

    def step(s: Series | None) -> Step | None:
        if s is None:
            return None
        r = s.read(ctx, end_ns)
        return Step.from_samples(r.ts, r.value, r.quality)

    def count(s: Series, parts: bool = True) -> CounterDelta:
        r = s.read(ctx, end_ns)
        return counter_increase(r.ts, r.value, r.quality, start_ns, end_ns,
                                max_per_s if parts else None, m.late_s)

    sig = UnitSignals(state=step(m.state), mode=step(m.mode), channel=step(m.channel),
                      total=count(m.total), good=count(m.good), reject=None,
                      energy=count(m.energy, parts=False), ideal_cycle_s=m.pru,
                      default_mode=m.default_mode)
    gaps = [(a, b) for a, b in m.gaps if a < end_ns and b > ctx]
    return time_elements(sig, start_ns, end_ns, planned_intervals(CAL, ctx, end_ns), gaps,
                         context_start_ns=context_start_ns)


def assert_sum(whole: TimeElements, parts: list[TimeElements], what: str) -> None:
    for name in ADDITIVE:
        w, p = getattr(whole, name), sum(getattr(e, name) for e in parts)
        assert p == pytest.approx(w, rel=1e-9, abs=1e-6), (what, name)
    for name in PER_UNIT:
        assert {getattr(e, name) for e in parts} == {getattr(whole, name)}, (what, name)


def hours(start_ns: int, end_ns: int) -> list[int]:
    """The window's ends and the hour edges between them."""
    first = -(-start_ns // H) * H
    return [start_ns, *[t for t in range(first, end_ns, H) if t > start_ns], end_ns]


@pytest.mark.parametrize("seed", range(6))
def test_hours_add_up_to_the_window(seed: int) -> None:
    m = _machine(seed)
    rng = np.random.default_rng(100 + seed)
    assert m.gaps and (m.mode is None) == (m.default_mode is not None)
    span = DAYS * 86400 * S
    for k in range(8):
        start = T0 + int(rng.integers(0, span - 30 * H))
        if k % 3 == 0:  # windows on hour edges too (a local day's, the assessment's)
            start -= start % H
        end = start + int(rng.integers(H // 2, 30 * H))
        whole = elements(m, start, end)
        edges = hours(start, end)
        parts = [elements(m, a, b, context_start_ns=start) for a, b in pairwise(edges)]
        assert_sum(whole, parts, f"seed {seed} window {k}")


def test_the_data_have_what_the_test_is_about() -> None:
    """The random machines hold resets, glitches, gaps, planned edges and the DST change."""
    m = _machine(1)  # with a PRU: glitches are detected
    whole = elements(m, T0, T0 + DAYS * 86400 * S)
    assert whole.counter_resets > 0 and whole.implausible_increases > 0
    assert 0 < whole.known_s < whole.pbt_s and whole.pq_unattributed > 0 and whole.pq_outside_plan > 0
    # 25 h on 2026-10-25 in Berlin: 16 h of shift - 1.5 h of stops on each of the 4 days
    assert whole.pbt_s == 4 * 14.5 * 3600


def test_context_default_is_the_standalone_computation() -> None:
    """Without ``context_start_ns``, or with it at the part's start, nothing changes."""
    m = _machine(1)
    a, b = T0 + 5 * H + 123 * S, T0 + 30 * H
    assert elements(m, a, b) == elements(m, a, b, context_start_ns=a)


def _counter_series(points: list[tuple[float, float]], bad: tuple[float, ...] = ()) -> Series:
    ts = np.array([t * S for t, _ in points], np.int64)
    return Series(ts, np.array([v for _, v in points], np.float64),
                  np.array([Quality.BAD if t in bad else Quality.GOOD for t, _ in points], np.uint8))


def test_standalone_hours_are_not_additive() -> None:
    """Why each hour needs the window's context: standalone hours lose or move output."""
    ex, proc = int(MachineState.Executing), int(OperationMode.Processing)
    always = _counter_series([(-10, ex)])
    # plan: the whole day but 12:00-13:00 (UTC calendar); a part made across 12:00 is dated
    # 12:00:30 by its later sample: the window spreads it over 11:59:30-12:00:30 (half in
    # plan), a standalone 12:00 hour over 12:00-12:00:30 only (all outside the plan)
    noon = 12 * 3600
    cal = Calendar(planned_stops=[DailyRange(start=time(12), end=time(13))])
    total = _counter_series([(0, 0), (noon - 30, 10), (noon + 30, 11), (noon + 600, 11)])
    sig = UnitSignals(state=Step.from_samples(always.ts, always.value, always.quality),
                      mode=Step(np.array([-10 * S]), np.array([proc])), channel=None,
                      total=None, good=None, reject=None, energy=None, ideal_cycle_s=10.0)

    def at(a: int, b: int, ctx: int | None) -> TimeElements:
        r = total.read(a if ctx is None else ctx, b)
        c = counter_increase(r.ts, r.value, r.quality, a, b)
        lo = a if ctx is None else ctx
        return time_elements(UnitSignals(**{**{f.name: getattr(sig, f.name) for f in fields(sig)},
                                            "total": c, "good": c}),
                             a, b, planned_intervals(cal, lo, b), context_start_ns=ctx)

    start, mid, end = (noon - 3600) * S, noon * S, (noon + 3600) * S
    whole = at(start, end, None)
    assert whole.pq_plan == pytest.approx(10.5) and whole.pq_outside_plan == pytest.approx(0.5)
    alone = [at(start, mid, None), at(mid, end, None)]
    assert sum(e.pq_plan for e in alone) == pytest.approx(10.0)  # the half part moved out of plan
    assert_sum(whole, [at(start, mid, start), at(mid, end, start)], "noon")
