"""Folding on a real InfluxDB 1.6 (``InfluxStore.read_ranges``): a tag that its last read
showed dense is read from a short look back before its window in the window's statement,
instead of a statement of its own for its sample before the window. The samples are exactly
those of a plain read (the embedded store given the same batches is the oracle), also when
the hint is wrong: a dense tag silent for hours before the next window (its sample before
is then looked for in the day before), or for days (then anywhere), or never written."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, Series, SqliteStore, TagRecord
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
HOUR = 3600 * SEC
DAY = 24 * HOUR
T0 = 1_700_000_000 * SEC + 123_456_789
# dense: a sample every 7 s; sparse: every 3 h; quiet: dense, then nothing for 5 h before
# the second window; gone: dense, then nothing for 3 days; never: not written
SIGNALS = ("dense", "dense2", "sparse", "quiet", "gone", "never")


def _records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/a/l1/m{m}/{s}", asset=f"plant/a/l1/m{m}", role="total_count",
                      device="plc", protocol="modbus") for m in (1, 2) for s in SIGNALS]


def _statements(requests: list[httpx.Request]) -> list[list[str]]:
    return [httpx.QueryParams(r.content.decode())["q"].split(";") for r in requests]


def _same(got: Series, want: Series, where: str) -> None:
    np.testing.assert_array_equal(got.ts_ns, want.ts_ns, err_msg=where)
    np.testing.assert_array_equal(got.value, want.value, err_msg=where)
    np.testing.assert_array_equal(got.quality, want.quality, err_msg=where)


def test_dense_tags_fold_their_sample_before_and_read_the_same(influxdb16: InfluxDB16,
                                                               tmp_path: Path) -> None:
    settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url,
                                   database="tierproof", measurement="fold",
                                   meta_path=str(tmp_path / "meta.db"), gzip=False)
    w1 = (T0, T0 + HOUR)  # first window: learns the rates
    w2 = (T0 + 4 * DAY, T0 + 4 * DAY + HOUR)  # second: dense ones folded
    with InfluxStore(settings) as influx, SqliteStore(tmp_path / "oracle.db") as oracle:
        records = _records()
        ids = influx.register_tags(records)
        assert oracle.register_tags(records) == ids
        rng = np.random.default_rng(28)
        parts = []
        for r in records:
            sig, t = r.path.rsplit("/", 1)[1], ids[r.path]
            step = 3 * HOUR if sig == "sparse" else 7 * SEC
            ts = np.arange(T0 - DAY, w2[1] + HOUR, step, dtype=np.int64) + int(rng.integers(0, SEC))
            if sig == "quiet":  # nothing in the 5 hours before the second window
                ts = ts[(ts < w2[0] - 5 * HOUR) | (ts >= w2[0] + 60 * SEC)]
            elif sig == "gone":  # nothing in the 3 days before it
                ts = ts[(ts < w2[0] - 3 * DAY) | (ts >= w2[0] + 60 * SEC)]
            elif sig == "never":
                continue
            quality = rng.choice([0, 0, 0, 2], len(ts)).astype(np.uint8)
            parts.append(Batch.of(np.full(len(ts), t), ts, np.cumsum(rng.random(len(ts))), quality))
        batch = Batch.concat(parts)
        influx.write(batch)
        oracle.write(batch)
        requests: list[httpx.Request] = []
        influx._http.event_hooks["request"].append(requests.append)

        def check(window: tuple[int, int]) -> list[list[str]]:
            requests.clear()
            # each tag over the window, and the dense ones once more from 10 minutes in
            wanted = [(t, *window) for t in ids.values()]
            wanted += [(ids[r.path], window[0] + 600 * SEC, window[1]) for r in records
                       if r.path.endswith("/dense")]
            got = influx.read_ranges(wanted, prior=True)
            for (t, a, b), s in zip(wanted, got, strict=True):
                _same(s, oracle.read(t, a, b, prior=True), f"tag {t} [{a}, {b})")
            return _statements(requests)

        first = check(w1)
        # first read of every tag: each asset and window has its statement of the sample
        # before (LIMIT 1) for all its tags; the never-written ones are asked again anywhere
        assert len(first) == 2
        assert sum("LIMIT 1" in st for st in first[0]) == sum("LIMIT 1" not in st for st in first[0]) == 4
        second = check(w2)
        # dense tags (and quiet, gone: dense in their last read) from a minute before the
        # window (a sample every 7 s: 8.6 expected), in the window's statement; none has a
        # statement of its own for its sample before, in the first request
        folded = [st for st in second[0] if f"time >= {w2[0] - 60 * SEC} AND time < {w2[1]}" in st]
        assert len(folded) == 2 and all("'dense'" in st and "'quiet'" in st for st in folded)
        assert not [st for st in second[0] if "LIMIT 1" in st and "dense" in st]
        assert [st for st in second[0] if "LIMIT 1" in st and "'sparse'" in st]  # as before
        # quiet and gone: nothing in that minute, so the day before (quiet found there), then
        # anywhere (gone), with the never-written ones (none at all)
        assert len(second) == 3
        assert "'quiet'" in " ".join(second[1]) and "'gone'" in " ".join(second[1])
        assert "'quiet'" not in " ".join(second[2]) and "'gone'" in " ".join(second[2])
        assert all("AND time >= " not in st.split("WHERE", 1)[1].split("AND time <")[0]
                   for st in second[2])


class RowLimitedInfluxDB16(InfluxDB16):
    """InfluxDB 1.6 whose answers not chunked hold at most 5 rows per series."""

    def _config(self) -> str:
        return super()._config().replace("max-row-limit = 0", "max-row-limit = 5")


@pytest.mark.parametrize("limited", [False, True])
def test_small_answers_are_asked_for_whole_and_a_cut_one_again(tmp_path: Path,
                                                                limited: bool) -> None:
    """Once the tags' rates are known, a read expected to be small is asked for in one piece
    (not chunked: cheaper for httpx); a server whose ``max-row-limit`` cuts it (it says
    ``"partial":true``) is asked again, chunked, and nothing is lost."""
    server = (RowLimitedInfluxDB16 if limited else InfluxDB16)(tmp_path / "influxdb")
    server.start()
    try:
        settings = InfluxStoreSettings(type="influx", api="v1", url=server.url,
                                       database="tierproof", measurement="whole",
                                       meta_path=str(tmp_path / "meta.db"), gzip=False)
        with InfluxStore(settings) as influx, SqliteStore(tmp_path / "oracle.db") as oracle:
            records = _records()[:3]
            ids = influx.register_tags(records)
            assert oracle.register_tags(records) == ids
            ts = T0 + np.arange(0, 2 * HOUR, 10 * SEC, dtype=np.int64)
            batch = Batch.concat([Batch.of(np.full(len(ts), t), ts + k, np.arange(len(ts)) * 1.5, 0)
                                  for k, t in enumerate(ids.values())])
            influx.write(batch)
            oracle.write(batch)
            requests: list[httpx.Request] = []
            influx._http.event_hooks["request"].append(requests.append)
            for window in ((T0 + HOUR, T0 + HOUR + 600 * SEC), (T0 + HOUR + 900 * SEC, T0 + 2 * HOUR)):
                requests.clear()
                wanted = [(t, *window) for t in ids.values()]
                for (t, a, b), s in zip(wanted, influx.read_ranges(wanted), strict=True):
                    _same(s, oracle.read(t, a, b, prior=True), f"tag {t} [{a}, {b})")
                    assert len(s.ts_ns) > 50
            chunked = ["chunked" in r.url.params for r in requests]
            # the second read: its rates known, asked for whole; cut by the limit: again chunked
            assert chunked == ([False, True] if limited else [False])
    finally:
        server.kill()


def test_a_tag_whose_sample_before_lies_far_back_is_not_folded(influxdb16: InfluxDB16,
                                                               tmp_path: Path) -> None:
    """A tag dense inside its window but whose sample before lay hours back (a reject counter
    that counts a burst) is read with a statement of its own for its sample before the next
    window, in the first request: folded, its look back would find nothing there and cost a
    request more. A dense tag read in the same request is still folded."""
    settings = InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url,
                                   database="tierproof", measurement="lead",
                                   meta_path=str(tmp_path / "meta.db"), gzip=False)
    windows = [(T0 + k * DAY, T0 + k * DAY + HOUR) for k in range(3)]
    records = [TagRecord(path=f"plant/a/l1/m1/{s}", asset="plant/a/l1/m1", role="total_count",
                         device="plc", protocol="modbus") for s in ("dense", "burst")]
    with InfluxStore(settings) as influx, SqliteStore(tmp_path / "oracle.db") as oracle:
        ids = influx.register_tags(records)
        assert oracle.register_tags(records) == ids
        dense = np.arange(T0 - DAY, windows[-1][1], 7 * SEC, dtype=np.int64)
        # burst: a sample 5 h before each window, then one every 7 s from 1 s into it
        burst = np.concatenate([np.concatenate([[a - 5 * HOUR], np.arange(a + SEC, b, 7 * SEC)])
                                for a, b in windows]).astype(np.int64)
        batch = Batch.concat([Batch.of(np.full(len(ts), ids[r.path]), ts,
                                       np.arange(len(ts), dtype=np.float64), 0)
                              for r, ts in zip(records, (dense, burst), strict=True)])
        influx.write(batch)
        oracle.write(batch)
        requests: list[httpx.Request] = []
        influx._http.event_hooks["request"].append(requests.append)
        for window in windows:
            requests.clear()
            wanted = [(t, *window) for t in ids.values()]
            for (t, a, b), s in zip(wanted, influx.read_ranges(wanted, prior=True), strict=True):
                _same(s, oracle.read(t, a, b, prior=True), f"tag {t} [{a}, {b})")
            sent = _statements(requests)
            # one request each time: the first read has its statement of the sample before
            # for both; later ones fold dense (a minute back) and ask burst's on its own
            assert len(sent) == 1, sent
            before = [st for st in sent[0] if "LIMIT 1" in st]
            assert len(before) == 1 and "'burst'" in before[0]
            assert ("'dense'" in before[0]) == (window == windows[0])
