"""KPI core on hand-computed cases: every number below is worked out in the comment beside it."""

from __future__ import annotations

import numpy as np
import pytest

from config.signals import ChannelMode, MachineState, OperationMode, Quality
from kpi import CounterDelta, Kpis, Step, TimeElements, UnitSignals, counter_increase, roll_up
from kpi.oee import ALGORITHM_VERSION, ELEMENT_TABLE_VERSION, element_masks, time_elements

S = 1_000_000_000
EX, OOS, NE = MachineState.Executing, MachineState.OutOfService, MachineState.NotExecuting
PROC, SETUP = OperationMode.Processing, OperationMode.Setup
AUTO, MAN = ChannelMode.Automatic, ChannelMode.Manual


def step(points: list[tuple[float, int]], bad_at: tuple[float, ...] = ()) -> Step:
    ts = np.array([t * S for t, _ in points], np.int64)
    val = np.array([v for _, v in points], np.float64)
    q = np.array([Quality.BAD if t in bad_at else Quality.GOOD for t, _ in points], np.uint8)
    return Step.from_samples(ts, val, q)


def counter(points: list[tuple[float, float]], start: float = 0, end: float = 1000) -> CounterDelta:
    ts = np.array([t * S for t, _ in points], np.int64)
    val = np.array([v for _, v in points], np.float64)
    return counter_increase(ts, val, np.zeros(len(ts), np.uint8), int(start * S), int(end * S))


ALL_PLANNED = (np.array([0], np.int64), np.array([1000 * S], np.int64))


def unit(**kw: object) -> UnitSignals:
    base: dict[str, object] = dict(
        state=step([(0, EX), (600, OOS), (700, EX)]),
        mode=step([(-50, PROC)]),
        channel=step([(0, AUTO), (500, MAN)]),
        total=None, good=None, reject=None, energy=None, ideal_cycle_s=10.0,
    )
    base.update(kw)
    return UnitSignals(**base)  # type: ignore[arg-type]


def test_counter_reset_counts_from_zero() -> None:
    # before window 100 -> 110 (+10 at t=100) -> 150 (+40) -> reset to 5 (+5) -> 20 (+15)
    c = counter([(-10, 100), (100, 110), (500, 150), (800, 5), (900, 20)])
    assert c.increase == 70 and c.resets == 1 and c.samples == 4


def test_counter_rise_before_window_not_counted() -> None:
    # the rise 0 -> 50 happens at t=-5, before the window
    c = counter([(-10, 0), (-5, 50), (10, 60)])
    assert c.increase == 10


