"""Roll-up rows read from a real InfluxDB 1.6 by a central store (``discover_tags``: other
gateways write them) are kept by version (``InfluxStore._rows_asked``): a read asks for
every row's ``key``, ``reach_ns`` and ``written_ns`` and reads whole only the rows it does
not hold as they are. What is checked: a second read of the same rows is one
small request and gives the same rows; a row written again by another writer (another
process: a second store on the same database) is read anew, a voided one is gone; rows
written without ``written_ns`` (before it existed) are read whole every time; tag ids in
``extra`` are this store's, rewritten only where the writer's differ. (A gateway's own store
knows its rows instead: ``test_influx_rollup_known.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, TagRecord
from store.base import RollupRow
from store.influx import store as influx_store
from store.influx.rollups import elements, rollup_line
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

H = 3600 * 10**9
H0 = 1_780_000_000 // 3600 * 3600 * 10**9
A = "site/area/line1/m1"
KEY = "v1#abc"


def _settings(url: str, tmp_path: Path, name: str) -> InfluxStoreSettings:
    return InfluxStoreSettings(type="influx", api="v1", url=url, database="tierproof",
                               measurement="rc", meta_path=str(tmp_path / f"{name}.db"))


def _row(hour: int, seed: float, tag_id: int) -> RollupRow:
    values = np.arange(len(elements()) + 2, dtype="<f8") + seed
    extra = json.dumps({"tags": [[f"{A}/good", tag_id, "good_count", hour - 5]],
                        "implausible": [["good_count", 1, 2, 3.0, 4.0]]})
    return RollupRow(A, hour, KEY, hour - 7, values.tobytes(), extra)


def _tags(*analog: str) -> list[TagRecord]:
    return [TagRecord(path=f"{A}/{s}", asset=A, role=r, device="plc", protocol="modbus")
            for s, r in (*((a, "analog") for a in analog), ("good", "good_count"))]


def _statements(requests: list[httpx.Request]) -> list[str]:
    return [httpx.QueryParams(r.content.decode())["q"] for r in requests]


def test_rows_are_read_whole_only_when_they_changed(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    with InfluxStore(_settings(influxdb16.url, tmp_path, "reader")) as reader, \
            InfluxStore(_settings(influxdb16.url, tmp_path, "writer")) as writer:
        # the writer numbers the tags otherwise: its ids in extra are not the reader's
        good = reader.register_tags(_tags("temp"))[f"{A}/good"]
        theirs = writer.register_tags(_tags("speed", "temp"))[f"{A}/good"]
        assert theirs != good
        reader.discover_tags([])  # a reader of what gateways write
        rows = [_row(H0 + k * H, k, theirs) for k in range(5)]
        assert writer.put_rollups(rows, writer.rollup_claim(H0 + 5 * H)) == 5
        requests: list[httpx.Request] = []
        reader._http.event_hooks["request"].append(requests.append)

        first = reader.rollups([A], H0, H0 + 5 * H)
        assert [(r.hour_ns, r.data) for r in first] == [(r.hour_ns, r.data) for r in rows]
        assert all(json.loads(r.extra or "")["tags"][0][1] == good for r in first)  # the reader's id
        assert json.loads(first[0].extra or "")["implausible"] == [["good_count", 1, 2, 3.0, 4.0]]
        assert len(requests) == 2 and '"data"' in _statements(requests)[1]
        requests.clear()
        assert reader.rollups([A], H0, H0 + 5 * H) == first
        assert len(requests) == 1 and '"data"' not in _statements(requests)[0]  # versions only

        # hour 2 written again with other data (same key and reach), hour 3 voided by a late write
        again = _row(H0 + 2 * H, 100.0, theirs)
        writer.put_rollups([again], writer.rollup_claim(H0 + 5 * H))
        writer.write(Batch(np.array([theirs], np.int32), np.array([H0 + 3 * H + 1], np.int64),
                           np.array([1.0]), np.array([0], np.uint8)))
        requests.clear()
        got = reader.rollups([A], H0, H0 + 5 * H)
        assert [(r.hour_ns - H0) // H for r in got] == [0, 1, 2]  # 3 and 4 voided
        assert got[2].data == again.data and got[:2] == first[:2]
        assert len(requests) == 2
        keyed = reader.rollups_keyed({A: KEY}, H0, H0 + 5 * H, min_reach_ns=H0 + H - 7)
        assert keyed == {A: [(r.hour_ns, r.reach_ns, r.data, r.extra) for r in got[1:]]}
        assert reader.rollups_keyed({A: "other"}, H0, H0 + 5 * H) == {A: []}

        # the writer's own ids are its own: its extra is handed back as written
        own = writer.rollups([A], H0, H0 + 3 * H)
        assert [r.extra for r in own] == [r.extra for r in (*rows[:2], again)]


def test_rows_without_a_write_stamp_are_read_whole_every_time(influxdb16: InfluxDB16,
                                                              tmp_path: Path) -> None:
    with InfluxStore(_settings(influxdb16.url, tmp_path, "old")) as store:
        good = store.register_tags(_tags("temp"))[f"{A}/good"]
        rows = [_row(H0 + k * H, k, good) for k in range(3)]
        # as a gateway before written_ns wrote them
        store.discover_tags([])
        body = "".join(rollup_line("rc_rollup", r) for r in rows)
        assert "written_ns" not in body
        r = httpx.post(f"{influxdb16.url}/write", params={"db": "tierproof", "precision": "ns"},
                       content=body)
        assert r.status_code == 204, r.text
        requests: list[httpx.Request] = []
        store._http.event_hooks["request"].append(requests.append)
        for _ in range(2):
            requests.clear()
            assert [(g.hour_ns, g.data, g.extra) for g in store.rollups([A], H0, H0 + 3 * H)] == \
                [(w.hour_ns, w.data, w.extra) for w in rows]
            assert len(requests) == 2


def test_rows_beyond_the_bound_are_read_whole_again(influxdb16: InfluxDB16, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``_ROW_CACHE`` rows are held (here 3 of 5): the newest; the others are read
    whole again, and every read gives the same rows."""
    monkeypatch.setattr(influx_store, "_ROW_CACHE", 3)
    with InfluxStore(_settings(influxdb16.url, tmp_path, "bounded")) as store:
        good = store.register_tags(_tags("temp"))[f"{A}/good"]
        rows = [_row(H0 + k * H, k, good) for k in range(5)]
        store.put_rollups(rows, store.rollup_claim(H0 + 5 * H))
        store.discover_tags([])
        requests: list[httpx.Request] = []
        store._http.event_hooks["request"].append(requests.append)
        first = store.rollups([A], H0, H0 + 5 * H)
        assert [r.data for r in first] == [r.data for r in rows]
        assert sorted(h for _, h in store._row_cache) == [H0 + k * H for k in (2, 3, 4)]
        requests.clear()
        assert store.rollups([A], H0, H0 + 5 * H) == first
        whole = _statements(requests)[1]  # hours 0 and 1 only
        assert len(requests) == 2 and f"time <= {H0 + H}" in whole and f"time >= {H0}" in whole


