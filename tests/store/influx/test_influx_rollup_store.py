"""Roll-up rows in InfluxDB (``store.influx.rollups``) against a real InfluxDB 1.6, and their
write path to VictoriaMetrics (the v2 write API; it has no InfluxQL to read them back).

Rows are opaque bytes to the store: what is checked is that they come back bit for bit, that
a late or backfilled write voids exactly the hours it touches (and a live one none), that a
row computed across such a write is refused, that this holds across a restart of the writer
and through the spool during an outage, and that a central store learns the tags (with
their enumerations) and the gaps the gateways wrote.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from config.store import InfluxStoreSettings, SpoolSettings
from store import Batch, InfluxStore, SpooledStore, TagRecord
from store.base import RollupRow
from store.influx.rollups import elements
from tests.influx_servers import InfluxDB16, VictoriaMetrics

pytestmark = pytest.mark.influxdb

H = 3600 * 10**9
H0 = 1_780_000_000 // 3600 * 3600 * 10**9  # an hour in 2026
A, B = "site-a/area/line1/m1", "site-b/area/line1/m1"


def settings(url: str, tmp_path: Path, name: str = "meta", **kw: Any) -> InfluxStoreSettings:
    base: dict[str, Any] = {"type": "influx", "api": "v1", "url": url, "database": "tierproof",
                            "meta_path": str(tmp_path / f"{name}.db"), "timeout_s": 2.0}
    base.update(kw)
    return InfluxStoreSettings(**base)


def tags() -> list[TagRecord]:
    enum = {0: "NotExecuting", 2: "Executing"}
    return [TagRecord(path=f"{a}/{sig}", asset=a, role=role, device=f"{a.split('/')[0]}-plc",
                      protocol="modbus", enum=enum if role == "state" else None)
            for a in (A, B) for sig, role in (("state", "state"), ("good", "good_count"))]


def row(asset: str, hour: int, seed: float, key: str = "v1#abc") -> RollupRow:
    values = np.arange(len(elements()) + 4, dtype="<f8") * 0.1 + seed
    values[3] = np.nan  # an element without a value
    extra = json.dumps({"tags": [[f"{asset}/state", 1, "state", hour - 5 * 10**9]]})
    return RollupRow(asset, hour, key, hour - 7 * 10**9, values.tobytes(), extra)


def sample(ids: dict[str, int], path: str, t: int) -> Batch:
    return Batch(np.array([ids[path]], np.int32), np.array([t], np.int64), np.array([2.0]),
                 np.array([0], np.uint8))


def hours(store: InfluxStore, asset: str) -> list[int]:
    return [(r.hour_ns - H0) // H for r in store.rollups([asset], H0 - 10 * H, H0 + 10 * H)]


def test_rows_round_trip_and_late_writes_void_exactly_their_hours(influxdb16: InfluxDB16,
                                                                     tmp_path: Path) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        ids = store.register_tags(tags())
        rows = [row(a, H0 + k * H, k) for a in (A, B) for k in range(6)]
        token = store.rollup_claim(H0 + 6 * H)
        assert store.put_rollups(rows, token) == 12
        back = store.rollups([A, B], H0, H0 + 6 * H)
        assert [(r.asset, r.hour_ns, r.key, r.reach_ns, r.data) for r in back] == \
            [(r.asset, r.hour_ns, r.key, r.reach_ns, r.data) for r in rows]  # bit for bit
        # the tag ids in extra are this store's own (the row said 1)
        assert json.loads(back[0].extra or "")["tags"][0][1] == ids[f"{A}/state"]
        assert store.rollups([A], H0, H0 + 6 * H, key="other") == []
        assert len(store.rollups([A], H0, H0 + 6 * H, min_reach_ns=H0 + 2 * H - 7 * 10**9)) == 4

        # readable fields for other readers: one per element, nulls named, the version
        got = influxdb16.query(f'SELECT * FROM "tierproof_rollup" WHERE "asset" = \'m1\' AND '
                               f'"site" = \'site-a\' AND time = {H0 + 2 * H}', "tierproof")
        series = got["results"][0]["series"][0]  # type: ignore[index]
        point = dict(zip(series["columns"], series["values"][0], strict=True))
        assert point[elements()[0]] == pytest.approx(2.0) and point["nulls"] == elements()[3]
        assert point["algorithm_version"] == "v1" and point["line"] == "line1"

        # a live write (after every claimed hour) voids nothing
        store.write(sample(ids, f"{A}/good", H0 + 6 * H + 5))
        assert hours(store, A) == [0, 1, 2, 3, 4, 5]
        # a late one at 02:30 voids A's hours 2..5 (a row depends on data before its end), not B's
        store.write(sample(ids, f"{A}/good", H0 + 2 * H + H // 2))
        assert hours(store, A) == [0, 1] and hours(store, B) == [0, 1, 2, 3, 4, 5]

        # a row computed across a late write of its asset is refused; the others' are not
        token = store.rollup_claim(H0 + 6 * H)
        store.write(sample(ids, f"{B}/good", H0 + 4 * H))
        assert store.put_rollups([row(A, H0 + 2 * H, 9), row(B, H0 + 4 * H, 9)], token) == 1
        assert hours(store, A) == [0, 1, 2] and hours(store, B) == [0, 1, 2, 3]
        # a recomputed row replaces the void one whole (no field of the old row is left)
        token = store.rollup_claim(H0 + 6 * H)
        assert store.put_rollups([row(B, H0 + 4 * H, 4)], token) == 1
        assert store.rollups([B], H0 + 4 * H, H0 + 5 * H)[0].data == row(B, H0 + 4 * H, 4).data

    # another process on the same metadata (a restart) knows which hours rows may exist for
    with InfluxStore(settings(influxdb16.url, tmp_path)) as again:
        again.write(sample(ids, f"{B}/good", H0 + H + 1))
        assert hours(again, B) == [0]


def test_gaps_opened_or_closed_void_the_hours_of_their_device(influxdb16: InfluxDB16,
                                                                tmp_path: Path) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path)) as store:
        ids = store.register_tags(tags())
        told: list[int] = []
        assert store.changes is not None
        store.changes.subscribe(told.append)
        token = store.rollup_claim(H0 + 6 * H)
        store.put_rollups([row(a, H0 + k * H, k) for a in (A, B) for k in range(6)], token)
        gap = store.open_gap("site-a-plc", H0 + 3 * H + 10, "connection refused")
        assert told[-1] == H0 + 3 * H + 10
        # sent with the next write of samples (a live one here), A's hours from the gap on
        store.write(sample(ids, f"{B}/good", H0 + 7 * H))
        assert hours(store, A) == [0, 1, 2] and hours(store, B) == [0, 1, 2, 3, 4, 5]
        # or before the next rows are put: an asset-scoped gap of B, closed
        gap = store.open_gap("site-b-plc", H0 + 4 * H, "offline", asset=B)
        store.close_gap(gap, H0 + 4 * H + 60)
        token = store.rollup_claim(H0 + 6 * H)
        assert store.put_rollups([row(A, H0 + 3 * H, 3)], token) == 1
        assert hours(store, A) == [0, 1, 2, 3] and hours(store, B) == [0, 1, 2, 3]


def test_voids_go_through_the_spool_during_an_outage(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    spool = SpoolSettings(path=str(tmp_path / "spool"))
    inner = InfluxStore(settings(influxdb16.url, tmp_path))
    store = SpooledStore.open(inner, spool)
    try:
        ids = store.register_tags(tags())
        told: list[int] = []
        store.changes.subscribe(told.append)
        token = store.rollup_claim(H0 + 3 * H)
        store.put_rollups([row(A, H0 + k * H, k) for k in range(3)], token)
        influxdb16.stop()
        store.write(sample(ids, f"{A}/good", H0 + H + 10))  # spooled: nothing is lost
        assert store.spool_stats()["points"] == 1
        influxdb16.start()
        assert store.wait_drained(30.0)
        assert hours(inner, A) == [0]  # the drain carried the voids with the sample
        assert told[-1] == H0 + H + 10  # and told the maintainer where to compute again
    finally:
        store.close()


def test_central_store_learns_tags_and_gaps_and_writes_no_rows(influxdb16: InfluxDB16,
                                                               tmp_path: Path) -> None:
    with InfluxStore(settings(influxdb16.url, tmp_path, "gateway")) as gw:
        ids = gw.register_tags(tags())
        gw.write(sample(ids, f"{A}/good", H0))  # the register goes after a write of samples
        gap = gw.open_gap("site-a-plc", H0 + H, "connection refused")
        gw.close_gap(gap, H0 + H + 60 * 10**9)
        gw.open_gap("site-b-plc", H0 + 2 * H, "timeout", asset=B)
    with InfluxStore(settings(influxdb16.url, tmp_path, "central")) as central:
        assert central.tags() == []
        assert central.discover_tags([A, "nowhere/x/y/z"]) == 2  # A's tags only
        got = {t.path: t for t in central.tags()}
        assert sorted(got) == [f"{A}/good", f"{A}/state"]
        assert got[f"{A}/state"].enum == {0: "NotExecuting", 2: "Executing"}
        assert got[f"{A}/state"].device == "site-a-plc" and got[f"{A}/good"].role == "good_count"
        assert central.changes is None  # others write here: nothing may be cached over it
        (g,) = central.gaps("site-a-plc", H0, H0 + 3 * H)
        assert (g.start_ns, g.end_ns, g.reason, g.asset) == (H0 + H, H0 + H + 60 * 10**9,
                                                             "connection refused", None)
        assert central.gaps("site-a-plc", H0 + 2 * H, H0 + 3 * H) == []  # ended before
        (g,) = central.gaps("site-b-plc", H0, H0 + 3 * H)
        assert g.end_ns is None and g.asset == B
        with pytest.raises(Exception, match="central store reads roll-ups"):
            central.put_rollups([row(A, H0, 0)], central.rollup_claim(H0 + H))


def test_rows_reach_victoria_metrics_over_the_v2_write_api(victoria_metrics: VictoriaMetrics,
                                                            tmp_path: Path) -> None:
    s = InfluxStoreSettings(type="influx", api="v2", url=victoria_metrics.url, token=SecretStr("t"),
                            org="plant", bucket="tierproof", meta_path=str(tmp_path / "m.db"))
    now_h = time.time_ns() // H * H - 2 * H
    with InfluxStore(s) as store:
        ids = store.register_tags(tags())
        token = store.rollup_claim(now_h + 2 * H)
        assert store.put_rollups([row(A, now_h, 1.0), row(A, now_h + H, 2.0)], token) == 2
        store.write(sample(ids, f"{A}/good", now_h + H + 5))  # a late write still goes through
    metric = f"tierproof_rollup_{elements()[1]}"
    deadline = time.monotonic() + 30
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        victoria_metrics.force_flush()
        r = httpx.get(f"{victoria_metrics.url}/api/v1/export", params={"match[]": metric})
        lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
        time.sleep(0.25)
    (series,) = lines
    assert series["metric"] | {"site": "site-a", "area": "area", "line": "line1", "asset": "m1"} \
        == series["metric"]
    assert series["timestamps"] == [now_h // 10**6, (now_h + H) // 10**6]
    assert series["values"] == [pytest.approx(1.1), pytest.approx(2.1)]
