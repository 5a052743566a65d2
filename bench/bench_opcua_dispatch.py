"""CPU per data-change notification on the gateway side of an OPC UA subscription, by
asyncua's delivery mode: handler mode (a task per notification, as the collector used until
issue 14) against iterator mode (the subscription's queue, one consumer task: what
:class:`~collector.opcua.OpcUaCollector` uses now).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_opcua_dispatch.py [--items N] [--publishes P]
[--rounds R]``. Prints figures only.

No server: a real asyncua ``Subscription`` is given the same decoded ``PublishResult`` (N
changes of N monitored items) P times through ``publish_callback``, as its session's publish
loop does, and a real collector (not connected) records the changes and turns each publish
into one batch (``_drain``). What this leaves out -- the socket, decoding the binary response,
the writer -- is the same in both modes. CPU seconds of the process (``time.process_time``),
so the machine's load changes the wall time, not the figure much; the modes alternate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import ua
from asyncua.common.subscription import DataChangeNotif, Subscription, SubscriptionItemData

from collector.opcua import OpcUaCollector
from config.opcua import OpcUaDevice, OpcUaTag


class TaskPerNotification:
    """Handler mode as the collector used it: each change's handler runs in its own task."""

    def __init__(self, owner: OpcUaCollector, members: list[int]) -> None:
        self._owner = owner
        self._members = members

    def datachange_notification(self, node: Any, val: Any, data: DataChangeNotif) -> None:
        handle = data.subscription_data.client_handle
        if handle is not None and 0 < handle <= len(self._members):
            self._owner._record(self._members[handle - 1], data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        pass


def setup(n: int) -> tuple[OpcUaCollector, list[SubscriptionItemData], ua.PublishResult]:
    tags = [OpcUaTag(name=f"v{i}", asset="p/a/l/m", node_id=f"ns=2;s=bulk/{i}") for i in range(n)]
    dev = OpcUaDevice(protocol="opcua", name="ua", endpoint="opc.tcp://127.0.0.1:4840", tags=tags)
    coll = OpcUaCollector(dev, {t.path: i for i, t in enumerate(tags)})
    items = []
    for k in range(1, n + 1):
        d = SubscriptionItemData()
        d.client_handle = k
        d.node = object()  # type: ignore[assignment]  # only checked for None
        items.append(d)
    now = datetime.now(UTC)
    dcn = ua.DataChangeNotification()
    dcn.MonitoredItems = [ua.MonitoredItemNotification(
        ClientHandle=k, Value=ua.DataValue(ua.Variant(float(k), ua.VariantType.Double),
                                           SourceTimestamp=now, ServerTimestamp=now))
        for k in range(1, n + 1)]
    result = ua.PublishResult()
    result.NotificationMessage = ua.NotificationMessage(SequenceNumber=1, NotificationData=[dcn])
    return coll, items, result


async def run(mode: str, n: int, publishes: int) -> float:
    coll, items, result = setup(n)
    members = list(range(n))
    params = ua.CreateSubscriptionParameters()
    handler = TaskPerNotification(coll, members) if mode == "handler" else None
    # the session: only its observer hook is called on a publish
    session = SimpleNamespace(observer=SimpleNamespace(on_notification=lambda *a: None))
    sub = Subscription(session, params, handler, queue_maxsize=0)  # type: ignore[arg-type]
    sub._monitored_items = {d.client_handle: d for d in items}  # type: ignore[misc]
    consumer = asyncio.create_task(coll._consume(sub, members)) if handler is None else None
    rows = 0
    c0 = time.process_time()
    for _ in range(publishes):
        await sub.publish_callback(result)
        while len(coll._r_idx) < n:
            await asyncio.sleep(0)
        rows += len(coll._drain())
    cpu = time.process_time() - c0
    if consumer is not None:
        consumer.cancel()
    assert rows == n * publishes, rows
    return cpu / rows


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--items", type=int, default=1000, help="changes per publish")
    ap.add_argument("--publishes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    for r in range(args.rounds):
        figs = {m: asyncio.run(run(m, args.items, args.publishes)) for m in ("handler", "iterator")}
        print(f"round {r + 1}: {args.items} changes x {args.publishes} publishes: CPU per change "
              f"handler mode {figs['handler'] * 1e6:.1f} us, iterator mode "
              f"{figs['iterator'] * 1e6:.1f} us ({figs['handler'] / figs['iterator']:.2f}x); "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
