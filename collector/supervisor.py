"""The supervisor: runs every device's collector, reconnects with backoff, keeps health.

Each enabled device runs in its own task: connect (enter the collector), hand every batch to
the :class:`~store.writer.Writer`, and when the connection is lost record a gap in the store
and reconnect after an exponential, jittered, bounded delay. The first batch after the device
comes back closes the gap. Nothing a driver raises stops the gateway or another device: an
unexpected exception is logged with its traceback and handled like a lost connection.

A collector whose source waits for an acknowledgement (MQTT QoS 1) sets ``acknowledges =
True`` and has ``stored(batch)``: its batches are written with ``Writer.write`` (durable on
return) instead of ``submit``, then ``stored(batch)`` lets it acknowledge their messages; a
write the store refuses is a lost connection (nothing acknowledged, the source redelivers). A
collector may also report gaps of part of its device (a Sparkplug node's death) in
``gap_events``: ``("open" | "close", part, ts_ns, reason)``, recorded under the device's name.

While a device is connected the supervisor records a heartbeat in the store every
``heartbeat_s`` seconds (and at stop). At start, a device with a heartbeat gets a closed gap
``[last heartbeat, now)`` with reason "gateway not running", so KPIs never bridge the time
the gateway itself was down; a gap left open by a crash is closed at the same instant. The
newest *sample* would be the wrong start: report-by-exception sources (subscriptions, MQTT)
can be silent for hours while connected. At stop, open gaps are closed at the stop time (the
next start records the outage from the last heartbeat).

Batches of a polled device (Modbus, OPC UA ``mode: poll``) pass its
:class:`~collector.filter.StorageFilter` on the way to the writer: tags stored ``on_change``
keep only their changes and heartbeats. Liveness and gap edges are those of the polls, not of
what was stored. When the connection is lost, and at stop, each tag's last poll that was
withheld is written before the gap is recorded; after a reconnect every sample is stored
until the gap is closed, and then each tag's first sample dated after its end.

Every batch of every protocol passes :func:`store.batch.mark_non_finite` first: a value that is
not a finite number (NaN, +-infinity, ``1e999`` in a payload, a float register holding NaN) is
stored with quality ``BAD`` and its value as sent, never as good; ``non_finite`` in the
device's health counts them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

import numpy as np

from config.base import Backoff, DeviceBase, TagBase
from config.errors import ConfigError, ConnectError, StoreError
from config.signals import Quality
from store.base import Store
from store.batch import Batch, mark_non_finite
from store.writer import Writer

from .base import Collector, CollectorFactory, cancel_and_wait, tag_record
from .filter import StorageFilter, device_filter
from .registry import COLLECTORS
from .stall import STALL_REASON

__all__ = ["Acknowledging", "DeviceHealth", "ReportsPartGaps", "Supervisor", "backoff_delays"]

log = logging.getLogger("tierproof.supervisor")

State = Literal["connecting", "connected", "backoff", "stopped", "disabled"]

GATEWAY_NOT_RUNNING = "gateway not running"
HEARTBEAT_S = 2.0


@dataclass(slots=True)
class DeviceHealth:
    """What the supervisor knows about one device (a snapshot when returned by status())."""

    name: str
    protocol: str
    state: State = "stopped"
    last_success: int | None = None  # ns, gateway time of the last delivered batch
    last_error: str | None = None
    samples_delivered: int = 0
    samples_stored: int = 0  # of those, written to the store (polled devices: see storage)
    bad_samples: int = 0  # delivered with quality >= BAD
    non_finite: int = 0  # of those, made BAD here because the value was NaN or +-infinity
    reconnects: int = 0  # successful connections after a lost or failed one
    gaps: int = 0  # gaps recorded since start: connection lost, collection stalled, part gone
    gap_open_since: int | None = None  # ns, start of the gap currently open
    tag_errors: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # messages dropped, per reason (MQTT)
    stalls: int = 0  # times the collectors could not run beyond the tolerance (each a gap)
    stalled_s: float = 0.0  # their total length, seconds


@runtime_checkable
class Acknowledging(Protocol):
    """A collector whose source redelivers until acknowledged (MQTT QoS 1)."""

    acknowledges: bool

    def stored(self, batch: Batch) -> None:
        """``batch`` and every batch before it are durably stored."""
        ...


@runtime_checkable
class ReportsPartGaps(Protocol):
    """A collector that knows when part of its device is gone (a Sparkplug edge node)."""

    #: ("open" | "close", part, ts_ns, reason, assets), drained by the supervisor after each
    #: batch; an open gap covers only ``assets`` of the device
    gap_events: list[tuple[str, str, int, str | None, tuple[str, ...]]]


def backoff_delays(backoff: Backoff, rng: random.Random | None = None) -> Iterator[float]:
    """Delays before successive reconnect attempts: initial * multiplier**n with +-jitter,
    never above ``max_s``."""
    rng = rng or random.Random()
    base = backoff.initial_s
    while True:
        jitter = 1.0 + rng.uniform(-backoff.jitter, backoff.jitter)
        yield min(backoff.max_s, base * jitter)
        base = min(backoff.max_s, base * backoff.multiplier)


def _without_device(name: str, message: str) -> str:
    """A driver's error message without its leading ``"<device>: "``: the log line, the
    device's status and its gaps name the device already (no "plc1: plc1: ...")."""
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class Supervisor:
    """Runs the collectors of ``devices``; use as ``async with`` or start()/stop().

    ``factories`` maps a device's protocol to its collector class (default: the registry
    ``collector.registry.COLLECTORS``). ``clock`` (ns) stamps gaps; ``sleep`` and ``rng`` exist so
    tests can observe backoff without waiting for it.
    """

    def __init__(
        self,
        devices: Sequence[DeviceBase],
        store: Store,
        writer: Writer,
        tag_ids: Mapping[str, int],
        factories: Mapping[str, CollectorFactory] | None = None,
        clock: Callable[[], int] = time.time_ns,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if factories is None:
            factories = COLLECTORS
        names = [d.name for d in devices]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"device names must be unique; repeated: {dup}")
        self.devices = list(devices)
        self.store = store
        self.writer = writer
        self.tag_ids = dict(tag_ids)
        self.factories = dict(factories)
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._health = {
            d.name: DeviceHealth(d.name, _protocol(d), "stopped" if d.enabled else "disabled")
            for d in devices
        }
        self._collectors: dict[str, Collector] = {}
        #: what the device's earlier collectors (before a reconnect) dropped, per reason: the
        #: status's ``dropped`` counts since start, not since the last connect
        self._dropped_before: dict[str, dict[str, int]] = {}
        #: held while a collector is replaced and while status() reads them (other threads)
        self._swap = threading.Lock()
        self._gaps: dict[str, tuple[int, int]] = {}  # device -> (gap_id, start_ns) while open
        #: (device, part) -> [(gap_id, start_ns)] while open: the asset-scoped gaps a collector
        #: reports for part of its device (see ReportsPartGaps), one per asset of the part
        self._part_gaps: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._heartbeat_s = heartbeat_s
        self._beat: asyncio.Task[None] | None = None
        #: polled devices' storage filters (on-change storage), by device name
        self._filters: dict[str, StorageFilter] = {}
        for d in self.devices:
            f = device_filter(d, self.tag_ids)
            if f is not None:
                self._filters[d.name] = f
        #: devices whose filter waits for the first batch after a reconnect to resume
        self._resuming: set[str] = set()
        #: (device, part) -> tag ids of a part gap's assets while it is open
        self._part_tags: dict[tuple[str, str], list[int]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Record "gateway not running" gaps, then start one task per enabled device."""
        if self._tasks:
            return
        now = self.clock()
        for d in self.devices:
            if d.enabled:
                await self._startup_gap(d, now)
        for d in self.devices:
            if d.enabled:
                self._tasks[d.name] = asyncio.create_task(self._run(d), name=f"device {d.name}")
        self._beat = asyncio.create_task(self._heartbeats(), name="heartbeats")

    async def stop(self) -> None:
        """Stop every device task, close their connections and the gaps still open."""
        tasks, self._tasks = self._tasks, {}
        if self._beat is not None:
            tasks["heartbeats"], self._beat = self._beat, None
        await self._mark_alive(self.clock())  # connected until now
        await cancel_and_wait(tasks.values())
        for name in self._filters:
            await self._store_withheld(name)
        now = self.clock()
        for name in list(self._gaps):
            await self._close_gap(name, now)
        for name, part in list(self._part_gaps):
            await self._close_part_gap(name, part, now)
        for d in self.devices:
            h = self._health[d.name]
            if d.enabled:
                h.state = "stopped"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def status(self) -> list[DeviceHealth]:
        """A snapshot of every device's health, in configuration order. ``dropped`` counts
        since start, across reconnects; ``tag_errors`` are those of the current connection."""
        out = []
        for d in self.devices:
            h = self._health[d.name]
            with self._swap:
                c = self._collectors.get(d.name)
                dropped = dict(self._dropped_before.get(d.name, {}))
                now = dict(getattr(c, "dropped", {}) or {}) if c is not None else {}
            errors = dict(getattr(c, "tag_errors", {}) or {}) if c is not None else {}
            if c is not None:  # an OPC UA browse rule that found nothing: "browse[i]" -> why
                errors.update(getattr(c, "browse_errors", {}) or {})
            for reason, n in now.items():
                dropped[reason] = dropped.get(reason, 0) + n
            out.append(replace(h, tag_errors=errors, dropped=dropped))
        return out

    async def record_stall(self, start_ns: int, end_ns: int) -> None:
        """The collectors could not run in ``[start_ns, end_ns)`` (see :mod:`collector.stall`):
        a closed gap for every running device that has no gap open (an open one covers the
        stall already), with reason "collection stalled (N s)"."""
        reason = f"{STALL_REASON} ({(end_ns - start_ns) / 1e9:.2f} s)"
        for d in self.devices:
            if d.name not in self._tasks or d.name in self._gaps:
                continue
            try:
                gap_id = await self.writer.run(self.store.open_gap, d.name, start_ns, reason)
                await self.writer.run(self.store.close_gap, gap_id, end_ns)
                h = self._health[d.name]
                h.gaps += 1
                h.stalls += 1
                h.stalled_s += (end_ns - start_ns) / 1e9
            except Exception:
                log.exception("%s: could not record the stall as a gap", d.name)

    # ------------------------------------------------------------------ store (writer thread)

    async def _mark_alive(self, now: int) -> None:
        # one writer job for every device: a job per device waited for one store write each
        # (~1.5 s a write into a saturated InfluxDB: 19 s a sweep for 10 devices, and so long
        # for a stop to begin cancelling the collectors)
        names = [name for name, h in self._health.items() if h.state == "connected"]

        def mark() -> None:  # on the writer thread
            for name in names:
                try:
                    self.store.mark_alive(name, now)
                except Exception:
                    log.exception("%s: could not record a heartbeat", name)

        if not names:
            return
        try:
            await self.writer.run(mark)
        except Exception:
            log.exception("could not record the heartbeats of %s", ", ".join(names))

    async def _heartbeats(self) -> None:
        me = asyncio.current_task()
        while self._beat is me:  # see cancel_and_wait
            await asyncio.sleep(self._heartbeat_s)
            await self._mark_alive(self.clock())

    async def _startup_gap(self, d: DeviceBase, now: int) -> None:
        try:
            for g in await self.writer.run(self.store.gaps, d.name, now, now + 1):
                # left open by a gateway that did not stop cleanly (asset-scoped ones too)
                if g.end_ns is None:
                    await self.writer.run(self.store.close_gap, g.gap_id, max(now, g.start_ns))
            last = await self.writer.run(self.store.last_alive, d.name)
            if last is not None and last < now:
                gap_id = await self.writer.run(
                    self.store.open_gap, d.name, last, GATEWAY_NOT_RUNNING
                )
                await self.writer.run(self.store.close_gap, gap_id, now)
                log.info("%s: recorded a gap of %.1f s since the last heartbeat (%s)",
                         d.name, (now - last) / 1e9, GATEWAY_NOT_RUNNING)
        except Exception:
            log.exception("%s: could not record the %r gap", d.name, GATEWAY_NOT_RUNNING)

    async def _open_gap(self, name: str, start_ns: int, reason: str) -> None:
        if name in self._gaps:
            return
        try:
            gap_id = await self.writer.run(self.store.open_gap, name, start_ns, reason)
        except Exception:
            log.exception("%s: could not record a gap", name)
            return
        self._gaps[name] = (gap_id, start_ns)
        self._health[name].gap_open_since = start_ns
        self._health[name].gaps += 1

    async def _close_gap(self, name: str, end_ns: int) -> None:
        gap = self._gaps.pop(name, None)
        if gap is None:
            return
        gap_id, start = gap
        self._health[name].gap_open_since = None
        try:
            await self.writer.run(self.store.close_gap, gap_id, max(end_ns, start))
        except Exception:
            log.exception("%s: could not close gap %d", name, gap_id)

    # ------------------------------------------------------------------ one device

    async def _run(self, d: DeviceBase) -> None:
        h = self._health[d.name]
        delays = backoff_delays(d.backoff, self._rng)
        ever_connected = False
        me = asyncio.current_task()
        # stop() drops the task from _tasks before cancelling it: a cancellation lost
        # inside a driver (see cancel_and_wait) still ends the loop
        while self._tasks.get(d.name) is me:
            h.state = "connecting"
            attempt_ns = self.clock()
            try:
                collector = self._make(d)
            except Exception as exc:
                # a configuration the driver refuses does not heal by retrying
                h.state, h.last_error = "stopped", str(exc)
                log.error("%s: not collected: %s", d.name, exc)
                return
            with self._swap:
                before = dict(self._dropped_before.get(d.name, {}))
                for reason, n in dict(getattr(self._collectors.get(d.name), "dropped", {}) or {}).items():
                    before[reason] = before.get(reason, 0) + n
                self._dropped_before[d.name] = before
                self._collectors[d.name] = collector
            delivered = h.samples_delivered
            try:
                async with collector:
                    h.state = "connected"
                    if ever_connected:
                        h.reconnects += 1
                    ever_connected = True
                    log.info("%s: connected", d.name)
                    await self._adopt_discovered(d, collector)
                    batches = collector.batches()
                    try:
                        async for batch in batches:
                            await self._deliver(d.name, batch, collector)
                    finally:
                        # stop the driver's poll loops now, not when the generator is collected
                        aclose = getattr(batches, "aclose", None)
                        if aclose is not None:
                            await aclose()
                raise ConnectError(f"{d.name}: the collector stopped delivering")
            except asyncio.CancelledError:
                raise
            except (ConnectError, OSError, TimeoutError) as exc:
                reason = _without_device(d.name, str(exc) or type(exc).__name__)
                log.warning("%s: %s", d.name, reason)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.exception("%s: driver failed unexpectedly; reconnecting", d.name)
            h.state, h.last_error = "backoff", reason
            if h.samples_delivered > delivered:
                # the device worked since the last failure: back off from the start again
                delays = backoff_delays(d.backoff, self._rng)
            start = h.last_success if h.last_success is not None else attempt_ns
            await self._store_withheld(d.name)
            filt = self._filters.get(d.name)
            if filt is not None:
                filt.suspend()
                self._resuming.add(d.name)
            await self._open_gap(d.name, start, reason)
            delay = next(delays)
            log.info("%s: reconnecting in %.2f s", d.name, delay)
            await self._sleep(delay)

    async def _adopt_discovered(self, d: DeviceBase, collector: Collector) -> None:
        """Register the tags a collector discovered at connect (OPC UA browse rules) in the
        store and let it collect them. Their ids are stable: a tag found again after a
        reconnect or a restart keeps its id."""
        found: Sequence[TagBase] = getattr(collector, "discovered", ())
        adopt = getattr(collector, "adopt", None)
        if not found or adopt is None:
            return
        new = [t for t in found if t.path not in self.tag_ids]
        if new:
            ids = await self.writer.run(self.store.register_tags, [tag_record(d, t) for t in new])
            self.tag_ids.update(ids)
            log.info("%s: registered %d discovered tag(s)", d.name, len(new))
        filt = self._filters.get(d.name)
        if filt is not None:
            filt.configure(d, found, self.tag_ids)
        await adopt(self.tag_ids)

    def _make(self, d: DeviceBase) -> Collector:
        protocol = _protocol(d)
        factory = self.factories.get(protocol)
        if factory is None:
            raise ConfigError(f"no collector for protocol {protocol!r}")
        return factory(d, self.tag_ids)

    async def _store_withheld(self, name: str) -> None:
        """Write the last polls the device's storage filter withheld (before a gap, at stop)."""
        filt = self._filters.get(name)
        if filt is None:
            return
        batch = filt.withheld()
        if not len(batch):
            return
        self._health[name].samples_stored += len(batch)
        try:
            await self.writer.submit(batch)
        except Exception:
            log.exception("%s: could not store the last polled values", name)

    async def _deliver(self, name: str, batch: Batch, collector: Collector | None = None) -> None:
        # the one place for every protocol: a value that is not a finite number is never good
        checked, non_finite = mark_non_finite(batch)
        filt = self._filters.get(name)
        kept = filt.apply(checked) if filt is not None else checked
        if isinstance(collector, Acknowledging) and collector.acknowledges:
            # An acknowledging source (MQTT QoS 1) acks its messages only once they are
            # durable: write, then tell the collector. A batch the store refuses is not
            # acknowledged; reconnecting makes the broker redeliver it.
            try:
                if len(kept):  # every earlier batch is durable already: nothing to wait for
                    await self.writer.write(kept)
            except StoreError as exc:
                raise ConnectError(f"{name}: the store refused a batch, not acknowledged: {exc}") from exc
            collector.stored(batch)  # the collector's own object: it finds its messages by it
        elif filt is None or len(kept):  # a batch the filter emptied is not written
            await self.writer.submit(kept)
        if isinstance(collector, ReportsPartGaps) and collector.gap_events:
            await self._source_gaps(name, collector)
        h = self._health[name]
        n = len(batch)
        if n:
            # Gap edges are gateway time: when the gateway last got data and when it got data
            # again. Sample times would be wrong edges: a re-created subscription delivers the
            # unchanged values with their old source times, which would close the gap at its
            # own start and hide the outage.
            now = self.clock()
            if name in self._gaps:
                await self._close_gap(name, now)
            if name in self._resuming and filt is not None:
                # the gap ends now: each tag's first sample dated after it is stored too
                self._resuming.discard(name)
                filt.resume(now)
            h.last_success = now
        h.samples_delivered += n
        h.samples_stored += len(kept)
        h.bad_samples += int(np.count_nonzero(checked.quality >= Quality.BAD))
        h.non_finite += non_finite


    async def _source_gaps(self, name: str, collector: ReportsPartGaps) -> None:
        """Gaps a collector reports for part of its device (a Sparkplug node's NDEATH until
        its NBIRTH): one asset-scoped gap per asset of that part, so that the KPIs of the
        device's other assets are not affected."""
        events, collector.gap_events = collector.gap_events, []
        filt = self._filters.get(name)
        for kind, key, ts, reason, assets in events:
            if kind == "close":
                tags = self._part_tags.pop((name, key), None)
                if filt is not None and tags:
                    filt.resume(ts, tags)
                await self._close_part_gap(name, key, ts)
                continue
            if (name, key) in self._part_gaps:
                continue
            if filt is not None:
                tags = self._tags_of(name, assets)
                if tags:
                    self._part_tags[(name, key)] = tags
                    filt.suspend(tags)
            opened = self._part_gaps.setdefault((name, key), [])
            self._health[name].gaps += 1
            for asset in assets:
                try:
                    gap_id = await self.writer.run(self.store.open_gap, name, ts, reason or key, asset)
                    opened.append((gap_id, ts))
                except Exception:
                    log.exception("%s: could not record the gap of %s", name, key)

    def _tags_of(self, name: str, assets: Sequence[str]) -> list[int]:
        """Ids of the device's tags that belong to ``assets``."""
        d = next(x for x in self.devices if x.name == name)
        tags: Sequence[TagBase] = getattr(d, "tags", ())
        want = set(assets)
        return [self.tag_ids[t.path] for t in tags if t.asset in want and t.path in self.tag_ids]

    async def _close_part_gap(self, name: str, key: str, ts: int) -> None:
        for gap_id, start in self._part_gaps.pop((name, key), []):
            try:
                await self.writer.run(self.store.close_gap, gap_id, max(ts, start))
            except Exception:
                log.exception("%s: could not close gap %d", name, gap_id)


def _protocol(d: DeviceBase) -> str:
    return str(getattr(d, "protocol", type(d).__name__))
