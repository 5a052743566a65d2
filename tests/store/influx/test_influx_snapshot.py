"""``InfluxStore.snapshot()`` against a real InfluxDB 1.6: reads capped at the block's start
keep live samples out; a late sample for an earlier time can still appear (the documented
limit: InfluxDB has no transactions)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.store import InfluxStoreSettings
from store import Batch, InfluxStore, TagRecord
from tests.influx_servers import InfluxDB16

pytestmark = pytest.mark.influxdb

SEC = 10**9
FAR = 2**62


@pytest.fixture
def influx(influxdb16: InfluxDB16, tmp_path: Path) -> Iterator[InfluxStore]:
    s = InfluxStore(InfluxStoreSettings(type="influx", api="v1", url=influxdb16.url,
                                        database="tierproof", meta_path=str(tmp_path / "meta.db")))
    yield s
    s.close()


def test_snapshot_caps_reads_at_its_start(influx: InfluxStore) -> None:
    (tid,) = influx.register_tags([TagRecord(path="p/a/l/m/s", asset="p/a/l/m", role="analog",
                                             device="plc", protocol="modbus")]).values()
    t0 = time.time_ns() - 60 * SEC
    influx.write(Batch.of([tid] * 3, [t0, t0 + SEC, t0 + 2 * SEC], [1.0, 2.0, 3.0]))
    with influx.snapshot():
        before = influx.read(tid, 0, FAR, prior=True).value.tolist()
        live = time.time_ns()  # after the block's start: what a collector writes now
        influx.write(Batch.of([tid, tid], [live, live + SEC], [8.0, 9.0]))
        influx.open_gap("plc", live, "unreachable")
        inside = influx.read(tid, 0, FAR, prior=True).value.tolist()
        latest = influx.latest([tid])[tid].value
        times = influx.read_timestamps(tid, 0, FAR)[0].tolist()
        gaps = influx.gaps(None, 0, FAR)
        # the limit: a sample written meanwhile for an earlier time is not held back
        influx.write(Batch.of([tid], [t0 + SEC // 2], [1.5]))
        late = influx.read(tid, 0, FAR, prior=True).value.tolist()
    assert before == inside == [1.0, 2.0, 3.0]
    assert latest == 3.0 and times == [t0, t0 + SEC, t0 + 2 * SEC] and gaps == []
    assert late == [1.0, 1.5, 2.0, 3.0]
    after = influx.read(tid, 0, FAR, prior=True).value.tolist()
    assert after == [1.0, 1.5, 2.0, 3.0, 8.0, 9.0]
    assert influx.latest([tid])[tid].value == 9.0 and len(influx.gaps(None, 0, FAR)) == 1
