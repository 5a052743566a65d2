"""MQTT settings: the topic-template grammar and its matcher, subscriptions, tags and devices
(plain, JSON, Sparkplug B)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .base import DeviceBase, Model, TagBase
from .bounds import Timeout_s, ZeroOrInterval_s
from .redact import redact_url, url_credentials_error

# MQTT topic templates: levels of a topic name, each a literal, a {placeholder} naming a
# hierarchy level or the signal, or "+" (any, ignored); a final "#" ignores the rest.
MQTT_PLACEHOLDERS = ("site", "area", "line", "asset", "signal")
#: the largest MQTT control packet there is (a 4-byte remaining length: 256 MB - 1)
MQTT_MAX_PACKET = 268_435_455
#: default longest MQTT payload the collector decodes, bytes
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: default longest value of a string tag, UTF-8 bytes
DEFAULT_MAX_TEXT_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_]+)\}$")
MqttFormat = Literal["plain", "json", "sparkplug"]
MqttValueType = Literal["float", "int", "bool", "string"]


def mqtt_template_levels(template: str) -> list[str | None]:
    """Split a topic template into levels: a placeholder name, ``None`` for ``+``, ``"#"``
    for a final ``#``, or ``"=literal"``. Raises ValueError naming the bad level."""
    if not template:
        raise ValueError("a topic template must not be empty")
    out: list[str | None] = []
    parts = template.split("/")
    for i, p in enumerate(parts):
        m = _PLACEHOLDER.match(p)
        if m:
            name = m.group(1)
            if name not in MQTT_PLACEHOLDERS:
                raise ValueError(
                    f"template {template!r}: unknown placeholder {{{name}}}; use "
                    + ", ".join(f"{{{n}}}" for n in MQTT_PLACEHOLDERS)
                )
            if name in out:
                raise ValueError(f"template {template!r}: placeholder {{{name}}} appears twice")
            out.append(name)
        elif p == "+":
            out.append(None)
        elif p == "#":
            if i != len(parts) - 1:
                raise ValueError(f"template {template!r}: '#' must be the last level")
            out.append("#")
        elif any(c in p for c in "{}+#\0"):
            raise ValueError(
                f"template {template!r}: level {p!r} must be a literal, one {{placeholder}}, + or #"
            )
        else:
            out.append("=" + p)
    return out


def mqtt_filter_check(topic: str) -> str:
    """Check an MQTT topic filter (MQTT 3.1.1 section 4.7); returns it or raises ValueError."""
    if not topic:
        raise ValueError("a topic filter must not be empty")
    if "\0" in topic:
        raise ValueError(f"topic filter {topic!r} contains a NUL character")
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("a topic filter is at most 65535 bytes")
    levels = topic.split("/")
    for i, p in enumerate(levels):
        if "#" in p and (p != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic!r}: '#' must be a whole level and the last one")
        if "+" in p and p != "+":
            raise ValueError(f"topic filter {topic!r}: '+' must be a whole level")
    return topic


def _mqtt_broker(v: str | None) -> str | None:
    if v is None:
        return v
    creds = url_credentials_error(v, "use the device's username and password")
    if creds is not None:
        raise creds
    if not re.match(r"^mqtts?://[^/:\s]+(:\d{1,5})?/?$", v):
        raise ValueError(f"{redact_url(v)!r} is not a broker URL: use mqtt://host[:port] or "
                         "mqtts://host[:port]")
    return v


