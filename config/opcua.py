"""OPC UA settings: node ids, tags, browse rules and devices (security, subscriptions, poll)."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .base import ASSET_PATH, NAME, DeviceBase, Model, Name, TagBase
from .bounds import Interval_ms, Interval_s, Timeout_s
from .redact import redact_url, url_credentials_error
from .signals import ENUM_ROLES, EVENT_ROLES, REASON_ROLES, Role
from .storage import Storage, check_tag_storage

# OPC UA node ids in the string forms of OPC 10000-6 §5.3.1.10: "ns=<index>;" or
# "nsu=<namespace uri>;" (resolved against the server's namespace array at connect) followed
# by i= (numeric), s= (string), g= (GUID) or b= (base64 ByteString). No prefix means ns=0.
_NODE_ID = re.compile(r"^(?:(ns)=(\d+);|(nsu)=([^;]+);)?([isgb])=(.*)$", re.DOTALL)


def parse_node_id(text: str) -> tuple[int | str, str, str]:
    """Split a node id string into (namespace index or URI, kind i/s/g/b, identifier).

    Raises ValueError naming the problem; this is the load-time check, the collector turns the
    parts into asyncua node ids.
    """
    m = _NODE_ID.match(text.strip())
    if not m:
        raise ValueError(
            f"{text!r} is not an OPC UA node id; use ns=<n>;i=<int>, ns=<n>;s=<text>, "
            "ns=<n>;g=<guid>, ns=<n>;b=<base64> or nsu=<namespace uri>;s=<text>"
        )
    ns: int | str = int(m.group(2)) if m.group(1) else (m.group(4) if m.group(3) else 0)
    if isinstance(ns, int) and ns > 65535:
        raise ValueError(f"{text!r}: namespace index {ns} is above 65535")
    kind, ident = m.group(5), m.group(6)
    if kind == "i":
        if not ident.isdigit() or int(ident) > 0xFFFFFFFF:
            raise ValueError(f"{text!r}: a numeric identifier (i=) must be an integer 0..4294967295")
    elif kind == "s":
        if not ident:
            raise ValueError(f"{text!r}: a string identifier (s=) must not be empty")
    elif kind == "g":
        try:
            uuid.UUID(ident)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {ident!r} is not a GUID (g=)") from exc
    else:
        try:
            base64.b64decode(ident, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{text!r}: {ident!r} is not base64 (b=)") from exc
    return ns, kind, ident


#: the sampling interval when neither it nor the publishing interval is configured: half a
#: second, so that with the derived publishing interval (250 ms) a value changing once a second
#: on a server that samples reaches the gateway within 0.75 s (sample wait + publish wait)
#: -- collector/opcua/README.md#latency
DEFAULT_SAMPLING_MS = 500.0
#: bounds of the derived publishing interval (half the sampling interval)
PUBLISHING_MS_RANGE = (100.0, 1000.0)


#: BaseEventType: what an event subscription receives unless told otherwise
BASE_EVENT_TYPE = "i=2041"


class EventRule(Model):
    """One rule of an event mapping: an event whose type is ``event_type`` (a node id, or
    the type's BrowseName) and whose message matches ``message`` (a regular expression,
    searched) gives the reason ``reason``. A rule names a type, a message or both."""

    event_type: str | None = Field(
        default=None,
        description="the event type: a node id (ns=2;i=1001, nsu=<uri>;s=x) or its BrowseName "
        "(MachineStopEventType; no namespace prefix)")
    message: str | None = Field(
        default=None, min_length=1,
        description="regular expression searched in the event's Message text (Python re)")
    reason: Name = Field(description="reason id (reasons:) this event gives a stop")

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if "=" in v:
            parse_node_id(v)
        elif not v:
            raise ValueError("an event type must not be empty")
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"{v!r} is not a regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _something(self) -> EventRule:
        if self.event_type is None and self.message is None:
            raise ValueError("a rule needs event_type, message or both (it would match every event)")
        return self


class EventMapping(Model):
    """``events:`` of a ``reason_event`` tag: the tag's node (a machine object, or the Server
    object i=2253) is subscribed for events of ``event_types``; the first rule of ``map``
    an event matches gives its reason (``collector.opcua.events``)."""

    event_types: list[str] = Field(
        default_factory=lambda: [BASE_EVENT_TYPE], min_length=1,
        description="node ids of the event types subscribed (and their subtypes); default "
        "BaseEventType (i=2041): every event")
    source_name: str | None = Field(
        default=None, min_length=1,
        description="only events whose SourceName is this (a subscription on the Server object "
        "sees every machine's events)")
    map: list[EventRule] = Field(min_length=1, description="rules, first match wins")

    @field_validator("event_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            parse_node_id(t)
        return [t.strip() for t in v]


class OpcUaTag(TagBase):
    """An OPC UA tag: one variable node, read or monitored by its Value attribute -- or, with
    role ``reason_event``, one node whose events are subscribed and mapped to reasons."""

    node_id: str = Field(description="ns=2;i=5, ns=2;s=x, ns=2;g=<guid>, ns=2;b=<base64>, nsu=<uri>;s=x")
    storage: Storage | None = Field(
        default=None, description="mode poll: which polled samples are stored (see config.storage)",
    )
    events: EventMapping | None = Field(
        default=None, description="role reason_event: the events subscribed and their reasons")

    @model_validator(mode="after")
    def _events_role(self) -> OpcUaTag:
        if self.role in EVENT_ROLES and self.events is None:
            raise ValueError(f"a {self.role.value} tag needs events: the event types and the "
                             "rules mapping them to reasons")
        if self.events is not None and self.role not in EVENT_ROLES:
            raise ValueError(f"events is only for role {EVENT_ROLES[0].value}, not {self.role.value}")
        return self

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: Storage | None, info: ValidationInfo) -> Storage | None:
        return check_tag_storage(info.data.get("role", Role.ANALOG), v)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        parse_node_id(v)
        return v.strip()


class BrowseRule(Model):
    """Browse-path discovery (Kepware/Telegraf style): the Variable nodes below ``root``
    whose browse name matches ``name_filter`` become tags of ``asset``.

    A tag is named ``<name_prefix><browse path below root, joined with '.'>``, with every
    character outside letters, digits, ``_ . -`` replaced by ``_``. The collector resolves the
    rules at every connect and collects what they find beside ``tags`` (the supervisor
    registers the new tags in the store); :func:`collector.opcua.discover_tags` lists them
    for pasting into ``tags`` instead.
    """

    root: str = Field(description="node id to browse from: ns=2;s=Machines, nsu=<uri>;s=x, i=85")
    name_filter: str = Field(default="*", min_length=1, description="fnmatch glob on browse names")
    max_depth: int = Field(default=5, ge=1, le=64, description="levels below root to browse")
    asset: str = Field(description="path of the asset the discovered variables belong to")
    role: Role = Role.ANALOG
    name_prefix: str = Field(default="", description="prepended to every discovered tag name")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        parse_node_id(v)
        return v.strip()

    @field_validator("asset")
    @classmethod
    def _asset(cls, v: str) -> str:
        if not ASSET_PATH.match(v):
            raise ValueError(
                f"{v!r} must be site/area/line/asset: four segments of letters, digits, _ . -"
            )
        return v

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not NAME.match(v):
            raise ValueError(f"{v!r} may hold only letters, digits, _ . -")
        return v

    @field_validator("role")
    @classmethod
    def _role(cls, v: Role) -> Role:
        if v in ENUM_ROLES + REASON_ROLES + EVENT_ROLES:
            raise ValueError(
                f"role {v.value} needs an enum mapping per tag; configure such tags in tags"
            )
        return v




class Deadband(Model):
    """Data-change filter of a monitored item: report only changes larger than ``value``
    (absolute, in the tag's engineering unit, or percent of the node's EURange)."""

    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _range(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percent deadband must be 0..100")
        return self


OpcUaSecurityPolicy = Literal["None", "Basic256Sha256", "Aes256_Sha256_RsaPss"]
OpcUaSecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcUaDevice(DeviceBase):
    """An OPC UA server (a machine, a PLC, an aggregating server)."""

    protocol: Literal["opcua"]
    endpoint: str = Field(description="opc.tcp://host:port[/path]")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: Interval_ms | None = Field(
        default=None,
        description="default: half the sampling interval, at least 100 ms, at most 1 s (250 ms with "
        "the default sampling interval of 500 ms)",
    )
    sampling_interval_ms: float = Field(
        default=-1.0, ge=-1, le=86_400_000,
        description="-1: the publishing interval if one is set, else 500; 0: the server's fastest",
    )
    queue_size: int = Field(
        default=10, ge=1, le=10000,
        description="changes the server keeps per item between publishes (oldest discarded); 1 keeps only "
        "the newest, so two changes within one publishing cycle lose the first",
    )
    deadband: Deadband = Field(default_factory=Deadband)
    poll_interval_s: Interval_s = 1.0
    timeout_s: Timeout_s = 4.0
    security_policy: OpcUaSecurityPolicy = "None"
    security_mode: OpcUaSecurityMode = "None"
    certificate: str | None = Field(default=None, description="client certificate (DER or PEM) path")
    private_key: str | None = Field(default=None, description="client private key (PEM) path")
    trusted_certificates: list[str] = Field(
        default_factory=list,
        description="server certificate files trusted; empty trusts any server certificate",
    )
    username: str | None = None
    password: SecretStr | None = None
    max_items_per_subscription: int = Field(default=1000, ge=1)
    storage: Storage | None = Field(
        default=None, description="mode poll: default storage of the device's tags (see config.storage)",
    )
    tags: list[OpcUaTag] = Field(default_factory=list)
    browse: list[BrowseRule] = Field(
        default_factory=list,
        description="browse-path discovery rules, resolved into tags by discover_tags",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        creds = url_credentials_error(v, "use the device's username and password")
        if creds is not None:
            raise creds
        if not re.match(r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$", v):
            raise ValueError(f"{redact_url(v)!r} is not an opc.tcp://host[:port][/path] endpoint")
        return v

    @model_validator(mode="after")
    def _security(self) -> OpcUaDevice:
        secure = self.security_policy != "None"
        if secure != (self.security_mode != "None"):
            raise ValueError(
                "security_mode must be None exactly when security_policy is None "
                f"(policy {self.security_policy}, mode {self.security_mode})"
            )
        if secure and (self.certificate is None or self.private_key is None):
            raise ValueError(
                f"security_policy {self.security_policy} needs certificate and private_key"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.mode == "subscribe":
            where = (["storage"] if self.storage is not None else []) + [
                f"tags[{i}].storage" for i, t in enumerate(self.tags) if t.storage is not None
            ]
            if where:
                raise ValueError(
                    f"{', '.join(where)}: storage filters polled samples (mode: poll); a "
                    "subscription already reports changes only (use deadband for its filter)"
                )
        events = [f"tags[{i}]" for i, t in enumerate(self.tags) if t.events is not None]
        if events and self.mode != "subscribe":
            raise ValueError(f"{', '.join(events)}: events arrive through a subscription; a "
                             "device with reason_event tags needs mode: subscribe")
        return self

    @property
    def sampling_ms(self) -> float:
        """The sampling interval requested: as set; -1 follows a configured publishing interval
        (else :data:`DEFAULT_SAMPLING_MS`)."""
        if self.sampling_interval_ms >= 0:
            return self.sampling_interval_ms
        return self.publishing_interval_ms or DEFAULT_SAMPLING_MS

    @property
    def publishing_ms(self) -> float:
        """The publishing interval requested: as set, else derived from the sampling interval
        (half of it, within :data:`PUBLISHING_MS_RANGE`): a change waits for the next publish at
        most half a sample period, so a source changing once per sampling interval reaches the
        gateway well within that interval."""
        if self.publishing_interval_ms is not None:
            return self.publishing_interval_ms
        lo, hi = PUBLISHING_MS_RANGE
        return min(hi, max(lo, self.sampling_ms / 2))
