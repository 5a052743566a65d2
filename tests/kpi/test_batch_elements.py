"""``kpi.batch.batch_elements`` gives each part the elements ``time_elements`` gives it.

The random machines of ``test_hour_additivity`` (state, mode or a default mode, channel,
counters with resets, glitches and bad samples, an energy meter; a calendar with planned
stops and a DST change) without their gaps (``batch_elements`` takes none), cut into many
random parts of windows starting earlier (``context_start_ns``), all computed in one batch.
A part with an implausible counter rise must come back as None (left to ``time_elements``);
every other one equal, float for float.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from config.signals import ChannelMode
from kpi import TimeElements, planned_intervals
from kpi.batch import PartSignals, batch_elements
from tests.kpi.test_hour_additivity import CAL, DAYS, T0, H, Machine, S, Series, _machine, elements

#: a channel tag whose raw values the configuration maps (swapped): half the parts have it
SWAP = {int(ChannelMode.Automatic): int(ChannelMode.Manual),
        int(ChannelMode.Manual): int(ChannelMode.Automatic)}


def _signals(m: Machine, a: int, b: int, ctx: int, manual: bool, lut: dict[int, int] | None = None
             ) -> PartSignals:
    def samples(s: Series | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if s is None:
            return None
        r = s.read(ctx, b)
        return r.ts, r.value, r.quality

    def step(s: Series | None) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], None] | None:
        got = samples(s)
        return None if got is None else (got, None)

    channel = samples(m.channel)
    return PartSignals(a, b, ctx, step(m.state), step(m.mode), None if channel is None else (channel, lut),
                       samples(m.total), samples(m.good), None, samples(m.energy), m.pru,
                       1.5 / m.pru if m.pru else None, manual_only=manual,
                       default_mode=m.default_mode, stamp_tolerance_s=m.late_s)


def _equal(got: TimeElements, want: TimeElements, what: str) -> None:
    for f in fields(TimeElements):
        g, w = getattr(got, f.name), getattr(want, f.name)
        if w is None or g is None:
            assert g is w, (what, f.name)
        else:
            assert g == w, (what, f.name, g, w)


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_equals_each_part_on_its_own(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    machines = [replace(_machine(seed * 10 + k), gaps=[]) for k in range(3)]
    span = DAYS * 86400 * S
    parts: list[tuple[int, int, int, int, bool]] = []
    for k in range(40):
        ctx = T0 + int(rng.integers(0, span - 30 * H))
        if k % 4 == 0:
            ctx -= ctx % H
        a = ctx if k % 3 == 0 else ctx + int(rng.integers(0, 20 * H))
        b = a + int(rng.integers(S, 6 * H))
        parts.append((k % len(machines), a, b, ctx, k % 5 == 0))
    lo = min(p[3] for p in parts)
    hi = max(p[2] for p in parts)
    lut = [SWAP if k % 2 else None for k in range(len(parts))]
    got = batch_elements([_signals(machines[i], a, b, ctx, manual, lut[k])
                          for k, (i, a, b, ctx, manual) in enumerate(parts)],
                         planned_intervals(CAL, lo, hi))
    left = 0
    for k, ((i, a, b, ctx, manual), e) in enumerate(zip(parts, got, strict=True)):
        m = machines[i]
        want = _reference(m, a, b, ctx, manual, lut[k])
        if not manual and lut[k] is None:  # the reference is test_hour_additivity's
            assert want == elements(m, a, b, context_start_ns=ctx)
        if e is None:
            left += 1
            assert want.implausible_increases > 0, "only a part with a glitch is left out"
            continue
        assert want.implausible_increases == 0
        _equal(e, want, f"seed {seed} part {i} [{a}, {b}) ctx {ctx}")
    assert left < len(parts), "some parts must be computed by the batch"


def _reference(m: Machine, a: int, b: int, ctx: int, manual: bool, lut: dict[int, int] | None
               ) -> TimeElements:
    """``elements`` of ``m``, as a manual machine (never automatic, its APT mode known) when
    ``manual``, its channel's raw values mapped by ``lut``."""
    from kpi import CounterDelta, Step, UnitSignals, counter_increase
    from kpi.oee import time_elements

    max_per_s = 1.5 / m.pru if m.pru else None

    def step(s: Series | None, table: dict[int, int] | None = None) -> Step | None:
        if s is None:
            return None
        r = s.read(ctx, b)
        return Step.from_samples(r.ts, r.value, r.quality, table)

    def count(s: Series, parts: bool = True) -> CounterDelta:
        r = s.read(ctx, b)
        return counter_increase(r.ts, r.value, r.quality, a, b, max_per_s if parts else None,
                                m.late_s)

    sig = UnitSignals(state=step(m.state), mode=step(m.mode), channel=step(m.channel, lut),
                      total=count(m.total), good=count(m.good), reject=None,
                      energy=count(m.energy, parts=False), ideal_cycle_s=m.pru, manual_only=manual,
                      default_mode=m.default_mode)
    return time_elements(sig, a, b, planned_intervals(CAL, ctx, b), (), context_start_ns=ctx)


