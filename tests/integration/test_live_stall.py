"""The live pipeline while the gateway is starved of CPU: its event loop is blocked for
``STALL_S`` every ``EVERY_S`` (wall clock), the simulators are not. The KPIs must still count
every part the machines made.

What a stall does to the samples: a Modbus answer that arrives while the loop is blocked is
stamped when the collector's coroutine resumes, and so is every plain MQTT value that waits
in the socket; the sample is stamped late by up to the stall. The next sample, on time, then
seems to follow it sooner than it did, and a real counter rise over that pair can exceed what
``elapsed x counter_rate_factor / ideal cycle + 1`` allows: before ``tierproof-kpi/5`` real
parts were excluded from PQ as "implausible" (a CI rehearsal at load 15 lost 3 of press-01's
793). The rule now allows each pair ``kpi.counter_stamp_tolerance_s`` of stamping lateness.

Here everything runs on the accelerated clock (``SPEED`` x the wall clock), so a stall of
``STALL_S`` wall seconds is ``SPEED x STALL_S`` seconds of plant time: the settings' tolerance
is scaled by ``SPEED`` like the other wall-clock allowances (``JITTER_S``). The same stored
samples computed with no tolerance (the rule before) must lose parts: proof that the stalls
did stamp samples late in this run, so the equality is not vacuous.

The simulators (their Modbus and OPC UA servers and MQTT publishers) run on their own event
loop in their own thread, the collectors on the test's loop: a stall there is a real block
(``time.sleep`` in a loop callback, which releases the GIL, so the simulators carry on),
like a gateway process waiting for a core. The window's edges lie 3 minutes into planned
breaks, where no part is made: more than a stall plus the lag bound of test_live_truth.py, so
no part made before an edge is stamped after it and PQ, GQ and SQ must equal the truth's.
OPC UA and Sparkplug samples carry their source's timestamps and are not stamped late.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from api.gateway import tag_records
from api.service import KpiService
from collector import Supervisor
from collector.registry import COLLECTORS
from config import Settings
from config.modbus import ModbusDevice
from config.times import to_ns
from simulators import Plant, serve_devices
from simulators.truth import truth
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.helpers import AcceleratedClock, wait_until
from tests.integration.test_live_truth import JITTER_S, REFRESH_S, SPEED, T0, first_samples_in, live_settings
from tests.mosquitto import Mosquitto

# serial: the stalls are the point, other tests beside it on the same cores add their own
pytestmark = [pytest.mark.mqtt, pytest.mark.slow, pytest.mark.serial]

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 18, 9, 33, tzinfo=TZ)  # 3 min into the morning break (09:30-09:40)
END = datetime(2026, 11, 18, 12, 3, tzinfo=TZ)  # 3 min into the lunch break (12:00-12:30)
STALL_S = 0.5  # the gateway's loop is blocked this long (wall clock) ...
EVERY_S = 1.5  # ... this often (from the end of one stall to the start of the next)
#: the stamping tolerance in plant seconds: a stall and the loop's scheduling, x SPEED
TOLERANCE_S = SPEED * (STALL_S + JITTER_S)
ROLES = ("pq", "gq", "sq")


class StallingProxy:
    """A TCP relay between the collector of ``line2-plc`` and its Modbus server, in the
    simulators' thread. When a request for press-01 (unit 1) passes, at most once every
    ``EVERY_S``, it blocks the collectors' loop for ``STALL_S`` before passing the request on:
    the answer arrives while the gateway cannot run, as for a process waiting for a core when
    its socket becomes readable. The stall is real; only its moment is chosen, the worst one
    (press-01 makes a part every 6 s, ten in a stall), so that every run shows the late stamp
    instead of now and then (stalls at random moments, a loop callback every 1.5 s, lost 2
    and 0 parts in two runs of 38 stalls: an answer is rarely on its way just then)."""

    def __init__(self, upstream: int, gateway: asyncio.AbstractEventLoop) -> None:
        self.upstream, self.gateway = upstream, gateway
        self.stalls = 0
        self.armed = False
        self._next = 0.0  # monotonic time before which no new stall starts
        self.port = 0

    def stall(self) -> None:  # runs on the collectors' loop
        time.sleep(STALL_S)  # blocks the loop, not the simulators' thread (the GIL is free)
        self.stalls += 1
        self._next = time.monotonic() + EVERY_S

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, ask: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await r.read(65536):
                # MBAP header: the unit id is byte 6
                if ask and len(data) > 6 and data[6] == 1 and self.armed \
                        and time.monotonic() >= self._next:
                    self._next = float("inf")  # until this stall has ended
                    self.gateway.call_soon_threadsafe(self.stall)
                w.write(data)
                await w.drain()
        w.close()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pipe(r, uw, True), self._pipe(ur, w, False))

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def arm(self, on: bool = True) -> None:
        """Stalls from now on (not while the collectors connect and the clock stands), or no
        more."""
        self._next = time.monotonic() + EVERY_S
        self.armed = on


@contextlib.contextmanager
def simulators_in_thread(settings: Settings, plant: Plant, clock: AcceleratedClock,
                         proxy: StallingProxy) -> Iterator[None]:
    """``serve_devices`` and the proxy on an event loop of their own, in a thread of their own."""
    ready, failed = threading.Event(), []
    stop: list[asyncio.Event] = []
    loop: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loop.append(asyncio.get_running_loop())
        stop.append(asyncio.Event())
        try:
            async with serve_devices(settings, plant, clock=clock, interval_s=REFRESH_S), \
                    await proxy.start():
                ready.set()
                await stop[0].wait()
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            raise

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="simulators", daemon=True)
    thread.start()
    try:
        assert ready.wait(120), "the simulators did not start"
        assert not failed, failed
        yield
    finally:
        if loop:
            loop[0].call_soon_threadsafe(stop[0].set)
        thread.join(60)
        assert not thread.is_alive(), "the simulators did not stop"


def through(settings: Settings, device: str, port: int) -> Settings:
    """``settings`` whose ``device`` is reached on ``port``."""
    devices = [d.model_copy(update={"port": port}) if d.name == device else d
               for d in settings.devices]
    return settings.model_copy(update={"devices": devices})


async def collect_stalled(settings: Settings, plant: Plant, store: SqliteStore) -> int:
    """Collect from T0 until past END with the collectors' loop stalled; returns the stalls."""
    clock = AcceleratedClock(to_ns(T0), SPEED)
    tag_ids = store.register_tags(tag_records(settings))
    writer = Writer(store)
    factories = {name: partial(cls, clock=clock) for name, cls in COLLECTORS.items()}
    line2 = next(d for d in settings.devices if isinstance(d, ModbusDevice) and d.name == "line2-plc")
    proxy = StallingProxy(line2.port, asyncio.get_running_loop())
    with simulators_in_thread(settings, plant, clock, proxy):
        gateway = through(settings, "line2-plc", proxy.port)
        sup = Supervisor(gateway.devices, store, writer, tag_ids, factories, clock=clock)
        async with sup:
            await wait_until(lambda: first_samples_in(store, tag_ids, settings), 180,
                             "every asset's first state sample")
            clock.start()
            proxy.arm()
            end = to_ns(END + timedelta(minutes=1))
            await wait_until(lambda: clock() > end, 2 * (end - to_ns(T0)) / 1e9 / SPEED + 30,
                             "the end of the window")
            proxy.arm(False)
            await asyncio.sleep(0.3)  # what is still on its way
        # no gaps: a stall shorter than every timeout loses no connection
        assert all(h.reconnects == 0 and h.gap_open_since is None for h in sup.status())
    await writer.close()
    return proxy.stalls


