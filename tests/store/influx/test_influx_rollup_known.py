"""A gateway's InfluxDB store knows its own roll-up rows (``InfluxStore._known_rows``) against
a real InfluxDB 1.6: it is their only writer, so it answers from what it read and has kept up
to date by its own puts and voids, and asks InfluxDB only for the hours it does not know.

What is checked: a second read of the same rows asks nothing, a wider window asks only for
its new hours, in one request; a put is seen without asking; a late write voids the held rows
of the hours it touches, and a gap opened voids them at once, before its voids are even sent;
a put or a write that failed (and may have landed in part), and a put refused, make their
hours asked again; at most ``_KNOWN_SLOTS`` hours are held, a wider window asked as a central
store asks; a void
landing while a read is answered does not leave the read's older answer known; what was
learned is asked again after ``_RECHECK_NS`` (a second writer, misconfigured, is seen then);
every answer equals a fresh store's (that reads everything from InfluxDB); a central store,
and one that wrote nothing (a reader of the gateway's data in another process), still ask at
every read; and the KPIs of a late-written week equal the raw computation's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from config.errors import SinkUnavailable
from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, TagRecord
from store.base import RollupRow
from store.influx import store as influx_store
from store.influx.rollups import elements
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

H = 3600 * 10**9
H0 = 1_780_000_000 // 3600 * 3600 * 10**9
A, B = "site/area/line1/m1", "site/area/line1/m2"
KEY = "v1#abc"


def _settings(url: str, tmp_path: Path, name: str) -> InfluxStoreSettings:
    return InfluxStoreSettings(type="influx", api="v1", url=url, database="tierproof",
                               measurement="kn", meta_path=str(tmp_path / f"{name}.db"))


def _tags() -> list[TagRecord]:
    return [TagRecord(path=f"{a}/{s}", asset=a, role=r, device=f"plc-{a[-1]}", protocol="modbus")
            for a in (A, B) for s, r in (("state", "state"), ("good", "good_count"))]


def _row(asset: str, hour: int, seed: float, key: str = KEY) -> RollupRow:
    values = np.arange(len(elements()) + 2, dtype="<f8") + seed
    extra = json.dumps({"tags": [[0, hour - 5]], "seed": seed})
    return RollupRow(asset, hour, key, hour - 7, values.tobytes(), extra)


def _sample(ids: dict[str, int], path: str, t: int) -> Batch:
    return Batch(np.array([ids[path]], np.int32), np.array([t], np.int64), np.array([1.0]),
                 np.array([0], np.uint8))


def _statements(requests: list[httpx.Request]) -> list[str]:
    return [s for r in requests for s in httpx.QueryParams(r.content.decode())["q"].split(";")]


@pytest.fixture
def gateway(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[tuple[InfluxStore, dict[str, int],
                                                                     list[httpx.Request]]]:
    """A gateway's store holding rows of hours 0-4 of A and B (read once), and its requests."""
    with InfluxStore(_settings(influxdb16.url, tmp_path, "gateway")) as store:
        ids = store.register_tags(_tags())
        rows = [_row(a, H0 + k * H, k + (10 if a == B else 0)) for a in (A, B) for k in range(5)]
        assert store.put_rollups(rows, store.rollup_claim(H0 + 5 * H)) == 10
        requests: list[httpx.Request] = []
        store._http.event_hooks["request"].append(requests.append)
        yield store, ids, requests


def _fresh(influxdb16: InfluxDB16, tmp_path: Path, keys: dict[str, str | None], start: int,
           end: int) -> dict[str, list[RollupRow]]:
    """The rows as a store that knows nothing (it wrote nothing) reads them from InfluxDB."""
    name = f"fresh{len(list(tmp_path.iterdir()))}"
    with InfluxStore(_settings(influxdb16.url, tmp_path, name)) as fresh:
        fresh.register_tags(_tags())
        return fresh._rows(keys, start, end, None)


