"""Raw parts shared within one snapshot (``KpiService.snapshot`` keeps the parts ``_part``
computes, ``_cached_part`` serves them to the windows they belong to).

On the rolled-up, hardened demo store of ``test_rollup_read`` (a counter glitch, a reset, a bad
counter sample and a device gap at hour edges): an assessment inside one snapshot computes
fewer raw parts than the same assessment whose windows each compute their own, and answers
exactly the same; windows with common starts and ends in one snapshot get exactly what each
gets on its own, and the raw computation's elements (1e-9) and evidence.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import timedelta
from typing import Any

import pytest

from api.assessment import assess
from api.rollups import HOUR_NS, NEVER, local_day_edges, reach_ns
from api.service import AssetResult, KpiService
from config import Settings, load_tiers
from config.settings import Asset
from config.signals import Role
from config.times import iso, to_ns
from kpi import TimeElements
from store.base import TagRecord
from tests.helpers import with_assess_workers
from tests.integration.test_hour_parts import ASSET, NOW
from tests.integration.test_rollup_read import DAYS, Stores, stores  # noqa: F401 (the fixture)

NAMES = [f.name for f in fields(TimeElements)]


def in_process(settings: Settings) -> Settings:
    """``settings`` with ``kpi.assess_workers: 0``: these tests count what this process's
    service computes, which worker processes (``api.assetsplit``) would share with it."""
    return with_assess_workers(settings, 0)


class Counting(KpiService):
    """The real service, counting the raw parts it computes (``asset_result`` of a part of a
    window, ``context_start_ns`` given): every read and computation is the service's own."""

    computed = 0

    def asset_result(self, asset: Asset, start_ns: int, end_ns: int,
                     tags: dict[Role, TagRecord] | None = None, **kw: Any) -> AssetResult:
        if kw.get("context_start_ns") is not None:
            self.computed += 1
        return super().asset_result(asset, start_ns, end_ns, tags, **kw)


def test_an_assessment_in_one_snapshot_shares_its_edges_and_answers_the_same(
        stores: Stores, settings: Settings) -> None:  # noqa: F811
    rolled = stores[0]
    lo = NOW - timedelta(days=DAYS)
    cut = iso(to_ns(lo + timedelta(hours=37, minutes=11)))
    kw: dict[str, Any] = {"now": NOW, "from_": cut, "to": iso(to_ns(NOW)),
                          "baseline_from": iso(to_ns(lo + timedelta(minutes=3))), "baseline_to": cut}

    shared = Counting(in_process(rolled.settings), rolled.store)
    with shared.snapshot():  # as the route and the CLI run it
        one = assess(shared.settings, shared, load_tiers(), **kw)
    alone = Counting(in_process(rolled.settings), rolled.store)
    # no enclosing snapshot: each window (each results call) keeps only its own parts
    each = assess(alone.settings, alone, load_tiers(), **kw)

    assert json.dumps(one, sort_keys=True) == json.dumps(each, sort_keys=True)
    # the current window and its first day start at one instant; the current window, the
    # history span and the last day end in one partial hour: at least one part per asset
    # and shared edge is taken, not computed again
    assert alone.computed - shared.computed >= 2 * len(settings.assets), (shared.computed, alone.computed)


@pytest.mark.parametrize("asset", [ASSET, "demo/assembly/line4/packer-01"])
def test_windows_sharing_edges_in_one_snapshot_get_their_own_results(
        stores: Stores, asset: str) -> None:  # noqa: F811
    rolled, raw, _ = stores
    a = rolled.settings.asset(asset)
    lo, hi = to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)
    # the start of the first whole local day: where an assessment's days start
    local_midnight = local_day_edges(rolled.settings.calendar.timezone, lo, hi)[0][0]
    starts = [lo + 3 * 60 * 10**9, lo + 37 * HOUR_NS + 11 * 60 * 10**9, local_midnight, lo + 30 * HOUR_NS]
    ends = [hi, hi - 5 * HOUR_NS - 17 * 10**9, local_midnight + 30 * HOUR_NS]
    windows = [(s, e) for s in starts for e in ends if e - s > HOUR_NS]

    svc = Counting(rolled.settings, rolled.store)
    with svc.snapshot():
        together = [svc.asset_result(a, s, e) for s, e in windows]
    fresh = Counting(rolled.settings, rolled.store)
    for (s, e), got in zip(windows, together, strict=True):
        want = fresh.asset_result(a, s, e)  # outside any snapshot: nothing kept between calls
        assert got.elements == want.elements, (iso(s), iso(e))
        assert got.evidence == want.evidence and got.hours == want.hours
        base = raw.asset_result(a, s, e)
        for name in NAMES:
            g, w = getattr(got.elements, name), getattr(base.elements, name)
            if w is None or isinstance(w, int):
                assert g == w, (name, iso(s), iso(e))
            else:
                assert g == pytest.approx(w, rel=1e-9, abs=1e-6), (name, iso(s), iso(e))
        assert got.evidence.as_dict(iso) == base.evidence.as_dict(iso)
    assert svc.computed < fresh.computed, (svc.computed, fresh.computed)


