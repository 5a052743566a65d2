"""Typed settings: the whole gateway configuration as pydantic models.

The YAML loader (``config.loader``) validates a file into :class:`Settings`, then runs the
cross-field checks of :func:`cross_check`, and reports every problem with its field path.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .signals import ENUM_ROLES, SINGLE_ROLES, Role, canonical_names


class Model(BaseModel):
    """Base for all settings: unknown fields are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- time windows

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_instant(text: str | datetime, now: datetime | None = None) -> datetime:
    """Parse ``now``, ``now-7d``, ``now+2h`` or an ISO 8601 timestamp (naive = UTC)."""
    if isinstance(text, datetime):
        dt = text
    else:
        m = _RELATIVE.match(text.strip())
        if m:
            base = now or datetime.now(UTC)
            if m.group(1) is None:
                return base
            delta = timedelta(seconds=float(m.group(2)) * _UNIT_S[m.group(3)])
            return base - delta if m.group(1) == "-" else base + delta
        try:
            dt = datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time nor 'now', 'now-7d', 'now-12h'"
            ) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


Instant = Annotated[str, Field(description="ISO 8601 time, or now / now-7d / now-12h")]


class Window(Model):
    """A time window [start, end)."""

    start: Instant
    end: Instant = "now"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parseable(cls, v: object) -> str:
        if isinstance(v, datetime):
            v = v.isoformat()
        if not isinstance(v, str):
            raise ValueError("must be a string time")
        parse_instant(v)
        return v

    def resolve(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        now = now or datetime.now(UTC)
        start, end = parse_instant(self.start, now), parse_instant(self.end, now)
        if end <= start:
            raise ValueError(f"window end {end.isoformat()} is not after start {start.isoformat()}")
        return start, end


# --------------------------------------------------------------------------- calendar

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DailyRange(Model):
    """A daily time range in the calendar's time zone; end <= start crosses midnight."""

    name: str = ""
    start: time
    end: time
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))


class Calendar(Model):
    """Shift calendar: planned busy time = shifts minus planned stops minus holidays."""

    timezone: str = "UTC"
    shifts: list[DailyRange] = Field(
        default_factory=lambda: [DailyRange(name="all day", start=time(0), end=time(0))]
    )
    planned_stops: list[DailyRange] = Field(default_factory=list)
    holidays: list[str] = Field(default_factory=list, description="ISO dates, whole day off")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


# --------------------------------------------------------------------------- plant

_PATH_SEGMENT = r"[A-Za-z0-9_.\-]+"
ASSET_PATH = re.compile(rf"^{_PATH_SEGMENT}(/{_PATH_SEGMENT}){{3}}$")
NAME = re.compile(rf"^{_PATH_SEGMENT}$")


def _check_name(v: str) -> str:
    if not NAME.match(v):
        raise ValueError(f"{v!r} may hold only letters, digits, _ . -")
    return v


#: a device name or a path segment
Name = Annotated[str, AfterValidator(_check_name)]


class Asset(Model):
    """One machine (work unit). ``path`` is site/area/line/asset."""

    path: str
    description: str = ""
    ideal_cycle_time_s: float | None = Field(
        default=None, gt=0, description="PRU: planned run time per unit, seconds"
    )
    key_equipment: bool = False
    control: Literal["cnc", "plc", "dcs", "manual", "none"] = "plc"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not ASSET_PATH.match(v):
            raise ValueError(
                f"{v!r} must be site/area/line/asset: four segments of letters, digits, _ . -"
            )
        return v

    @property
    def line(self) -> str:
        return self.path.rsplit("/", 1)[0]


# --------------------------------------------------------------------------- tags

ModbusType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
ModbusTable = Literal["holding", "input", "coil", "discrete"]