def test_held_rows_are_not_asked_again_and_new_hours_in_one_request(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path) -> None:
    store, _, requests = gateway
    first = store.rollups([A, B], H0, H0 + 5 * H)
    assert [(r.asset, (r.hour_ns - H0) // H) for r in first] == \
        [(a, k) for a in (A, B) for k in range(5)]
    assert len(requests) == 1 and len(_statements(requests)) == 2  # a statement per asset
    requests.clear()
    assert store.rollups([A, B], H0, H0 + 5 * H) == first
    keyed = store.rollups_keyed({A: KEY, B: KEY}, H0 + H, H0 + 4 * H, min_reach_ns=H0 + 2 * H - 7)
    assert keyed == {a: [(r.hour_ns, r.reach_ns, r.data, r.extra) for r in first
                         if r.asset == a and H0 + 2 * H <= r.hour_ns < H0 + 4 * H] for a in (A, B)}
    assert store.rollups_keyed({A: "other"}, H0, H0 + 5 * H) == {A: []}
    assert requests == []  # all known: nothing asked

    # two hours more: only they are asked for, in one request; then they are known (empty)
    wider = store.rollups_keyed({A: KEY, B: KEY}, H0, H0 + 7 * H)
    assert len(requests) == 1
    stmts = _statements(requests)
    assert len(stmts) == 2 and all(f"time >= {H0 + 5 * H} AND time < {H0 + 7 * H}" in s
                                   for s in stmts), stmts
    assert wider == {a: [(r.hour_ns, r.reach_ns, r.data, r.extra) for r in first if r.asset == a]
                     for a in (A, B)}
    requests.clear()
    assert store.rollups_keyed({A: KEY, B: KEY}, H0, H0 + 7 * H) == wider
    assert requests == []

    # a put is seen at once, as a fresh store reads it; the window's answer unasked
    new = [_row(A, H0 + 5 * H, 50.0), _row(A, H0 + 2 * H, 20.0)]
    assert store.put_rollups(new, store.rollup_claim(H0 + 6 * H)) == 2
    requests.clear()
    got = store._rows({A: KEY, B: None}, H0, H0 + 7 * H, None)
    assert requests == []
    assert [r.data for r in got[A]] == [r.data for r in (*first[:2], new[1], *first[3:5], new[0])]
    assert got == _fresh(influxdb16, tmp_path, {A: KEY, B: None}, H0, H0 + 7 * H)

    # a window of more hours than it keeps is asked as a central store asks, and the same
    every = store.rollups([A, B], -(2**62), 2**62)
    assert every == got[A] + got[B] and requests


def test_a_late_write_voids_held_rows_and_a_gap_at_once(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path) -> None:
    store, ids, requests = gateway
    keys: dict[str, str | None] = {A: KEY, B: KEY}
    first = store._rows(keys, H0, H0 + 5 * H, None)
    requests.clear()
    # a late sample of A in hour 3: A's rows of hours 3 and 4 are voided (in the write's request)
    store.write(_sample(ids, f"{A}/good", H0 + 3 * H + 1))
    got = store._rows(keys, H0, H0 + 5 * H, None)
    assert requests == []  # known: nothing asked
    assert got == {A: first[A][:3], B: first[B]}
    assert got == _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)

    # a gap of B's device from hour 1: B's rows of hours 1-4 are stale from that moment, though
    # their voids wait for the next write or put; what a read learns meanwhile leaves them out
    store.open_gap("plc-2", H0 + H + 5, "timeout")
    requests.clear()
    assert store._rows(keys, H0, H0 + 5 * H, None) == {A: first[A][:3], B: first[B][:1]}
    assert requests == []
    assert len(_fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)[B]) == 5  # not voided yet
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(influx_store, "_RECHECK_NS", -1)  # all asked again: B's rows still there
        assert store._rows(keys, H0, H0 + 5 * H, None) == {A: first[A][:3], B: first[B][:1]}
        assert len(requests) == 1
    # the voids go with the next write (here a live one): InfluxDB then says the same
    store.write(_sample(ids, f"{A}/good", H0 + 9 * H))
    assert _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H) == {A: first[A][:3], B: first[B][:1]}
    requests.clear()
    assert store._rows(keys, H0, H0 + 5 * H, None) == {A: first[A][:3], B: first[B][:1]}
    assert requests == []


