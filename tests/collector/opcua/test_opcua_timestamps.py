"""Source, server and gateway timestamps of OPC UA samples, all stored: the plant simulator
(real asyncua server, real sockets) -> collector -> supervisor -> writer -> SQLite.

Three clocks that cannot be confused: the simulator stamps each value's SourceTimestamp with
its simulated instant (November 2026, 10 s per tick), its ServerTimestamp with the real
wall clock, and the collector's clock (the gateway's) is a third, ticking clock in 2031.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pytest
from asyncua import ua

from collector import OpcUaCollector, Supervisor
from config.base import DeviceBase
from simulators import Plant, datetime_ns
from simulators.opcua import OPCUA_SIGNALS, serve_opcua
from store import TS_UNKNOWN
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.opcua_helpers import ids_for, odevice, opcua_server, otag
from tests.helpers import FAST, TickingClock, register, wait_until

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
GATEWAY_T0 = datetime_ns(datetime(2031, 1, 1, tzinfo=UTC))
ASSET = "demo/machining/line1/mill-02"
END = 2**62


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_source_server_and_gateway_timestamps_are_stored(
    sqlite_store: SqliteStore, plant: Plant, mode: str
) -> None:
    sim_clock = TickingClock(datetime_ns(NOW), 10 * 10**9)
    gateway_clock = TickingClock(GATEWAY_T0, 1_000)
    wall_before = time.time_ns() // 1000 * 1000  # the server's DateTime has µs here
    async with serve_opcua(plant, [ASSET], interval_s=0.05, clock=sim_clock,
                           security=[ua.SecurityPolicyType.NoSecurity], extra_variables=2) as sim:
        keys = [f"{ASSET}/{sig}" for sig in OPCUA_SIGNALS] + ["bulk/0", "bulk/1"]
        tags = [otag(k.removeprefix(f"{ASSET}/").replace("/", "."), sim.node_ids[k], asset=ASSET)
                for k in keys]
        dev = odevice(sim.endpoint, tags, mode=mode, backoff=FAST, poll_interval_s=0.05)
        ids = register(sqlite_store, dev)
        live = ids[dev.tags[-1].path]  # bulk/1 changes at every simulator tick

        def factory(device: DeviceBase, tag_ids: Mapping[str, int]) -> OpcUaCollector:
            return OpcUaCollector(device, tag_ids, clock=gateway_clock)

        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids, factories={"opcua": factory}):
            await wait_until(lambda: len(sqlite_store.read(live, 0, END, prior=False)) >= 4,
                             what="several changes stored")
            await writer.flush()
    wall_after = time.time_ns()

    checked = 0
    for t in dev.tags:
        ts, server, gateway = sqlite_store.read_timestamps(ids[t.path], 0, END)
        assert len(ts) >= 1, t.path
        # ts is what KPIs read, and it is the source timestamp: a simulated instant
        np.testing.assert_array_equal(ts, sqlite_store.read(ids[t.path], 0, END, prior=False).ts_ns)
        assert set(ts.tolist()) <= set(sim_clock.calls), t.path
        # the server's own stamp, from the real clock while the server ran
        assert (server != TS_UNKNOWN).all(), t.path
        assert ((server >= wall_before) & (server <= wall_after)).all(), (t.path, server)
        # the gateway's clock when each value arrived
        assert set(gateway.tolist()) <= set(gateway_clock.calls), t.path
        # three different times for every sample
        assert ((ts != server) & (server != gateway) & (ts != gateway)).all(), t.path
        checked += len(ts)
    assert checked >= len(dev.tags) + 3
    # the samples of one tag arrived at different gateway instants, in arrival order
    _, _, gateway = sqlite_store.read_timestamps(live, 0, END)
    assert len(set(gateway.tolist())) == len(gateway) and (np.diff(gateway) > 0).all()


async def test_missing_timestamps_fall_back_and_stay_unknown() -> None:
    """ts_ns is the source timestamp, else the server's, else the gateway's; the server
    column says which: a sample without a ServerTimestamp has TS_UNKNOWN there. The small
    test server of opcua_helpers, because the simulator always sends both timestamps."""
    gateway_clock = TickingClock(GATEWAY_T0, 1_000)
    server_at = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp")])
        async with OpcUaCollector(dev, ids_for(dev), clock=gateway_clock) as c:
            got: list[Batch] = []

            async def collect() -> None:
                async for b in c.batches():
                    got.append(b)

            def sample(value: float) -> tuple[int, int, int] | None:
                for b in got:
                    hit = np.flatnonzero(b.value == value)
                    if len(hit):
                        assert b.server_ts_ns is not None and b.gateway_ts_ns is not None
                        k = hit[-1]
                        return int(b.ts_ns[k]), int(b.server_ts_ns[k]), int(b.gateway_ts_ns[k])
                return None

            async def write(value: float, server_ts: datetime | None) -> None:
                dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double),
                                  SourceTimestamp=None, ServerTimestamp=server_ts)
                status = await srv.server.iserver.aspace.write_attribute_value(
                    srv.vars["temp"].nodeid, ua.AttributeIds.Value, dv)
                assert status.is_good()

            task = asyncio.create_task(collect())
            try:
                await wait_until(lambda: sample(20.0) is not None, what="the initial value")
                await write(21.0, server_at)
                await wait_until(lambda: sample(21.0) is not None, what="a value without source time")
                ts, server, gateway = sample(21.0) or (0, 0, 0)
                assert ts == server == datetime_ns(server_at)
                assert gateway in gateway_clock.calls
                await write(22.0, None)
                await wait_until(lambda: sample(22.0) is not None, what="a value without any time")
                ts, server, gateway = sample(22.0) or (0, 0, 0)
                assert server == TS_UNKNOWN and ts == gateway and gateway in gateway_clock.calls
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


NULL_DATE = datetime(1601, 1, 1, tzinfo=UTC)  # OPC UA's "no time" (node-opcua's ServerTimestamp)
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.mark.parametrize(("source", "server", "ts", "server_ts"), [
    (AT, NULL_DATE, datetime_ns(AT), TS_UNKNOWN),
    (NULL_DATE, AT, datetime_ns(AT), datetime_ns(AT)),
    (datetime(1969, 12, 31, tzinfo=UTC), AT, datetime_ns(AT), datetime_ns(AT)),
    (NULL_DATE, NULL_DATE, "gateway", TS_UNKNOWN),
    (datetime(9999, 12, 31, tzinfo=UTC), datetime(2300, 1, 1), "gateway", TS_UNKNOWN),
    (None, datetime(1601, 1, 1), "gateway", TS_UNKNOWN),  # naive, as asyncua decodes
])
def test_out_of_range_timestamps_are_unknown_and_cost_nothing_else(
    source: datetime | None, server: datetime | None, ts: int | str, server_ts: int
) -> None:
    """A timestamp a store cannot hold (the null date, before 1970, after 2262) is unknown:
    the sample takes the next one of source -> server -> gateway, and its neighbours in the
    batch are untouched (issue 9: one null ServerTimestamp lost every batch)."""
    gateway_clock = TickingClock(GATEWAY_T0, 1_000)
    dev = odevice("opc.tcp://127.0.0.1:4840/", [otag("a", "ns=2;s=a"), otag("b", "ns=2;s=b")])
    c = OpcUaCollector(dev, ids_for(dev), clock=gateway_clock)
    good = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=AT, ServerTimestamp=AT)
    odd = ua.DataValue(ua.Variant(2.0, ua.VariantType.Double),
                       SourceTimestamp=source, ServerTimestamp=server)
    c._record(0, good)
    c._record(1, odd)
    c._record(0, good)
    batch = c._drain()
    assert batch.server_ts_ns is not None and batch.gateway_ts_ns is not None
    assert batch.value.tolist() == [1.0, 2.0, 1.0] and batch.quality.tolist() == [0, 0, 0]
    assert batch.ts_ns[[0, 2]].tolist() == [datetime_ns(AT)] * 2
    expected = int(batch.gateway_ts_ns[1]) if ts == "gateway" else ts
    assert (int(batch.ts_ns[1]), int(batch.server_ts_ns[1])) == (expected, server_ts)
    assert int(batch.gateway_ts_ns[1]) in gateway_clock.calls