def test_a_kept_part_serves_exactly_the_windows_it_belongs_to(stores: Stores) -> None:  # noqa: F811
    """A part computed with its reach as context serves windows starting at or before that
    reach, one computed with the window's start only windows starting there; every part
    served is the one a fresh computation for that window gives."""
    rolled = stores[0]
    a_ = rolled.settings.asset(ASSET)
    tags = rolled._tags_by_asset()[ASSET]
    a = (to_ns(NOW) // HOUR_NS - 20) * HOUR_NS  # a whole hour, mid-history
    b = a + HOUR_NS + 7 * 60 * 10**9
    reach = reach_ns(rolled.store, tags, a)
    assert NEVER < reach < a  # the part depends on data before the hour

    def fresh(window_start: int) -> object:
        return Counting(rolled.settings, rolled.store)._part(a_, tags, window_start, a, b)

    svc = Counting(rolled.settings, rolled.store)
    with svc.snapshot():
        early = svc._part(a_, tags, reach - 600 * 10**9, a, b)  # context: its reach
        assert svc._cached_part(ASSET, reach, a, b) is early
        assert svc._cached_part(ASSET, reach - 5 * HOUR_NS, a, b) is early
        assert svc._cached_part(ASSET, reach + 1, a, b) is None  # starts after the reach
        late = svc._part(a_, tags, reach + 1, a, b)  # context: the window's start
        assert svc._cached_part(ASSET, reach + 1, a, b) is late
        assert svc._cached_part(ASSET, reach + 2, a, b) is None
        n = svc.computed
        assert svc._part(a_, tags, reach - 1, a, b) is early and svc.computed == n
    assert svc._cached_part(ASSET, reach, a, b) is None  # dropped with the snapshot
    assert early == fresh(reach - 1) == fresh(reach - 600 * 10**9)
    assert late == fresh(reach + 1)


def test_the_answer_does_not_depend_on_how_the_assets_are_grouped(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """``results`` reads the rows of as many assets at a time as its row budget allows and
    reads ahead and computes their raw parts in groups (``_raw_groups``): an assessment with
    one group of every asset, and one with groups of two assets (rows read two at a time),
    answer exactly the same."""
    import api.service as service_module

    rolled = stores[0]
    lo = NOW - timedelta(days=DAYS)
    cut = iso(to_ns(lo + timedelta(hours=37, minutes=11)))
    kw: dict[str, Any] = {"now": NOW, "from_": cut, "to": iso(to_ns(NOW)),
                          "baseline_from": iso(to_ns(lo + timedelta(minutes=3))), "baseline_to": cut}
    answers = []
    groups: list[list[int]] = []
    real = KpiService._raw_groups

    def seen(*a: Any) -> list[list[Asset]]:
        got = real(*a)
        groups.append([len(g) for g in got])
        return got

    monkeypatch.setattr(KpiService, "_raw_groups", staticmethod(seen))
    for batch, rows, raw_hours in ((50, 36_000, 1_200), (2, 1, 0.0)):
        monkeypatch.setattr(service_module, "_ROW_BATCH", batch)
        monkeypatch.setattr(service_module, "_ROWS_AT_ONCE", rows)
        monkeypatch.setattr(service_module, "_RAW_HOURS_AT_ONCE", raw_hours)
        groups.clear()
        svc = KpiService(in_process(rolled.settings), rolled.store)
        with svc.snapshot():
            answers.append(json.dumps(assess(svc.settings, svc, load_tiers(), **kw), sort_keys=True))
        n = len(rolled.settings.assets)
        if batch == 2:
            assert all(g in ([2], [1]) for g in groups) and len(groups) >= 6 * (n // 2), groups
        else:
            assert groups and all(g == [n] for g in groups), groups
    assert answers[0] == answers[1]


def test_raw_groups_hold_at_least_the_batch_and_grow_within_the_raw_budget(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of at least _ROW_BATCH assets, each growing while the hours it reads ahead stay
    within _RAW_HOURS_AT_ONCE; an asset without rows counts nothing (read on its own)."""
    import api.service as service_module

    monkeypatch.setattr(service_module, "_ROW_BATCH", 2)
    monkeypatch.setattr(service_module, "_RAW_HOURS_AT_ONCE", 5)
    assets = list(settings.assets[:7])
    s = 10 * HOUR_NS
    e = s + 24 * HOUR_NS
    # each asset: a row from s + 1 h to e - 1 h whose reach is its start: 2 h of raw stretch
    # (1 h at the start, 1 h at the end read from an hour back: 2 h) -> 3 h each
    cells: dict[str, list[Any]] = {a.path: [(s + HOUR_NS, s + HOUR_NS, b"", None, e - HOUR_NS)]
                                   for a in assets}
    cells[assets[3].path] = []  # no usable row: read on its own
    got = KpiService._raw_groups(assets, cells, s, e)
    assert [len(g) for g in got] == [2, 2, 2, 1]
    assert [a for g in got for a in g] == assets
    monkeypatch.setattr(service_module, "_RAW_HOURS_AT_ONCE", 1000)
    assert [len(g) for g in KpiService._raw_groups(assets, cells, s, e)] == [7]