def test_a_post_that_failed_makes_its_hours_asked_again(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A post that InfluxDB took but whose answer was lost (injected: the body is posted, then
    the connection 'fails'): the store cannot know what landed, so it asks."""
    store, ids, requests = gateway
    keys: dict[str, str | None] = {A: KEY, B: KEY}
    store._rows(keys, H0, H0 + 5 * H, None)
    real = store._sink.post

    def lost(body: bytes) -> int:
        real(body)
        raise SinkUnavailable("answer lost (injected)")

    monkeypatch.setattr(store._sink, "post", lost)
    new = _row(A, H0 + H, 99.0)
    with pytest.raises(SinkUnavailable):
        store.put_rollups([new], store.rollup_claim(H0 + 5 * H))
    requests.clear()
    got = store._rows(keys, H0, H0 + 5 * H, None)
    assert got[A][1].data == new.data  # landed, and read
    stmts = _statements(requests)
    assert len(requests) == 1 and len(stmts) == 1 and f"time >= {H0 + H} AND time < {H0 + 2 * H}" in stmts[0]
    assert got == _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)

    # a write whose voids (in the request after its samples' lanes) may have landed
    monkeypatch.setattr(store._sink, "post_lanes", lambda lanes: (_ for _ in ()).throw(
        SinkUnavailable("down (injected)")))
    with pytest.raises(SinkUnavailable):
        store.write(_sample(ids, f"{B}/good", H0 + 4 * H + 1))
    requests.clear()
    assert store._rows(keys, H0, H0 + 5 * H, None) == got  # nothing landed: B's hour 4 asked
    assert len(requests) == 1 and f"time >= {H0 + 4 * H}" in _statements(requests)[0]


def test_a_void_landing_while_a_read_is_answered_is_not_undone(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's answer predates the late write (injected order: the write lands between
    InfluxDB's answer and the store taking it in): the read hands its rows back, as a read
    just before the write would, but does not keep them as known."""
    store, ids, requests = gateway
    keys: dict[str, str | None] = {A: KEY}
    query = store._query
    writes = [_sample(ids, f"{A}/good", H0 + 2 * H + 1)]

    def answered_then_written(statements: Any) -> Any:
        got = query(statements)
        while writes:
            store.write(writes.pop())
        return got

    monkeypatch.setattr(store, "_query", answered_then_written)
    before = store._rows(keys, H0, H0 + 5 * H, None)
    assert len(before[A]) == 5 and not writes
    monkeypatch.undo()
    requests.clear()
    got = store._rows(keys, H0, H0 + 5 * H, None)
    assert got == {A: before[A][:2]} == _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)
    assert len(requests) == 1  # asked again: what the older answer said was not kept

    # B's hours 1-4 stale by a gap, their voids sent (with a live write) while a read of B,
    # begun after the gap, is answered: the read leaves them out, whichever it was told
    store.open_gap("plc-2", H0 + H + 5, "timeout")
    writes.append(_sample(ids, f"{A}/good", H0 + 9 * H))
    monkeypatch.setattr(store, "_query", answered_then_written)
    raced = store._rows({B: KEY}, H0, H0 + 5 * H, None)
    assert not writes and [r.hour_ns for r in raced[B]] == [H0]
    monkeypatch.undo()
    assert store._rows({B: KEY}, H0, H0 + 5 * H, None) == raced == \
        _fresh(influxdb16, tmp_path, {B: KEY}, H0, H0 + 5 * H)


def test_what_was_learned_is_asked_again_after_a_while_and_central_stores_ask_always(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, requests = gateway
    keys: dict[str, str | None] = {A: KEY, B: KEY}
    first = store._rows(keys, H0, H0 + 5 * H, None)
    # a second writer of A (misconfigured: the gateway owns A) writes hour 2 anew
    with InfluxStore(_settings(influxdb16.url, tmp_path, "second")) as second:
        second.register_tags(_tags())
        other = _row(A, H0 + 2 * H, 77.0)
        assert second.put_rollups([other], second.rollup_claim(H0 + 5 * H)) == 1
    requests.clear()
    assert store._rows(keys, H0, H0 + 5 * H, None) == first  # not seen yet: not asked
    assert requests == []
    monkeypatch.setattr(influx_store, "_RECHECK_NS", -1)  # as if 10 minutes had passed
    got = store._rows(keys, H0, H0 + 5 * H, None)
    assert got[A][2].data == other.data and len(requests) == 1
    assert got == _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)
    monkeypatch.undo()

    # a central store (reader of gateways' rows), and a store that wrote nothing (``tierproof
    # serve`` over the gateway's configuration: another process writes the rows), ask for the
    # rows' versions at every read
    for name in ("central", "serve"):
        with InfluxStore(_settings(influxdb16.url, tmp_path, name)) as reader:
            reader.register_tags(_tags())
            if name == "central":
                reader.discover_tags([])
            asked: list[httpx.Request] = []
            reader._http.event_hooks["request"].append(asked.append)
            for _ in range(2):
                asked.clear()
                assert reader._rows(keys, H0, H0 + 5 * H, None) == got
                assert len(asked) >= 1 and '"written_ns"' in _statements(asked)[0]


NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)


