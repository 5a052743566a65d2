"""Live writes after the roll-ups' closed hours take the store's plain path (issue 12).

The maintainer's claim tells the store which writes may touch a row: a write at or after the
claimed end is live ingest (one autocommit INSERT), one before it a late write (a transaction
that deletes the rows it touches). The head row of the local day in progress rests on data
before its end, which is at or before the closed hours' end; claiming the local day's end
instead sent every live write until midnight down the late path, which deleted that head row,
and the next pass computed it again (docs/benchmarks.md, "Roll-up maintenance during ingest").

The demo plant's SQLite store, 1 h before a local (Shanghai) midnight to 09:17 local, rolled
up by ``RollupMaintainer`` (real store, real computation, no fakes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from api.gateway import tag_records
from api.rollups import HEAD, HOUR_NS, RollupMaintainer, head_slot, keyed_rows, local_day_edges
from api.service import KpiService
from config import Settings
from config.times import to_ns
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.integration.test_rollup_read import assert_same

NOW = datetime(2026, 11, 18, 1, 17, 23, tzinfo=UTC)  # 09:17:23 in Shanghai
FIRST = datetime(2026, 11, 17, 15, 0, 0, tzinfo=UTC)  # 23:00 the evening before


def heads(service: KpiService, day_end: int) -> dict[str, tuple[int, bytes]]:
    """asset -> (its head row's end, data) of the local day ending at ``day_end``."""
    store = service.store
    out: dict[str, tuple[int, bytes]] = {}
    for asset in service.settings.assets:
        key = service.rollup_key(asset, service._tags_by_asset()[asset.path])
        for c in keyed_rows(store, {asset.path: key + HEAD}, head_slot(day_end),
                            head_slot(day_end) + 1).get(asset.path, []):
            out[asset.path] = (int(json.loads(c[3] or "{}")["end"]), c[2])
    return out


def test_live_writes_keep_the_head_of_the_day_in_progress(tmp_path: Path, settings: Settings) -> None:
    with SqliteStore(tmp_path / "live.db") as store:
        tag_ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(tag_ids, to_ns(FIRST), to_ns(NOW)):
            store.write(batch)
        rolled = KpiService(settings, store, rollups=True)
        raw = KpiService(settings, store, rollups=False)
        m = RollupMaintainer(rolled, settle_s=300, backfill_days=None, clock_ns=lambda: to_ns(NOW))
        assert m.run_once() > 0
        assert m.run_once() == 0
        end = m.closed_end()
        ((midnight, day_end),) = local_day_edges(settings.calendar.timezone, to_ns(FIRST), to_ns(NOW)
                                                 + 86_400 * 10**9)[:1]
        assert midnight < end < day_end  # the day in progress
        before = heads(rolled, day_end)
        assert before and all(midnight < e <= end for e, _ in before.values()), before

        # live ingest: every tag's value in force, 1 s after now (after the closed hours)
        got = store.read_many(sorted(tag_ids.values()), to_ns(NOW), to_ns(NOW), prior=True)
        held = {t: s for t, s in got.items() if len(s.value)}
        ids = np.array(sorted(held), np.int32)
        values = np.array([float(held[int(t)].value[-1]) for t in ids])
        at = to_ns(NOW) + 10**9
        store.write(Batch(ids, np.full(len(ids), at, np.int64), values, np.zeros(len(ids), np.uint8)))
        assert heads(rolled, day_end) == before  # the live write touched no row
        assert m.lag_s() == 0  # nor re-opened an hour: the watermark stays at the closed end
        assert m.run_once() == 0  # so the next pass has nothing to compute again
        for asset in list(before)[:3]:  # a window from midnight reads the head row, as raw
            assert_same(rolled, raw, asset, midnight, at + 1)

        # a late write (inside the last closed hour) still drops what it touches, its asset's only
        tag = next(t for t in store.tags() if t.asset in before and t.role == "total_count")
        late_asset = tag.asset
        t_late = end - 60 * 10**9
        v = float(store.read(tag.tag_id, t_late, t_late, prior=True).value[-1])
        store.write(Batch(np.array([tag.tag_id], np.int32), np.array([t_late], np.int64),
                          np.array([v]), np.zeros(1, np.uint8)))
        key = rolled.rollup_key(settings.asset(late_asset), rolled._tags_by_asset()[late_asset])
        assert keyed_rows(store, {late_asset: key}, end - HOUR_NS, end) == {}
        after = heads(rolled, day_end)
        assert late_asset not in after
        assert after == {a: v for a, v in before.items() if a != late_asset}
        assert m.run_once() >= 2  # its last closed hour and its head, again
        assert heads(rolled, day_end)[late_asset][0] == before[late_asset][0]
        assert_same(rolled, raw, late_asset, midnight, at + 1)