class MqttTls(Model):
    """TLS to the broker: the CA that signed the broker's certificate (None: the system's
    trusted CAs) and, for brokers that require one, a client certificate and key."""

    ca_file: str | None = Field(default=None, description="PEM CA bundle for the broker certificate")
    cert_file: str | None = Field(default=None, description="PEM client certificate")
    key_file: str | None = Field(default=None, description="PEM client private key")

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttSubscription(Model):
    """One subscription: a topic filter, the payload format, and how topics name tags.

    ``template`` maps topic levels to the tag's asset path segments (``{site}``, ``{area}``,
    ``{line}``, ``{asset}``) and signal (``{signal}``, the tag's ``name``); ``+`` ignores a
    level. For ``sparkplug`` the template applies to ``<group_id>/<edge node>/<device>``.
    """

    topic: str | None = Field(
        default=None,
        description="topic filter with + and # wildcards; sparkplug: default spBv1.0/<group_id>/#",
    )
    format: MqttFormat = "plain"
    template: str | None = Field(
        default=None,
        description="topic levels -> names, e.g. plant/{line}/{asset}/{signal}; default: the "
        "topic filter with + and # read as ignored levels (sparkplug: +/{line}/{asset})",
    )
    timestamp_field: str | None = Field(
        default=None, description="json: dotted path of the sample time in the document"
    )
    timestamp_format: Literal["epoch_ms", "epoch_s", "epoch_us", "epoch_ns", "iso8601"] = "epoch_ms"
    group_id: str = Field(default="+", description="sparkplug: the group to subscribe to (+: all)")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return None if v is None else mqtt_filter_check(v)

    @field_validator("template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            mqtt_template_levels(v)
        return v

    @field_validator("group_id")
    @classmethod
    def _group(cls, v: str) -> str:
        if v != "+" and (not v or any(c in v for c in "/+#\0")):
            raise ValueError(f"group_id {v!r} must be + or a name without / + #")
        return v

    @model_validator(mode="after")
    def _shape(self) -> MqttSubscription:
        if self.format == "sparkplug":
            if self.timestamp_field is not None:
                raise ValueError("timestamp_field is for json; Sparkplug payloads carry their own")
            if self.topic is not None and not self.topic.startswith("spBv1.0/"):
                raise ValueError("a sparkplug topic filter starts with spBv1.0/ (or leave it out)")
        else:
            if self.topic is None:
                raise ValueError(f"a {self.format} subscription needs topic")
            if self.group_id != "+":
                raise ValueError("group_id is for sparkplug subscriptions")
            if self.format == "plain" and self.timestamp_field is not None:
                raise ValueError("timestamp_field is for json; plain payloads carry no time")
        return self

    @property
    def filter(self) -> str:
        """The topic filter subscribed to."""
        if self.topic is not None:
            return self.topic
        return f"spBv1.0/{self.group_id}/#"

    @property
    def levels(self) -> list[str | None]:
        """The template's levels (see :func:`mqtt_template_levels`)."""
        if self.template is not None:
            return mqtt_template_levels(self.template)
        if self.format == "sparkplug":
            return [None, "line", "asset"]
        return [None if p in ("+",) else ("#" if p == "#" else "=" + p) for p in self.filter.split("/")]


class MqttTag(TagBase):
    """An MQTT tag: a topic level {signal} (plain), a JSON field, or a Sparkplug metric.

    The tag's ``asset`` segments and ``name`` are what the subscription template's
    placeholders must read from the topic for a message to belong to this tag.
    """

    field: str | None = Field(
        default=None, description="json: dotted path of the value, e.g. machine.state"
    )
    metric: str | None = Field(
        default=None, description="sparkplug: metric name (default: the tag name)"
    )
    format: MqttFormat | None = Field(
        default=None,
        description="which subscriptions carry this tag; default json with field, else plain",
    )
    type: MqttValueType = Field(
        default="float", description="float, int, bool (stored 0/1) or string (stored as text)"
    )

    @field_validator("field")
    @classmethod
    def _field(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(not p for p in v.split("."))):
            raise ValueError(f"{v!r} must be a dotted path of keys, e.g. machine.state")
        return v

    @model_validator(mode="after")
    def _kind(self) -> MqttTag:
        if self.field is not None and self.metric is not None:
            raise ValueError("a tag has a json field or a sparkplug metric, not both")
        if self.format is not None and self.format != "json" and self.field is not None:
            raise ValueError(f"field is for json tags, this one is {self.format}")
        if self.format == "json" and self.field is None:
            raise ValueError("a json tag needs field")
        if self.format is not None and self.format != "sparkplug" and self.metric is not None:
            raise ValueError(f"metric is for sparkplug tags, this one is {self.format}")
        return self

    @property
    def declared_kind(self) -> MqttFormat | None:
        """The format the tag itself implies: ``format``, else json with ``field``, sparkplug
        with ``metric``; None leaves it to the device (see :meth:`MqttDevice.tag_kind`)."""
        if self.format is not None:
            return self.format
        if self.field is not None:
            return "json"
        if self.metric is not None:
            return "sparkplug"
        return None

    @property
    def metric_name(self) -> str:
        return self.metric if self.metric is not None else self.name


class MqttDevice(DeviceBase):
    """An MQTT broker and what to take from it (plain values, JSON documents, Sparkplug B)."""

    protocol: Literal["mqtt"]
    broker: str | None = Field(
        default=None,
        description="mqtt://host[:port] (1883) or mqtts://host[:port] (8883); None: the broker "
        "embedded in `tierproof demo`",
    )
    client_id: str | None = Field(
        default=None,
        description="MQTT client id; the broker keeps the session under it (default tierproof-<name>)",
    )
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    qos: Literal[0, 1] = 1
    clean_session: bool = Field(
        default=False, description="False: the broker queues messages while the gateway is away"
    )
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    connect_timeout_s: Timeout_s = 10.0
    batch_max_messages: int = Field(default=5000, ge=1, description="messages per store write at most")
    batch_max_ms: float = Field(default=20.0, ge=0, le=60_000, description="longest wait to fill a batch")
    rebirth_min_interval_s: ZeroOrInterval_s = Field(
        default=5.0, description="sparkplug: at most one rebirth request per node this often"
    )
    primary_host_id: str | None = Field(
        default=None,
        description="sparkplug: act as the Primary Host Application of this id (Sparkplug 3.0): "
        "publish a retained spBv1.0/STATE/<id> online once subscribed (offline as the Will and "
        "at a clean stop). Edge nodes configured with this primary host birth only while it is "
        "online, so none sends data the gateway could not yet decode",
    )
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1, le=MQTT_MAX_PACKET,
        description="a longer message is dropped before it is decoded and counted as "
        "'payload too large' (set the broker's max_packet_size too)",
    )
    max_text_bytes: int = Field(
        default=DEFAULT_MAX_TEXT_BYTES, ge=1, le=MQTT_MAX_PACKET,
        description="a longer string value (UTF-8 bytes) is dropped and counted as 'text too long'",
    )
    subscriptions: list[MqttSubscription] = Field(min_length=1)
    tags: list[MqttTag] = Field(default_factory=list)

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str | None) -> str | None:
        return _mqtt_broker(v)

    @field_validator("primary_host_id")
    @classmethod
    def _primary_host_id(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#\0")):
            raise ValueError("primary_host_id must be a non-empty name without '/', '+' or '#'")
        return v

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v.encode("utf-8")) > 65535 or "\0" in v):
            raise ValueError("client_id must be a non-empty string")
        return v

    @model_validator(mode="after")
    def _auth(self) -> MqttDevice:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.broker is not None and self.broker.startswith("mqtt://") and self.tls is not None:
            raise ValueError("tls needs an mqtts:// broker URL")
        return self

    def tag_kind(self, tag: MqttTag) -> MqttFormat:
        """Which subscriptions carry ``tag``: what it declares, else the device's one format
        other than json when it has just one, else plain."""
        kind = tag.declared_kind
        if kind is not None:
            return kind
        others = {s.format for s in self.subscriptions} - {"json"}
        return others.pop() if len(others) == 1 else "plain"

    @property
    def session_id(self) -> str:
        return self.client_id if self.client_id is not None else f"tierproof-{self.name}"

    @property
    def host_port(self) -> tuple[str, int, bool] | None:
        """(host, port, tls) of ``broker``, or None for the demo's embedded broker."""
        if self.broker is None:
            return None
        m = re.match(r"^(mqtts?)://([^/:\s]+)(?::(\d+))?/?$", self.broker)
        assert m is not None  # validated
        secure = m.group(1) == "mqtts"
        return m.group(2), int(m.group(3) or (8883 if secure else 1883)), secure


