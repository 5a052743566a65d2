"""The simulators' own calendar: no code from kpi/, and the same answers as the product's.

Hand-computed rows for both calendars are in ``tests/kpi/test_calendar.py``; here the truth's
independence is enforced, and the two calendars are compared on many generated calendars
(they may only differ where that table says the product is wrong).
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import load_settings, shipped_config
from config.times import ALL_DAYS, Calendar, DailyRange
from kpi.calendar import planned_intervals
from simulators.calendar import ShiftCalendar, datetime_ns, overlap_seconds
from simulators.model import DayClock

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = ROOT / "simulators"
H = 3600 * 10**9
D = 24 * H


def kpi_imports(path: Path) -> list[str]:
    """``line name`` of each import of kpi in ``path``, direct or through importlib."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found += [f"{node.lineno} {n}" for n in names if n == "kpi" or n.startswith("kpi.")]
    return found


def test_no_module_under_simulators_imports_kpi() -> None:
    files = sorted(SIMULATORS.rglob("*.py"))
    assert len(files) > 5
    assert {f.relative_to(ROOT).as_posix(): kpi_imports(f) for f in files if kpi_imports(f)} == {}


def test_the_checker_sees_kpi_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import kpi\nimport kpi.oee as o\nfrom kpi.calendar import merge\nfrom kpi import oee\n"
        "import importlib\nimportlib.import_module('kpi.steps')\n"
        "def f():\n    from kpi import calendar\n"
        "import kpis, config\nfrom .kpi import x\n",
        encoding="utf-8",
    )
    assert kpi_imports(bad) == ["1 kpi", "2 kpi.oee", "3 kpi.calendar", "4 kpi", "6 kpi.steps", "8 kpi"]


def test_importing_simulators_loads_no_kpi_module() -> None:
    """Not even through another package (config, collector, store) that simulators use."""
    code = "import sys, simulators; print(sorted(m for m in sys.modules if m.split('.')[0] == 'kpi'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- agreement with kpi/


@pytest.mark.parametrize("which", ["demo", "shifts"])
def test_same_intervals_as_kpi_for_the_demo_calendar(which: str) -> None:
    """The truth's planned busy time for the shipped demo (round the clock) and for the tests'
    shift calendar (two shifts, Monday to Saturday) is exactly what it is with kpi's code."""
    from tests.helpers import shift_demo_settings

    cal = (load_settings(shipped_config("demo.yaml")) if which == "demo"
           else shift_demo_settings()).calendar
    start = datetime_ns(datetime(2026, 1, 1, tzinfo=UTC))
    mine = ShiftCalendar(cal).intervals(start, start + 400 * D)
    theirs = planned_intervals(cal, start, start + 400 * D)
    assert mine[0].size > 600
    np.testing.assert_array_equal(mine[0], theirs[0])
    np.testing.assert_array_equal(mine[1], theirs[1])


#: zone -> its skipped hour in 2026, in minutes of the day
ZONES = {"UTC": (0, 0), "Asia/Shanghai": (0, 0), "Europe/Berlin": (120, 180),
         "America/New_York": (120, 180), "America/Santiago": (0, 60)}


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    tz = draw(st.sampled_from(sorted(ZONES)))
    lo, hi = ZONES[tz]
    # no boundary strictly inside a skipped hour: kpi/ places those late (see the table)
    clock = st.integers(0, 24 * 60 - 1).filter(lambda m: not lo < m < hi).map(
        lambda m: time(m // 60, m % 60))
    ranges = st.builds(
        lambda s, e, days: DailyRange(start=s, end=e, days=days),
        clock, clock, st.lists(st.sampled_from(ALL_DAYS), min_size=1, max_size=7, unique=True),
    )
    return Calendar(
        timezone=tz,
        shifts=draw(st.lists(ranges, min_size=1, max_size=3)),
        planned_stops=draw(st.lists(ranges, max_size=3)),
        holidays=[d.isoformat() for d in draw(st.lists(st.dates(date(2026, 3, 1), date(2026, 11, 30)),
                                                       max_size=3))],
    )


# windows around the year's DST changes, edges anywhere down to the nanosecond
instants = st.integers(datetime_ns(datetime(2026, 3, 1, tzinfo=UTC)),
                       datetime_ns(datetime(2026, 11, 30, tzinfo=UTC)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=calendars(), start=instants, length=st.integers(1, 9 * D))
def test_same_intervals_as_kpi_for_generated_calendars(cal: Calendar, start: int, length: int) -> None:
    mine = ShiftCalendar(cal).intervals(start, start + length)
    theirs = planned_intervals(cal, start, start + length)
    np.testing.assert_array_equal(mine[0], theirs[0])
    np.testing.assert_array_equal(mine[1], theirs[1])


# --------------------------------------------------------------------------- the truth's pieces


def test_overlap_seconds_by_hand() -> None:
    s = 10**9
    plan = (np.array([10, 50], np.int64) * s, np.array([20, 60], np.int64) * s)
    seg = np.array([0, 5, 15, 40, 55, 70], np.int64) * s
    end = np.array([5, 15, 40, 55, 70, 80], np.int64) * s
    # [0,5) none; [5,15) 10-15 = 5; [15,40) 15-20 = 5; [40,55) 50-55 = 5; [55,70) 55-60 = 5; none
    assert overlap_seconds(plan, seg, end).tolist() == [0, 5, 5, 5, 5, 0]
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    assert overlap_seconds(empty, seg, end).tolist() == [0] * 6
    assert overlap_seconds(plan, seg[:0], end[:0]).tolist() == []


def test_day_clock_days_tile_time_across_dst() -> None:
    """Chunks are local days; they cover time without gaps or overlaps, even on days that
    start at a skipped midnight (America/Santiago, 2026-09-06)."""
    for tz in ("Europe/Berlin", "America/Santiago", "Asia/Shanghai"):
        clock = DayClock(Calendar(timezone=tz))
        first = date(2026, 1, 1).toordinal()
        days = range(first, first + 365)
        bounds = [clock.bounds(d) for d in days]
        lengths = {(e - s) // H for s, e in bounds}
        assert lengths <= {23, 24, 25}
        for (_, e), (s, _) in itertools.pairwise(bounds):
            assert e == s
        for d, (s, e) in zip(days, bounds, strict=True):
            assert clock.day_of(s) == d
            assert clock.day_of(e - 1) == d
    santiago = DayClock(Calendar(timezone="America/Santiago"))
    s, e = santiago.bounds(date(2026, 9, 6).toordinal())
    assert s == datetime_ns(datetime(2026, 9, 6, 4, tzinfo=UTC))  # the jump: 00:00 -04 = 01:00 -03
    assert e - s == 23 * H
