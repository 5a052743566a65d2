"""OPC UA collector: monitored items in subscriptions, or batched reads on a poll interval.

**subscribe** (default): the tags are split over subscriptions of at most
``max_items_per_subscription`` monitored items, created with the configured publishing and
sampling intervals, queue size and deadband (the publishing interval, unless configured, is
half the sampling interval: ``OpcUaDevice.publishing_ms``). The subscriptions are in
asyncua's iterator mode: a publish response's changes land in the subscription's queue at
once, and one consumer task per subscription appends one row per change (tag index,
timestamp, value, quality, text) to plain lists, taking the whole publish before it yields;
:meth:`OpcUaCollector.batches` then turns the rows into one columnar :class:`~store.batch.Batch`
(the changes of one publish response make one batch), not on a timer of its own that would
add up to another publishing interval of latency. No notification object is kept past its
row.

**poll**: every ``poll_interval_s`` one Read service call reads the Value of all tags (a
drift-free grid, missed ticks skipped like the Modbus collector's).

Timestamps: all three are kept, as columns of the Batch. ``ts_ns`` (the time KPIs use) is
the **source** timestamp when the server sends one, else the server timestamp, else the
gateway's clock at arrival; ``server_ts_ns`` is the ServerTimestamp (``TS_UNKNOWN`` when the
server sends none); ``gateway_ts_ns`` is the collector's clock when the value arrived (a
notification's handler call, or the return of a poll's Read). A timestamp a store cannot
hold (:func:`config.times.datetime_ns`: the null date 1601-01-01 that node-opcua sends as
ServerTimestamp, before 1970, after 2262) counts as not sent; a value that cannot be
converted is BAD_CONFIG. Neither costs the other samples of the batch.

Quality: the StatusCode's severity: Good -> GOOD, Uncertain -> UNCERTAIN, Bad -> BAD with
value NaN (never the last good value). A node the server does not know (or a ``nsu=``
namespace it does not have) is ``BAD_CONFIG`` with the reason in :attr:`tag_errors`; the
other tags keep going. Booleans are stored as 0/1, strings (and other texts) in
``Batch.text``; a value of another type (arrays, structures) is ``BAD_CONFIG``.

Connecting first lists the server's endpoints (GetEndpoints), so that each error a user can
cause is one sentence naming the device, the cause and the fix (:mod:`.diagnosis`,
:mod:`.security`), not an asyncua exception.

A lost connection (the client's keep-alive probe fails, the transport closes, a subscription
reports a bad status) or a failed request raises :class:`~config.errors.ConnectError` out of
:meth:`batches`. asyncua's own reconnect (``auto_reconnect``) stays off: the supervisor
reconnects, and the new collector creates its subscriptions on the new connection.

Browse-path discovery: the device's ``browse`` rules (:class:`~config.opcua.BrowseRule`)
are resolved against the server at every connect; what they find is in
:attr:`OpcUaCollector.discovered`, the supervisor registers those tags in the store and hands
their ids to :meth:`OpcUaCollector.adopt`, and they are collected like configured tags (a tag
path that is configured already keeps its configured address). :func:`discover` (on a
connected client) and :func:`discover_tags` (connects, browses, disconnects) return the same
tags for ``tierproof`` users who prefer to paste them into ``tags``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt
from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription

from config.base import DeviceBase
from config.errors import ConfigError, ConnectError
from config.opcua import OpcUaDevice, OpcUaTag, parse_node_id
from config.signals import Quality
from config.times import datetime_ns
from store.batch import TS_UNKNOWN, Batch

from ..base import scaling, unregistered_tags
from .browse import MAX_BROWSE_NODES, browse_rule, discover, unique
from .diagnosis import Diagnosis, quiet_asyncua, status_name
from .events import EventSource
from .security import load_cert, thumbprint

__all__ = ["OpcUaCollector", "OpcUaStats", "discover_tags"]

log = logging.getLogger("tierproof.collector.opcua")

_SESSION_TIMEOUT_MS = 600_000
_DEADBAND = {"none": 0, "absolute": 1, "percent": 2}
#: status codes that say the configuration is wrong, not the value
_CONFIG_CODES = frozenset({
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadDeadbandFilterInvalid,
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
})


def _known_ns(dt: datetime | None) -> int | None:
    """A UA DateTime in ns, or None when the server sent none or one a store cannot hold
    (the null date 1601-01-01 that node-opcua sends as ServerTimestamp, before 1970, after
    2262): an unknown timestamp, never an error."""
    return None if dt is None else datetime_ns(dt)


def _server_ns(dv: ua.DataValue | None) -> int:
    """A value's ServerTimestamp in ns, or TS_UNKNOWN when it is unknown."""
    ns = _known_ns(dv.ServerTimestamp) if dv is not None else None
    return TS_UNKNOWN if ns is None else ns