def with_tolerance(settings: Settings, tolerance_s: float) -> Settings:
    kpi = settings.kpi.model_copy(update={"counter_stamp_tolerance_s": tolerance_s})
    return settings.model_copy(update={"kpi": kpi})


async def test_parts_counted_when_the_gateway_is_starved_of_cpu(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    settings = with_tolerance(live_settings(tmp_path, mosquitto.url), TOLERANCE_S)
    plant = Plant(settings, now=T0 + timedelta(days=14))
    assert plant.improvement_at > END
    store = SqliteStore(tmp_path / "live.db")
    try:
        stalls = await collect_stalled(settings, plant, store)
        assert stalls >= 30
        want = truth(settings, START, END, plant=plant)["assets"]
        got = KpiService(settings, store).kpis(START, END)["assets"]
        before = KpiService(with_tolerance(settings, 0.0), store).kpis(START, END)["assets"]
        report, wrong, lost = [f"\n{stalls} stalls of {STALL_S} s every {EVERY_S} s"], [], 0
        for asset, exp in want.items():
            e, a, b = exp["elements"], got[asset]["elements"], before[asset]["elements"]
            flags = got[asset]["evidence"]["implausible_increases"]
            old = before[asset]["evidence"]["implausible_increases"]
            lost += int(e["pq"] - b["pq"])
            # the tolerance each rise excluded without one would have needed: (increase -
            # allowed) / the plausible rate, in wall seconds
            pru = settings.asset(asset).ideal_cycle_time_s or 0.0
            need = max((f["increase"] - f["allowed"]) * pru / settings.kpi.counter_rate_factor
                       / SPEED for f in old) if old else 0.0
            report.append(f"  {asset.rsplit('/', 1)[1]}: pq {a['pq']:g} (truth {e['pq']:g}, "
                          f"without tolerance {b['pq']:g}, {len(old)} excluded, the largest "
                          f"needing {need:.3f} s wall)")
            if flags or any(a[q] != e[q] for q in ROLES) or got[asset]["coverage"] != pytest.approx(1.0):
                wrong.append((asset, [(a[q], e[q]) for q in ROLES], got[asset]["coverage"], flags))
        print("\n".join(report))
        assert not wrong, wrong
        # the stalls did stamp samples late: the rule before the tolerance loses parts here
        assert lost > 0, "no sample was stamped late enough to matter: the test shows nothing"
    finally:
        store.close()
