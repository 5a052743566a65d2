"""config.times: the one home of time conversions, checked against hand-written instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from config.times import NS_MAX, datetime_ns, epoch_ns, iso, to_ns, valid_ns

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
