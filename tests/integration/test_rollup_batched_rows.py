"""The maintainer's hour rows computed together (``KpiService.rollup_rows``, ``kpi.batch``)
are the rows ``rollup_row`` computes one by one, byte for byte (issue 12).

The demo plant's SQLite store over three days, hardened at hour edges
(``test_hour_parts.harden``: a counter glitch, a reset, a bad counter sample, device gaps), so
that some hours take the one-by-one path (a gap in reach, an implausible rise) and the others
the batch. Real store, real computation; the subclass only counts the one-by-one calls.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from api.gateway import tag_records
from api.rollups import DAY, HEAD, HOUR_NS, SUM, RollupMaintainer, head_rows, hour_rows
from api.service import KpiService
from config import Settings
from config.times import to_ns
from simulators import Plant
from store.base import RollupRow
from store.sqlite import SqliteStore
from tests.integration.test_hour_parts import ASSET, DAYS, MIDNIGHTS, NOW, harden


class Counting(KpiService):
    """Counts the hours (and heads) computed one by one."""

    one_by_one = 0
    heads_one_by_one = 0

    def rollup_row(self, *args: Any, **kw: Any) -> RollupRow:
        self.one_by_one += 1
        return super().rollup_row(*args, **kw)

    def rollup_head_row(self, *args: Any, **kw: Any) -> RollupRow:
        self.heads_one_by_one += 1
        return super().rollup_head_row(*args, **kw)


def _history(store: SqliteStore, settings: Settings) -> None:
    """``DAYS`` of the plant's history into ``store``, its ``ASSET`` hardened (gaps, a glitch)."""
    tag_ids = store.register_tags(tag_records(settings))
    for batch in Plant(settings, now=NOW).history_batches(
            tag_ids, to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)):
        store.write(batch)
    harden(store)


