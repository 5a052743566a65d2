"""Group commit into InfluxDB 1.6 through the spool: batches waiting for the writer thread go
out as one POST (direct) or one spool append with one fdatasync (flush_interval_s), and each
``Writer.write`` returns only once its batch is in InfluxDB or durably in the spool."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.store import InfluxStoreSettings, SpoolSettings
from store import SpooledStore, TagRecord, open_store
from store.batch import Batch
from store.writer import Writer
from tests.influx_servers import InfluxDB16

T0 = 1_760_000_000_000_000_000
TAGS = 8
N = 20  # concurrent writes


def tag_records() -> list[TagRecord]:
    return [TagRecord(path=f"plant/area/line1/m1/s{i}", asset="plant/area/line1/m1", role="analog",
                      device="plc1", protocol="modbus") for i in range(TAGS)]


def batch_k(k: int, ids: list[int]) -> Batch:
    """Batch ``k``: 10 new points per tag, and (k > 0) batch k-1's first point of every tag
    corrected to -k: the order of the batches inside a group decides the stored values."""
    tid = np.repeat(np.array(ids, np.int32), 10)
    ts = T0 + k * 1_000_000 + np.tile(np.arange(10), len(ids)) * 1000
    val = k * 1000.0 + np.tile(np.arange(10), len(ids))
    if k > 0:
        tid = np.concatenate([tid, np.array(ids, np.int32)])
        ts = np.concatenate([ts, np.full(len(ids), T0 + (k - 1) * 1_000_000)])
        val = np.concatenate([val, np.full(len(ids), -float(k))])
    return Batch.of(tid, ts, val)


def expected(n: int) -> dict[int, float]:
    """ts -> value of signal s0 after batches 0..n-1 in order."""
    out: dict[int, float] = {}
    for k in range(n):
        for i in range(10):
            out[T0 + k * 1_000_000 + i * 1000] = k * 1000.0 + i
        if k > 0:
            out[T0 + (k - 1) * 1_000_000] = -float(k)
    return out


def stored_s0(server: InfluxDB16) -> dict[int, float]:
    body: Any = server.query("SELECT \"value\" FROM \"tierproof\" WHERE \"signal\" = 's0'", server.database)
    series = body["results"][0].get("series", [])
    return {int(ts): float(v) for ts, v in series[0]["values"]} if series else {}


@pytest.mark.parametrize("flush_interval_s", [0.0, 1.0])
async def test_waiting_batches_are_one_post_or_one_spool_append(
    influxdb16: InfluxDB16, tmp_path: Path, flush_interval_s: float,
) -> None:
    store = open_store(InfluxStoreSettings(
        type="influx", api="v1", url=influxdb16.url, database=influxdb16.database, timeout_s=5.0,
        flush_interval_s=flush_interval_s, meta_path=str(tmp_path / "meta.db"),
        spool=SpoolSettings(path=str(tmp_path / "spool"))))
    assert isinstance(store, SpooledStore)
    w = Writer(store)
    gate = threading.Event()
    try:
        reg = store.register_tags(tag_records())
        ids = [reg[t.path] for t in tag_records()]
        held = asyncio.create_task(w.run(gate.wait, 20))  # a write in progress, as it were
        await asyncio.sleep(0)
        acked: list[int] = []

        async def one(k: int) -> None:
            await w.write(batch_k(k, ids))
            acked.append(k)
            if flush_interval_s == 0:  # posted: InfluxDB has this batch's points on return
                got = await asyncio.to_thread(stored_s0, influxdb16)
                assert T0 + k * 1_000_000 + 9000 in got

        tasks = [asyncio.create_task(one(k)) for k in range(N)]
        await asyncio.sleep(0.05)
        assert acked == []
        gate.set()
        await held
        await asyncio.gather(*tasks)
        assert sorted(acked) == list(range(N)) and w.stats.groups_written == 1
        points = sum(len(batch_k(k, ids)) for k in range(N))
        f = store.forward
        if flush_interval_s == 0:
            # one store write (1,752 points: three lanes of >= 500, posted at once; posts_in_flight)
            assert (f.direct_batches, f.direct_points, f.spooled_batches) == (1, points, 0)
            assert store.inner.stats().batches_written == 1
        else:
            # acknowledged once durably in the spool: one record (one append, one fdatasync)
            assert (f.direct_batches, f.spooled_batches, f.spooled_points) == (0, 1, points)
            assert store.wait_drained(20)
        assert stored_s0(influxdb16) == expected(N)
    finally:
        gate.set()
        await w.close()
        store.close()
