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
#: elements that add up over windows computed each on its own: every time element and the
#: quantities dated by their later sample (not the attributed ones: an increase spanning the
#: cut is spread over its whole span by the longer window, over the later window's part only
#: by the window that starts at the cut -- docs/kpis.md, hourly roll-ups)
TIMED = ("pbt_s", "known_s", "apt_s", "asut_s", "adet_s", "idle_s", "maintenance_s",
         "not_available_s", "other_s", "apt_auto_s", "apt_mode_known_s", "apt_outside_plan_s",
         "pq", "gq", "sq", "energy_kwh", "counter_resets")


def _hour(back: int) -> int:
    return (to_ns(NOW) // H - back) * H


#: local midnights (Asia/Shanghai, UTC+8: 16:00 UTC) of the history
MIDNIGHTS = (_hour(17), _hour(41))


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
    # a gap ending 1 s before a local midnight (the demo's Asia/Shanghai), and one across the
    # midnight before: a local day computed on its own starts inside or just after a gap
    gap = store.open_gap(device, MIDNIGHTS[0] - 30 * 60 * 10**9, "test, before midnight")
    store.close_gap(gap, MIDNIGHTS[0] - 10**9)
    gap = store.open_gap(device, MIDNIGHTS[1] - 20 * 60 * 10**9, "test, across midnight")
    store.close_gap(gap, MIDNIGHTS[1] + 20 * 60 * 10**9)
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


def test_windows_cut_at_a_gap_add_up_as_windows_of_their_own(service: KpiService) -> None:
    """Two windows computed each on its own, cut at a local midnight 1 s after a gap ends,
    at one inside a gap, or just after a gap: their time elements add up to the window
    over both (the first local day after a gap takes no state from before the gap as
    known; before algorithm version 4 it did, and the days summed to more known time than
    the whole window)."""
    gap_end = _hour(20) - 10 * 60 * 10**9
    device = next(t.device for t in service.store.tags() if t.asset == ASSET)
    assets = sorted({t.asset for t in service.store.tags() if t.device == device})
    for cut in (*MIDNIGHTS, gap_end + 10**9):
        start, end = cut - 5 * H - 7 * 10**9, cut + 6 * H + 3 * 10**9
        for path in assets:
            a = service.settings.asset(path)
            whole = service.asset_result(a, start, end, raw=True).elements
            left = service.asset_result(a, start, cut, raw=True).elements
            right = service.asset_result(a, cut, end, raw=True).elements
            for name in TIMED:
                got = getattr(left, name) + getattr(right, name)
                assert got == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-6), (path, cut, name)
    # the cut after the gap lies where the state before it would have been carried
    a = service.settings.asset(ASSET)
    assert service.asset_result(a, MIDNIGHTS[0], MIDNIGHTS[0] + H, raw=True).elements.known_s < 3600
