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
    character outside letters, digits, ``_ . -`` replaced by ``_``. The rules are resolved
    against a live server by :func:`collector.opcua.discover_tags`, whose tags go into
    ``tags``; the collector only collects ``tags`` (it lists what it discovers at connect in
    ``OpcUaCollector.discovered``).
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


class ModbusDevice(DeviceBase):
    """A Modbus TCP server (a PLC or a gateway to several unit ids)."""

    protocol: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
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
    tags: list[ModbusTag] = Field(default_factory=list)

    @field_validator("poll_groups")
    @classmethod
    def _groups(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, s in v.items() if s <= 0]
        if bad:
            raise ValueError(f"poll interval of group(s) {bad} must be > 0")
        return v

    def group_interval(self, group: str) -> float:
        return self.poll_groups.get(group, self.poll_interval_s)


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


Device = Annotated[ModbusDevice | OpcUaDevice, Field(discriminator="protocol")]


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
    flush_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True
    verify_tls: bool = True
    meta_path: str = Field(
        default="data/tierproof-meta.db",
        description="local file keeping the tag ids, gaps and heartbeats of this gateway",
    )
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

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
    return problems