def test_rows_of_the_kpi_service_come_back_as_written_and_decode_with_the_readers_ids(
        influxdb16: InfluxDB16, tmp_path: Path) -> None:
    """A row as ``api.rollups.encode`` writes it names its tags by role code and prior sample
    only (no path, no id): another gateway's row comes back as written (nothing to rewrite)
    and decodes, with the reader's own tags, to the writer's part with the reader's ids."""
    from dataclasses import replace

    from api.rollups import Part, decode_cells, encode
    from config.signals import Role
    from kpi import TagEvidence, TimeElements

    with InfluxStore(_settings(influxdb16.url, tmp_path, "reader")) as reader, \
            InfluxStore(_settings(influxdb16.url, tmp_path, "writer")) as writer:
        good = reader.register_tags(_tags("temp"))[f"{A}/good"]
        theirs = writer.register_tags(_tags("speed", "temp"))[f"{A}/good"]
        assert theirs != good
        part = Part(TimeElements(window_s=3600.0, pbt_s=1800.25, apt_s=1200.5, pq=17.0, gq=15.0,
                                 counter_resets=1, implausible_increases=1, shared_pru_s=None),
                    (TagEvidence(f"{A}/good", theirs, Role.GOOD_COUNT, 12, 1, H0 - 5),),
                    (("good_count", H0 + 1, H0 + 2, 3.0, 4.0),))
        rows = [encode(part, KEY, A, H0 + k * H, H0 - 7) for k in range(2)]
        assert all(f"{A}/" not in (r.extra or "") for r in rows)
        assert writer.put_rollups(rows, writer.rollup_claim(H0 + 2 * H)) == 2
        got = reader.rollups_keyed({A: KEY}, H0, H0 + 2 * H)[A]
        assert [(c[0], c[2], c[3]) for c in got] == [(r.hour_ns, r.data, r.extra) for r in rows]
        mine = {Role(t.role): t for t in reader.tags() if t.path == f"{A}/good"}
        assert mine[Role.GOOD_COUNT].tag_id == good
        ours = (TagEvidence(f"{A}/good", good, Role.GOOD_COUNT, 12, 1, H0 - 5),)
        assert decode_cells(got[:1], mine) == replace(part, tags=ours)
        both = decode_cells(got, mine)  # two hours: counts summed, the first hour's prior
        assert both.tags == (TagEvidence(f"{A}/good", good, Role.GOOD_COUNT, 24, 2, H0 - 5),)
        assert both.elements.pq == 34.0 and len(both.implausible) == 2