@pytest.mark.parametrize(
    ("case", "kw", "gaps", "planned", "expect"),
    [
        # Executing+Processing 0-600 and 700-1000 = 900 s; OutOfService 600-700 = 100 s
        ("basic", {}, [], ALL_PLANNED,
         dict(pbt_s=1000, known_s=1000, apt_s=900, adet_s=100, apt_auto_s=500, apt_mode_known_s=900)),
        # a device gap 200-300, the mode sampled again at 300 (its end), the state only at 600:
        # state unknown 200-600 (not carried across the gap), mode unknown 200-300.
        # known 0-200 (EX/PROC) + 600-700 (OOS) + 700-1000 (EX/PROC) = 600;
        # APT 200 + 300 = 500; ADET 100; channel unknown 200-500 (next sample at 500):
        # auto APT 0-200 = 200, mode-known APT 0-200 + 700-1000 = 500
        ("gap", dict(mode=step([(-50, PROC), (300, PROC)])), [(200 * S, 300 * S)], ALL_PLANNED,
         dict(pbt_s=1000, known_s=600, apt_s=500, adet_s=100, apt_auto_s=200,
              apt_mode_known_s=500)),
        # finding: after a gap the pre-gap value is not carried forward. Gap 200-300 and no
        # sample of any signal after it until the state's at 600: 200-1000 is unknown for the
        # mode (its only sample is at -50) and for the channel until 500 -> known only 0-200
        # (EX/PROC, APT 200) and 600-700 (OOS defines ADET whatever the mode) = 300
        ("no carry after gap", {}, [(200 * S, 300 * S)], ALL_PLANNED,
         dict(known_s=300, apt_s=200, adet_s=100, apt_auto_s=200, apt_mode_known_s=200)),
        # a sample exactly at the gap's end is fresh: state and mode re-sampled at 300 ->
        # only 200-300 unknown; known 900, APT 0-200 + 300-600 + 700-1000 = 800
        ("sample at gap end", dict(state=step([(0, EX), (300, EX), (600, OOS), (700, EX)]),
                                   mode=step([(-50, PROC), (300, PROC)])),
         [(200 * S, 300 * S)], ALL_PLANNED, dict(known_s=900, apt_s=800, adet_s=100)),
        # a bad-quality state sample at 650 makes 650-700 unknown, instead of OutOfService
        ("bad sample", dict(state=step([(0, EX), (600, OOS), (650, EX), (700, EX)], bad_at=(650,))),
         [], ALL_PLANNED, dict(known_s=950, apt_s=900, adet_s=50)),
        # planned busy time only 0-500: elements clipped to it, the rest reported apart
        ("partial plan", {}, [], (np.array([0], np.int64), np.array([500 * S], np.int64)),
         dict(pbt_s=500, known_s=500, apt_s=500, adet_s=0, apt_outside_plan_s=400)),
        # setup while executing and while not executing both count as ASUT
        ("setup", dict(state=step([(0, EX), (100, NE), (200, EX)]), mode=step([(0, SETUP), (300, PROC)])),
         [], ALL_PLANNED, dict(asut_s=300, apt_s=700, idle_s=0)),
        # before the first sample nothing is known
        ("late start", dict(state=step([(400, EX)]), mode=step([(400, PROC)])), [], ALL_PLANNED,
         dict(known_s=600, apt_s=600)),
    ],
)
def test_time_elements(
    case: str, kw: dict[str, object], gaps: list[tuple[int, int]],
    planned: tuple[np.ndarray, np.ndarray], expect: dict[str, float],
) -> None:
    e = time_elements(unit(**kw), 0, 1000 * S, planned, gaps)
    for k, v in expect.items():
        assert getattr(e, k) == pytest.approx(v), (case, k)


def test_kpis_from_elements() -> None:
    good = counter([(-1, 0), (500, 80)])
    reject = counter([(-1, 0), (500, 10)])
    total = counter([(-1, 0), (500, 90)])
    e = time_elements(unit(total=total, good=good, reject=reject), 0, 1000 * S, ALL_PLANNED)
    k = Kpis.of(e)
    assert k.availability == pytest.approx(0.9)  # 900 / 1000
    assert k.effectiveness == pytest.approx(10 * 90 / 900)  # PRU x PQ / APT = 1.0
    assert k.quality_ratio == pytest.approx(80 / 90)
    assert k.oee == pytest.approx(0.9 * 1.0 * 80 / 90)
    assert k.technical_efficiency == pytest.approx(900 / 1000)
    assert k.automation_rate == pytest.approx(500 / 900)
    assert k.coverage == pytest.approx(1.0)


def test_effectiveness_above_one_is_reported_not_clipped() -> None:
    total = counter([(-1, 0), (500, 200)])  # 200 parts x 10 s = 2000 s ideal in 900 s
    k = Kpis.of(time_elements(unit(total=total), 0, 1000 * S, ALL_PLANNED))
    assert k.effectiveness == pytest.approx(2000 / 900)


def test_roll_up_sums_elements_never_averages_ratios() -> None:
    a = TimeElements(pbt_s=1000, apt_s=900, apt_pru_s=900, ideal_s=900, pq_plan=90, gq_plan=90,
                     known_s=1000)
    b = TimeElements(pbt_s=100, apt_s=10, apt_pru_s=10, ideal_s=5, pq_plan=1, gq_plan=0, known_s=100)
    k = Kpis.of(roll_up([a, b]))
    assert k.availability == pytest.approx(910 / 1100)  # the mean of ratios would be 0.5
    assert k.effectiveness == pytest.approx(905 / 910)
    assert k.quality_ratio == pytest.approx(90 / 91)
    assert roll_up([a, b]).units == 2