def test_kpis_after_a_late_write_equal_the_raw_computation(influxdb16: InfluxDB16,
                                                           tmp_path: Path) -> None:
    """The demo plant's last 30 hours on a gateway's InfluxDB store, rolled up, read with
    roll-ups (the rows then known); a late state sample in a rolled hour: the next call with
    roll-ups asks InfluxDB for no row, and equals the call from raw samples and a fresh store's."""
    from api.gateway import tag_records
    from api.rollups import RollupMaintainer
    from api.service import KpiService
    from config.times import to_ns
    from simulators import Plant
    from tests.helpers import shift_demo_settings

    settings = shift_demo_settings()
    start, end = NOW - timedelta(hours=20, minutes=13), NOW - timedelta(minutes=4)
    with InfluxStore(_settings(influxdb16.url, tmp_path, "plant")) as store:
        ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(
                ids, to_ns(NOW - timedelta(hours=30)), to_ns(NOW)):
            store.write(batch)
        rolled = KpiService(settings, store, rollups=True)
        assert RollupMaintainer(rolled, backfill_days=1, clock_ns=lambda: to_ns(NOW)).run_once() > 0
        before = KpiService(settings, store, rollups=True).kpis(start, end)
        assert min(a["rollups"]["from_rollups"] for a in before["assets"].values()) > 0

        # a late state sample of the first asset, 10 hours back: a state it was not in
        state = next(t for t in store.tags() if t.role == "state")
        at = to_ns(NOW - timedelta(hours=10))
        was = store.read(state.tag_id, at, at + 1)
        code = next(c for c in sorted(state.enum or {}) if c != int(was.value[-1]))
        store.write(Batch(np.array([state.tag_id], np.int32), np.array([at], np.int64),
                          np.array([float(code)]), np.array([0], np.uint8)))
        requests: list[httpx.Request] = []
        store._http.event_hooks["request"].append(requests.append)
        got = KpiService(settings, store, rollups=True).kpis(start, end)
        assert not any("_rollup" in s for s in _statements(requests))  # rows: all known
        raw = KpiService(settings, store, rollups=False).kpis(start, end)
    with InfluxStore(_settings(influxdb16.url, tmp_path, "plant")) as fresh:
        again = KpiService(settings, fresh, rollups=True).kpis(start, end)
    assert got["assets"][state.asset] != before["assets"][state.asset]
    for answer in (raw, again):  # roll-ups equal raw to 1e-9 relative (docs/kpis.md)
        for path, asset in got["assets"].items():
            other = answer["assets"][path]
            pairs = [(n, asset[n], other[n]) for n in ("oee", "availability", "effectiveness",
                                                       "quality_ratio")]
            pairs += [(n, v, other["elements"][n]) for n, v in asset["elements"].items()]
            for name, x, y in pairs:
                assert (x is None and y is None) or abs(x - y) <= 1e-9 * max(1.0, abs(y)), \
                    (path, name, x, y)


def test_a_refused_put_makes_its_hours_asked_and_the_bound_holds(
        gateway: tuple[InfluxStore, dict[str, int], list[httpx.Request]],
        influxdb16: InfluxDB16, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, requests = gateway
    keys: dict[str, str | None] = {A: KEY, B: KEY}
    store._rows(keys, H0, H0 + 5 * H, None)
    token = store.rollup_claim(H0 + 5 * H)  # a computation starts; a late write of A's hour 3
    store.write(_sample(ids, f"{A}/good", H0 + 3 * H + 1))
    again = [_row(A, H0 + k * H, 30.0 + k) for k in (1, 3, 4)]
    assert store.put_rollups(again, token) == 1  # hours 3 and 4 refused
    requests.clear()
    got = store._rows(keys, H0, H0 + 5 * H, None)
    stmts = _statements(requests)
    assert len(requests) == 1 and len(stmts) == 1, stmts  # A's hours 3-4 only
    assert f"time >= {H0 + 3 * H} AND time < {H0 + 5 * H}" in stmts[0]
    assert [r.data for r in got[A]] == [got[A][0].data, again[0].data, got[A][2].data]
    assert got == _fresh(influxdb16, tmp_path, keys, H0, H0 + 5 * H)

    # at most _KNOWN_SLOTS (asset, hour) slots, the last learned; a wider window asks as a
    # central store asks (the rows' versions)
    monkeypatch.setattr(influx_store, "_KNOWN_SLOTS", 6)
    with InfluxStore(_settings(influxdb16.url, tmp_path, "bounded")) as bounded:
        bounded.register_tags(_tags())
        bounded.rollup_claim(H0)  # a writer of rows (a gateway's maintainer claims first)
        asked: list[httpx.Request] = []
        bounded._http.event_hooks["request"].append(asked.append)
        assert bounded._rows(keys, H0, H0 + 5 * H, None) == got  # 10 slots
        assert '"written_ns"' in _statements(asked)[0] and not bounded._known
        for a, b in ((0, 3), (2, 5), (0, 3)):  # 6 slots each
            asked.clear()
            assert bounded._rows(keys, H0 + a * H, H0 + b * H, None) == \
                {x: [r for r in got[x] if H0 + a * H <= r.hour_ns < H0 + b * H] for x in keys}
            assert len(asked) == 1 and len(bounded._known) == 6
