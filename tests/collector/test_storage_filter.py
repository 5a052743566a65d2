"""The on-change storage filter, by hand-computed cases: which polled samples are stored."""

from __future__ import annotations

import numpy as np
import pytest

from collector.filter import StorageFilter
from config.signals import Quality
from config.storage import Storage, StorageDeadband
from store.batch import Batch

S = 1_000_000_000
G, B = int(Quality.GOOD), int(Quality.BAD_DEVICE_FAILURE)
NC = int(Quality.BAD_NOT_CONNECTED)


def one_tag(storage: Storage, *, counter: bool = False) -> StorageFilter:
    f = StorageFilter()
    f.set(7, storage, counter=counter)
    return f


def run(f: StorageFilter, values: list[float], quality: list[int] | None = None,
        t0: int = 0, step_s: float = 1.0) -> list[tuple[float, float, int]]:
    """Poll tag 7 once per batch; return the stored (t s, value, quality)."""
    out = []
    for k, v in enumerate(values):
        q = G if quality is None else quality[k]
        b = f.apply(Batch.of([7], [t0 + round(k * step_s * S)], [v], q))
        out += [(t / S, x, int(qq)) for t, x, qq in zip(b.ts_ns, b.value, b.quality, strict=True)]
    return out


def vals(stored: list[tuple[float, float, int]]) -> list[tuple[float, float]]:
    return [(t, v) for t, v, _ in stored]


CASES = [
    # (storage, polled values, stored (t, value))
    pytest.param(Storage(), [1, 1, 1, 2, 2, 3], [(0, 1), (3, 2), (5, 3)], id="deadband-0"),
    pytest.param(Storage(mode="every_poll"), [1, 1, 2], [(0, 1), (1, 1), (2, 2)], id="every-poll"),
    # absolute 0.5 from the last *stored* value: 10.4 stays, 10.6 moves; creeping does not
    # escape the band (10.3 -> 10.6 -> 10.9: compared with 10.6, not with the previous poll)
    pytest.param(Storage(deadband=StorageDeadband(type="absolute", value=0.5)),
                 [10, 10.4, 10.6, 10.9, 11.0, 11.2], [(0, 10), (2, 10.6), (5, 11.2)],
                 id="absolute"),
    # exactly on the band is not beyond it
    pytest.param(Storage(deadband=StorageDeadband(type="absolute", value=0.5)),
                 [10, 10.5, 9.5, 9.4], [(0, 10), (3, 9.4)], id="absolute-edge"),
    # percent of the last stored value: 10 % of 100 is 10, then 10 % of 111 is 11.1
    pytest.param(Storage(deadband=StorageDeadband(type="percent", value=10)),
                 [100, 109, 111, 121, 122.2, 90], [(0, 100), (2, 111), (4, 122.2), (5, 90)],
                 id="percent"),
    # percent at a stored 0: the band is empty, any change is stored
    pytest.param(Storage(deadband=StorageDeadband(type="percent", value=50)),
                 [0, 0, 0.001, 0.0012, -5], [(0, 0), (2, 0.001), (4, -5)], id="percent-at-zero"),
    # percent of a negative value uses its magnitude
    pytest.param(Storage(deadband=StorageDeadband(type="percent", value=10)),
                 [-100, -91, -89], [(0, -100), (2, -89)], id="percent-negative"),
]


@pytest.mark.parametrize(("storage", "polled", "stored"), CASES)
def test_deadband(storage: Storage, polled: list[float], stored: list[tuple[float, float]]) -> None:
    assert vals(run(one_tag(storage), polled)) == stored


def test_heartbeat_stores_an_unchanged_value_every_max_interval() -> None:
    f = one_tag(Storage(max_interval_s=5))
    # polls every second, unchanged: t=0, then 5, 10 (the heartbeat counts from the last
    # *stored* sample: the change at 7 restarts it, so the next beat is at 12)
    got = vals(run(f, [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]))
    assert got == [(0, 1), (5, 1), (7, 2), (12, 2)]


def test_heartbeat_applies_inside_the_deadband_too() -> None:
    f = one_tag(Storage(max_interval_s=3, deadband=StorageDeadband(type="absolute", value=1)))
    assert vals(run(f, [5, 5.5, 4.5, 5.2, 5.9, 6.0])) == [(0, 5), (3, 5.2)]


