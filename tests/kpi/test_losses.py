"""kpi.losses on a hand-made unit: which stretches are stop events, which loss type each is,
and the losses adding up to known x (1 - OEE) exactly."""

from __future__ import annotations

import numpy as np
import pytest

from config.signals import MachineState as S
from config.signals import OperationMode as M
from kpi import Kpis, Step, UnitSignals, counter_increase, time_elements
from kpi.losses import STOP_ELEMENTS, Losses, classify, losses, stop_events
from kpi.steps import UNKNOWN

SEC = 1_000_000_000
PLAN = (np.array([0, 70], np.int64) * SEC, np.array([60, 100], np.int64) * SEC)
GAPS = [(45 * SEC, 50 * SEC)]
# reason codes 0..3 and their loss types (a reason tree's positions)
REASON_LOSS = ["breakdown", "breakdown", "small_stop", "planned_downtime"]


def step(pairs: list[tuple[float, int]], bad: tuple[float, ...] = ()) -> Step:
    ts = np.array([t * SEC for t, _ in pairs], np.int64)
    code = np.array([UNKNOWN if t in bad else c for t, c in pairs], np.int64)
    return Step(ts, code)


STATE = step([(0, S.Executing), (10, S.NotExecuting), (12, S.Executing), (20, S.OutOfService),
              (40, S.Executing), (55, S.NotExecuting), (75, S.Executing)])
MODE = step([(0, M.Processing), (20, M.Maintenance), (40, M.Processing), (55, M.Processing),
             (90, M.Setup)])
# 30 s: the reason changes inside the failure; 55 s: a sample the PLC sent bad (unknown)
REASON = step([(0, -1), (10, 2), (12, -1), (20, 0), (30, 1), (40, -1), (55, 9), (90, 3)],
              bad=(55,))


def events() -> list[tuple[float, float, int, str]]:
    ev = stop_events(STATE, MODE, REASON, 0, 100 * SEC, PLAN, GAPS)
    return [(a / SEC, b / SEC, int(r), STOP_ELEMENTS[int(e)])
            for a, b, r, e in zip(ev.start_ns, ev.end_ns, ev.reason, ev.element, strict=True)]


def test_stop_events() -> None:
    assert events() == [
        (10, 12, 2, "minor_stop"),
        (20, 30, 0, "malfunction"),  # one failure, two reasons: two events
        (30, 40, 1, "malfunction"),
        # 45-55: a gap, then unknown until the next sample: no stop; the plan ends at 60 and
        # resumes at 70 (a stop across a break is two events)
        (55, 60, UNKNOWN, "minor_stop"),
        (70, 75, UNKNOWN, "minor_stop"),
        (90, 100, 3, "asut"),
    ]


@pytest.mark.parametrize(("small_stop_s", "want"), [
    # jam: small stop by its category; failures: breakdowns when long enough; the unexplained
    # stops: their element's loss type; the setup keeps its reason's planned downtime
    (5.0, ["small_stop", "breakdown", "breakdown", "breakdown", "breakdown", "planned_downtime"]),
    # under 11 s everything but the planned stop is a small stop
    (11.0, ["small_stop"] * 5 + ["planned_downtime"]),
])
def test_classify(small_stop_s: float, want: list[str]) -> None:
    from config.reasons import LOSS_TYPES

    ev = stop_events(STATE, MODE, REASON, 0, 100 * SEC, PLAN, GAPS)
    assert [LOSS_TYPES[i] for i in classify(ev, REASON_LOSS, small_stop_s)] == want


def test_an_unexplained_setup_is_a_changeover() -> None:
    from config.reasons import LOSS_TYPES

    for code in (-1, 7):  # none, and a code the tree does not have: by the element
        reason = step([(0, -1), (90, code)])
        ev = stop_events(STATE, MODE, reason, 0, 100 * SEC, PLAN, GAPS)
        lt = [LOSS_TYPES[i] for i in classify(ev, REASON_LOSS, 5.0)]
        assert lt[-1] == "changeover_setup"


def counter(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = np.array([t * SEC for t, _ in pairs], np.int64)
    return ts, np.array([v for _, v in pairs], np.float64), np.zeros(len(pairs), np.uint8)


@pytest.mark.parametrize("pru", [0.5, 1.0, 2.0])
def test_losses_add_up_to_one_minus_oee(pru: float) -> None:
    total = counter([(0, 0), (9, 14), (19, 27), (44, 30), (80, 38), (99, 60)])
    good = counter([(0, 0), (9, 13), (19, 25), (44, 27), (80, 34), (99, 55)])
    sig = UnitSignals(state=STATE, mode=MODE, channel=None,
                      total=counter_increase(*total, 0, 100 * SEC),
                      good=counter_increase(*good, 0, 100 * SEC), reject=None, energy=None,
                      ideal_cycle_s=pru)
    e = time_elements(sig, 0, 100 * SEC, PLAN, GAPS)
    ev = stop_events(STATE, MODE, REASON, 0, 100 * SEC, PLAN, GAPS)
    lo = losses(ev, e, REASON_LOSS, 5.0, pru)
    oee = Kpis.of(e).oee
    assert oee is not None and lo.oee is not None
    assert abs(lo.total_s / lo.known_s - (1 - oee)) < 1e-12
    assert abs(lo.oee - oee) < 1e-12
    stop_s = sum(lo.loss_s[t] for t in ("planned_downtime", "breakdown", "changeover_setup",
                                        "small_stop"))
    assert stop_s == pytest.approx(e.known_s - e.apt_s, abs=1e-9)
    assert lo.loss_s["scrap_rework"] == pytest.approx(pru * (e.pq_plan - e.gq_plan))
    assert lo.loss_parts["scrap_rework"] == pytest.approx(e.pq_plan - e.gq_plan)
    assert lo.reason_s == {2: 2.0, 0: 10.0, 1: 10.0, UNKNOWN: 10.0, 3: 10.0}
    assert lo.reason_stops[UNKNOWN] == 2
    # a roll-up adds seconds: two copies lose twice as much, at the same OEE
    two = lo + lo
    assert two.total_s == pytest.approx(2 * lo.total_s) and two.oee == pytest.approx(lo.oee)


def test_a_unit_without_pru_has_stops_but_no_oee() -> None:
    sig = UnitSignals(state=STATE, mode=MODE, channel=None, total=None, good=None, reject=None,
                      energy=None, ideal_cycle_s=None)
    e = time_elements(sig, 0, 100 * SEC, PLAN, GAPS)
    lo = losses(stop_events(STATE, MODE, REASON, 0, 100 * SEC, PLAN, GAPS), e, REASON_LOSS,
                5.0, None)
    assert lo.oee is None and lo.units_without_pru == 1
    assert lo.loss_s["speed_loss"] == lo.loss_s["scrap_rework"] == 0.0
    assert lo.total_s == pytest.approx(e.known_s - e.apt_s)
    assert (Losses(units=0) + lo).total_s == lo.total_s


def test_no_signals_no_stops() -> None:
    ev = stop_events(None, None, None, 0, 100 * SEC, PLAN)
    assert len(ev) == 0  # an unknown state is never a stop
