"""config.times: the one home of time conversions, checked against hand-written instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config.times import (
    NS_MAX,
    NonexistentTime,
    datetime_ns,
    epoch_ns,
    iso,
    parse_instant,
    to_ns,
    valid_ns,
    zone,
)

S = 1_000_000_000


@pytest.mark.parametrize(("dt", "ns"), [
    (datetime(1970, 1, 1, tzinfo=UTC), 0),
    (datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), 1_700_000_000 * S),
    (datetime(2023, 11, 14, 22, 13, 20, 999_999, tzinfo=UTC), 1_700_000_000 * S + 999_999_000),
    (datetime(2023, 11, 15, 6, 13, 20, tzinfo=timezone(timedelta(hours=8))), 1_700_000_000 * S),
    (datetime(2023, 11, 14, 22, 13, 20), 1_700_000_000 * S),  # naive is UTC
    (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), -S),
])
def test_epoch_ns_is_exact(dt: datetime, ns: int) -> None:
    assert epoch_ns(dt) == ns


@pytest.mark.parametrize("dt", [
    datetime(1601, 1, 1),  # OPC UA's null date, as node-opcua sends ServerTimestamp 0
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2262, 4, 11, 23, 47, 16, 854_776, tzinfo=UTC),  # 1 µs past int64 ns
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))),  # leaves datetime's range in UTC
])
def test_out_of_range_is_unknown_for_protocols_and_an_error_for_windows(dt: datetime) -> None:
    assert datetime_ns(dt) is None
    with pytest.raises(ValueError, match=r"outside 1970-01-01\.\.2262-04-11"):
        to_ns(dt)


def test_the_last_representable_instant() -> None:
    last = datetime(2262, 4, 11, 23, 47, 16, 854_775, tzinfo=UTC)
    assert datetime_ns(last) == NS_MAX - 807 and to_ns(last) == NS_MAX - 807


@pytest.mark.parametrize(("ns", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (1_700_000_000 * S + 123_456_789, "2023-11-14T22:13:20.123456Z"),
    # 1_700_000_000.999999999 s is 1_700_000_001.0 as a float: the old formatter printed the
    # next second; the exact one truncates to the microsecond
    (1_700_000_000 * S + 999_999_999, "2023-11-14T22:13:20.999999Z"),
    (None, None),
])
def test_iso_is_exact(ns: int | None, text: str | None) -> None:
    assert iso(ns) == text


def test_iso_timespec() -> None:
    assert iso(1_700_000_000 * S + 999_999_999, timespec="seconds") == "2023-11-14T22:13:20Z"


def test_valid_ns_masks_unknown_columns() -> None:
    ns = np.array([0, -1, 5, np.iinfo(np.int64).min], dtype=np.int64)
    assert valid_ns(ns).tolist() == [True, False, True, False]


@pytest.mark.parametrize(("text", "zone", "utc"), [
    ("2026-12-05", "Asia/Shanghai", "2026-12-04T16:00:00Z"),  # a date: local midnight
    ("2026-12-05T06:00", "Asia/Shanghai", "2026-12-04T22:00:00Z"),
    ("2026-12-05T06:00:00Z", "Asia/Shanghai", "2026-12-05T06:00:00Z"),  # an offset wins
    ("2026-10-25T02:30", "Europe/Berlin", "2026-10-25T00:30:00Z"),  # read twice: the earlier
    ("2026-03-29", "Europe/Berlin", "2026-03-28T23:00:00Z"),
    # Santiago skips midnight (2026-09-06 00:00 -> 01:00): the day starts at the jump
    ("2026-09-06", "America/Santiago", "2026-09-06T04:00:00Z"),
    ("2026-12-05", None, "2026-12-05T00:00:00Z"),  # no zone: UTC
])
def test_times_without_an_offset_are_local(text: str, zone: str | None, utc: str) -> None:
    at = parse_instant(text, tz=None if zone is None else ZoneInfo(zone))
    assert iso(to_ns(at)) == utc


def test_a_skipped_local_time_is_refused_naming_the_jump() -> None:
    with pytest.raises(NonexistentTime, match=r"2026-03-29T02:30:00 does not exist in "
                                               r"Europe/Berlin: its clocks jump from 02:00:00 to 03:00:00"):
        parse_instant("2026-03-29T02:30", tz=ZoneInfo("Europe/Berlin"))


def test_iso_in_a_zone_carries_the_offset() -> None:
    ns = to_ns(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    assert iso(ns, tz=ZoneInfo("Europe/Berlin")) == "2026-10-25T02:30:00+02:00"
    assert iso(ns + 3600 * S, tz=ZoneInfo("Europe/Berlin")) == "2026-10-25T02:30:00+01:00"


@pytest.mark.parametrize("name", ["Mars/Olympus", "America", "../etc/passwd", "a" * 300, "", "zone.tab"])
def test_zone_refuses_what_is_not_a_zone_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        zone(name)