def test_quality_change_is_stored_and_repeated_bad_is_not() -> None:
    f = one_tag(Storage())
    got = run(f, [1, 1, np.nan, np.nan, np.nan, 1, 1], [G, G, B, B, NC, G, G])
    assert [(t, q) for t, _, q in got] == [(0, G), (2, B), (4, NC), (5, G)]


def test_nan_to_nan_is_no_change_but_nan_to_a_number_is() -> None:
    f = one_tag(Storage())
    got = vals(run(f, [np.nan, np.nan, 3, 3, np.nan, np.inf, np.inf, 4]))
    assert [t for t, _ in got] == [0, 2, 4, 5, 7]


def test_first_sample_after_a_gap_and_until_its_end() -> None:
    f = one_tag(Storage())
    assert vals(run(f, [1, 1, 1])) == [(0, 1)]
    f.suspend()  # the connection was lost
    # while the gap is open (the reconnect's first batches) every sample is stored
    assert vals(run(f, [1, 1], t0=10 * S)) == [(10, 1), (11, 1)]
    f.resume(12 * S + 1)  # the gap ended just after the 12 s poll (gateway time)
    # the 12 s poll is before the end: stored; the 13 s one is the first after it: stored;
    # then on change again
    assert vals(run(f, [1, 1, 1, 1], t0=12 * S)) == [(12, 1), (13, 1)]


def test_resume_of_some_tags_only() -> None:
    f = StorageFilter()
    for tid in (1, 2):
        f.set(tid, Storage())
    f.apply(Batch.of([1, 2], 0, [5, 5]))
    f.suspend([2])  # a part gap of the asset of tag 2
    b = f.apply(Batch.of([1, 2], S, [5, 5]))
    assert b.tag_id.tolist() == [2]
    f.resume(2 * S, [2])
    assert f.apply(Batch.of([1, 2], 2 * S, [5, 5])).tag_id.tolist() == [2]
    assert len(f.apply(Batch.of([1, 2], 3 * S, [5, 5]))) == 0


def test_withheld_gives_the_last_unstored_poll_once() -> None:
    f = one_tag(Storage())
    run(f, [4, 4, 4, 4])
    w = f.withheld()
    assert (w.tag_id.tolist(), w.ts_ns.tolist(), w.value.tolist()) == ([7], [3 * S], [4.0])
    assert len(f.withheld()) == 0
    # counted as stored: the heartbeat runs from it
    assert vals(run(f, [4], t0=4 * S)) == []


def test_counter_keeps_the_poll_before_each_change() -> None:
    f = one_tag(Storage(), counter=True)
    got = vals(run(f, [10, 10, 10, 11, 11, 11, 11, 12, 13, 13]))
    # the increase 10 -> 11 is bounded by the polls at 2 and 3 s, as with every-poll storage
    assert got == [(0, 10), (2, 10), (3, 11), (6, 11), (7, 12), (8, 13)]


def test_counter_keeps_the_poll_before_going_bad() -> None:
    f = one_tag(Storage(), counter=True)
    got = run(f, [5, 5, 5, np.nan, np.nan, 6, 6], [G, G, G, B, B, G, G])
    assert [(t, v if q == G else "bad") for t, v, q in got] == [
        (0, 5), (2, 5), (3, "bad"), (4, "bad"), (5, 6)
    ]


def test_texts_are_stored_on_any_change() -> None:
    f = StorageFilter()
    f.set(3, Storage(deadband=StorageDeadband(type="absolute", value=100)))
    seq = ["a", "a", "b", "b", None, None, "b"]
    got = []
    for k, txt in enumerate(seq):
        text = np.array([txt], dtype=object)
        b = Batch(np.array([3], np.int32), np.array([k * S], np.int64), np.array([np.nan]),
                  np.zeros(1, np.uint8), text)
        out = f.apply(b)
        got += [(int(t) // S, x) for t, x in zip(out.ts_ns, out.text if out.text is not None
                                                  else [None] * len(out), strict=True)]
    assert got == [(0, "a"), (2, "b"), (4, None), (6, "b")]


