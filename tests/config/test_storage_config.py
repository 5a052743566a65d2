"""Storage settings of polled tags: defaults by role, precedence, and refused combinations
named with their field path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from collector.filter import device_filter, polled
from config import ConfigError, load_settings, settings_from_dict, shipped_config
from config.modbus import ModbusDevice
from config.signals import Role
from config.storage import Storage, StorageDeadband, effective_storage, role_default

ENUM = {0: "NotAvailable", 1: "OutOfService", 2: "NotExecuting", 3: "Executing"}


def plant(device: dict[str, Any] | None = None, tags: list[dict[str, Any]] | None = None,
          protocol: str = "modbus") -> dict[str, Any]:
    base_tags = tags or [
        {"name": "state", "asset": "s/a/l/m1", "role": "state", "enum": ENUM},
        {"name": "total", "asset": "s/a/l/m1", "role": "total_count"},
        {"name": "temp", "asset": "s/a/l/m1"},
    ]
    if protocol == "modbus":
        dev: dict[str, Any] = {"protocol": "modbus", "name": "plc1", "host": "127.0.0.1"}
        tag_list = [dict(t, address=i) for i, t in enumerate(base_tags)]
    else:
        dev = {"protocol": "opcua", "name": "ua1", "endpoint": "opc.tcp://127.0.0.1:4840"}
        tag_list = [dict(t, node_id=f"ns=2;i={i + 1}") for i, t in enumerate(base_tags)]
    dev.update(device or {})
    dev["tags"] = tag_list
    return {"assets": [{"path": "s/a/l/m1"}], "devices": [dev]}


def storages(data: dict[str, Any]) -> dict[str, Storage]:
    s = settings_from_dict(yaml.safe_load(yaml.safe_dump(data)))
    d = s.devices[0]
    return {t.name: effective_storage(t.role, getattr(t, "storage", None), getattr(d, "storage", None))
            for t in d.tags}


def test_role_defaults() -> None:
    for role in Role:
        want = "on_change" if role in (
            Role.STATE, Role.MODE, Role.CHANNEL_MODE, Role.TOTAL_COUNT, Role.GOOD_COUNT,
            Role.REJECT_COUNT, Role.ENERGY_KWH, Role.STOP_REASON) else "every_poll"
        assert role_default(role).mode == want, role
    got = storages(plant())
    assert got["state"] == got["total"] == Storage(mode="on_change", deadband=None, max_interval_s=60)
    assert got["temp"].mode == "every_poll"


def test_device_storage_is_the_default_and_a_tag_replaces_it() -> None:
    dev = {"storage": {"deadband": {"type": "percent", "value": 2}, "max_interval_s": 300}}
    tags = [
        {"name": "state", "asset": "s/a/l/m1", "role": "state", "enum": ENUM},
        {"name": "temp", "asset": "s/a/l/m1"},
        {"name": "speed", "asset": "s/a/l/m1", "storage": {"mode": "every_poll"}},
        {"name": "flow", "asset": "s/a/l/m1", "storage": {"max_interval_s": 5}},
    ]
    got = storages(plant(dev, tags))
    # the device's deadband is not used for a state: its heartbeat and mode are
    assert got["state"] == Storage(mode="on_change", max_interval_s=300)
    assert got["temp"] == Storage(deadband=StorageDeadband(type="percent", value=2), max_interval_s=300)
    assert got["speed"].mode == "every_poll"
    # a tag's storage is whole: what it leaves out takes the defaults, not the device's
    assert got["flow"] == Storage(max_interval_s=5)


def test_device_every_poll_stores_the_roles_every_poll_too() -> None:
    got = storages(plant({"storage": {"mode": "every_poll"}}))
    assert {s.mode for s in got.values()} == {"every_poll"}


@pytest.mark.parametrize(
    ("device", "tag", "where", "why"),
    [
        ({}, (0, {"deadband": {"type": "absolute", "value": 1}}), "devices[0].tags[0].storage",
         "a state tag takes no deadband (it is an enumeration: any change matters)"),
        ({}, (1, {"deadband": {"type": "absolute", "value": 2}}), "devices[0].tags[1].storage",
         "an increase inside the band would be lost at a counter reset"),
        ({}, (2, {"mode": "every_poll", "max_interval_s": 5}), "devices[0].tags[2].storage",
         "max_interval_s apply to mode on_change"),
        ({}, (2, {"deadband": {"type": "percent", "value": 150}}),
         "devices[0].tags[2].storage.deadband", "0..100"),
        ({}, (2, {"deadband": {"type": "relative", "value": 1}}),
         "devices[0].tags[2].storage.deadband.type", "absolute"),
        ({}, (2, {"max_interval_s": 0}), "devices[0].tags[2].storage.max_interval_s",
         "greater than 0"),
        ({}, (2, {"mode": "sometimes"}), "devices[0].tags[2].storage.mode", "on_change"),
        ({"storage": {"mode": "every_poll", "deadband": {"type": "absolute", "value": 1}}}, None,
         "devices[0].storage", "deadband apply to mode on_change, not every_poll"),
    ],
)
def test_bad_storage_is_named(device: dict[str, Any], tag: tuple[int, dict[str, Any]] | None,
                              where: str, why: str) -> None:
    data = plant(device)
    if tag is not None:
        data["devices"][0]["tags"][tag[0]]["storage"] = tag[1]
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "plant.yaml")
    locations = [loc for loc, _ in info.value.problems]
    reasons = " | ".join(r for _, r in info.value.problems)
    assert f"plant.yaml: {where}" in locations, (locations, reasons)
    assert why in reasons, reasons


def test_storage_is_refused_on_a_subscription_and_accepted_in_poll_mode() -> None:
    data = plant({"storage": {"max_interval_s": 10}}, protocol="opcua")
    data["devices"][0]["tags"][2]["storage"] = {"mode": "every_poll"}
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "plant.yaml")
    assert "storage, tags[2].storage: storage filters polled samples (mode: poll)" in str(info.value)
    data["devices"][0]["mode"] = "poll"
    s = settings_from_dict(data, "plant.yaml")
    assert polled(s.devices[0])


def test_only_polled_devices_get_a_filter() -> None:
    s = load_settings(shipped_config("demo.yaml"))
    ids = {t.path: i for i, (_, t) in enumerate(s.all_tags())}
    kinds = {d.name: device_filter(d, ids) is not None for d in s.devices}
    assert kinds == {"line1-cnc": True, "line2-plc": True, "line3-opcua": False, "line4-mqtt": False}
    assert all(isinstance(d, ModbusDevice) for d in s.devices if kinds[d.name])


def test_the_modbus_example_shows_storage() -> None:
    s = load_settings(shipped_config("examples/modbus.yaml"))
    d = s.devices[0]
    assert isinstance(d, ModbusDevice) and d.storage is not None
    by_name = {t.name: t for t in d.tags}
    assert by_name["air_pressure"].storage is not None
    assert by_name["fill_level_mm"].storage == Storage(mode="every_poll")
