"""The supervisor runs the OPC UA collector: an outage is a gap, subscriptions come back."""

from __future__ import annotations

from collector import Supervisor
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.opcua_helpers import odevice, opcua_server, otag
from tests.helpers import FAST, health, register, wait_until


async def test_outage_is_a_gap_and_subscriptions_are_recreated(sqlite_store: SqliteStore) -> None:
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp"),
                                     otag("ghost", f"ns={srv.ns};i=999")], backoff=FAST)
        ids = register(sqlite_store, dev)
        async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
            await wait_until(lambda: health(sup).samples_delivered >= 2, what="first samples")
            assert health(sup).state == "connected"
            assert list(health(sup).tag_errors) == [dev.tags[1].path]

            await srv.server.stop()
            await wait_until(lambda: health(sup).gap_open_since is not None, what="a gap")
            await srv.server.start()  # same port, same address space
            await wait_until(lambda: health(sup).gap_open_since is None, what="the gap closed")
            assert health(sup).reconnects >= 1
            before = health(sup).samples_delivered
            await srv.set("temp", 30.0)
            await wait_until(lambda: health(sup).samples_delivered > before,
                             what="a change through the new subscription")
        gaps = sqlite_store.gaps(dev.name, 0, 2**62)
        assert len(gaps) == 1 and gaps[0].end_ns is not None
