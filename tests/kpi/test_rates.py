"""Rates outside ISO 22400 on hand-worked cases: the CNC rate of key equipment declared and
telemetry-verified, the networking rate, when an asset reports on a day, labour hours
apportioned across month boundaries, and unit spellings."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import pytest

from config.times import Calendar, DailyRange
from config.times import epoch_ns as ns
from kpi import (
    AssetDay,
    RegisteredAsset,
    asset_day_rates,
    cnc_rate_declared,
    labour_hours_in_window,
    pbt_inside,
    ratio_estimate,
    reports,
    same_unit,
)

H = 3600.0
DAY = 16 * H  # a planned day of two shifts
#: four key machines (one manual, one CNC, two PLC) and a key-less washer
REGISTER = [
    RegisteredAsset("p/a/l/manual-lathe", key_equipment=True, control="manual"),
    RegisteredAsset("p/a/l/cnc-mill", key_equipment=True, control="cnc"),
    RegisteredAsset("p/a/l/press", key_equipment=True, control="plc"),
    RegisteredAsset("p/a/l/robot", key_equipment=True, control="plc"),
    RegisteredAsset("p/a/l/washer", key_equipment=False, control="plc"),
]
UP = AssetDay(pbt_s=DAY, known_s=DAY, state_and_mode=True, tags=7, good_samples=500)
DOWN = AssetDay(pbt_s=DAY, known_s=0.0, state_and_mode=True, tags=7, good_samples=0)
OFF = AssetDay(pbt_s=0.0, state_and_mode=True, tags=7)  # a Sunday: no planned time


def day(**state: AssetDay) -> dict[str, AssetDay]:
    names = {a.path.rsplit("/", 1)[1].replace("-", "_"): a.path for a in REGISTER}
    return {names[k]: v for k, v in state.items()}


def test_declared_counts_the_register_only() -> None:
    r = cnc_rate_declared(REGISTER)
    assert (r.numerator, r.denominator, r.value) == (3, 4, 0.75)
    assert cnc_rate_declared([a for a in REGISTER if not a.key_equipment]).value is None


def test_verified_counts_only_key_digital_assets_that_report() -> None:
    # the manual lathe reports (it is networked) but is not digital; the CNC mill is silent
    one = day(manual_lathe=UP, cnc_mill=DOWN, press=UP, robot=UP, washer=UP)
    rates = asset_day_rates(REGISTER, [one], coverage_min=0.9)
    assert rates["cnc_rate_key_equipment"] == ([2.0], [4.0])  # 0.5, declared 0.75
    assert rates["networking_rate"] == ([4.0], [5.0])  # every asset should report


def test_asset_days_over_a_window() -> None:
    days = [
        day(manual_lathe=UP, cnc_mill=DOWN, press=UP, robot=UP, washer=UP),
        day(manual_lathe=OFF, cnc_mill=OFF, press=OFF, robot=OFF, washer=OFF),  # no plan: 0 / 0
        day(manual_lathe=UP, cnc_mill=UP, press=UP, robot=UP, washer=DOWN),
        day(manual_lathe=UP, press=UP, robot=UP, washer=UP),  # the mill has no data at all
    ]
    rates = asset_day_rates(REGISTER, days, coverage_min=0.9)
    num, den = rates["cnc_rate_key_equipment"]
    assert (num, den) == ([2.0, 0.0, 3.0, 2.0], [4.0, 0.0, 4.0, 4.0])
    assert sum(num) / sum(den) == pytest.approx(7 / 12)
    num, den = rates["networking_rate"]
    assert (num, den) == ([4.0, 0.0, 4.0, 4.0], [5.0, 0.0, 5.0, 5.0])
    est = ratio_estimate(num, den, min_days=2)  # the unplanned day is left out, not a zero
    assert est.point == pytest.approx(0.8) and est.window.zero_days == 1


@pytest.mark.parametrize(
    ("d", "want"),
    [
        (UP, True),
        (OFF, False),  # not a planned day
        (AssetDay(pbt_s=DAY, known_s=DAY, state_and_mode=True, tags=0), False),  # nothing stored
        # with state and mode: its KPI coverage (known PBT / PBT) against coverage_min 0.9
        (AssetDay(pbt_s=DAY, known_s=0.9 * DAY, state_and_mode=True, tags=7), True),  # exactly
        (AssetDay(pbt_s=DAY, known_s=0.9 * DAY - 1, state_and_mode=True, tags=7), False),
        # gaps do not matter beside a known state: the state says it all
        (AssetDay(pbt_s=DAY, known_s=DAY, state_and_mode=True, tags=7, gap_s=DAY), True),
        # without a state: collector gaps and at least one good sample
        (AssetDay(pbt_s=DAY, tags=2, good_samples=1, gap_s=0.1 * DAY), True),
        (AssetDay(pbt_s=DAY, tags=2, good_samples=1, gap_s=0.1 * DAY + 1), False),
        (AssetDay(pbt_s=DAY, tags=2, good_samples=0), False),  # stored, but nothing good today
        (AssetDay(pbt_s=DAY, known_s=DAY, tags=2, good_samples=3), True),  # state, no mode
    ],
)
def test_when_an_asset_reports(d: AssetDay, want: bool) -> None:
    assert reports(d, coverage_min=0.9) is want


def test_gaps_count_once_and_only_inside_planned_time() -> None:
    planned = (np.array([0, 200], np.int64) * 10**9, np.array([100, 300], np.int64) * 10**9)
    gaps = [(50 * 10**9, 250 * 10**9), (60 * 10**9, 70 * 10**9)]  # overlapping: counted once
    assert pbt_inside(planned, gaps) == 100.0  # 50..100 and 200..250
    assert pbt_inside(planned, []) == 0.0


DAY_SHIFT = Calendar(timezone="UTC", shifts=[DailyRange(start=time(8), end=time(16))])


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return ns(datetime(year, month, day, hour, tzinfo=UTC))


def test_labour_hours_apportioned_by_each_months_planned_time() -> None:
    # 8 planned hours every day: October has 31 of them, November 30; the window holds
    # Oct 25..31 (7 days) and Nov 1..4 (4 days)
    lh = labour_hours_in_window(DAY_SHIFT, utc(2026, 10, 25), utc(2026, 11, 5), ["2026-10", "2026-11"],
                                {"2026-10": 3100.0, "2026-11": 3000.0})
    assert lh.shares == pytest.approx({"2026-10": 7 / 31, "2026-11": 4 / 30})
    assert lh.hours == pytest.approx(3100 * 7 / 31 + 3000 * 4 / 30)  # 700 + 400
    assert lh.missing == ()


def test_a_needed_month_without_labour_hours_is_named() -> None:
    lh = labour_hours_in_window(DAY_SHIFT, utc(2026, 10, 25), utc(2026, 11, 5), ["2026-10", "2026-11"],
                                {"2026-10": 3100.0})
    assert lh.hours is None and lh.missing == ("2026-11",)


def test_a_month_without_planned_time_in_the_window_is_not_needed() -> None:
    # the window ends at 04:00 on Nov 1, before its first shift: November is not needed
    lh = labour_hours_in_window(DAY_SHIFT, utc(2026, 10, 31), utc(2026, 11, 1, 4), ["2026-10", "2026-11"],
                                {"2026-10": 3100.0})
    assert lh.shares == pytest.approx({"2026-10": 1 / 31})
    assert lh.hours == pytest.approx(100.0) and lh.missing == ()


def test_months_are_the_plants_local_months() -> None:
    # Shanghai is UTC+8: 2026-10-31T20:00Z is already Nov 1, 04:00 local, and the window's
    # planned time (08:00-16:00 local on Nov 1) is all in November
    cal = DAY_SHIFT.model_copy(update={"timezone": "Asia/Shanghai"})
    lh = labour_hours_in_window(cal, utc(2026, 10, 31, 20), utc(2026, 11, 1, 12), ["2026-11"],
                                {"2026-11": 3000.0})
    assert lh.shares == pytest.approx({"2026-11": 1 / 30}) and lh.hours == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("kWh/standard h", "kWh per standard hour", True),
        ("kWh/std h", "kWh/standard h", True),
        ("KWH / Standard Hours", "kWh/standard h", True),
        ("kg CO₂/kWh", "kg CO2/kWh", True),
        ("kWh/unit", "kWh/standard h", False),
        ("kWh/h", "kWh/standard h", False),
        ("g CO2/kWh", "kg CO2/kWh", False),
    ],
)
def test_unit_spellings(a: str, b: str, same: bool) -> None:
    assert same_unit(a, b) is same
