"""History backfill: report by exception, raw encodings, and counters that rebuild the truth."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from config import Role, Settings
from config.modbus import ModbusTag
from config.signals import CANONICAL, COUNTER_ROLES, ENUM_ROLES, canonical_code
from simulators import HISTORY_ROLES, Plant, datetime_ns, stored_values, truth
from store.batch import Batch

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Series = dict[str, tuple[I64, F64]]


@pytest.fixture(scope="module")
def tag_ids(settings: Settings) -> dict[str, int]:
    return {t.path: 10 + i for i, (_, t) in enumerate(settings.all_tags())}


@pytest.fixture(scope="module")
def batches(plant: Plant, tag_ids: dict[str, int]) -> list[Batch]:
    return list(plant.history_batches(tag_ids, max_points=50_000))


def split(batch: Batch, settings: Settings, tag_ids: dict[str, int]) -> Series:
    """tag path -> (ts, value), in time order."""
    path_of = {i: p for p, i in tag_ids.items()}
    order = np.lexsort((batch.ts_ns, batch.tag_id))
    tid, ts, val = batch.tag_id[order], batch.ts_ns[order], batch.value[order]
    cuts = np.flatnonzero(np.diff(tid)) + 1
    return {
        path_of[int(t[0])]: (s, v)
        for t, s, v in zip(
            np.split(tid, cuts), np.split(ts, cuts), np.split(val, cuts), strict=True
        )
    }


@pytest.fixture(scope="module")
def series(batches: list[Batch], settings: Settings, tag_ids: dict[str, int]) -> Series:
    return split(Batch.concat(batches), settings, tag_ids)


def history_tags(settings: Settings) -> list[ModbusTag]:
    return [t for d in settings.devices for t in d.tags if t.role in HISTORY_ROLES]


def increase(ts: I64, values: F64, start: int, end: int) -> float:
    """Counter increase over [start, end) from report-by-exception samples: a drop is a reset
    and the new value counts from zero."""
    d = np.diff(values)
    inc = np.where(d < 0, values[1:], d)
    sel = (ts[1:] >= start) & (ts[1:] < end)
    return float(inc[sel].sum())


def test_batches_are_bounded_and_in_time_order(batches: list[Batch], plant: Plant) -> None:
    assert len(batches) > 3
    assert all(0 < len(b) <= 50_000 for b in batches)
    ts = np.concatenate([b.ts_ns for b in batches])
    assert np.all(np.diff(ts) >= 0)
    start, end = plant.history_window()
    assert ts[0] == start and ts[-1] < end
    assert all(np.all(b.quality == 0) for b in batches)


def test_every_history_tag_and_only_those(series: Series, settings: Settings) -> None:
    assert set(series) == {t.path for t in history_tags(settings)}


def test_report_by_exception(series: Series, plant: Plant) -> None:
    start, end = plant.history_window()
    for path, (ts, v) in series.items():
        assert ts[0] == start, path  # the value at the window start
        assert np.all(np.diff(ts) > 0), path
        assert np.all(v[1:] != v[:-1]), path  # a sample only when the value changes
        assert ts[-1] < end


def test_enums_are_stored_raw_and_map_back(series: Series, settings: Settings,
                                           plant: Plant) -> None:
    for tag in history_tags(settings):
        if tag.role not in ENUM_ROLES:
            continue
        assert tag.enum is not None
        ts, raw = series[tag.path]
        assert set(raw.astype(int).tolist()) <= set(tag.enum)
        canonical = np.array([canonical_code(tag.role, tag.enum[int(r)]) for r in raw])
        np.testing.assert_array_equal(canonical, plant.signal(tag.asset, tag.role, ts))
        # the Modbus machines' native codes: Manual is written as JOG (5), never HANDLE (4)
        if tag.role is Role.CHANNEL_MODE and isinstance(tag, ModbusTag):
            assert 4 not in raw and 5 in raw
        # every change of the canonical signal is there
        seg = plant.timeline(tag.asset, int(ts[0]), plant.now_ns)
        codes = {Role.STATE: seg.state, Role.MODE: seg.mode,
                 Role.CHANNEL_MODE: seg.channel}[tag.role]
        assert ts.size == 1 + np.count_nonzero(codes[1:] != codes[:-1])


@pytest.mark.parametrize("window", [("now-14d", "now"), ("now-7d", "now"), ("now-9d", "now-8d")])
def test_counters_rebuild_the_truth_exactly(window: tuple[str, str], series: Series,
                                            settings: Settings, plant: Plant) -> None:
    t = truth(settings, *window, plant=plant)
    start, end = (datetime_ns(x) for x in settings.kpi.current.model_copy(
        update={"start": window[0], "end": window[1]}).resolve(NOW))
    for tag in history_tags(settings):
        if tag.role not in COUNTER_ROLES:
            continue
        ts, v = series[tag.path]
        node = t["assets"][tag.asset]["elements"]
        if tag.role is Role.ENERGY_KWH:
            # the stored samples strictly inside, and the meter's reading at both edges
            inside = (ts > start) & (ts < end)
            edge = plant.signal(tag.asset, Role.ENERGY_KWH, [start, end])
            ts = np.concatenate(([start], ts[inside], [end]))
            v = np.concatenate((edge[:1], v[inside], edge[1:]))
            got = increase(ts, v, start, end + 1)
            assert got == pytest.approx(node["energy_kwh"], rel=1e-9)
        else:
            want = {Role.TOTAL_COUNT: "pq", Role.GOOD_COUNT: "gq",
                    Role.REJECT_COUNT: "sq"}[tag.role]
            assert increase(ts, v, start, end) == node[want], (tag.path, window)


def test_counters_reset_to_zero(series: Series, settings: Settings, plant: Plant) -> None:
    start, end = plant.history_window()
    assert plant.simulation.history_days == 28  # the demo's four weeks
    for tag in history_tags(settings):
        if tag.role is not Role.TOTAL_COUNT:
            continue
        resets = plant.reset_instants(tag.asset, start + 1, end)
        assert 27 <= resets.size <= 29  # daily in the demo
        # a reset shows only where the counter had counted something (not after a Sunday:
        # four weeks hold four)
        before = plant.signal(tag.asset, Role.TOTAL_COUNT, resets - 1)
        assert np.count_nonzero(before) >= resets.size - 4
        resets = resets[before > 0]
        ts, v = series[tag.path]
        at = np.searchsorted(ts, resets)
        assert np.all(ts[at] == resets) and np.all(v[at] == 0)
        drops = np.flatnonzero(np.diff(v) < 0) + 1
        np.testing.assert_array_equal(ts[drops], resets)


def test_energy_meter_is_sampled_so_interpolation_is_exact(series: Series, settings: Settings,
                                                           plant: Plant) -> None:
    tag = next(t for t in history_tags(settings) if t.role is Role.ENERGY_KWH)
    ts, v = series[tag.path]
    assert np.diff(ts).max() <= 60 * 10**9  # power never is 0, so the meter always moves
    rng = np.random.default_rng(0)
    probe = rng.integers(int(ts[0]), int(ts[-1]), 2000)
    resets = plant.reset_instants(tag.asset, int(ts[0]), int(ts[-1]))
    i = np.searchsorted(ts, probe, side="right") - 1
    crosses = (np.searchsorted(resets, ts[i], side="right")
               != np.searchsorted(resets, ts[i + 1], side="left"))
    probe, i = probe[~crosses], i[~crosses]
    interp = v[i] + (v[i + 1] - v[i]) * (probe - ts[i]) / (ts[i + 1] - ts[i])
    np.testing.assert_allclose(interp, plant.signal(tag.asset, Role.ENERGY_KWH, probe), rtol=1e-9)


def test_history_does_not_depend_on_slicing(plant: Plant, tag_ids: dict[str, int],
                                            batches: list[Batch]) -> None:
    fresh = Plant(plant.settings, now=NOW)
    other = Batch.concat(list(fresh.history_batches(tag_ids, slice_ns=(5 * 3600 + 7) * 10**9)))
    whole = Batch.concat(batches)
    for name in ("tag_id", "ts_ns", "value"):
        np.testing.assert_array_equal(getattr(other, name), getattr(whole, name))


def test_history_goes_on_after_its_end(plant: Plant, tag_ids: dict[str, int],
                                       batches: list[Batch]) -> None:
    """A history continued after its end, as ``bench/bench_influx_kpis.py --live`` writes it
    (started one slice before the end, that slice dropped): exactly the samples of one
    unbroken history over the end -- no gap, and no value repeated at the end, which a
    continuation started at the end itself would have (every tag's value there)."""
    w0, end = plant.history_window()
    step, span = 7 * 10**9, 1800 * 10**9
    fresh = Plant(plant.settings, now=NOW)
    unbroken = Batch.concat(list(fresh.history_batches(tag_ids, w0, end + span)))
    after = Batch.concat(list(fresh.history_batches(tag_ids, end - step, end + span, slice_ns=step)))
    keep = after.ts_ns >= end
    joined = Batch.concat([*batches, Batch(after.tag_id[keep], after.ts_ns[keep],
                                           after.value[keep], after.quality[keep])])
    assert np.count_nonzero(keep) > 100  # the half hour after the end has samples
    for name in ("tag_id", "ts_ns", "value"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(unbroken, name))
    at_end = Batch.concat(list(fresh.history_batches(tag_ids, end, end + span)))
    assert np.count_nonzero(at_end.ts_ns == end) > np.count_nonzero(unbroken.ts_ns == end)


def test_stored_values_follow_the_tag_encoding(settings: Settings) -> None:
    base = dict(name="x", asset=settings.assets[0].path, address=0)
    kwh = np.array([0.0, 1.23456789, 1.2349, 70000.5])
    wh = ModbusTag(**base, role=Role.ENERGY_KWH, type="uint32", scale=0.001)  # type: ignore[arg-type]
    np.testing.assert_allclose(stored_values(wh, kwh), np.round(kwh * 1000) * 0.001)
    f32 = ModbusTag(**base, role=Role.ENERGY_KWH, type="float32")  # type: ignore[arg-type]
    np.testing.assert_array_equal(stored_values(f32, kwh), kwh.astype(np.float32).astype(float))
    u16 = ModbusTag(**base, role=Role.TOTAL_COUNT, type="uint16")  # type: ignore[arg-type]
    np.testing.assert_array_equal(stored_values(u16, np.array([65535.0, 65536.0, 70000.0])),
                                  [65535, 0, 70000 - 65536])  # the register wraps
    offset = ModbusTag(**base, role=Role.TOTAL_COUNT, type="int32", scale=2, offset=10)  # type: ignore[arg-type]
    np.testing.assert_array_equal(stored_values(offset, np.array([10.0, 20.0])), [10.0, 20.0])


def test_enum_without_a_needed_name_is_an_error(settings: Settings) -> None:
    codes = np.array([int(c) for c in CANONICAL[Role.STATE]], dtype=np.float64)
    tag = ModbusTag(name="state", asset=settings.assets[0].path, address=0, role=Role.STATE,
                    enum={7: "Executing", 8: "NotExecuting"})
    with pytest.raises(ValueError, match="OutOfService"):
        stored_values(tag, codes)


def test_only_named_tags_of_enabled_devices(settings: Settings, tag_ids: dict[str, int]) -> None:
    devices = [settings.devices[0], settings.devices[1].model_copy(update={"enabled": False})]
    s = settings.model_copy(update={"devices": devices})
    plant = Plant(s, now=NOW)
    some = {p: i for p, i in tag_ids.items() if p.endswith(("/state", "/total_count"))}
    start = plant.now_ns - 3600 * 10**9
    got = Batch.concat(list(plant.history_batches(some, start, plant.now_ns)))
    paths = {p for p, i in some.items() if i in set(got.tag_id.tolist())}
    assert paths == {p for p in some if "/line1/" in p}
    assert not list(plant.history_batches(tag_ids, plant.now_ns, plant.now_ns))
