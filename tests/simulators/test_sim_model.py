"""The machine model: deterministic, independent of chunking, producing only in planned time."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from config import MachineState, OperationMode, Settings
from config.settings import Asset
from config.signals import ChannelMode
from kpi.calendar import overlap_seconds, planned_intervals
from simulators import Plant, Timeline, datetime_ns

# A Friday, 18:17 in Shanghai: inside the late shift.
NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
H = 3600 * 10**9
D = 24 * H


def ns(dt: datetime) -> int:
    return datetime_ns(dt)


def test_same_seed_same_timeline(settings: Settings) -> None:
    a, b = Plant(settings, now=NOW), Plant(settings, now=NOW)
    s, e = ns(NOW - timedelta(days=14)), ns(NOW)
    for asset in a.models:
        ta, tb = a.timeline(asset, s, e), b.timeline(asset, s, e)
        assert ta.same_as(tb)
        assert ta.part_ns.size > 100


def test_other_seed_other_timeline(settings: Settings) -> None:
    sim = settings.simulation
    assert sim is not None
    reseeded = sim.model_copy(update={"seed": sim.seed + 1})
    other = settings.model_copy(update={"simulation": reseeded})
    s, e = ns(NOW - timedelta(days=2)), ns(NOW)
    asset = settings.assets[0].path
    assert not Plant(settings, now=NOW).timeline(asset, s, e).same_as(
        Plant(other, now=NOW).timeline(asset, s, e)
    )


def test_timeline_does_not_depend_on_chunking(settings: Settings) -> None:
    s, e = ns(NOW - timedelta(days=17)), ns(NOW)
    whole = Plant(settings, now=NOW)
    cuts = sorted([s, s + 3 * H + 17_000_000_123, s + D, s + 3 * D + 5 * H,
                   ns(NOW - timedelta(days=14)), e - 11 * H, e])  # now-14d: the improvement
    pairs = list(itertools.pairwise(cuts))
    for asset in whole.models:
        fresh = Plant(settings, now=NOW)  # empty caches; generate later pieces first
        pieces = [fresh.timeline(asset, a, b) for a, b in reversed(pairs)][::-1]
        joined = Timeline.concat(pieces)
        assert joined.same_as(whole.timeline(asset, s, e)), asset


def test_window_does_not_depend_on_when_the_plant_was_made(settings: Settings) -> None:
    # improvement_at = now-14d moves with now, but a window after both boundaries is the same
    s, e = ns(NOW - timedelta(days=3)), ns(NOW - timedelta(days=1))
    a = Plant(settings, now=NOW)
    b = Plant(settings, now=NOW + timedelta(days=2))
    for asset in a.models:
        assert a.timeline(asset, s, e).same_as(b.timeline(asset, s, e))


def test_production_only_inside_planned_busy_time(settings: Settings) -> None:
    plant = Plant(settings, now=NOW)
    s, e = ns(NOW - timedelta(days=14)), ns(NOW)
    plan = planned_intervals(settings.calendar, s, e)
    for asset in plant.models:
        tl = plant.timeline(asset, s, e)
        dur = (tl.seg_end - tl.seg_ns) / 1e9
        inside = overlap_seconds(plan, tl.seg_ns, tl.seg_end)
        run = tl.running
        np.testing.assert_allclose(inside[run], dur[run])  # running segments wholly planned
        off = (tl.state == MachineState.NotExecuting) & (tl.mode == OperationMode.NoMode)
        assert np.all(inside[off] == 0)  # idle-without-mode exactly outside planned time
        assert np.all(off | (inside == dur))  # every other segment wholly planned
        # every part completes inside a running segment, strictly
        i = tl.index_at(tl.part_ns)
        assert np.all(run[i])
        assert np.all(tl.part_ns > tl.seg_ns[i]) and np.all(tl.part_ns < tl.seg_end[i])


def test_segments_are_compact_and_canonical(settings: Settings) -> None:
    plant = Plant(settings, now=NOW)
    tl = plant.timeline(settings.assets[3].path, ns(NOW - timedelta(days=14)), ns(NOW))
    assert np.all(np.diff(tl.seg_ns) > 0)
    assert set(tl.state.tolist()) == {
        MachineState.OutOfService, MachineState.NotExecuting, MachineState.Executing
    }
    assert set(tl.mode.tolist()) == set(OperationMode)
    assert set(tl.channel.tolist()) == set(ChannelMode)
    same = (
        (tl.state[1:] == tl.state[:-1]) & (tl.mode[1:] == tl.mode[:-1])
        & (tl.channel[1:] == tl.channel[:-1]) & (tl.power_kw[1:] == tl.power_kw[:-1])
    )
    assert not same.any()
    setup = tl.mode == OperationMode.Setup
    assert np.all(tl.channel[setup] == ChannelMode.MDI)
    assert np.all(tl.state[tl.mode == OperationMode.Maintenance] == MachineState.OutOfService)
    # boundaries on whole ms; parts 1 ns after a whole ms, so never on a window edge
    assert np.all(tl.seg_ns[1:] % 1_000_000 == 0)
    assert np.all(tl.part_ns % 1_000_000 == 1)
    assert np.all(np.diff(tl.part_ns) > 0)


def test_regime_changes_at_improvement_at(settings: Settings) -> None:
    plant = Plant(settings, now=NOW)
    imp = ns(NOW - timedelta(days=14)) // 10**6 * 10**6
    assert plant.improvement_at == NOW - timedelta(days=14)
    m = plant.model(settings.assets[0].path)
    assert m.behaviour_at(imp - 1) is m.baseline
    assert m.behaviour_at(imp) is m.improved
    assert any(c0 == imp for _, _, c0, _ in m.chunks(imp - D, imp + D))
    assert m.improved.defect_rate < m.baseline.defect_rate
    assert m.improved.mtbf_s > m.baseline.mtbf_s


def test_channel_share_approaches_auto_share(settings: Settings) -> None:
    plant = Plant(settings, now=NOW)
    s, e = ns(NOW - timedelta(days=7)), ns(NOW)  # improved regime only
    apt = auto = expected = 0.0
    for asset, model in plant.models.items():
        tl = plant.timeline(asset, s, e)
        dur = (tl.seg_end - tl.seg_ns) / 1e9
        a = float(dur[tl.running].sum())
        apt += a
        auto += float(dur[tl.running & (tl.channel == ChannelMode.Automatic)].sum())
        expected += a * model.improved.auto_share
    assert auto / apt == pytest.approx(expected / apt, abs=0.04)


def test_manual_machine_never_runs_automatic(settings: Settings) -> None:
    assets = [*settings.assets, Asset(path="demo/machining/line3/bench-01", control="manual",
                                      ideal_cycle_time_s=120)]
    plant = Plant(settings.model_copy(update={"assets": assets}), now=NOW)
    tl = plant.timeline("demo/machining/line3/bench-01", ns(NOW - timedelta(days=3)), ns(NOW))
    assert tl.running.any()
    assert not np.any(tl.running & (tl.channel == ChannelMode.Automatic))


def test_fourteen_days_of_ten_machines_is_fast(settings: Settings) -> None:
    assets = [
        a.model_copy(update={"path": f"demo/machining/line{i % 2}/m{i:02d}",
                             "ideal_cycle_time_s": 5 + 10 * i})
        for i, a in enumerate(settings.assets * 2)
    ][:10]
    plant = Plant(settings.model_copy(update={"assets": assets}), now=NOW)
    # the CPU time of this process, not the wall time: on the loaded test machine a niced
    # process waits for a core for several times the ~0.1 s of CPU the timelines take
    t0 = time.process_time()
    parts = sum(
        plant.timeline(a.path, ns(NOW - timedelta(days=14)), ns(NOW)).part_ns.size for a in assets
    )
    elapsed = time.process_time() - t0
    assert parts > 100_000
    assert elapsed < 2.0, f"{elapsed:.2f} s of CPU"