def test_several_samples_of_a_tag_in_one_batch_are_taken_in_order() -> None:
    f = StorageFilter()
    f.set(1, Storage(), counter=True)
    f.set(2, Storage())
    tid = [1, 2, 1, 2, 1, 2, 1]
    ts = [0, 0, 1, 1, 2, 2, 3]
    v = [5, 7, 5, 7, 6, 8, 6]
    b = f.apply(Batch.of(tid, np.array(ts) * S, v))
    got = sorted(zip(b.tag_id.tolist(), (b.ts_ns // S).tolist(), b.value.tolist(), strict=True))
    assert got == [(1, 0, 5), (1, 1, 5), (1, 2, 6), (2, 0, 7), (2, 2, 8)]
    # per tag the output is in time order
    for t in (1, 2):
        sel = b.tag_id == t
        assert np.all(np.diff(b.ts_ns[sel]) > 0)


def test_unconfigured_tags_are_stored_every_poll_and_the_batch_is_passed_as_is() -> None:
    f = StorageFilter()
    b = Batch.of([1000, 1001], 0, [1, 2])
    assert f.apply(b) is b
    assert f.apply(Batch.of([1000, 1001], S, [1, 2])).tag_id.tolist() == [1000, 1001]


def test_other_timestamps_travel_with_a_withheld_sample() -> None:
    f = one_tag(Storage(), counter=True)
    f.apply(Batch.of([7], 0, [1], server_ts_ns=[-5], gateway_ts_ns=[3]))
    f.apply(Batch.of([7], S, [1], server_ts_ns=[S - 5], gateway_ts_ns=[S + 3]))
    out = f.apply(Batch.of([7], 2 * S, [2], server_ts_ns=[2 * S - 5], gateway_ts_ns=[2 * S + 3]))
    assert out.ts_ns.tolist() == [S, 2 * S]
    assert out.server_ts_ns is not None and out.server_ts_ns.tolist() == [S - 5, 2 * S - 5]
    assert out.gateway_ts_ns is not None and out.gateway_ts_ns.tolist() == [S + 3, 2 * S + 3]


def test_vectorised_equals_one_by_one() -> None:
    """Many tags, random walks with flats, NaN and quality changes: filtering whole batches
    stores exactly what filtering sample by sample stores."""
    rng = np.random.default_rng(5)
    n_tags, n_polls = 40, 300
    configs = [
        Storage(),
        Storage(max_interval_s=7),
        Storage(deadband=StorageDeadband(type="absolute", value=0.8)),
        Storage(deadband=StorageDeadband(type="percent", value=5), max_interval_s=20),
        Storage(mode="every_poll"),
    ]
    steps = rng.choice([0.0, 0.0, 0.0, 0.5, -0.5, 2.0], size=(n_polls, n_tags))
    values = 10 + np.cumsum(steps, axis=0)
    quality = np.where(rng.random((n_polls, n_tags)) < 0.03, B, G).astype(np.uint8)
    values[rng.random((n_polls, n_tags)) < 0.02] = np.nan

    def make() -> StorageFilter:
        f = StorageFilter()
        for t in range(n_tags):
            f.set(t, configs[t % len(configs)], counter=t % 3 == 0)
        return f

    whole, single = make(), make()
    assert len(whole._every) == 64  # the per-tag arrays grow with the largest id, no faster
    a, b = [], []
    ids = np.arange(n_tags, dtype=np.int32)
    for k in range(n_polls):
        batch = Batch.of(ids, k * S, values[k], quality[k])
        out = whole.apply(batch)
        a += list(zip(out.tag_id.tolist(), out.ts_ns.tolist(), strict=True))
        for t in range(n_tags):
            o = single.apply(Batch.of([t], k * S, values[k, t], quality[k, t]))
            b += list(zip(o.tag_id.tolist(), o.ts_ns.tolist(), strict=True))
    assert sorted(a) == sorted(b)
    assert 0.1 < len(a) / (n_tags * n_polls) < 0.8


def test_heartbeat_and_gap_end_go_by_gateway_time_where_known() -> None:
    """A polled OPC UA value keeps its source time while unchanged: its heartbeat and the
    end of a gap are judged by the gateway's clock."""
    f = one_tag(Storage(max_interval_s=5))

    def poll(k: int, source_s: int) -> list[int]:
        b = f.apply(Batch.of([7], source_s * S, [1.0], gateway_ts_ns=[k * S]))
        return (b.gateway_ts_ns // S).tolist() if b.gateway_ts_ns is not None else []

    got = [g for k in range(12) for g in poll(k, source_s=0)]
    assert got == [0, 5, 10]
    f.suspend()
    assert poll(20, 0) == [20]
    f.resume(20 * S + 1)
    # stored until one has a gateway time after the gap's end, though its source time is old
    assert [g for k in (21, 22, 23) for g in poll(k, 0)] == [21]