def _severity(code: int) -> Quality:
    sev = code & 0xC0000000
    if sev == 0:
        return Quality.GOOD
    if sev == 0x40000000:
        return Quality.UNCERTAIN
    return Quality.BAD


@dataclass(slots=True)
class OpcUaStats:
    notifications: int = 0
    reads: int = 0
    overruns: int = 0


#: bound of a subscription's event queue: none (0). A publish delivers at most
#: max_items_per_subscription x queue_size changes and the consumer takes them all before the
#: next one is read; asyncua's default (1,000, dropping the oldest) would lose changes of a
#: larger publish
_QUEUE_UNBOUNDED = 0


class OpcUaCollector(Diagnosis):
    """Collects one :class:`~config.opcua.OpcUaDevice`.

    ``tag_ids`` maps tag paths to store ids; every tag of the device must be in it.
    """

    device: DeviceBase

    def __init__(
        self,
        device: DeviceBase,
        tag_ids: Mapping[str, int],
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not isinstance(device, OpcUaDevice):
            raise ConfigError(f"device {device.name}: OpcUaCollector needs an opcua device")
        self.device = device
        self._dev = device
        self._tags: list[OpcUaTag] = list(device.tags)
        self._clock = clock
        problems = unregistered_tags(device, self._tags, tag_ids)
        for field in ("certificate", "private_key"):
            p = getattr(device, field)
            if p is not None and not Path(p).is_file():
                problems.append((f"devices[{device.name}].{field}", f"no file {p}"))
        self._trusted: dict[str, str] = {}  # thumbprint -> file
        for i, p in enumerate(device.trusted_certificates):
            try:
                self._trusted[thumbprint(load_cert(p))] = p
            except (OSError, ValueError) as exc:
                problems.append((f"devices[{device.name}].trusted_certificates[{i}]",
                                 f"cannot read certificate {p}: {exc}"))
        if problems:
            raise ConfigError(f"device {device.name}: cannot collect its tags", problems)
        self._ids = np.array([tag_ids[t.path] for t in self._tags], dtype=np.int32)
        # reason_event tags: an event subscription (events.py), not a data-change item
        ev = [i for i, t in enumerate(self._tags) if t.events is not None]
        self.events = EventSource(self, [self._tags[i] for i in ev], ev, clock)
        self._scaling = scaling(self._tags)
        #: tag path -> why the server refuses it
        self.tag_errors: dict[str, str] = {}
        #: tags the device's browse rules found at connect (not collected; see discover_tags)
        self.discovered: list[OpcUaTag] = []
        #: "browse[i]" -> why that browse rule found nothing at connect
        self.browse_errors: dict[str, str] = {}
        self.stats = OpcUaStats()
        self._client: Client | None = None
        self._nodes: list[ua.NodeId | None] = []  # resolved at connect; None: unresolvable
        self._subs: list[Subscription] = []
        self._consumers: list[asyncio.Task[None]] = []  # one per subscription
        self._lost: str | None = None
        self._lost_exc: BaseException | None = None
        self._lost_event = asyncio.Event()
        #: set by every recorded sample (and a lost connection): the subscribe loop's wake-up
        self._arrived = asyncio.Event()
        self._untrusted: tuple[str, str] | None = None  # (subject, thumbprint) refused
        self._channel_open = False  # the last connect opened its secure channel
        # rows received since the last batch (subscribe mode)
        self._r_idx: list[int] = []
        self._r_ts: list[int] = []
        self._r_sts: list[int] = []  # server timestamps (TS_UNKNOWN: none)
        self._r_gts: list[int] = []  # the gateway's clock at arrival
        self._r_val: list[float] = []
        self._r_q: list[int] = []
        self._r_text: list[str | None] = []
        self._r_has_text = False

    # ------------------------------------------------------------------ connection

    async def __aenter__(self) -> Self:
        d = self._dev
        quiet_asyncua()
        client = Client(d.endpoint, timeout=d.timeout_s)
        client.name = client.description = f"tierproof {d.name}"
        # asyncua asks for an hour, servers revise it and asyncua warns at every connect;
        # ten minutes is within what servers grant (node-opcua: at most 50 min)
        client.session_timeout = _SESSION_TIMEOUT_MS
        if d.username is not None and d.password is not None:
            client.set_user(d.username)
            client.set_password(d.password.get_secret_value())
        if self._trusted:
            client.certificate_validator = self._validate_server_cert
        try:
            try:
                endpoint = await self._endpoint(client)
                if d.security_policy != "None":
                    await self._set_security(client, endpoint)
                await self._connect(client)
            except ConnectError:
                raise
            except Exception as exc:
                # asyncua fails some refusals with internal errors (an AssertionError for a
                # refused OpenSecureChannel): every failure to connect is a ConnectError
                raise self._connect_error(exc, "connect to") from exc
            self._client = client
            client.connection_lost_callback = self._on_connection_lost
            with self._translate("read the namespace array of"):
                await self._resolve()
            if d.browse:
                with self._translate("browse"):
                    self.discovered = await self._discover(client)
        except BaseException:
            await self._disconnect(client)
            self._client = None
            raise
        return self

    async def _connect(self, client: Client) -> None:
        """asyncua's connect, noting whether the secure channel opened: a server refuses the
        client certificate there, and asyncua cannot say so (it fails decoding the answer)."""
        self._channel_open = False
        open_channel = client.open_secure_channel

        async def noted(renew: bool = False) -> None:
            await open_channel(renew)
            self._channel_open = True

        setattr(client, "open_secure_channel", noted)  # noqa: B010 (an instance attribute)
        try:
            await client.connect()
        finally:
            with contextlib.suppress(AttributeError):
                delattr(client, "open_secure_channel")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        self._subs = []
        consumers, self._consumers = self._consumers, []
        for task in consumers:
            task.cancel()
        for task in consumers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if client is not None:
            await self._disconnect(client)

    async def _disconnect(self, client: Client) -> None:
        # the server may be gone already: closing is best effort and bounded
        try:
            await asyncio.wait_for(client.disconnect(), self._dev.timeout_s)
        except asyncio.CancelledError:
            # a stop that cannot wait for the server's answer to CloseSession (the supervisor
            # cancels again every 0.1 s: collector.base.cancel_and_wait) still closes the
            # socket, or it is left to the garbage collector (a ResourceWarning)
            client.disconnect_socket()
            raise
        except Exception as exc:
            log.debug("%s: disconnect: %r", self._dev.name, exc)
            with contextlib.suppress(Exception):
                client.disconnect_socket()

    async def _resolve(self) -> None:
        """Node ids of the tags; ``nsu=`` namespaces through the server's namespace array."""
        assert self._client is not None
        parsed = [parse_node_id(t.node_id) for t in self._tags]
        namespaces: list[str] = []
        if any(isinstance(ns, str) for ns, _, _ in parsed):
            namespaces = await self._client.get_namespace_array()
        self._nodes = []
        for t, (ns, kind, ident) in zip(self._tags, parsed, strict=True):
            if isinstance(ns, str):
                if ns not in namespaces:
                    self._nodes.append(None)
                    self._tag_error(t, f"namespace {ns!r} is not in the server's namespace array")
                    continue
                index = namespaces.index(ns)
            else:
                index = ns
            self._nodes.append(ua.NodeId.from_string(f"ns={index};{kind}={ident}"))

    async def _discover(self, client: Client) -> list[OpcUaTag]:
        """The browse rules at connect: a rule that fails is logged, the others still count."""
        d = self._dev
        namespaces = await client.get_namespace_array()
        tags: list[OpcUaTag] = []
        self.browse_errors = {}
        for i, rule in enumerate(d.browse):
            try:
                tags += await browse_rule(client, d, i, rule, namespaces, MAX_BROWSE_NODES)
            except ConfigError as exc:
                self.browse_errors[f"browse[{i}]"] = str(exc)
                log.warning("%s", exc)
        return unique(d, tags)

    async def adopt(self, tag_ids: Mapping[str, int]) -> list[OpcUaTag]:
        """Collect the discovered tags that ``tag_ids`` has ids for (the supervisor registers
        :attr:`discovered` in the store, then calls this before :meth:`batches`). Returns the
        tags added."""
        known = {t.path for t in self._tags}
        new = [t for t in self.discovered if t.path in tag_ids and t.path not in known]
        if not new:
            return []
        self._tags += new
        self._ids = np.concatenate([self._ids, np.array([tag_ids[t.path] for t in new], np.int32)])
        self._scaling = scaling(self._tags)
        with self._translate("resolve the discovered nodes of"):
            await self._resolve()
        log.info("%s: collecting %d discovered tag(s)", self._dev.name, len(new))
        return new

    def _tag_error(self, t: OpcUaTag, reason: str) -> None:
        if self.tag_errors.get(t.path) != reason:
            log.warning("%s: tag %s (%s): %s", self._dev.name, t.path, t.node_id, reason)
        self.tag_errors[t.path] = reason

    # ------------------------------------------------------------------ values

    def _connection_lost(self, reason: str, exc: BaseException | None) -> None:
        super()._connection_lost(reason, exc)
        self._arrived.set()  # the subscribe loop raises at once, not after its timeout

    def _record(self, i: int, dv: ua.DataValue | None) -> None:
        """Append one sample of tag i (a data-change notification or a read result)."""
        self.stats.notifications += 1
        now = self._clock()
        ts, value, q, text = self._convert(i, dv, now)
        self._append(i, ts, _server_ns(dv), now, value, q, text)

    def _append(self, i: int, ts: int, server_ts: int, gateway_ts: int, value: float, q: int,
                text: str | None) -> None:
        """Append one sample of tag i to the columns the subscribe loop drains."""
        self._r_idx.append(i)
        self._r_ts.append(ts)
        self._r_sts.append(server_ts)
        self._r_gts.append(gateway_ts)
        self._r_val.append(value)
        self._r_q.append(q)
        self._r_text.append(text)
        if text is not None:
            self._r_has_text = True
        self._arrived.set()

    def _convert(self, i: int, dv: ua.DataValue | None, now: int) -> tuple[int, float, int, str | None]:
        """(ts_ns, value, quality, text) of one sample; a value that cannot be converted is
        BAD_CONFIG with the reason in tag_errors, never an exception that loses the batch."""
        try:
            return self._convert_value(i, dv, now)
        except Exception as exc:
            self._tag_error(self._tags[i], f"cannot convert its value: {type(exc).__name__}: {exc}")
            return now, np.nan, Quality.BAD_CONFIG, None

    def _convert_value(
        self, i: int, dv: ua.DataValue | None, now: int
    ) -> tuple[int, float, int, str | None]:
        if dv is None:
            return now, np.nan, Quality.BAD, None
        # source, else server, else the gateway's clock: the first that is known
        ts = _known_ns(dv.SourceTimestamp)
        if ts is None:
            ts = _known_ns(dv.ServerTimestamp)
        if ts is None:
            ts = now
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        q = _severity(code)
        if q >= Quality.BAD:
            t = self._tags[i]
            if code & 0xFFFF0000 in _CONFIG_CODES:
                self._tag_error(t, f"the server answers {status_name(code)}")
                return ts, np.nan, Quality.BAD_CONFIG, None
            return ts, np.nan, q, None
        if self.tag_errors:  # it reads again
            self.tag_errors.pop(self._tags[i].path, None)
        raw = dv.Value.Value if dv.Value is not None else None
        if isinstance(raw, bool):
            return ts, float(raw), q, None
        if isinstance(raw, int | float):
            return ts, float(raw), q, None
        if isinstance(raw, str):
            return ts, np.nan, q, raw
        if isinstance(raw, ua.LocalizedText):
            return ts, np.nan, q, raw.Text or ""
        if isinstance(raw, datetime):
            return ts, np.nan, q, raw.isoformat()
        if raw is None:
            return ts, np.nan, Quality.BAD, None
        self._tag_error(self._tags[i], f"values of type {type(raw).__name__} are not supported")
        return ts, np.nan, Quality.BAD_CONFIG, None

    def _batch(
        self,
        idx: npt.NDArray[np.intp],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        text: npt.NDArray[np.object_] | None,
        server_ts: npt.NDArray[np.int64],
        gateway_ts: npt.NDArray[np.int64],
    ) -> Batch:
        if self._scaling is not None:
            value = self._scaling.apply(value, idx)
        return Batch(self._ids[idx], ts, value, quality, text, server_ts, gateway_ts)

    def _drain(self) -> Batch:
        """The rows received since the last call, as one batch."""
        if not self._r_idx:
            return Batch.empty()
        idx = np.array(self._r_idx, dtype=np.intp)
        ts = np.array(self._r_ts, dtype=np.int64)
        server_ts = np.array(self._r_sts, dtype=np.int64)
        gateway_ts = np.array(self._r_gts, dtype=np.int64)
        value = np.array(self._r_val, dtype=np.float64)
        quality = np.array(self._r_q, dtype=np.uint8)
        text = np.array(self._r_text, dtype=object) if self._r_has_text else None
        self._r_idx, self._r_ts, self._r_val, self._r_q, self._r_text = [], [], [], [], []
        self._r_sts, self._r_gts = [], []
        self._r_has_text = False
        return self._batch(idx, ts, value, quality, text, server_ts, gateway_ts)

    # ------------------------------------------------------------------ batches

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches until the connection is lost (ConnectError)."""
        if self._client is None:
            raise ConnectError(f"{self._dev.name}: not connected (use 'async with collector')")
        if self._dev.mode == "poll":
            async for b in self._poll_batches():
                yield b
        else:
            async for b in self._subscribe_batches():
                yield b

    def _unresolved_rows(self) -> None:
        now = self._clock()
        for i, node in enumerate(self._nodes):
            if node is None:
                self._r_idx.append(i)
                self._r_ts.append(now)
                self._r_sts.append(TS_UNKNOWN)
                self._r_gts.append(now)
                self._r_val.append(np.nan)
                self._r_q.append(Quality.BAD_CONFIG)
                self._r_text.append(None)

    async def _subscribe_batches(self) -> AsyncIterator[Batch]:
        client = self._client
        assert client is not None
        d = self._dev
        self._unresolved_rows()
        members = [i for i, n in enumerate(self._nodes) if n is not None and self._tags[i].events is None]
        size = d.max_items_per_subscription
        with self._translate("subscribe to"):
            for start in range(0, len(members), size):
                await self._subscribe(client, members[start:start + size])
            await self.events.subscribe(client, self._nodes, d.publishing_ms)
        interval = d.publishing_ms / 1000.0
        while True:
            self._raise_if_lost()
            if not self._r_idx:
                # woken by the rows of a publish (the timeout only re-checks the connection):
                # its consumer task records all of them before this loop runs again
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), interval)
            self._raise_if_lost()
            batch = self._drain()
            if len(batch):
                yield batch

    async def _consume(self, sub: Subscription, members: list[int]) -> None:
        """Record the data changes of one subscription (client handle k is tag
        ``members[k - 1]``) as asyncua queues them. A publish's changes are queued at once and
        taken here without a pause (``Queue.get`` does not yield while items wait), so a
        publish makes one batch -- no task per notification, no gathering delay."""
        try:
            async for event in sub:
                if isinstance(event, DataChangeEvent):
                    handle = event.data.subscription_data.client_handle
                    if handle is not None and 0 < handle <= len(members):
                        self._record(members[handle - 1], event.data.monitored_item.Value)
                elif isinstance(event, StatusChangeEvent):
                    status = event.notification.Status
                    code = status.value if status is not None else 0
                    if code & 0x80000000:
                        self._connection_lost(f"subscription status {status_name(code)}", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing consumer must stop the collector, not hang it
            self._connection_lost(f"reading its subscription failed: {type(exc).__name__}: {exc}", exc)

    async def _subscribe(self, client: Client, chunk: list[int]) -> None:
        d = self._dev
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = d.publishing_ms
        keepalive = client.get_keepalive_count(d.publishing_ms)
        params.RequestedMaxKeepAliveCount = keepalive
        # the lifetime must be at least three keep-alives (Part 4 5.13.2); servers revise a
        # shorter one and asyncua then warns at every subscription
        params.RequestedLifetimeCount = max(10000, 3 * keepalive)
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        # iterator mode (no handler): asyncua queues the changes instead of starting a task per
        # notification for a handler
        sub = await client.create_subscription(params, None, queue_maxsize=_QUEUE_UNBOUNDED)
        self._subs.append(sub)
        self._consumers.append(asyncio.create_task(self._consume(sub, chunk),
                                                   name=f"opcua-{self._dev.name}-sub{len(self._subs)}"))
        mfilter: ua.DataChangeFilter | None = None
        if d.deadband.type != "none":
            mfilter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=_DEADBAND[d.deadband.type],
                DeadbandValue=d.deadband.value,
            )
        requests = []
        for k, i in enumerate(chunk, start=1):
            rv = ua.ReadValueId()
            rv.NodeId = self._nodes[i]
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = k
            mp.SamplingInterval = d.sampling_ms
            mp.QueueSize = d.queue_size
            mp.DiscardOldest = True
            if mfilter is not None:
                mp.Filter = mfilter
            mir = ua.MonitoredItemCreateRequest()
            mir.ItemToMonitor = rv
            mir.MonitoringMode = ua.MonitoringMode.Reporting
            mir.RequestedParameters = mp
            requests.append(mir)
        results = await sub.create_monitored_items(requests)
        now = self._clock()
        for i, res in zip(chunk, results, strict=True):
            if isinstance(res, ua.StatusCode):
                code = res.value
                t = self._tags[i]
                self._tag_error(t, f"the server refuses to monitor it: {status_name(code)}")
                q = Quality.BAD_CONFIG if code & 0xFFFF0000 in _CONFIG_CODES else Quality.BAD
                self._r_idx.append(i)
                self._r_ts.append(now)
                self._r_sts.append(TS_UNKNOWN)
                self._r_gts.append(now)
                self._r_val.append(np.nan)
                self._r_q.append(q)
                self._r_text.append(None)

    async def _poll_batches(self) -> AsyncIterator[Batch]:
        client = self._client
        assert client is not None
        members = [i for i, n in enumerate(self._nodes) if n is not None]
        missing = [i for i, n in enumerate(self._nodes) if n is None]
        params = ua.ReadParameters()
        params.MaxAge = 0
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        for i in members:
            rv = ua.ReadValueId()
            rv.NodeId = self._nodes[i]
            rv.AttributeId = ua.AttributeIds.Value
            params.NodesToRead.append(rv)
        order = np.array(members + missing, dtype=np.intp)
        n = len(order)
        loop = asyncio.get_running_loop()
        interval = self._dev.poll_interval_s
        due = loop.time()
        while True:
            self._raise_if_lost()
            results: list[ua.DataValue] = []
            if members:
                with self._translate("read from"):
                    results = await client.uaclient.read(params)
                self.stats.reads += 1
            now = self._clock()
            ts = np.full(n, now, dtype=np.int64)
            server_ts = np.full(n, TS_UNKNOWN, dtype=np.int64)
            value = np.full(n, np.nan, dtype=np.float64)
            quality = np.full(n, Quality.BAD_CONFIG, dtype=np.uint8)
            text: npt.NDArray[np.object_] | None = None
            for j, (i, dv) in enumerate(zip(members, results, strict=False)):
                ts[j], value[j], quality[j], s = self._convert(i, dv, now)
                server_ts[j] = _server_ns(dv)
                if s is not None:
                    if text is None:
                        text = np.full(n, None, dtype=object)
                    text[j] = s
            if n:
                yield self._batch(order, ts, value, quality, text, server_ts,
                                  np.full(n, now, dtype=np.int64))
            due += interval
            now_t = loop.time()
            if due <= now_t:
                missed = int((now_t - due) // interval) + 1
                due += missed * interval
                self.stats.overruns += missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost_event.wait(), due - now_t)


async def discover_tags(device: OpcUaDevice, *, max_nodes: int = MAX_BROWSE_NODES) -> list[OpcUaTag]:
    """Connect to ``device`` (its security and user settings), resolve its browse rules and
    return the tags found, ready to go into the device's ``tags``.

    ConfigError for a bad rule, ConnectError if the server cannot be reached.
    """
    if not isinstance(device, OpcUaDevice):
        raise ConfigError(f"device {device.name}: discover_tags needs an opcua device")
    # the connection without the tags and rules (those are not collected here)
    bare = device.model_copy(update={"tags": [], "browse": []})
    async with OpcUaCollector(bare, {}) as collector:
        client = collector._client
        assert client is not None
        with collector._translate("browse"):
            return await discover(client, device, max_nodes=max_nodes)
