"""Issue 13, configuration findings: each is refused with one line naming the file, the field
(or line) and the reason -- non-UTF-8 bytes, duplicate keys, empty files, non-finite or
absurd numbers, and credentials in URLs (never echoed)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import ConfigError, load_settings
from config.redact import redact, redact_url

ASSET = {"path": "s/a/l/m1"}
MODBUS = {"protocol": "modbus", "name": "plc1", "host": "127.0.0.1",
          "tags": [{"name": "speed", "asset": "s/a/l/m1", "address": 0}]}
OPCUA = {"protocol": "opcua", "name": "cnc1", "endpoint": "opc.tcp://127.0.0.1:4840",
         "tags": [{"name": "load", "asset": "s/a/l/m1", "node_id": "ns=2;i=5"}]}
MQTT = {"protocol": "mqtt", "name": "broker1", "broker": "mqtt://127.0.0.1:1883",
        "subscriptions": [{"topic": "plant/+/+", "template": "plant/{asset}/{signal}"}]}
INFLUX = {"type": "influx", "api": "v1", "database": "plant"}


def write(tmp_path: Path, data: Any, name: str = "plant.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def refused(p: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(p)
    return info.value


# ----------------------------------------------------------------------------- file level


def test_non_utf8_file_names_file_line_and_byte_offset(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_bytes(b"assets:\n  - path: s/a/l/m\xe91\n")  # Latin-1 e-acute
    err = refused(p)
    assert str(err) == (f"{p}:2:18: not UTF-8 text: byte 0xe9 at offset 25 "
                        "(save the file as UTF-8)")


def test_control_character_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_bytes(b"assets:\n  - {path: s/a/l/m1}\nstore: {path: \"a\x07b\"}\n")
    err = refused(p)
    assert str(err).startswith(f"{p}:3: character #x0007 is not allowed in YAML")
    assert "\n" not in str(err)


@pytest.mark.parametrize(("text", "where", "lines"), [
    ("assets: [{path: s/a/l/m1}]\napi:\n  port: 8000\n  port: 9000\n", "api.port", (4, 3)),
    ("assets: [{path: s/a/l/m1}]\nassets: [{path: s/a/l/m2}]\n", "assets", (2, 1)),
    ("assets:\n  - path: s/a/l/m1\n    description: a\n    description: b\n",
     "assets[0].description", (4, 3)),
])
def test_duplicate_keys_are_errors(tmp_path: Path, text: str, where: str,
                                   lines: tuple[int, int]) -> None:
    """YAML parsers keep the last of two equal keys without a word: a typo'd copy-paste
    would silently change the configuration."""
    p = write(tmp_path, text)
    err = refused(p)
    assert str(err) == (f"{p}: {where}: duplicate key at line {lines[0]} (first at line "
                        f"{lines[1]}): YAML would silently keep only the last")


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    """``<<: *anchor`` then a key of the anchor's is YAML's override, not a duplicate."""
    p = write(tmp_path, "assets:\n  - &base {path: s/a/l/m1, description: base}\n"
                        "  - <<: *base\n    path: s/a/l/m2\n")
    s = load_settings(p)
    assert [(a.path, a.description) for a in s.assets] == [("s/a/l/m1", "base"), ("s/a/l/m2", "base")]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    assert str(refused(p)) == f"{p}: the file is empty: declare assets (and devices to collect from)"


def test_a_file_without_assets_or_devices_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, {"api": {"port": 8080}})
    assert str(refused(p)) == (f"{p}: declares neither assets nor devices: nothing to collect, "
                               "store or assess")


def test_assets_alone_and_devices_alone_are_valid(tmp_path: Path) -> None:
    """A central KPI service reads assets from a store others fill (no devices); a device
    without tags (discovery by browse, or a placeholder) has no assets yet."""
    assert load_settings(write(tmp_path, {"assets": [ASSET]}, "central.yaml")).devices == []
    dev = {k: v for k, v in MODBUS.items() if k != "tags"}
    assert load_settings(write(tmp_path, {"devices": [dev]}, "edge.yaml")).assets == []


# ----------------------------------------------------------------------------- numbers

INF, NAN = math.inf, math.nan
RANGE = "is out of range"
FINITE = "is not a finite number"


def plant(**over: Any) -> dict[str, Any]:
    return {"assets": [ASSET], "devices": [copy.deepcopy(MODBUS), copy.deepcopy(OPCUA),
                                          copy.deepcopy(MQTT)], **over}


# (field path in plant(), value, field path in the message, expected reason)
BOUNDS: list[tuple[str, Any, str, str]] = [
    ("devices.0.poll_interval_s", INF, "devices[0].poll_interval_s", "inf " + FINITE),
    ("devices.0.poll_interval_s", 1e-12, "devices[0].poll_interval_s",
     "1e-12 is out of range: an interval must be finite, greater than 0, at least 0.001 s (1 ms) "
     "and at most 86400 s (1 day)"),
    ("devices.0.poll_interval_s", 0.0005, "devices[0].poll_interval_s", RANGE),
    ("devices.0.poll_groups", {"fast": 1e-12}, "devices[0].poll_groups.fast", RANGE),
    ("devices.0.timeout_s", INF, "devices[0].timeout_s", FINITE),
    ("devices.0.timeout_s", 1e-12, "devices[0].timeout_s",
     "1e-12 is out of range: a timeout must be finite, greater than 0, at least 0.001 s (1 ms) "
     "and at most 3600 s (1 hour)"),
    ("devices.0.timeout_s", 86400.0, "devices[0].timeout_s", RANGE),
    ("devices.0.bad_tag_retry_s", NAN, "devices[0].bad_tag_retry_s", "nan " + FINITE),
    ("devices.0.port", 0, "devices[0].port", "greater than or equal to 1"),
    ("devices.0.backoff", {"initial_s": INF}, "devices[0].backoff.initial_s", FINITE),
    ("devices.0.backoff", {"max_s": 1e-12}, "devices[0].backoff.max_s", RANGE),
    ("devices.0.backoff", {"initial_s": 10, "max_s": 5}, "devices[0].backoff",
     "max_s must be >= initial_s"),
    ("devices.0.backoff", {"multiplier": INF}, "devices[0].backoff.multiplier", FINITE),
    ("devices.0.tags.0.scale", NAN, "devices[0].tags[0].scale", FINITE),
    ("devices.0.storage", {"max_interval_s": INF}, "devices[0].storage.max_interval_s", FINITE),
    ("devices.0.storage", {"deadband": {"type": "absolute", "value": INF}},
     "devices[0].storage.deadband.value", FINITE),
    ("devices.0.storage", {"deadband": {"type": "absolute", "value": -1}},
     "devices[0].storage.deadband.value", "greater than or equal to 0"),
    ("devices.1.publishing_interval_ms", 1e-9, "devices[1].publishing_interval_ms",
     "1e-09 is out of range: an interval must be finite, greater than 0, at least 1 ms"),
    ("devices.1.poll_interval_s", INF, "devices[1].poll_interval_s", FINITE),
    ("devices.1.timeout_s", 1e-12, "devices[1].timeout_s", RANGE),
    ("devices.1.deadband", {"type": "absolute", "value": INF}, "devices[1].deadband.value", FINITE),
    ("devices.2.connect_timeout_s", INF, "devices[2].connect_timeout_s", FINITE),
    ("devices.2.connect_timeout_s", 1e-12, "devices[2].connect_timeout_s", RANGE),
    ("devices.2.rebirth_min_interval_s", 1e-12, "devices[2].rebirth_min_interval_s", RANGE),
    ("devices.2.batch_max_ms", INF, "devices[2].batch_max_ms", FINITE),
    ("store", {"type": "sqlite", "retention_days": INF}, "store.retention_days", FINITE),
    ("store", {"type": "sqlite", "retention_days": 1e-12}, "store.retention_days",
     "1e-12 is out of range: a retention must be finite, greater than 0, at least 0.0416667 days "
     "(1 hour) and at most 36500 days (100 years)"),
    ("store", {**INFLUX, "timeout_s": INF}, "store.timeout_s", FINITE),
    ("store", {**INFLUX, "flush_interval_s": 1e-12}, "store.flush_interval_s", RANGE),
    ("store", {**INFLUX, "spool": {"backoff": {"max_s": INF}}}, "store.spool.backoff.max_s", FINITE),
    ("api", {"port": 0}, "api.port", "greater than or equal to 1"),
    ("api", {"port": 65536}, "api.port", "less than or equal to 65535"),
    ("kpi", {"coverage_min": NAN}, "kpi.coverage_min", FINITE),
]


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = data
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "where", "why"), BOUNDS,
                         ids=[f"{b[0]}={b[1]}" for b in BOUNDS])
def test_numbers_have_physical_bounds(tmp_path: Path, path: str, value: Any, where: str,
                                      why: str) -> None:
    """Written as YAML (``.inf``, ``.nan``, ``1e-12``), read through the loader."""
    p = write(tmp_path, _set(plant(), path, value))
    err = refused(p)
    assert len(err.problems) == 1, err.problems
    loc, reason = err.problems[0]
    assert loc == f"{p}: {where}"
    assert why in reason
    assert str(err) == f"{p}: {where}: {reason}"  # one line


@pytest.mark.parametrize(("path", "value"), [
    ("devices.0.poll_interval_s", 0.001), ("devices.0.timeout_s", 3600),
    ("devices.1.publishing_interval_ms", 1), ("devices.2.rebirth_min_interval_s", 0),
    ("store", {"type": "sqlite", "retention_days": 1 / 24}),
    ("store", {**INFLUX, "flush_interval_s": 0}), ("api", {"port": 65535}),
])
def test_bounds_are_inclusive(tmp_path: Path, path: str, value: Any) -> None:
    load_settings(write(tmp_path, _set(plant(), path, value)))


# ----------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(("path", "url", "shown"), [
    ("devices.2.broker", "mqtt://plant:hunter2@broker.local:1883", "mqtt://plant:***@broker.local:1883"),
    ("devices.1.endpoint", "opc.tcp://op:hunter2@10.0.0.5:4840", "opc.tcp://op:***@10.0.0.5:4840"),
    ("store", {**INFLUX, "url": "http://admin:hunter2@influx:8086"}, "http://admin:***@influx:8086"),
    ("devices.2.broker", "mqtt://hunter2@broker.local", "mqtt://***@broker.local"),
])
def test_credentials_in_a_url_are_refused_and_never_echoed(tmp_path: Path, path: str, url: Any,
                                                           shown: str) -> None:
    p = write(tmp_path, _set(plant(), path, url))
    err = refused(p)
    assert "hunter2" not in str(err)
    (loc, reason), = err.problems
    assert loc.startswith(f"{p}: ") and loc.endswith((".broker", ".endpoint", "store.url"))
    assert reason == (f"{shown}: the URL must not hold credentials (user:password@): use "
                      + ("username/password (v1) or token (v2)" if path == "store"
                         else "the device's username and password"))


def test_a_bad_secret_field_is_named_without_its_value(tmp_path: Path) -> None:
    """pydantic's own rendering of an error prints the input; a secret's never shows."""
    data = plant(store={"type": "influx", "url": "http://influx:8086", "token": {"hunter2": 1},
                        "org": "o", "bucket": "b"})
    data["devices"][2] |= {"username": "plant", "password": ["hunter2"], "pasword": "hunter2"}
    err = refused(write(tmp_path, data))
    assert "hunter2" not in str(err)
    assert {loc.split(": ", 1)[1] for loc, _ in err.problems} == {
        "store.token", "devices[2].password", "devices[2].pasword"}


def test_redact() -> None:
    assert redact_url("see mqtt://u:p@w:rd@h:1/x and http://h/y") == "see mqtt://u:***@h:1/x and http://h/y"
    assert redact("token t0ps3cret refused at mqtt://a:b@c", ["t0ps3cret"]) == \
        "token *** refused at mqtt://a:***@c"
