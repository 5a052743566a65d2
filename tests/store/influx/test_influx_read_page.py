"""InfluxStore.read_page against a real InfluxDB 1.6: the page is the head of the embedded
store's full read, and the server stops at it (ORDER BY time LIMIT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, SqliteStore, TagRecord
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
T0 = 1_700_000_000 * SEC + 123_456_789


def test_pages_equal_the_embedded_store(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    influx = InfluxStore(InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url,
                                             database="tierproof",
                                             meta_path=str(tmp_path / "meta.db")))
    oracle = SqliteStore(tmp_path / "oracle.db")
    try:
        tags = [TagRecord(path=f"s/a/l/m/{n}", asset="s/a/l/m", role="analog", device="d",
                          protocol="opcua") for n in ("v", "w")]
        tid, other = influx.register_tags(tags).values()
        assert oracle.register_tags(tags) == {t.path: i for t, i in zip(tags, (tid, other), strict=True)}
        n = 5000
        ts = T0 + np.arange(n, dtype=np.int64) * SEC // 10 + 7
        server = np.where(np.arange(n) % 3 == 0, np.iinfo(np.int64).min, ts + 11)
        for s in (influx, oracle):
            s.write(Batch.of([tid] * n, ts, np.arange(n) / 7, server_ts_ns=server,
                             gateway_ts_ns=ts + 1000))
            s.write(Batch.of([other] * 3, T0 + np.arange(3), [1.0, 2.0, 3.0]))
        for lo, hi, limit in [(T0, T0 + 10**6 * SEC, 1), (T0, T0 + 10**6 * SEC, 4999),
                              (T0, T0 + 10**6 * SEC, 5000), (T0 + 100 * SEC, T0 + 200 * SEC, 333),
                              (T0 - SEC, T0, 10)]:
            got, want = influx.read_page(tid, lo, hi, limit), oracle.read_page(tid, lo, hi, limit)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
            assert len(got.ts_ns) == min(limit, len(oracle.read(tid, lo, hi, prior=False)))
    finally:
        influx.close()
        oracle.close()