def mqtt_template_matches_filter(levels: list[str | None], topic_filter: str) -> str | None:
    """Why a template cannot describe topics of ``topic_filter`` (None if it can)."""
    flt = topic_filter.split("/")
    for i, lv in enumerate(levels):
        if lv == "#":
            return None
        if i >= len(flt):
            return f"has more levels than the topic filter {topic_filter!r}"
        f = flt[i]
        if f == "#":
            return None
        if lv is not None and lv.startswith("=") and f not in ("+", lv[1:]):
            return f"level {i + 1} is {lv[1:]!r} where the topic filter has {f!r}: it matches no topic"
    if len(levels) < len(flt):
        return f"has fewer levels than the topic filter {topic_filter!r} (end it with # to ignore the rest)"
    return None


def mqtt_cross_check(di: int, d: MqttDevice) -> list[tuple[str, str]]:
    """Template placeholders against tags, and every tag carried by some subscription."""
    problems: list[tuple[str, str]] = []
    for si, sub in enumerate(d.subscriptions):
        loc = f"devices[{di}].subscriptions[{si}]"
        levels = sub.levels
        if sub.format == "sparkplug":
            if len(levels) > 3:
                problems.append((f"{loc}.template", "a sparkplug template has at most 3 levels: "
                                 "<group>/<edge node>/<device>, e.g. +/{line}/{asset}"))
            if "signal" in levels:
                problems.append((f"{loc}.template",
                                 "{signal} is not a level here: a sparkplug tag names its metric"))
            continue
        why = mqtt_template_matches_filter(levels, sub.filter)
        if why:
            problems.append((f"{loc}.template", f"template {sub.template or sub.filter!r} {why}"))
        if sub.format == "plain" and "signal" not in levels:
            problems.append((f"{loc}.template",
                             "a plain subscription carries one value per topic: the template needs {signal}"))
    formats = {s.format for s in d.subscriptions}
    for ti, t in enumerate(d.tags):
        kind = d.tag_kind(t)
        if kind == "plain" and formats == {"json"}:
            problems.append((f"devices[{di}].tags[{ti}].field",
                             "a tag of a json subscription needs field (the value's dotted path)"))
        elif kind not in formats:
            problems.append((f"devices[{di}].tags[{ti}].format",
                             f"a {kind} tag, but devices[{di}] has no {kind} subscription"))
    for si, sub in enumerate(d.subscriptions):
        seen: dict[tuple[str, ...], int] = {}
        for ti, t in enumerate(d.tags):
            if d.tag_kind(t) != sub.format:
                continue
            key = mqtt_tag_key(sub.levels, t, sub.format)
            if key in seen:
                problems.append((
                    f"devices[{di}].tags[{ti}]",
                    f"reads the same value as devices[{di}].tags[{seen[key]}] under "
                    f"subscriptions[{si}]: add a placeholder ({{line}}, {{asset}}, ...) to its "
                    "template that tells the two apart",
                ))
            seen.setdefault(key, ti)
    return problems


def mqtt_tag_key(levels: list[str | None], tag: MqttTag, fmt: str) -> tuple[str, ...]:
    """What a topic must read (placeholders in template order) for a message to carry
    ``tag``, plus the json field or the sparkplug metric name."""
    segments = tag.asset.split("/")
    index = {"site": 0, "area": 1, "line": 2, "asset": 3}
    key: list[str] = []
    for lv in levels:
        if lv == "signal":
            key.append(tag.name)
        elif lv in index:
            key.append(segments[index[lv]] if len(segments) == 4 else tag.asset)
    if fmt == "json":
        key.append(tag.field or "")
    elif fmt == "sparkplug":
        key.append(tag.metric_name)
    return tuple(key)
