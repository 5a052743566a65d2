"""OPC UA events and alarms as a stop-reason source: the ``reason_event`` tags of a device.

A ``reason_event`` tag names a node that emits events (a machine object whose
EventNotifier is set, or the Server object ``i=2253``) and an :class:`~config.opcua.EventMapping`.
At every connect :class:`EventSource` creates one subscription for the device's event tags
and, per tag, one event monitored item (``Subscription.subscribe_events``: the configured
event types and their subtypes, BaseEventType's fields selected). Each event is mapped by
the tag's rules, first match wins: a rule's ``event_type`` is the event's EventType (a node
id) or that type's BrowseName (read once per type and cached), its ``message`` a regular
expression searched in the Message text. A mapped event becomes one sample of the tag:

- ``ts_ns``: the event's Time (the source's clock), else its ReceiveTime, else the
  gateway's clock; ``server_ts_ns`` its ReceiveTime; ``gateway_ts_ns`` the arrival;
- ``value`` NaN and ``text`` a compact JSON object (:func:`event_text`) holding ``reason``
  (the reason id), ``source_name`` (the event's SourceName: who), ``event_type``,
  ``message`` and ``severity`` -- what ``api.losses`` attributes to stops and shows.

An event no rule maps (or from another SourceName, when ``source_name`` is set) is counted
in :attr:`EventStats.unmapped`, not stored: it says nothing about a stop's reason. A server
that refuses an event subscription on the node (``BadFilterNotAllowed``, a node with no
EventNotifier) makes the tag ``BAD_CONFIG`` with the reason in the collector's
``tag_errors``; the other tags keep going.

How a stored event gives a stop its reason (and why a PLC's ``stop_reason`` tag wins over
it) is :func:`kpi.losses.event_reasons`' and ``docs/kpis.md``'s matter, not the collector's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from asyncua import Client, ua

from config.opcua import EventMapping, OpcUaTag, parse_node_id
from config.signals import Quality
from config.times import datetime_ns
from store.batch import TS_UNKNOWN

from .diagnosis import status_name

if TYPE_CHECKING:
    from .driver import OpcUaCollector

__all__ = ["EventSource", "EventStats", "event_text", "parse_event_text"]

log = logging.getLogger("tierproof.collector.opcua")


@dataclass(slots=True)
class EventStats:
    received: int = 0
    mapped: int = 0
    unmapped: int = 0


def event_text(reason: str, source_name: str, event_type: str, message: str,
               severity: int | None) -> str:
    """The text of one mapped event's sample (sorted keys, no spaces: one event, one text)."""
    return json.dumps({"reason": reason, "source_name": source_name, "event_type": event_type,
                       "message": message, "severity": severity},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_event_text(text: str) -> dict[str, Any] | None:
    """The fields of an event sample's text; None when it is not one (a text written by
    something else under the tag): such a sample gives no reason."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("reason"), str):
        return None
    return doc


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, ua.LocalizedText):
        return v.Text or ""
    return str(v)


@dataclass(frozen=True, slots=True)
class _Rule:
    type_id: ua.NodeId | None  # a node id rule, resolved against the namespace array
    type_name: str | None  # a BrowseName rule
    message: re.Pattern[str] | None
    reason: str


class _Handler:
    """asyncua's event handler: maps each event and records it on the collector."""

    def __init__(self, source: EventSource) -> None:
        self._source = source

    async def event_notification(self, event: Any) -> None:
        await self._source.on_event(event)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = status.Status.value if status.Status is not None else 0
        if code & 0x80000000:
            self._source.owner._connection_lost(f"event subscription status {status_name(code)}", None)


class EventSource:
    """The event subscription of a device's ``reason_event`` tags (module docstring)."""

    def __init__(self, owner: OpcUaCollector, tags: Sequence[OpcUaTag], indices: Sequence[int],
                 clock: Callable[[], int]) -> None:
        self.owner = owner
        self._tags = list(tags)
        self._indices = list(indices)  # tag index in the collector of each event tag
        self._clock = clock
        self._handles: dict[int, int] = {}  # server handle -> position in _tags
        self._rules: list[list[_Rule]] = []
        self._names: dict[str, str] = {}  # event type node id -> its BrowseName
        self.stats = EventStats()

    def __len__(self) -> int:
        return len(self._tags)

    async def subscribe(self, client: Client, nodes: Sequence[ua.NodeId | None],
                        publishing_ms: float) -> None:
        """One subscription, one event monitored item per tag whose node resolved
        (``nodes``: the collector's resolved node of each of its tags)."""
        if not self._tags:
            return
        nodes = [nodes[i] for i in self._indices]
        namespaces: list[str] = []
        if any(isinstance(parse_node_id(t)[0], str)
               for tag in self._tags for t in _type_ids(tag.events)):
            namespaces = await client.get_namespace_array()
        self._rules = [[self._rule(r.event_type, r.message, r.reason, namespaces)
                        for r in (tag.events.map if tag.events else ())] for tag in self._tags]
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = publishing_ms
        keepalive = client.get_keepalive_count(publishing_ms)
        params.RequestedMaxKeepAliveCount = keepalive
        # as the driver's data-change subscriptions: a lifetime servers do not revise
        params.RequestedLifetimeCount = max(10000, 3 * keepalive)
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await client.create_subscription(params, _Handler(self))
        for k, (tag, node) in enumerate(zip(self._tags, nodes, strict=True)):
            if node is None or tag.events is None:
                continue  # unresolved: the collector's BAD_CONFIG row says why
            types = [_node(t, namespaces) for t in tag.events.event_types]
            if any(t is None for t in types):
                self._refused(k, "an event type's namespace is not in the server's namespace array",
                              Quality.BAD_CONFIG)
                continue
            try:
                handle = await sub.subscribe_events(
                    client.get_node(node), [client.get_node(t) for t in types if t])
            except ua.UaStatusCodeError as exc:
                self._refused(k, f"the server refuses an event subscription on it: "
                              f"{status_name(exc.code)}", Quality.BAD_CONFIG)
                continue
            self._handles[int(handle)] = k

    def _rule(self, event_type: str | None, message: str | None, reason: str,
              namespaces: list[str]) -> _Rule:
        type_id = type_name = None
        if event_type is not None:
            if "=" in event_type:
                type_id = _node(event_type, namespaces)
                if type_id is None:  # a namespace the server lacks: the rule matches nothing
                    type_name = "\0"
            else:
                type_name = event_type
        return _Rule(type_id, type_name, re.compile(message) if message else None, reason)

    def _refused(self, k: int, reason: str, quality: int) -> None:
        tag = self._tags[k]
        self.owner._tag_error(tag, reason)
        self._append(k, self._clock(), TS_UNKNOWN, np.nan, quality, None)

    def _append(self, k: int, ts: int, server_ts: int, value: float, quality: int,
                text: str | None) -> None:
        self.owner._append(self._indices[k], ts, server_ts, self._clock(), value, quality, text)

    async def _type_name(self, client: Client, type_id: ua.NodeId) -> str:
        key = type_id.to_string()
        name = self._names.get(key)
        if name is None:
            try:
                name = (await client.get_node(type_id).read_browse_name()).Name or ""
            except Exception as exc:
                log.debug("%s: reading the BrowseName of event type %s: %r", self.owner.device.name,
                          key, exc)
                name = ""
            self._names[key] = name
        return name

    async def on_event(self, event: Any) -> None:
        k = self._handles.get(getattr(event, "server_handle", None) or -1)
        if k is None:
            return
        self.stats.received += 1
        tag = self._tags[k]
        assert tag.events is not None
        source = _text(getattr(event, "SourceName", None))
        if tag.events.source_name is not None and source != tag.events.source_name:
            self.stats.unmapped += 1
            return
        etype = getattr(event, "EventType", None)
        etype_id = etype if isinstance(etype, ua.NodeId) else None
        message = _text(getattr(event, "Message", None))
        reason = None
        for rule in self._rules[k]:
            if rule.type_id is not None and rule.type_id != etype_id:
                continue
            if rule.type_name is not None:
                client = self.owner._client
                if etype_id is None or client is None or \
                        await self._type_name(client, etype_id) != rule.type_name:
                    continue
            if rule.message is not None and not rule.message.search(message):
                continue
            reason = rule.reason
            break
        if reason is None:
            self.stats.unmapped += 1
            return
        self.stats.mapped += 1
        now = self._clock()
        received = _ns(getattr(event, "ReceiveTime", None))
        ts = _ns(getattr(event, "Time", None)) or received or now
        severity = getattr(event, "Severity", None)
        self._append(k, ts, TS_UNKNOWN if received is None else received, np.nan, Quality.GOOD,
                     event_text(reason, source, "" if etype_id is None else etype_id.to_string(),
                                message, None if severity is None else int(severity)))


def _ns(dt: Any) -> int | None:
    """An event's DateTime in ns, None when absent or outside what a store holds."""
    return datetime_ns(dt) if isinstance(dt, datetime) else None


def _type_ids(events: EventMapping | None) -> list[str]:
    if events is None:
        return []
    return list(events.event_types) + [r.event_type for r in events.map
                                       if r.event_type is not None and "=" in r.event_type]


def _node(text: str, namespaces: list[str]) -> ua.NodeId | None:
    ns, kind, ident = parse_node_id(text)
    if isinstance(ns, str):
        if ns not in namespaces:
            return None
        ns = namespaces.index(ns)
    return ua.NodeId.from_string(f"ns={ns};{kind}={ident}")
