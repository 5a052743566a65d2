"""Typed configuration, the error tree and canonical signal meanings."""

from .base import Backoff, DeviceBase, TagBase
from .errors import (
    CollectorError,
    ConfigError,
    ConnectError,
    DeviceRequestError,
    KpiError,
    NotFoundError,
    SinkRejected,
    SinkUnauthorized,
    SinkUnavailable,
    StoreError,
    TierproofError,
)
from .fingerprint import config_fingerprint, effective_view, runtime_overrides
from .kpi_inputs import KpiWarning, kpi_warnings
from .loader import load_settings, load_tiers, settings_from_dict, shipped_config
from .modbus import ModbusDevice, ModbusTag
from .mqtt import MqttDevice, MqttSubscription, MqttTag, MqttTls
from .opcua import OpcUaDevice, OpcUaTag
from .settings import ApiSettings, Asset, KpiSettings, Regime, Settings, SimulationSettings
from .signals import (
    ChannelMode,
    MachineState,
    OperationMode,
    Quality,
    Role,
    canonical_code,
    canonical_names,
)
from .storage import Storage, StorageDeadband
from .store import SqliteStoreSettings
from .times import Calendar, DailyRange, Window, parse_instant

__all__ = [
    "ApiSettings",
    "Asset",
    "Backoff",
    "Calendar",
    "ChannelMode",
    "CollectorError",
    "ConfigError",
    "ConnectError",
    "DailyRange",
    "DeviceBase",
    "DeviceRequestError",
    "KpiError",
    "KpiSettings",
    "KpiWarning",
    "MachineState",
    "ModbusDevice",
    "ModbusTag",
    "MqttDevice",
    "MqttSubscription",
    "MqttTag",
    "MqttTls",
    "NotFoundError",
    "OpcUaDevice",
    "OpcUaTag",
    "OperationMode",
    "Quality",
    "Regime",
    "Role",
    "Settings",
    "SimulationSettings",
    "SinkRejected",
    "SinkUnauthorized",
    "SinkUnavailable",
    "SqliteStoreSettings",
    "Storage",
    "StorageDeadband",
    "StoreError",
    "TagBase",
    "TierproofError",
    "Window",
    "canonical_code",
    "canonical_names",
    "config_fingerprint",
    "effective_view",
    "kpi_warnings",
    "load_settings",
    "load_tiers",
    "parse_instant",
    "runtime_overrides",
    "settings_from_dict",
    "shipped_config",
]
