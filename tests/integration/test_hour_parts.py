"""On the demo's backfilled SQLite store, a window's elements are the sum of its hours'.

The service computes each hour as a part of the window (``KpiService.asset_result`` with
``context_start_ns``): for random assets and windows, every time-additive element of the
hours adds up to the window's, to 1e-9 relative, and so do the per-tag sample counts of the
evidence. The history is made harder than the simulator's: a counter glitch and a counter
reset across hour edges, a bad counter sample just before an hour, and a device gap after
which the machine's step signals are not sampled again for a while.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import Settings
from config.signals import Quality
from config.times import to_ns
from kpi import TimeElements
from simulators import Plant
from store.batch import Batch
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)
H = 3600 * 10**9
DAYS = 3
PER_UNIT = frozenset({"units", "pq_known", "gq_known", "units_without_pru", "std_units"})
ADDITIVE = [f.name for f in fields(TimeElements) if f.name not in PER_UNIT | {"window_s", "shared_pru_s"}]
ASSET = "demo/machining/line1/mill-02"


def _hour(back: int) -> int:
    return (to_ns(NOW) // H - back) * H


def harden(store: SqliteStore) -> dict[str, int]:
    """Glitch, reset, bad sample, gap: each at an hour edge of ``ASSET``'s history."""
    tags = {t.role: t for t in store.tags() if t.asset == ASSET}
    total, good = tags["total_count"].tag_id, tags["good_count"].tag_id
    h1, h2, h3 = _hour(30), _hour(40), _hour(50)

    def value(tag: int, t: int) -> float:
        return float(store.read(tag, t, t, prior=True).value[-1])

    # a glitch to 0 and back across the hour edge h1
    v = value(total, h1)
    store.write(Batch(np.array([total, total], np.int32), np.array([h1 - 500_000_000, h1 + 500_000_000]),
                      np.array([0.0, v]), np.zeros(2, np.uint8)))
    # a reset of the good counter at h2 - 1 s, counting again from 2
    store.write(Batch(np.array([good], np.int32), np.array([h2 - 10**9]), np.array([2.0]),
                      np.zeros(1, np.uint8)))
    # the last total sample before h3 is bad
    store.write(Batch(np.array([total], np.int32), np.array([h3 - 10**6]), np.array([value(total, h3)]),
                      np.array([Quality.BAD], np.uint8)))
    # a device gap ending 10 min before an hour edge
    device = tags["state"].device
    gap = store.open_gap(device, _hour(20) - 40 * 60 * 10**9, "test")
    store.close_gap(gap, _hour(20) - 10 * 60 * 10**9)
    return {"h1": h1, "h2": h2, "h3": h3}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[KpiService]:
    store = SqliteStore(Path(tmp_path_factory.mktemp("hours")) / "demo.db")
    try:
        tag_ids = store.register_tags(tag_records(settings))
        plant = Plant(settings, now=NOW)
        for batch in plant.history_batches(tag_ids, to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)):
            store.write(batch)
        harden(store)
        yield KpiService(settings, store)
    finally:
        store.close()


def assert_parts_add_up(service: KpiService, asset: str, start: int, end: int) -> None:
    a = service.settings.asset(asset)
    with service.snapshot():
        whole = service.asset_result(a, start, end)
        first = -(-start // H) * H
        edges = [start, *[t for t in range(first, end, H) if t > start], end]
        parts = [service.asset_result(a, x, y, context_start_ns=start) for x, y in pairwise(edges)]
    for name in ADDITIVE:
        got = sum(getattr(p.elements, name) for p in parts)
        assert got == pytest.approx(getattr(whole.elements, name), rel=1e-9, abs=1e-6), (asset, name)
    for name in PER_UNIT:
        assert {getattr(p.elements, name) for p in parts} == {getattr(whole.elements, name)}
    for i, t in enumerate(whole.evidence.tags):
        assert sum(p.evidence.tags[i].samples for p in parts) == t.samples
        assert sum(p.evidence.tags[i].bad_samples for p in parts) == t.bad_samples
        assert parts[0].evidence.tags[i].prior_ns == t.prior_ns
    assert sum(len(p.evidence.implausible_increases) for p in parts) == len(
        whole.evidence.implausible_increases)


def test_hardened_windows(service: KpiService) -> None:
    """Windows over the glitch, the reset, the bad sample and the gap, on and off hour edges."""
    for back in (31, 41, 51, 21):
        for off in (0, 17 * 60 * 10**9 + 3):
            start = _hour(back) + off
            assert_parts_add_up(service, ASSET, start, start + 5 * H + 11 * 10**9)
    whole = service.asset_result(service.settings.asset(ASSET), _hour(52), _hour(18)).elements
    assert whole.implausible_increases >= 1 and whole.counter_resets >= 1


def test_random_windows_and_assets(service: KpiService) -> None:
    rnd = random.Random(12)
    lo = to_ns(NOW - timedelta(days=DAYS)) + H
    for _ in range(25):
        asset = rnd.choice(service.settings.assets).path
        start = rnd.randrange(lo, to_ns(NOW) - 2 * H)
        if rnd.random() < 0.3:
            start -= start % H
        end = min(start + rnd.randrange(H // 3, 30 * H), to_ns(NOW))
        assert_parts_add_up(service, asset, start, end)
