"""The ``rollups`` table: opaque rows per asset and hour, dropped in the transaction of any
change to the asset's data before the hour's end, and never put back from a computation that
such a change overtook."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import Batch, SqliteStore, TagRecord
from store.base import RollupRow

H = 3600 * 10**9
T0 = 1_800_000_000 * 10**9 // H * H
TAGS = [TagRecord("s/a/l/m1/x", "s/a/l/m1", "state", "plc1", "modbus"),
        TagRecord("s/a/l/m2/x", "s/a/l/m2", "state", "plc1", "modbus"),
        TagRecord("s/a/l/m3/x", "s/a/l/m3", "state", "plc2", "modbus")]
ASSETS = ["s/a/l/m1", "s/a/l/m2", "s/a/l/m3"]


def rows(hours: range) -> list[RollupRow]:
    return [RollupRow(a, T0 + h * H, "k1", T0 + h * H - 5, bytes([h]), None) for a in ASSETS for h in hours]


def held(s: SqliteStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {a: [] for a in ASSETS}
    for r in s.rollups(ASSETS, T0 - 100 * H, T0 + 100 * H):
        out[r.asset].append((r.hour_ns - T0) // H)
    return out


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "r.db")
    s.register_tags(TAGS)
    s.write(Batch.of([1, 2, 3], [T0, T0, T0], [1.0, 1.0, 1.0]))
    token = s.rollup_claim(T0 + 10 * H)
    assert s.put_rollups(rows(range(10)), token) == 30
    return s


def test_rows_round_trip_and_survive_reopening(store: SqliteStore, tmp_path: Path) -> None:
    (r,) = store.rollups(["s/a/l/m2"], T0 + 3 * H, T0 + 4 * H)
    assert r == RollupRow("s/a/l/m2", T0 + 3 * H, "k1", T0 + 3 * H - 5, bytes([3]), None)
    store.close()
    with SqliteStore(tmp_path / "r.db") as again:
        assert held(again) == {a: list(range(10)) for a in ASSETS}


def test_late_sample_drops_its_assets_hours_from_its_own(store: SqliteStore) -> None:
    # m2's sample at 4 h 30 min: m2's hours 4.. go (hour 4 holds it; later hours carry it)
    store.write(Batch.of([2, 1], [T0 + 4 * H + H // 2, T0 + 20 * H], [2.0, 2.0]))
    assert held(store) == {"s/a/l/m1": list(range(10)), "s/a/l/m2": [0, 1, 2, 3],
                           "s/a/l/m3": list(range(10))}
    store.close()  # the flush into chunks drops nothing more
    assert True


def test_live_writes_touch_nothing(store: SqliteStore) -> None:
    store.write(Batch.of([1, 2, 3], [T0 + 10 * H] * 3, [3.0] * 3))
    assert held(store) == {a: list(range(10)) for a in ASSETS}


def test_gaps_drop_their_devices_or_assets_hours(store: SqliteStore) -> None:
    g = store.open_gap("plc2", T0 + 8 * H + 1, "down")
    assert held(store)["s/a/l/m3"] == list(range(8))
    store.close_gap(g, T0 + 9 * H)
    store.open_gap("plc1", T0 + 6 * H, "node", asset="s/a/l/m1")
    assert held(store) == {"s/a/l/m1": list(range(6)), "s/a/l/m2": list(range(10)),
                           "s/a/l/m3": list(range(8))}


def test_changed_tags_drop_everything(store: SqliteStore) -> None:
    store.register_tags(TAGS)  # unchanged: nothing
    assert held(store)["s/a/l/m1"] == list(range(10))
    store.register_tags([TagRecord("s/a/l/m1/x", "s/a/l/m1", "mode", "plc1", "modbus")])
    assert held(store) == {a: [] for a in ASSETS}


def test_a_computation_overtaken_by_a_change_is_not_put(store: SqliteStore) -> None:
    token = store.rollup_claim(T0 + 20 * H)
    # while rows of hours 10..19 are computed from a snapshot, m1 gets a sample at 15 h
    store.write(Batch.of([1], [T0 + 15 * H], [5.0]))
    assert store.put_rollups(rows(range(10, 20)), token) == 30 - 5
    got = held(store)
    assert got["s/a/l/m1"] == list(range(15)) and got["s/a/l/m2"] == list(range(20))


def test_retention_drops_rows_reaching_before_its_horizon(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "ret.db", retention_days=1) as s:
        s.register_tags(TAGS)
        s.write(Batch.of([1, 1], [T0, T0 + 30 * H], [1.0, 2.0]))
        token = s.rollup_claim(T0 + 10 * H)
        s.put_rollups(rows(range(10)), token)
        stale = s.rollup_claim(T0 + 10 * H)
        s.apply_retention(T0 + 24 * H + 3 * H)  # horizon T0 + 3 h
        # hour 3 reaches back 5 ns before the horizon: gone too
        assert held(s)["s/a/l/m1"] == [4, 5, 6, 7, 8, 9]
        assert s.put_rollups(rows(range(3)), stale) == 0