def test_undefined_ratios_are_none() -> None:
    k = Kpis.of(TimeElements())
    assert k.availability is None and k.oee is None and k.quality_ratio is None


def test_unmeasured_output_or_state_gives_none_not_zero() -> None:
    # only good parts are counted: PQ is unknown, so effectiveness and quality are undefined
    good = counter([(-1, 0), (500, 80)])
    k = Kpis.of(time_elements(unit(good=good), 0, 1000 * S, ALL_PLANNED))
    assert k.availability == pytest.approx(0.9)
    assert k.effectiveness is None and k.quality_ratio is None and k.oee is None
    # good + reject without total: PQ = good + reject
    reject = counter([(-1, 0), (500, 10)])
    k = Kpis.of(time_elements(unit(good=good, reject=reject), 0, 1000 * S, ALL_PLANNED))
    assert k.quality_ratio == pytest.approx(80 / 90)
    # no state or mode tag at all: availability is undefined, coverage 0
    k = Kpis.of(time_elements(unit(state=None, mode=None, total=counter([(-1, 0), (5, 3)])),
                              0, 1000 * S, ALL_PLANNED))
    assert k.availability is None and k.coverage == 0
    # one unit without counted output makes the roll-up's output ratios undefined too
    a = time_elements(unit(total=counter([(-1, 0), (500, 90)])), 0, 1000 * S, ALL_PLANNED)
    b = time_elements(unit(good=good), 0, 1000 * S, ALL_PLANNED)
    assert Kpis.of(roll_up([a, b])).effectiveness is None
    assert Kpis.of(roll_up([a, a])).effectiveness == pytest.approx(Kpis.of(a).effectiveness)


def test_unit_without_pru_has_no_effectiveness_and_is_left_out_of_the_roll_up() -> None:
    # audit finding: no ideal_cycle_time_s gave effectiveness and OEE 0.0 and dragged the line
    total_a = counter([(-1, 0), (500, 90)])  # A: PRU 10 s, 90 parts in APT 900 s -> E = 1.0
    a = time_elements(unit(total=total_a, good=total_a), 0, 1000 * S, ALL_PLANNED)
    total_b = counter([(-1, 0), (500, 400)])  # B: no PRU, 400 parts, same APT 900 s
    b = time_elements(unit(total=total_b, good=total_b, ideal_cycle_s=None), 0, 1000 * S,
                      ALL_PLANNED)
    kb = Kpis.of(b)
    assert b.units_without_pru == 1 and b.apt_pru_s == 0 and b.ideal_s == 0
    assert kb.effectiveness is None and kb.oee is None  # not 0.0
    assert kb.availability == pytest.approx(0.9) and kb.quality_ratio == 1.0  # 900/1000, 400/400
    line = roll_up([a, b])
    k = Kpis.of(line)
    assert line.units == 2 and line.units_without_pru == 1  # the roll-up counts who it left out
    assert k.availability == pytest.approx(1800 / 2000)  # both units' APT / PBT = 0.9
    assert k.effectiveness == pytest.approx(900 / 900)  # A only: 10 s x 90 / A's APT 900 s = 1.0
    assert k.quality_ratio == pytest.approx(490 / 490)  # both units' parts
    assert k.oee == pytest.approx(0.9 * 1.0 * 1.0)  # the old 0-dragged value was 0.9*0.5*1
    # a roll-up of units all without PRU has no effectiveness either
    assert Kpis.of(roll_up([b, b])).effectiveness is None


