"""kpi.losses.event_reasons and stop_events(events=...) on a hand-made unit: which stop an OPC
UA event explains (inside it, or a moment before it within the tolerance), where its reason
ends (element change, production, unknown state), and that a reason code tag wins over it."""

from __future__ import annotations

import numpy as np
import pytest

from config.signals import MachineState as S
from config.signals import OperationMode as M
from kpi import Step
from kpi.losses import SOURCE_EVENT, SOURCE_NONE, SOURCE_TAG, event_reasons, stop_events
from kpi.steps import UNKNOWN

SEC = 1_000_000_000
END = 200 * SEC
PLAN = (np.array([0, 130], np.int64) * SEC, np.array([120, 200], np.int64) * SEC)  # break 120-130
GAPS = [(170 * SEC, 175 * SEC)]
TOL = 5 * SEC


def step(pairs: list[tuple[float, int]]) -> Step:
    return Step(np.array([t * SEC for t, _ in pairs], np.int64), np.array([c for _, c in pairs], np.int64))


# runs and stops: 10-20 malfunction, 30-40 malfunction then 40-50 setup, 60-70 malfunction,
# 80-90 minor stop, 110-140 malfunction across the break, 160-180 malfunction with a gap inside
STATE = step([(0, S.Executing), (10, S.OutOfService), (20, S.Executing), (30, S.OutOfService),
              (40, S.NotExecuting), (50, S.Executing), (60, S.OutOfService), (70, S.Executing),
              (80, S.NotExecuting), (90, S.Executing), (110, S.OutOfService), (140, S.Executing),
              (160, S.OutOfService), (180, S.Executing)])
MODE = step([(0, M.Processing), (40, M.Setup), (50, M.Processing)])

#: (event time s, reason code) and what each should do
EVENTS = [
    (7.0, 1),    # 3 s before the 10 s stop: within the tolerance -> that stop, from 10
    (33.0, 2),   # inside the 30 s malfunction -> from 30; ends at 40 (setup: another element)
    (55.0, 3),   # 5 s before 60... at exactly the tolerance -> the 60 s stop
    (63.0, 4),   # a second event inside the 60 s stop -> splits it at 63
    (72.0, 5),   # 8 s before the 80 s stop: beyond the tolerance -> nothing
    (115.0, 6),  # inside the stop across the break -> both parts (110-120, 130-140)
    (165.0, 7),  # inside the 160 s stop; the gap at 170 ends it (unknown state)
    (176.0, 8),  # after the gap, the state unknown until 180: no stop, nothing
]


def run(reason: Step | None = None) -> list[tuple[float, float, int, int, int]]:
    ts = np.array([t * SEC for t, _ in EVENTS], np.int64)
    codes = np.array([c for _, c in EVENTS], np.int64)
    ev_step = event_reasons(STATE, MODE, ts, 0, END, GAPS, tolerance_ns=TOL)
    ev = stop_events(STATE, MODE, reason, 0, END, PLAN, GAPS, events=(ev_step, codes))
    assert ev.source is not None and ev.event is not None
    return [(a / SEC, b / SEC, int(r), int(s), int(e)) for a, b, r, s, e in
            zip(ev.start_ns, ev.end_ns, ev.reason, ev.source, ev.event, strict=True)]


def test_each_event_explains_the_stop_it_is_in_or_the_one_right_after() -> None:
    E, N = SOURCE_EVENT, SOURCE_NONE
    assert run() == [
        (10, 20, 1, E, 0),
        (30, 40, 2, E, 1),
        (40, 50, UNKNOWN, N, UNKNOWN),   # the setup after it: another element, no event
        (60, 63, 3, E, 2),
        (63, 70, 4, E, 3),
        (80, 90, UNKNOWN, N, UNKNOWN),   # its event came 8 s early: beyond the tolerance
        (110, 120, 6, E, 5),
        (130, 140, 6, E, 5),             # the break does not end the reason
        (160, 170, 7, E, 6),             # the gap ends it: unknown until the next sample
    ]


def test_a_reason_code_tag_wins_over_an_event() -> None:
    # the PLC gives code 9 over the 30 s stop and nothing elsewhere
    tag = step([(0, UNKNOWN), (30, 9), (40, UNKNOWN)])
    got = run(tag)
    assert got[1] == (30, 40, 9, SOURCE_TAG, UNKNOWN)
    assert got[0] == (10, 20, 1, SOURCE_EVENT, 0)


@pytest.mark.parametrize(("events", "want"), [
    ([], []),
    ([(300.0, 1)], []),  # after the window
    ([(10.0, 1), (10.0, 2)], [(10, 20, 1)]),  # one instant: the first counts
])
def test_edges(events: list[tuple[float, int]], want: list[tuple[float, float, int]]) -> None:
    ts = np.array([t * SEC for t, _ in events], np.int64)
    codes = np.array([c for _, c in events], np.int64)
    s = event_reasons(STATE, MODE, ts, 0, END, GAPS, tolerance_ns=TOL)
    ev = stop_events(STATE, MODE, None, 0, END, PLAN, GAPS, events=(s, codes))
    got = [(a / SEC, b / SEC, int(r)) for a, b, r in zip(ev.start_ns, ev.end_ns, ev.reason, strict=True)
           if r != UNKNOWN]
    assert got == want