@contextlib.contextmanager
def _hardened(path: Path, settings: Settings) -> Iterator[tuple[SqliteStore, Counting, list[int]]]:
    """A store of ``_history``, a counting service over it, the whole hours of that history."""
    with SqliteStore(path) as store:
        _history(store, settings)
        end = to_ns(NOW) // HOUR_NS * HOUR_NS
        first = (to_ns(NOW - timedelta(days=DAYS)) // HOUR_NS + 1) * HOUR_NS
        yield store, Counting(settings, store, rollups=True), list(range(first, end, HOUR_NS))


def test_batched_hour_rows_are_the_rows_one_by_one(tmp_path: Path, settings: Settings) -> None:
    with _hardened(tmp_path / "batched.db", settings) as (store, service, hours):
        by_asset = service._read_tags()
        total = mine = 0
        for asset in settings.assets:
            tags = by_asset[asset.path]
            key = service.rollup_key(asset, tags)
            for i in range(0, len(hours), 16):  # chunks as the maintainer reads them
                chunk = hours[i:i + 16]
                with service.snapshot():
                    lo = chunk[0] - HOUR_NS
                    series = store.read_many([t.tag_id for t in tags.values()], lo,
                                             chunk[-1] + HOUR_NS, prior=True)
                    before = service.one_by_one
                    got = service.rollup_rows(asset, tags, chunk, key, series, lo)
                    if asset.path == ASSET:
                        mine += service.one_by_one - before
                    want = [service.rollup_row(asset, tags, h, key, series, lo) for h in chunk]
                assert got == want, (asset.path, chunk[0])
                total += len(chunk)
        one_by_one = service.one_by_one - total  # less the reference rows
        # the hardened machine's gaps and glitch send some of its hours down the one-by-one
        # path; most hours of the plant are computed by the batch
        assert mine > 0, "the hardened asset's gaps and glitch must take the one-by-one path"
        assert one_by_one < total // 2, (one_by_one, total)


def test_hour_rows_of_several_assets_at_once_are_the_rows_one_by_one(
        tmp_path: Path, settings: Settings) -> None:
    """``api.rollups.hour_rows`` computes the hours of every asset in one ``kpi.batch`` pass;
    the hardened asset's device gaps make the whole batch fall back to a pass per asset in
    the chunks they touch. Every row is ``rollup_row``'s, byte for byte."""
    with _hardened(tmp_path / "several.db", settings) as (store, service, hours):
        by_asset = service._read_tags()
        total = 0
        for i in range(0, len(hours), 4):  # every asset's next hours, as a live pass has them
            chunk = hours[i:i + 4]
            with service.snapshot():
                lo = chunk[0] - HOUR_NS
                items = []
                for asset in settings.assets:
                    tags = by_asset[asset.path]
                    series = store.read_many([t.tag_id for t in tags.values()], lo,
                                             chunk[-1] + HOUR_NS, prior=True)
                    items.append((asset, tags, service.rollup_key(asset, tags), chunk, series, lo))
                got = hour_rows(service, items)
                want = [service.rollup_row(asset, tags, h, key, series, lo)
                        for asset, tags, key, _, series, lo in items for h in chunk]
            assert got == want, chunk[0]
            total += len(want)
        one_by_one = service.one_by_one - total  # less the reference rows
        assert 0 < one_by_one < total // 2, (one_by_one, total)


def test_the_maintainer_writes_the_same_rows_for_several_assets_at_once(
        tmp_path: Path, settings: Settings) -> None:
    """A maintainer that scans every asset together (``_assets``: one claim, snapshot, batch
    and put per group) holds the very rows of one that scans asset by asset, hour rows, day
    rows, day sums and heads, after a backfill and after passes that each close an hour."""
    path = tmp_path / "a.db"
    with SqliteStore(path) as store:
        _history(store, settings)
    shutil.copyfile(path, tmp_path / "b.db")
    held = []
    for name, per in (("a.db", 64), ("b.db", 1)):
        with SqliteStore(tmp_path / name) as store:
            service = KpiService(settings, store, rollups=True)
            clock = [to_ns(NOW) - 20 * HOUR_NS]
            m = RollupMaintainer(service, settle_s=300, backfill_days=None,
                                 clock_ns=lambda c=clock: c[0], chunk_assets=per)
            assert m.run_once() > 0  # the backfill
            while clock[0] < to_ns(NOW):  # then an hour closes per pass
                clock[0] += HOUR_NS
                m.run_once()
            rows = store.rollups([a.path for a in settings.assets], -(2**62), 2**62)
            held.append(sorted(rows, key=lambda r: (r.asset, r.hour_ns)))
            assert any(r.key.endswith(DAY) for r in rows) and any(r.key.endswith(HEAD) for r in rows)
            assert any(r.key.endswith(SUM) for r in rows)
    assert held[0] == held[1]


def test_head_rows_of_several_assets_at_once_are_the_rows_one_by_one(
        tmp_path: Path, settings: Settings) -> None:
    """``api.rollups.head_rows`` (every asset's head of a local day in one ``kpi.batch``
    pass) gives ``rollup_head_row``'s rows byte for byte: heads of one to three hours of the
    history's local days, one of them starting inside the hardened asset's device gap."""
    with SqliteStore(tmp_path / "heads.db") as store:
        tag_ids = store.register_tags(tag_records(settings))
        for batch in Plant(settings, now=NOW).history_batches(
                tag_ids, to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)):
            store.write(batch)
        harden(store)
        service = Counting(settings, store, rollups=True)
        by_asset = service._read_tags()
        n = batched = 0
        for midnight in MIDNIGHTS:
            for hours in (1, 3):
                todo = [(asset, by_asset[asset.path], midnight, midnight + hours * HOUR_NS,
                         midnight + 24 * HOUR_NS, service.rollup_key(asset, by_asset[asset.path]))
                        for asset in settings.assets]
                with service.snapshot():
                    got = head_rows(service, todo)
                    batched += len(todo) - service.heads_one_by_one
                    want = [service.rollup_head_row(*t) for t in todo]
                    service.heads_one_by_one = 0
                assert got == want, (midnight, hours)
                assert all(r.key.endswith(HEAD) for r in got)
                n += len(got)
        assert n == 4 * len(settings.assets)
        assert n // 2 < batched < n, (batched, n)  # the gaps' heads one by one, most batched