#: registers occupied by each numeric type
REGISTER_WIDTH: dict[str, int] = {
    "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}


class TagBase(Model):
    """What every tag has, whatever its protocol."""

    name: Name = Field(description="signal name, the last segment of the tag path")
    asset: str = Field(description="path of the asset this signal belongs to")
    role: Role = Role.ANALOG
    unit: str = ""
    description: str = ""
    enum: dict[int, str] | None = Field(
        default=None, description="raw value -> canonical name (state, mode, channel_mode)"
    )
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _enum_names(self) -> TagBase:
        if self.enum is not None:
            if self.role not in ENUM_ROLES:
                raise ValueError(f"enum is only for roles {', '.join(ENUM_ROLES)}")
            allowed = canonical_names(self.role)
            bad = sorted({n for n in self.enum.values() if n not in allowed})
            if bad:
                raise ValueError(
                    f"enum names {bad} are not {self.role.value} names; use {allowed}"
                )
        return self

    @property
    def path(self) -> str:
        return f"{self.asset}/{self.name}"


class ModbusTag(TagBase):
    """A Modbus tag: where it lives and how its registers decode."""

    unit_id: int = Field(default=1, ge=0, le=255)
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535, description="zero-based protocol address")
    type: ModbusType = "uint16"
    byte_order: ByteOrder = "ABCD"
    bit: int | None = Field(default=None, ge=0, le=15, description="bit number, type bit")
    length: int | None = Field(default=None, ge=1, le=125, description="registers, type string")
    group: str = "default"

    @model_validator(mode="after")
    def _shape(self) -> ModbusTag:
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"a {self.table} holds single bits: type must be bool")
        if not bit_table and self.type == "bool":
            raise ValueError("type bool is for coil and discrete tables; use bit for a register bit")
        if (self.type == "bit") != (self.bit is not None):
            raise ValueError("bit is required with type bit, and only with it")
        if (self.type == "string") != (self.length is not None):
            raise ValueError("length is required with type string, and only with it")
        if self.address + self.width > 65536:
            raise ValueError(f"address {self.address} + {self.width} runs past 65535")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits, for coil/discrete) this tag occupies."""
        if self.type == "string":
            assert self.length is not None
            return self.length
        if self.type == "bool":
            return 1
        return REGISTER_WIDTH[self.type]


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


class OpcUaTag(TagBase):
    """An OPC UA tag: one variable node, read or monitored by its Value attribute."""

    node_id: str = Field(description="ns=2;i=5, ns=2;s=x, ns=2;g=<guid>, ns=2;b=<base64>, nsu=<uri>;s=x")

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
        if v in ENUM_ROLES:
            raise ValueError(
                f"role {v.value} needs an enum mapping per tag; configure such tags in tags"
            )
        return v


# --------------------------------------------------------------------------- devices


class Backoff(Model):
    """Reconnect backoff: initial * multiplier**n, capped, with +-jitter fraction."""

    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=30.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> Backoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class DeviceBase(Model):
    name: Name
    enabled: bool = True
    backoff: Backoff = Field(default_factory=Backoff)


ModbusTransport = Literal["tcp", "rtu", "rtu_over_tcp"]
Parity = Literal["none", "even", "odd"]


class ModbusSerial(Model):
    """The serial line of a Modbus RTU device (``transport: rtu``).

    Defaults are the Modbus serial line specification's: 19200 baud, 8 data bits, even parity,
    one stop bit. Devices on one line must all use the same settings.
    """

    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0 or /dev/ttyRS485")
    baudrate: int = Field(default=19200, gt=0, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Parity = "even"
    stopbits: Literal[1, 2] = 1

    def character_s(self) -> float:
        """Time one character takes on the line: start bit, data bits, parity, stop bits."""
        bits = 1 + self.bytesize + (0 if self.parity == "none" else 1) + self.stopbits
        return bits / self.baudrate


class ModbusDevice(DeviceBase):
    """A Modbus server: a PLC or gateway over TCP, or units on an RTU serial line.

    ``transport``: ``tcp`` (Modbus TCP, MBAP framing), ``rtu`` (Modbus RTU on the serial port
    of ``serial``) or ``rtu_over_tcp`` (RTU frames, with CRC, over a TCP socket to ``host`` and
    ``port``, as transparent serial-to-Ethernet converters pass them). Devices with the same
    serial port, or the same rtu_over_tcp host and port, share one line: their requests are
    sent one at a time.
    """

    protocol: Literal["modbus"]
    transport: ModbusTransport = "tcp"
    host: str = Field(default="", description="tcp and rtu_over_tcp: address of the server")
    port: int = Field(default=502, ge=1, le=65535)
    serial: ModbusSerial | None = Field(default=None, description="rtu: the serial line")
    frame_gap_s: float | None = Field(
        default=None, ge=0, le=10,
        description="rtu, rtu_over_tcp: silence kept on the line between an answer and the "
                    "next request; default 3.5 characters, at least 1.75 ms (the RTU t3.5)",
    )
    timeout_s: float = Field(default=1.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    poll_groups: dict[str, float] = Field(
        default_factory=dict, description="group name -> poll interval (s); tags pick by group"
    )
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    max_bits_per_request: int = Field(default=2000, ge=1, le=2000)
    coalesce_gap: int = Field(
        default=0, ge=0, le=100,
        description="unused registers a request may span to join two tags",
    )
    bad_tag_retry_s: float = Field(
        default=30.0, gt=0, le=86400,
        description="how often a tag the device refuses, or a unit id that does not answer, "
                    "is requested again (they are left out of the polls in between)",
    )
    tags: list[ModbusTag] = Field(default_factory=list)

    @field_validator("poll_groups")
    @classmethod
    def _groups(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, s in v.items() if s <= 0]
        if bad:
            raise ValueError(f"poll interval of group(s) {bad} must be > 0")
        return v

    @model_validator(mode="after")
    def _transport(self) -> ModbusDevice:
        if self.transport == "rtu":
            if self.serial is None:
                raise ValueError("transport rtu needs serial: {port: /dev/ttyUSB0, ...}")
            if "host" in self.model_fields_set:
                raise ValueError("host is for transports tcp and rtu_over_tcp; rtu uses serial.port")
        else:
            if not self.host:
                raise ValueError(f"transport {self.transport} needs host")
            if self.serial is not None:
                raise ValueError(f"serial is only for transport rtu, not {self.transport}")
        if self.transport == "tcp" and self.frame_gap_s is not None:
            raise ValueError("frame_gap_s is for the RTU transports (rtu, rtu_over_tcp)")
        return self

    def group_interval(self, group: str) -> float:
        return self.poll_groups.get(group, self.poll_interval_s)

    @property
    def line(self) -> str:
        """Where the device is: host:port, or the serial port (also the key of a shared line)."""
        if self.transport == "rtu":
            assert self.serial is not None
            return self.serial.port
        return f"{self.host}:{self.port}"

    def frame_gap(self) -> float:
        """Silence between frames on an RTU line (0 for Modbus TCP)."""
        if self.transport == "tcp":
            return 0.0
        if self.frame_gap_s is not None:
            return self.frame_gap_s
        char = self.serial.character_s() if self.serial is not None else 11 / 19200
        return max(3.5 * char, 0.00175)


def modbus_cross_check(devices: list[tuple[int, ModbusDevice]]) -> list[tuple[str, str]]:
    """Devices on one RTU line (a serial port, or an rtu_over_tcp converter) must agree on
    how the line is driven: they share one connection."""
    problems: list[tuple[str, str]] = []
    first: dict[tuple[str, str], tuple[int, ModbusDevice]] = {}
    for di, d in devices:
        if d.transport == "tcp":
            continue
        key = (d.transport, d.line)
        if key not in first:
            first[key] = (di, d)
            continue
        fi, f = first[key]
        for field in ("serial", "timeout_s", "frame_gap_s"):
            if getattr(d, field) != getattr(f, field):
                problems.append((
                    f"devices[{di}].{field}",
                    f"differs from devices[{fi}] ({f.name}) on the same line {d.line}; "
                    f"devices sharing a line must use the same {field}",
                ))
    return problems


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
    publishing_interval_ms: float = Field(default=1000.0, gt=0)
    sampling_interval_ms: float = Field(
        default=-1.0, ge=-1, description="-1: the publishing interval; 0: the server's fastest"
    )
    queue_size: int = Field(
        default=10, ge=1, le=10000,
        description="changes the server keeps per item between publishes (oldest discarded); 1 keeps only "
        "the newest, so two changes within one publishing cycle lose the first",
    )
    deadband: Deadband = Field(default_factory=Deadband)
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=4.0, gt=0)
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
    tags: list[OpcUaTag] = Field(default_factory=list)
    browse: list[BrowseRule] = Field(
        default_factory=list,
        description="browse-path discovery rules, resolved into tags by discover_tags",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$", v):
            raise ValueError(f"{v!r} is not an opc.tcp://host[:port][/path] endpoint")
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
        return self

    @property
    def sampling_ms(self) -> float:
        return self.publishing_interval_ms if self.sampling_interval_ms < 0 else self.sampling_interval_ms


# MQTT topic templates: levels of a topic name, each a literal, a {placeholder} naming a
# hierarchy level or the signal, or "+" (any, ignored); a final "#" ignores the rest.
MQTT_PLACEHOLDERS = ("site", "area", "line", "asset", "signal")
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
    if v is not None and not re.match(r"^mqtts?://[^/:\s]+(:\d{1,5})?/?$", v):
        raise ValueError(f"{v!r} is not a broker URL: use mqtt://host[:port] or mqtts://host[:port]")
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
    connect_timeout_s: float = Field(default=10.0, gt=0)
    batch_max_messages: int = Field(default=5000, ge=1, description="messages per store write at most")
    batch_max_ms: float = Field(default=20.0, ge=0, description="longest wait to fill a batch")
    rebirth_min_interval_s: float = Field(
        default=5.0, ge=0, description="sparkplug: at most one rebirth request per node this often"
    )
    subscriptions: list[MqttSubscription] = Field(min_length=1)
    tags: list[MqttTag] = Field(default_factory=list)

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str | None) -> str | None:
        return _mqtt_broker(v)

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


Device = Annotated[ModbusDevice | OpcUaDevice | MqttDevice, Field(discriminator="protocol")]


# --------------------------------------------------------------------------- store, api, kpi


class SqliteStoreSettings(Model):
    type: Literal["sqlite"] = "sqlite"
    path: str = "data/tierproof.db"
    retention_days: float | None = Field(default=None, gt=0, description="None keeps forever")
    synchronous: Literal["normal", "full"] = "normal"
    compact_every: int = Field(
        default=64, ge=1, description="ingest batches merged into per-tag chunks at a time"
    )


class SpoolSettings(Model):
    """Store-and-forward: where batches wait while a remote store cannot take them."""

    path: str = "data/spool"
    max_bytes: int = Field(default=1 << 30, ge=1 << 16, description="bound of the spool on disk")
    when_full: Literal["drop_oldest", "refuse_newest"] = "drop_oldest"
    backoff: Backoff = Field(default_factory=lambda: Backoff(initial_s=0.5, max_s=60.0))


class InfluxStoreSettings(Model):
    """InfluxDB as the store. ``api: v2`` writes with influxdb-client to InfluxDB 2.x/3.x and
    1.8+ (url, token, org, bucket); ``api: v1`` posts to ``/write`` of InfluxDB 1.x up to 1.7
    (database, retention_policy, username, password). Reads are InfluxQL on ``/query``."""

    type: Literal["influx"]
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v2"
    # v2
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    # v1 (and the database/retention policy InfluxQL reads use on 2.x/3.x via a DBRP mapping)
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    measurement: str = Field(default="tierproof", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    batch_size: int = Field(default=5000, ge=1)
    flush_interval_s: float = Field(
        default=0.0, ge=0,
        description="0: every batch is posted when it is written; > 0: batches are gathered in the "
        "(durable) spool and posted together every flush_interval_s, or once batch_size points wait",
    )
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True
    verify_tls: bool = True
    meta_path: str = Field(
        default="data/tierproof-meta.db",
        description="local file keeping the tag ids, gaps and heartbeats of this gateway",
    )
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        if "@" in v.split("://", 1)[1].split("/", 1)[0]:
            # a password in the URL would end up in logs, errors and /api/v1/health
            raise ValueError("the URL must not hold credentials: use username/password (v1) or token (v2)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> InfluxStoreSettings:
        if self.api == "v2":
            missing = [f for f in ("token", "org", "bucket") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"api v2 needs {', '.join(missing)}")
        else:
            if self.database is None:
                raise ValueError("api v1 needs database")
            if (self.username is None) != (self.password is None):
                raise ValueError("username and password go together")
        return self


StoreSettings = Annotated[SqliteStoreSettings | InfluxStoreSettings, Field(discriminator="type")]


class ApiSettings(Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class KpiSettings(Model):
    baseline: Window | None = None
    current: Window = Field(default_factory=lambda: Window(start="now-7d", end="now"))
    coverage_min: float = Field(
        default=0.9, ge=0, le=1, description="below this coverage a verdict is insufficient data"
    )


# --------------------------------------------------------------------------- simulation


class Regime(Model):
    """Behaviour of simulated machines in one period (baseline or improved)."""

    mtbf_min: float = Field(default=240.0, gt=0, description="mean running time between failures")
    mttr_min: float = Field(default=20.0, gt=0, description="mean repair time (OutOfService)")
    setup_every_h: float = Field(default=8.0, gt=0)
    setup_min: float = Field(default=25.0, ge=0)
    minor_stop_every_min: float = Field(default=45.0, gt=0)
    minor_stop_s: float = Field(default=90.0, ge=0)
    speed: float = Field(default=0.9, gt=0, le=1.5, description="actual speed / ideal speed")
    defect_rate: float = Field(default=0.03, ge=0, lt=1)
    auto_share: float = Field(default=0.8, ge=0, le=1, description="processing time in Automatic")
    power_kw_running: float = Field(default=12.0, ge=0)
    power_kw_idle: float = Field(default=2.0, ge=0)


class SimulationSettings(Model):
    seed: int = 1
    history_days: float = Field(default=14.0, ge=0, le=400)
    improvement_at: Instant = "now-7d"
    counter_reset_every_h: float = Field(default=72.0, gt=0)
    baseline: Regime = Field(default_factory=Regime)
    improved: Regime = Field(
        default_factory=lambda: Regime(
            mtbf_min=480, mttr_min=12, minor_stop_every_min=90, speed=0.97, defect_rate=0.012
        )
    )


# --------------------------------------------------------------------------- root


class Settings(Model):
    """A whole gateway configuration file."""

    version: Literal[1] = 1
    calendar: Calendar = Field(default_factory=Calendar)
    assets: list[Asset] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    store: StoreSettings = Field(default_factory=SqliteStoreSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    kpi: KpiSettings = Field(default_factory=KpiSettings)
    simulation: SimulationSettings | None = None

    def asset(self, path: str) -> Asset:
        for a in self.assets:
            if a.path == path:
                return a
        raise KeyError(path)

    def all_tags(self) -> list[tuple[DeviceBase, TagBase]]:
        return [(d, t) for d in self.devices for t in d.tags]


def cross_check(s: Settings) -> list[tuple[str, str]]:
    """Checks that span fields; returns (field path, reason) pairs."""
    problems: list[tuple[str, str]] = []
    seen_assets: dict[str, int] = {}
    for i, a in enumerate(s.assets):
        if a.path in seen_assets:
            problems.append((f"assets[{i}].path", f"duplicate of assets[{seen_assets[a.path]}]"))
        seen_assets.setdefault(a.path, i)
    seen_dev: dict[str, int] = {}
    seen_tag: dict[str, str] = {}
    roles: dict[tuple[str, Role], str] = {}
    for di, d in enumerate(s.devices):
        if d.name in seen_dev:
            problems.append((f"devices[{di}].name", f"duplicate of devices[{seen_dev[d.name]}]"))
        seen_dev.setdefault(d.name, di)
        if isinstance(d, OpcUaDevice):
            for ri, rule in enumerate(d.browse):
                if rule.asset not in seen_assets:
                    problems.append((f"devices[{di}].browse[{ri}].asset",
                                     f"no asset {rule.asset!r} is declared in assets"))
        if isinstance(d, MqttDevice):
            problems += mqtt_cross_check(di, d)
        for ti, t in enumerate(d.tags):
            loc = f"devices[{di}].tags[{ti}]"
            if t.asset not in seen_assets:
                problems.append((f"{loc}.asset", f"no asset {t.asset!r} is declared in assets"))
            if t.path in seen_tag:
                problems.append((f"{loc}.name", f"tag path {t.path} already used at {seen_tag[t.path]}"))
            seen_tag.setdefault(t.path, loc)
            if t.role in SINGLE_ROLES:
                key = (t.asset, t.role)
                if key in roles:
                    problems.append(
                        (f"{loc}.role", f"asset {t.asset} already has a {t.role.value} tag at {roles[key]}")
                    )
                roles.setdefault(key, loc)
            if t.role in ENUM_ROLES and t.enum is None:
                problems.append(
                    (
                        f"{loc}.enum",
                        f"a {t.role.value} tag needs enum: raw value -> {canonical_names(t.role)}",
                    )
                )
            if (
                isinstance(d, ModbusDevice)
                and isinstance(t, ModbusTag)
                and t.group != "default"
                and t.group not in d.poll_groups
            ):
                problems.append(
                    (f"{loc}.group", f"no poll group {t.group!r} in devices[{di}].poll_groups")
                )
    problems += modbus_cross_check(
        [(di, d) for di, d in enumerate(s.devices) if isinstance(d, ModbusDevice)]
    )
    return problems
