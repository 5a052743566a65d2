"""The supervisor applies on-change storage to a polled device: the last withheld polls are
stored before a gap and at stop, and after a reconnect every sample until each tag has one
dated after the gap's end. A scripted collector on a settable clock, a real SqliteStore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self

from collector import Supervisor
from config.base import DeviceBase
from config.errors import ConnectError
from config.storage import Storage
from store.batch import Batch
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.modbus_helpers import mdevice, mtag
from tests.collector.opcua_helpers import odevice, opcua_server, otag
from tests.helpers import FAST, Clock, health, register, wait_until

S = 10**9
ENUM = {0: "NotAvailable", 1: "OutOfService", 2: "NotExecuting", 3: "Executing"}
#: per connection: the poll times (s); the state is 3 and the temperature rises by 1 a poll
SCRIPT = [[1, 2, 3, 4, 5], [10, 11, 12, 13]]


class Scripted:
    """Yields one poll per scripted time, stamping the gateway clock half a second later;
    the first connection then fails, the last one stays quiet until stopped."""

    connections = 0

    def __init__(self, device: DeviceBase, tag_ids: Mapping[str, int], clock: Clock,
                 done: asyncio.Event) -> None:
        self.device = device
        self.ids = [tag_ids[t.path] for t in device.tags]  # type: ignore[attr-defined]
        self.clock, self.done = clock, done
        self.k = Scripted.connections
        Scripted.connections += 1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None

    async def batches(self) -> AsyncIterator[Batch]:
        for t in SCRIPT[self.k]:
            self.clock.t = t * S + S // 2
            yield Batch.of(self.ids, t * S, [3.0, 20.0 + t])
        if self.k == 0:
            raise ConnectError("plc1: connection lost")
        self.done.set()
        await asyncio.Event().wait()


async def test_withheld_polls_gap_and_resume(sqlite_store: SqliteStore) -> None:
    dev = mdevice(1, [mtag("state", 0, role="state", enum=ENUM), mtag("temp", 1)], backoff=FAST)
    ids = register(sqlite_store, dev)
    clock, done = Clock(0), asyncio.Event()
    Scripted.connections = 0
    writer = Writer(sqlite_store)

    def make(d: DeviceBase, tag_ids: Mapping[str, int]) -> Scripted:
        return Scripted(d, tag_ids, clock, done)

    async with Supervisor([dev], sqlite_store, writer, ids, {"modbus": make},  # type: ignore[dict-item]
                          clock=clock) as sup:
        await asyncio.wait_for(done.wait(), 30)
        await wait_until(lambda: health(sup).samples_delivered == 18, what="every poll delivered")
        h = health(sup)
        assert h.samples_stored < h.samples_delivered
    await writer.close()

    state = sqlite_store.read(ids[dev.tags[0].path], 0, 100 * S, prior=False)
    # 1: first; 5: the last poll before the connection was lost; 10: while the gap was open;
    # 11: the first poll after the gap's end (10.5 s); 13: withheld until the stop
    assert (state.ts_ns // S).tolist() == [1, 5, 10, 11, 13]
    gaps = sqlite_store.gaps(dev.name, 0, 100 * S)
    assert [(g.start_ns, g.end_ns) for g in gaps] == [(5 * S + S // 2, 10 * S + S // 2)]
    # the analog tag is stored every poll (its role's default)
    temp = sqlite_store.read(ids[dev.tags[1].path], 0, 100 * S, prior=False)
    assert len(temp) == 9
    assert h.samples_stored == 9 + 4  # 13, withheld until the stop, came after this snapshot


async def test_opcua_poll_mode_heartbeat_by_gateway_time(sqlite_store: SqliteStore) -> None:
    """A real asyncua server polled every 0.05 s: an unchanged value keeps its source time,
    so its heartbeat goes by the gateway's clock; a change is stored at once; a text on any
    change. (An OPC UA subscription would get no filter at all.)"""
    async with opcua_server() as srv:
        beat = Storage(max_interval_s=0.5)
        dev = odevice(srv.endpoint, [
            otag("temp", f"ns={srv.ns};s=temp", storage=beat),
            otag("text", f"ns={srv.ns};s=recipe", role="status", storage=beat),
        ], mode="poll", poll_interval_s=0.05, backoff=FAST)
        ids = register(sqlite_store, dev)
        writer = Writer(sqlite_store)
        async with Supervisor([dev], sqlite_store, writer, ids) as sup:
            await wait_until(lambda: health(sup).samples_delivered >= 2 * 30, 60, "30 polls")
            await srv.set("temp", 21.5)
            await srv.set("text", "B2")
            await wait_until(lambda: health(sup).samples_delivered >= 2 * 40, 60, "10 more polls")
            h = health(sup)
        await writer.close()
    temp = sqlite_store.read(ids[dev.tags[0].path], 0, 2**62, prior=False)
    assert temp.value.tolist()[-1] == 21.5 and 20.0 in temp.value.tolist()
    # far fewer than the polls: the first, heartbeats every >= 0.5 s of gateway time, the
    # change, and the last poll at stop (the store keeps one sample per source time)
    assert 2 <= len(temp) < h.samples_delivered / 4
    assert h.samples_stored < h.samples_delivered / 2
    # per tag the first, at least two heartbeats in the >= 2 s of polling (by the gateway's
    # clock: the source time does not move), and the change
    assert h.samples_stored >= 2 * 4, h
    texts = [t for _, t, _ in sqlite_store.read_text(ids[dev.tags[1].path], 0, 2**62)]
    assert texts[0] == "A1" and texts[-1] == "B2"