def ramp(step_s: float, upto: float, skip: tuple[float, float] = (0, 0)) -> list[tuple[float, float]]:
    """Counter samples every ``step_s`` from 0 to ``upto`` (one part per 10 s of running), none
    strictly inside ``skip``."""
    n = int(upto // step_s)
    return [(k * step_s, k * step_s / 10) for k in range(n + 1)
            if not skip[0] < k * step_s < skip[1]]


@pytest.mark.parametrize(
    ("case", "kw", "gaps", "planned", "expect"),
    [
        # finding "gaps bias A and E": a 50 % gap 200-700 (state and mode re-sampled at 700),
        # the machine runs at ideal speed (PRU 10 s) until it stops at 900 (NotExecuting).
        # Counter samples at 0 (0), 200 (20), 800 (80), 900 (90).
        # Known PBT = 0-200 + 700-1000 = 500; APT = 0-200 + 700-900 = 400.
        # +20 over (0, 200]: all APT in known PBT -> plan.
        # +60 over (200, 800]: unknown 200-700 = 500 s, APT 700-800 = 100 s ->
        #   plan 60 x 100/600 = 10, unattributed 60 x 500/600 = 50.
        # +10 over (800, 900]: plan.  PQ plan = 20 + 10 + 10 = 40.
        # A = 400 / 500 = 0.8 (was 400 / 1000 = 0.4); E = 10 x 40 / 400 = 1.0 (was 10 x 90 /
        # 400 = 2.25); Q = 40 / 40; coverage 500 / 1000 = 0.5
        ("50% gap",
         dict(state=step([(0, EX), (700, EX), (900, NE)]), mode=step([(-50, PROC), (700, PROC)]),
              total=counter([(0, 0), (200, 20), (800, 80), (900, 90)])),
         [(200 * S, 700 * S)], ALL_PLANNED,
         dict(known_s=500, apt_s=400, pq=90, pq_plan=40, gq_plan=40, pq_unattributed=50,
              pq_outside_plan=0, availability=0.8, effectiveness=1.0, quality_ratio=1.0,
              oee=0.8, coverage=0.5)),
        # finding "overtime": PBT 0-500, the machine runs 0-1000 at ideal speed, counter every
        # 100 s (+10). Increases dated 100..500 lie in PBT: 50; 600..900 outside: 40 (the one
        # at 1000 is the next window's). APT (in PBT) = 500 (OutOfService 600-700 is outside).
        # A = 500 / 500 = 1; E = 10 x 50 / 500 = 1.0 (was 10 x 90 / 500 = 1.8); OEE 1.0
        ("overtime",
         dict(state=step([(0, EX)]), total=counter(ramp(100, 1000))),
         [], (np.array([0], np.int64), np.array([500 * S], np.int64)),
         dict(pbt_s=500, apt_s=500, pq=90, pq_plan=50, pq_outside_plan=40, pq_unattributed=0,
              effectiveness=1.0, oee=1.0)),
        # an increase whose span straddles the plan's end, split by production time:
        # PBT 0-450, runs throughout; samples at 400 (40) and 500 (50): +10 over (400, 500],
        # 50 s in PBT and 50 s outside -> 5 and 5. PQ plan = 40 + 5 = 45; E = 10 x 45 / 450 = 1
        ("straddles plan end",
         dict(state=step([(0, EX)]), total=counter([(0, 0), (400, 40), (500, 50)])),
         [], (np.array([0], np.int64), np.array([450 * S], np.int64)),
         dict(apt_s=450, pq_plan=45, pq_outside_plan=5, effectiveness=1.0)),
        # the known state says nothing ran in the span (OutOfService 400-500) yet the counter
        # rose at 500: spread over its wall time, all in known PBT -> plan
        ("no production in span",
         dict(state=step([(0, EX), (400, OOS)]), total=counter([(0, 0), (400, 40), (500, 41)])),
         [], ALL_PLANNED, dict(pq_plan=41, pq_unattributed=0, adet_s=600)),
    ],
)
def test_quantities_attributed_to_the_time_they_happened_in(
    case: str, kw: dict[str, object], gaps: list[tuple[int, int]],
    planned: tuple[np.ndarray, np.ndarray], expect: dict[str, float],
) -> None:
    # every part good: the good counter is the total counter
    e = time_elements(unit(**{"channel": None, "good": kw["total"], **kw}), 0, 1000 * S,
                      planned, gaps)
    k = Kpis.of(e).as_dict()
    for key, v in expect.items():
        got = k[key] if key in k else getattr(e, key)
        assert got == pytest.approx(v), (case, key, got)
    # every increase goes somewhere: plan + unattributed + outside plan = PQ
    assert e.pq_plan + e.pq_unattributed + e.pq_outside_plan == pytest.approx(e.pq)


NA, MAINT, NOMODE = MachineState.NotAvailable, OperationMode.Maintenance, OperationMode.NoMode


@pytest.mark.parametrize(
    ("state", "mode", "element"),
    [
        # OPC 40001-1 annex -> ISO 22400-2; OutOfService and NotAvailable whatever the mode
        (OOS, PROC, "malfunction"), (OOS, -1, "malfunction"), (NA, SETUP, "not_available"),
        (EX, PROC, "apt"),
        (NE, PROC, "minor_stop"),  # the finding: a minor stop is a unit delay (ADET)
        (EX, SETUP, "asut"), (NE, SETUP, "asut"),
        (EX, MAINT, "maintenance"), (NE, MAINT, "maintenance"),
        (EX, NOMODE, "other"), (NE, NOMODE, "other"),
        (EX, -1, None), (-1, PROC, None),  # unknown mode or state: unknown time
    ],
)
def test_element_table(state: int, mode: int, element: str | None) -> None:
    masks = element_masks(np.array([state], np.int64), np.array([mode], np.int64))
    hits = [name for name, m in masks.items() if m[0]]
    assert hits == ([element] if element else [])
    assert ELEMENT_TABLE_VERSION in ALGORITHM_VERSION


def test_minor_stops_are_unit_delays() -> None:
    # Executing 0-300, NotExecuting 300-400 (in Processing: a minor stop), Executing 400-600,
    # OutOfService 600-700, Executing 700-1000; Processing throughout, all planned.
    # APT = 300 + 200 + 300 = 800; ADET = minor stop 100 + malfunction 100 = 200 (v1: 100);
    # technical efficiency = 800 / (800 + 200) = 0.8 (v1: 800 / 900 = 0.889);
    # 80 parts: throughput = 80 / ((800 + 200) / 3600 h) = 288 per hour
    total = counter([(-1, 0), (900, 80)])
    e = time_elements(unit(state=step([(0, EX), (300, NE), (400, EX), (600, OOS), (700, EX)]),
                           total=total), 0, 1000 * S, ALL_PLANNED)
    assert (e.apt_s, e.adet_s, e.idle_s, e.known_s) == pytest.approx((800, 200, 100, 1000))
    k = Kpis.of(e)
    assert k.technical_efficiency == pytest.approx(0.8)
    assert k.throughput_per_h == pytest.approx(288)
    assert k.availability == pytest.approx(0.8)  # APT / known PBT, unchanged by the mapping


def test_automation_rate_keeps_every_unit() -> None:
    # every unit: Executing & Processing 0-600 and 700-1000 = APT 900 s (OutOfService 600-700)
    auto = time_elements(unit(channel=step([(0, AUTO)])), 0, 1000 * S, ALL_PLANNED)
    # control: manual, no channel_mode tag: its 900 s are known to be manual
    manual = time_elements(unit(channel=None, manual_only=True), 0, 1000 * S, ALL_PLANNED)
    # no channel_mode tag and not declared manual: its mode is unknown
    unknown = time_elements(unit(channel=None), 0, 1000 * S, ALL_PLANNED)
    # one automatic + one manual machine: 900 / (900 + 900) = 0.5 (was 900 / 900 = 1.0)
    k = Kpis.of(roll_up([auto, manual]))
    assert (k.automation_rate, k.automation_coverage) == pytest.approx((0.5, 1.0))
    # with a machine of unknown mode: rate over the known 1800 s = 0.5, coverage 1800 / 2700
    k = Kpis.of(roll_up([auto, manual, unknown]))
    assert (k.automation_rate, k.automation_coverage) == pytest.approx((0.5, 2 / 3))
    # automatic + unknown: 900 / 900 = 1.0, but only half the APT rests on it: coverage 0.5
    k = Kpis.of(roll_up([auto, unknown]))
    assert (k.automation_rate, k.automation_coverage) == pytest.approx((1.0, 0.5))
    ku = Kpis.of(unknown)
    assert ku.automation_rate is None and ku.automation_coverage == 0  # 0 / 900
    # control: manual wins over a tag that says Automatic: 0 / 900
    k = Kpis.of(time_elements(unit(channel=step([(0, AUTO)]), manual_only=True), 0, 1000 * S,
                              ALL_PLANNED))
    assert (k.automation_rate, k.automation_coverage) == pytest.approx((0.0, 1.0))


def glitch(points: list[tuple[float, float]], max_per_s: float | None,
           late_s: float = 0.0) -> CounterDelta:
    ts = np.array([t * S for t, _ in points], np.int64)
    val = np.array([v for _, v in points], np.float64)
    return counter_increase(ts, val, np.zeros(len(ts), np.uint8), 0, 1000 * S, max_per_s, late_s)


def test_counter_glitch_is_excluded_and_listed() -> None:
    # PRU 10 s, factor 1.5: at most 0.15 parts a second, plus one part of sampling slack.
    # 100 -> 110 over (0, 100]: +10, allowed 100 x 0.15 + 1 = 16 -> counted
    # 110 -> 0 at 200: a drop (reset), the new value 0 counts: +0
    # 0 -> 120 over (200, 201]: +120, allowed 1 x 0.15 + 1 = 1.15 -> implausible, excluded
    # 120 -> 130 over (201, 300]: +10, allowed 99 x 0.15 + 1 = 15.85 -> counted
    pts = [(0, 100), (100, 110), (200, 0), (201, 120), (300, 130)]
    c = glitch(pts, 1.5 / 10)
    assert c.increase == 20  # without the check: 10 + 0 + 120 + 10 = 140
    assert glitch(pts, None).increase == 140
    assert c.resets == 1
    assert c.implausible == ((200 * S, 201 * S, 120.0, pytest.approx(1.15)),)
    # one part in less than a cycle is sampling jitter, not a glitch: +1 over 1 s <= 1.15
    assert glitch([(0, 0), (1, 1)], 1.5 / 10).increase == 1
    # the excluded increase is in no quantity and is counted in the elements (per counter)
    e = time_elements(unit(total=c), 0, 1000 * S, ALL_PLANNED)
    assert e.pq == 20 and e.implausible_increases == 1


def test_a_sample_stamped_late_within_the_tolerance_loses_no_part() -> None:
    # PRU 10 s, factor 1.5: 0.15 parts a second. The machine makes a part every 10 s; the
    # gateway reads 10 at 100 s but, starved of CPU, stamps it at 160 s; the next sample, read
    # and stamped at 170 s, shows the 7 parts made since: +7 over 10 s of stamps.
    pts = [(0, 0), (50, 5), (160, 10), (170, 17), (180, 18)]
    # without a tolerance: allowed 10 x 0.15 + 1 = 2.5 < 7 -> seven real parts excluded
    c = glitch(pts, 1.5 / 10)
    assert c.increase == 11 and c.implausible == ((160 * S, 170 * S, 7.0, pytest.approx(2.5)),)
    # a 60 s stamping tolerance: allowed (10 + 60) x 0.15 + 1 = 11.5 -> every part counted
    c = glitch(pts, 1.5 / 10, late_s=60)
    assert c.increase == 18 and c.implausible == ()
    # the smallest tolerance that keeps them: (7 - 1) / 0.15 - 10 = 30 s
    assert glitch(pts, 1.5 / 10, late_s=30.5).increase == 18
    assert glitch(pts, 1.5 / 10, late_s=29.5).increase == 11
    # a glitch to 0 and back is still one: 0 -> 120 over 1 s allows (1 + 60) x 0.15 + 1 = 10.15
    c = glitch([(0, 100), (100, 110), (200, 0), (201, 120), (300, 130)], 1.5 / 10, late_s=60)
    assert c.increase == 20 and c.implausible == ((200 * S, 201 * S, 120.0, pytest.approx(10.15)),)


# ---------------------------------------------------------------- default mode (no mode tag)

# Executing 0-600, NotExecuting 600-700, Executing 700-1000; no mode tag; 90 parts, PRU 10 s
STATE_ONLY = dict(state=step([(0, EX), (600, NE), (700, EX)]), mode=None, channel=None,
                  total=counter([(-1, 0), (500, 90)]))


def test_default_mode_gives_a_state_only_machine_its_kpis() -> None:
    # with default_mode Processing: APT 0-600 + 700-1000 = 900, the NotExecuting 100 s a minor
    # stop (ADET); A = 900 / 1000 = 0.9, E = 10 x 90 / 900 = 1.0, Q = 90 / 90, OEE 0.9
    e = time_elements(unit(**STATE_ONLY, good=STATE_ONLY["total"], default_mode=int(PROC)),
                      0, 1000 * S, ALL_PLANNED)
    assert (e.known_s, e.apt_s, e.adet_s, e.idle_s) == pytest.approx((1000, 900, 100, 100))
    k = Kpis.of(e)
    assert (k.availability, k.effectiveness, k.quality_ratio, k.oee) == pytest.approx((0.9, 1.0, 1.0, 0.9))
    assert k.coverage == pytest.approx(1.0)
    # without it (as before): Executing or NotExecuting in an unknown mode is unknown time, so
    # nothing is known -- no availability, effectiveness or OEE, coverage 0
    e0 = time_elements(unit(**STATE_ONLY, good=STATE_ONLY["total"]), 0, 1000 * S, ALL_PLANNED)
    k0 = Kpis.of(e0)
    assert e0.known_s == 0 and e0.apt_s == 0
    assert k0.availability is None and k0.effectiveness is None and k0.oee is None
    assert k0.coverage == 0


def test_default_mode_holds_after_a_gap_and_a_mode_tag_wins() -> None:
    # gap 200-300, the state re-sampled at 300: 200-300 unknown, the configured mode holds
    # again after the gap (a configured value is not lost with the connection).
    # known 900; APT 0-200 + 300-600 + 700-1000 = 800; A = 800 / 900
    state = step([(0, EX), (300, EX), (600, NE), (700, EX)])
    e = time_elements(unit(**{**STATE_ONLY, "state": state}, default_mode=int(PROC)), 0, 1000 * S,
                      ALL_PLANNED, [(200 * S, 300 * S)])
    assert (e.known_s, e.apt_s) == pytest.approx((900, 800))
    assert Kpis.of(e).availability == pytest.approx(800 / 900)
    # a mode tag (Setup throughout) wins over default_mode: no APT, 1000 s of setup
    e = time_elements(unit(**{**STATE_ONLY, "mode": step([(-5, SETUP)])}, default_mode=int(PROC)),
                      0, 1000 * S, ALL_PLANNED)
    assert (e.apt_s, e.asut_s) == pytest.approx((0, 1000))


# ---------------------------------------------------------------- standard-time weighting


def machine(pru: float | None, total: float, good: float, kwh: float | None) -> TimeElements:
    """Executing & Processing all 1000 s (all planned); ``total``/``good`` parts and ``kwh``
    counted at 500 s; no meter when ``kwh`` is None."""
    return time_elements(unit(
        state=step([(0, EX)]), channel=None, ideal_cycle_s=pru,
        total=counter([(-1, 0), (500, total)]), good=counter([(-1, 0), (500, good)]),
        energy=None if kwh is None else counter([(-1, 0), (500, kwh)]),
    ), 0, 1000 * S, ALL_PLANNED)


def test_roll_up_of_two_products_is_weighted_by_standard_time() -> None:
    # A: PRU 10 s, 90 parts, all good, 10 kWh; B: PRU 60 s, 15 parts, 12 good, 20 kWh;
    # both busy (APT) 1000 s
    a, b = machine(10, 90, 90, 10), machine(60, 15, 12, 20)
    # per asset, the raw figures keep their meaning:
    # A: 90 parts / (1000/3600 h) = 324 per h; 10 kWh / 90 good; PRU x GQ = 900 s of 1000 s busy
    #    -> standard output rate 0.9; 10 kWh / (900/3600 h) = 40 kWh per standard hour
    # B: 15 / (1000/3600) = 54 per h; 20 / 12 kWh per unit; 60 x 12 = 720 s -> 0.72;
    #    20 / (720/3600) = 100 kWh per standard hour
    for e, thr, epu, sor, esh in ((a, 324, 10 / 90, 0.9, 40), (b, 54, 20 / 12, 0.72, 100)):
        k = Kpis.of(e)
        assert (k.throughput_per_h, k.energy_per_unit_kwh) == pytest.approx((thr, epu))
        assert (k.standard_output_rate, k.energy_per_standard_hour_kwh) == pytest.approx((sor, esh))
    assert (a.std_gq_s, a.std_busy_s, a.energy_std_kwh, a.energy_std_gq_s) == pytest.approx(
        (900, 1000, 10, 900))
    line = roll_up([a, b])
    k = Kpis.of(line)
    # 105 parts of two products per 2000 s busy (189 per h) and 30 kWh / 102 good parts add
    # a 10 s part to a 60 s one: not reported
    assert k.throughput_per_h is None and k.energy_per_unit_kwh is None
    assert line.shared_pru_s is None and line.std_units == 2
    # standard output: (900 + 720) s / 2000 s busy = 0.81;
    # energy: 30 kWh / ((900 + 720) / 3600 h) = 30 / 0.45 = 66.67 kWh per standard hour
    assert k.standard_output_rate == pytest.approx(0.81)
    assert k.energy_per_standard_hour_kwh == pytest.approx(30 / 0.45)


def test_roll_up_of_one_product_keeps_raw_figures_over_metered_units_only() -> None:
    # A as above; C: the same PRU 10 s, 90 good parts, no energy meter (its energy_kwh is 0)
    a, c = machine(10, 90, 90, 10), machine(10, 90, 90, None)
    kc = Kpis.of(c)
    assert kc.energy_per_unit_kwh is None and kc.energy_per_standard_hour_kwh is None  # not 0
    line = roll_up([a, c])
    k = Kpis.of(line)
    assert line.shared_pru_s == 10
    # one product: 180 parts / (2000/3600 h) = 324 per h
    assert k.throughput_per_h == pytest.approx(324)
    # A's 10 kWh over A's 90 good parts, not over 180 (C has no meter): 0.111, not 0.056
    assert k.energy_per_unit_kwh == pytest.approx(10 / 90)
    # 10 kWh / (900/3600 h) = 40, over A only; standard output (900 + 900) / 2000 = 0.9
    assert k.energy_per_standard_hour_kwh == pytest.approx(40)
    assert k.standard_output_rate == pytest.approx(0.9)


def test_a_unit_without_pru_leaves_the_standard_figures_and_voids_raw_roll_ups() -> None:
    # A as above; D: no PRU, 50 good parts, 5 kWh
    a, d = machine(10, 90, 90, 10), machine(None, 50, 50, 5)
    kd = Kpis.of(d)
    assert kd.standard_output_rate is None and kd.energy_per_standard_hour_kwh is None
    assert kd.energy_per_unit_kwh == pytest.approx(5 / 50)  # per asset: still defined
    line = roll_up([a, d])
    k = Kpis.of(line)
    assert line.shared_pru_s is None and line.std_units == 1
    assert k.throughput_per_h is None and k.energy_per_unit_kwh is None
    # A only: 900 / 1000 and 10 kWh / 0.25 h
    assert (k.standard_output_rate, k.energy_per_standard_hour_kwh) == pytest.approx((0.9, 40))


def test_unmeasured_good_quantity_is_left_out_of_standard_output() -> None:
    # total only (no good, no reject): GQ is not measured -- not 0 good parts
    e = time_elements(unit(state=step([(0, EX)]), total=counter([(-1, 0), (500, 90)]),
                           energy=counter([(-1, 0), (500, 10)])), 0, 1000 * S, ALL_PLANNED)
    assert (e.std_units, e.std_gq_s, e.std_busy_s, e.metered_gq, e.metered_kwh) == (0, 0, 0, 0, 0)
    k = Kpis.of(e)
    assert k.standard_output_rate is None and k.energy_per_unit_kwh is None
    assert e.energy_kwh == 10  # the meter still counts in the plant's energy
    # nor a quality or scrap ratio of 0 (was: 0 good of 90 -> quality 0.0, scrap 0.0)
    assert e.gq_known == 0 and k.quality_ratio is None and k.scrap_ratio is None and k.oee is None
    assert k.effectiveness == pytest.approx(10 * 90 / 1000)  # PQ is measured: E stands
    # ... nor in a roll-up with a unit that has one
    a = machine(10, 90, 90, 10)
    k = Kpis.of(roll_up([a, e]))
    assert k.quality_ratio is None and k.scrap_ratio is None
