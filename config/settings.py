"""Typed settings: the whole gateway configuration as pydantic models.

The YAML loader (``config.loader``) validates a file into :class:`Settings`, then runs the
cross-field checks of :func:`cross_check`, and reports every problem with its field path.
Each topic has its module -- :mod:`config.times` (instants, windows, calendar),
:mod:`config.modbus`, :mod:`config.opcua`, :mod:`config.mqtt`, :mod:`config.store` -- and
this one keeps assets, the device union, the ``Settings`` root and the checks across them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
)

from .api_auth import ApiAuthSettings, ApiCorsSettings, ApiTlsSettings
from .base import ASSET_PATH, DeviceBase, Model, TagBase
from .bounds import Port, Timeout_s
from .declared import Declared
from .modbus import ModbusDevice, ModbusTag, modbus_cross_check
from .mqtt import MqttDevice, mqtt_cross_check
from .opcua import OpcUaDevice
from .reasons import ReasonSettings, event_cross_check, reasons_cross_check
from .signals import ENUM_ROLES, REASON_ROLES, SINGLE_ROLES, Role, canonical_names
from .store import SqliteStoreSettings, StoreSettings
from .times import Calendar, Instant, Window, parse_instant


class Asset(Model):
    """One machine (work unit). ``path`` is site/area/line/asset."""

    path: str
    description: str = ""
    ideal_cycle_time_s: float | None = Field(
        default=None, gt=0, description="PRU: planned run time per unit, seconds"
    )
    key_equipment: bool = False
    control: Literal["cnc", "plc", "dcs", "manual", "none"] = "plc"
    default_mode: str | None = Field(
        default=None,
        description=(
            "OPC 40001-1 MachineryOperationMode name (None, Maintenance, Setup, Processing) "
            "that the KPIs take as the asset's constant mode when it has no mode tag (most small "
            "PLCs have none); a mode tag wins; the evidence says the mode was configured"
        ),
    )

    @field_validator("default_mode")
    @classmethod
    def _default_mode(cls, v: str | None) -> str | None:
        names = canonical_names(Role.MODE)
        if v is not None and v not in names:
            raise ValueError(
                f"{v!r} is not a MachineryOperationMode name (OPC 40001-1): use one of "
                f"{', '.join(names)} (quote None: default_mode: \"None\")"
            )
        return v

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



Device = Annotated[ModbusDevice | OpcUaDevice | MqttDevice, Field(discriminator="protocol")]


class ApiSettings(Model):
    host: str = "127.0.0.1"
    port: Port = 8000
    max_kpi_window_days: float = Field(
        default=400.0, gt=0, le=36_500,
        description=(
            "longest window (and baseline window) of /kpis, /kpis/deltas and "
            "/tiers/assessment, in days: a longer one is refused with a 400 problem naming "
            "the parameter and this limit (a KPI request's cost grows with its window)"
        ),
    )
    kpi_max_age_s: float = Field(
        default=5.0, ge=0, le=3600,
        description=(
            "how old, in seconds, an answer of /kpis and /kpis/deltas for a window that has "
            "not closed (the default window, today) may be: such a request gets the most "
            "recent computation of the same request if it was computed for a 'now' at most "
            "this long before the request's, stated in its Age and X-KPI-As-Of headers, while "
            "one computation renews it in the background; 0: every such request waits for its "
            "own computation (docs/api.md)"
        ),
    )
    kpi_closed_max_age_s: float = Field(
        default=60.0, ge=0, le=86_400,
        description=(
            "how old, in seconds, a cached KPI answer for a closed window may be in a process "
            "that is not the only writer of its store and cannot tell when others write: "
            "`tierproof serve` over InfluxDB, beside the gateway that writes it (the central "
            "tierproof, without devices, caches none); a late write shows in its answers "
            "within this bound. The gateway itself, and any process over the embedded store, "
            "keep such answers exactly until a write touches them (docs/api.md); 0: such a "
            "process serves none from its cache"
        ),
    )
    max_samples: int = Field(
        default=100_000, ge=1, le=10_000_000,
        description=(
            "largest `limit` of /tags/{path}/samples (samples per answer): a larger one is "
            "refused with a 400 problem naming the parameter and this limit"
        ),
    )
    max_series_buckets: int = Field(
        default=1_500, ge=1, le=100_000,
        description=(
            "most buckets of one /kpis/series or /tags/{path}/history answer (720 is 30 days "
            "of hours, 1,440 a day of minutes): more is refused with a 400 problem naming "
            "`bucket` and this limit"
        ),
    )
    max_connections: int = Field(
        default=512, ge=1, le=100_000,
        description=(
            "open HTTP connections at most: one more is answered 503 and closed at once, so "
            "that a connection flood degrades the API, never collection (lowered at start to "
            "what the process's file limit leaves after a reserve for the collectors and the "
            "store)"
        ),
    )
    header_timeout_s: Timeout_s = Field(
        default=10.0,
        description=(
            "an HTTP connection that has not sent a complete request's headers this long "
            "after it opened (or after its last answer) is closed: idle and half-open "
            "connections cannot pile up; so is one whose client takes nothing of its answer "
            "this long"
        ),
    )
    keep_alive_s: Timeout_s = Field(
        default=5.0, description="an idle keep-alive connection is closed after this long"
    )
    auth: ApiAuthSettings = Field(default_factory=ApiAuthSettings,
                                  description="API keys and scopes (docs/api.md#authentication)")
    tls: ApiTlsSettings | None = Field(default=None, description="HTTPS: cert and key files")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1,
        description=(
            "Host header values the API answers (`gateway.plant.local`, `*.plant.local`, "
            "`127.0.0.1`); any other is a 400 problem: a DNS-rebinding page cannot reach the "
            "API through a name of its own. `*`: any"
        ),
    )
    cors: ApiCorsSettings = Field(default_factory=ApiCorsSettings)
    rate_limit_per_s: float | None = Field(
        default=None, gt=0, le=1_000_000,
        description=(
            "requests per second each API key may make on average (a token bucket of "
            "rate_limit_burst requests); over it a 429 problem with Retry-After. None: no limit"
        ),
    )
    rate_limit_burst: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="requests a key may make at once (default: rate_limit_per_s, at least 1)",
    )


class KpiSettings(Model):
    baseline: Window | None = None
    current: Window = Field(default_factory=lambda: Window(start="now-7d", end="now"))
    coverage_min: float = Field(
        default=0.9, ge=0, le=1, description="below this coverage a verdict is insufficient data"
    )
    counter_rate_factor: float = Field(
        default=1.5,
        ge=1,
        description=(
            "a part counter's increase between two samples is implausible, and excluded (and "
            "listed in the evidence), when it exceeds the elapsed time / ideal cycle time x "
            "this factor, plus one part of sampling slack (e.g. a glitch to 0 and back)"
        ),
    )
    counter_stamp_tolerance_s: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description=(
            "seconds a counter sample's gateway stamp may be late against the instant its "
            "value was read (a Modbus answer or plain MQTT value is stamped when the gateway's "
            "event loop gets to it; starved of CPU, it gets to it late): the plausible increase "
            "between two samples allows this much time more (docs/kpis.md). 2 s: about twice the "
            "worst lag of the collectors' loop measured at load 16-18 (1.12 s)"
        ),
    )
    rollups: bool = Field(
        default=True,
        description=(
            "compute a window's whole hours (and whole local days) from the store's roll-ups "
            "where it keeps them (the embedded store, maintained in the background), its edges "
            "from raw samples: equal to the raw computation to 1e-9 relative (in practice "
            "~1e-15), not bit for bit (docs/kpis.md); a store without rows yet answers from "
            "raw samples; false: every window from raw samples"
        ),
    )
    assess_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description=(
            "worker processes that compute a share of an assessment's assets beside the "
            "process that serves it (api.assetsplit), each with its own read-only connection "
            "to the embedded store, started on first use and kept warm; the answer is the "
            "same JSON bit for bit. Default (unset): one per core beyond the first for a "
            "register of 64 assets or more (below, a worker costs more than it saves); 0: every "
            "asset in the serving process (always so for a store other than the embedded one)"
        ),
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
    declared: Declared = Field(default_factory=Declared, description="evidence telemetry cannot show")
    reasons: ReasonSettings = Field(default_factory=ReasonSettings,
                                    description="downtime reason tree (docs/configuration.md)")

    # The field values as validated (from the file). Runtime overrides -- the demo's store
    # path, the embedded broker's URL, ports chosen by tests -- are made with model_copy,
    # which keeps this: the fingerprint (config.fingerprint) is of the file, not of them.
    _as_validated: dict[str, Any] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # the models are frozen, so a shallow copy is the validated state for good
        self._as_validated = dict(self.__dict__)

    def as_validated(self) -> Settings:
        """These settings as they were validated, before any runtime override."""
        return self.model_copy(update=self._as_validated)

    def asset(self, path: str) -> Asset:
        for a in self.assets:
            if a.path == path:
                return a
        raise KeyError(path)

    def all_tags(self) -> list[tuple[DeviceBase, TagBase]]:
        return [(d, t) for d in self.devices for t in d.tags]


def cross_check(s: Settings) -> list[tuple[str, str]]:
    """Checks that span fields; returns (field path, reason) pairs."""
    problems: list[tuple[str, str]] = reasons_cross_check(s.reasons)
    reason_ids = set(s.reasons.tree().ids)
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
            if t.role in REASON_ROLES:
                if t.enum is None:
                    problems.append((f"{loc}.enum", f"a {t.role.value} tag needs enum: raw "
                                     "code -> reason id (reasons:)"))
                for raw, rid in sorted((t.enum or {}).items()):
                    if rid not in reason_ids:
                        problems.append((f"{loc}.enum.{raw}", f"no reason {rid!r} in reasons: "
                                         "(a shipped one or reasons.reasons)"))
            problems += event_cross_check(loc, t, reason_ids)
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
    # a kpi window's time without an offset is a wall-clock time of the calendar's zone: one
    # the clocks skip there names no instant
    for wname in ("current", "baseline"):
        w = getattr(s.kpi, wname)
        for end in ("start", "end") if w is not None else ():
            try:
                parse_instant(getattr(w, end), tz=s.calendar.zone)
            except ValueError as exc:
                problems.append((f"kpi.{wname}.{end}", str(exc)))
    return problems