def test_missing_tags_and_empty_batches() -> None:
    """Parts without counters or steps, and no parts at all."""
    assert batch_elements([], planned_intervals(CAL, T0, T0 + H)) == []
    m = replace(_machine(4), gaps=[])
    a, b = T0 + 7 * H + 5 * S, T0 + 9 * H
    p = replace(_signals(m, a, b, a, False), total=None, good=None, energy=None, channel=None)
    (e,) = batch_elements([p], planned_intervals(CAL, a, b))
    assert e is not None and e.pq == 0 and e.pq_known == 0 and e.apt_mode_known_s == 0
    # 09:00:05-11:00 in Berlin (UTC+2) less the 09:30-10:00 stop
    assert e.pbt_s == 2 * 3600 - 5 - 1800


def test_evidence_counts_are_tag_evidence_of() -> None:
    """Samples in the part, bad ones, the one before: as ``TagEvidence.of`` counts them."""
    from config.signals import Role
    from kpi import TagEvidence
    from kpi.batch import evidence_counts

    m = _machine(2)
    rng = np.random.default_rng(7)
    parts = []
    for k in range(30):
        ctx = T0 + int(rng.integers(0, 60 * H))
        a = ctx if k % 2 else ctx + int(rng.integers(0, 5 * H))
        parts.append((a, a + int(rng.integers(S, 3 * H)), ctx))
    reads = [m.total.read(ctx, b) for a, b, ctx in parts]
    samples, bad, prior = evidence_counts(
        [(r.ts, r.quality) for r in reads] + [None], np.array([p[0] for p in parts] + [T0]),
        np.array([p[1] for p in parts] + [T0 + H]))
    for k, ((a, b, ctx), r) in enumerate(zip(parts, reads, strict=True)):
        lo = max(int(np.searchsorted(r.ts, a, "left")) - 1, 0) if ctx < a else 0
        want = TagEvidence.of("p", 1, Role.TOTAL_COUNT, r.ts[lo:], r.quality[lo:], a, b)
        assert (samples[k], bad[k], prior[k]) == (want.samples, want.bad_samples, want.prior_ns)
    assert (samples[-1], bad[-1], prior[-1]) == (0, 0, None)
    assert any(bad) and any(p is not None for p in prior)



def test_a_step_tag_without_any_sample() -> None:
    """Step tags that exist but hold no sample in any part of the batch (a tag never written
    yet: its reads are empty): unknown throughout, as ``time_elements`` counts them. Raised
    IndexError before (a search into the empty keys; seen in a DST day of /kpi-series)."""
    from kpi import Step, UnitSignals
    from kpi.oee import time_elements

    m = replace(_machine(5), gaps=[])
    a, b = T0 + 7 * H, T0 + 9 * H
    empty = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.uint8))
    base = replace(_signals(m, a, b, a, False), state=(empty, None), mode=(empty, None),
                   total=None, good=None, energy=None, default_mode=None)
    parts = [replace(base, channel=(empty, SWAP)),
             replace(base, start_ns=a + H, end_ns=b + H, channel=None)]
    got = batch_elements(parts, planned_intervals(CAL, a, b + H))
    none = Step.from_samples(*empty)
    for e, p in zip(got, parts, strict=True):
        assert e is not None and e.known_s == 0 and e.apt_s == 0 and e.pbt_s > 0
        sig = UnitSignals(state=none, mode=none, channel=none if p.channel else None, total=None,
                          good=None, reject=None, energy=None, ideal_cycle_s=m.pru)
        want = time_elements(sig, p.start_ns, p.end_ns, planned_intervals(CAL, a, p.end_ns), (),
                             context_start_ns=a)
        _equal(e, want, f"[{p.start_ns}, {p.end_ns})")


def test_a_part_of_52_days_or_more_is_left_to_time_elements() -> None:
    """A part's intervals are keyed within 2**52 ns (52.1 days): a longer one (a 345-day
    ``/kpis`` window read raw) comes back None, for ``time_elements``, and the others of the
    batch are still computed (it raised ValueError, a 500 at the API)."""
    m = replace(_machine(6), gaps=[])  # a machine without an implausible rise in ``short``
    short = (T0 + 7 * H, T0 + 9 * H)
    long = (T0, T0 + 60 * 86400 * S)
    parts = [short, long, short]
    got = batch_elements([_signals(m, a, b, a, False) for a, b in parts],
                         planned_intervals(CAL, T0, long[1]))
    assert got[1] is None
    for e in (got[0], got[2]):
        assert e is not None
        _equal(e, _reference(m, *short, short[0], False, None), "the short part")
