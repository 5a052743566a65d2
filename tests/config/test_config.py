"""Configuration: every shipped file loads; every bad field is named with its path and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import ConfigError, load_settings, settings_from_dict
from config.loader import SHIPPED_DIR
from config.store import InfluxStoreSettings

SHIPPED = sorted(p for p in SHIPPED_DIR.rglob("*.yaml") if p.name != "tiers.yaml")


def test_there_are_shipped_configs() -> None:
    names = {p.relative_to(SHIPPED_DIR).as_posix() for p in SHIPPED}
    assert {"demo.yaml", "examples/modbus.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    s = load_settings(path)
    assert s.assets, "a shipped config declares its assets"
    if path.name == "central.yaml":  # the central tierproof: its tags are in the store
        assert not s.devices and s.store.type == "influx"
    else:
        assert s.all_tags(), "a shipped config declares tags"


GOOD = {
    "assets": [{"path": "s/a/l/m1", "ideal_cycle_time_s": 30}],
    "devices": [
        {
            "protocol": "modbus", "name": "plc1", "host": "127.0.0.1", "port": 502,
            "tags": [
                {"name": "state", "asset": "s/a/l/m1", "role": "state", "address": 0,
                 "enum": {0: "NotAvailable", 1: "OutOfService", 2: "NotExecuting", 3: "Executing"}},
                {"name": "good", "asset": "s/a/l/m1", "role": "good_count", "address": 1, "type": "uint32"},
            ],
        }
    ],
}


def bad(path: str, value: object) -> dict:
    """GOOD with one field replaced; path like devices.0.port."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    node = data
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return data


def test_good_config_is_accepted() -> None:
    s = settings_from_dict(GOOD)
    assert s.devices[0].tags[1].path == "s/a/l/m1/good"


@pytest.mark.parametrize(
    ("path", "value", "where", "why"),
    [
        ("devices.0.port", 70000, "devices[0].port", "less than or equal to 65535"),
        ("devices.0.host", None, "devices[0].host", "valid string"),
        ("devices.0.protocol", "profibus", "devices[0]", "protocol"),
        ("devices.0.tags.1.type", "float128", "devices[0].tags[1].type", "float32"),
        ("devices.0.tags.1.byte_order", "ABDC", "devices[0].tags[1].byte_order", "CDAB"),
        ("devices.0.tags.1.address", -1, "devices[0].tags[1].address", "greater than or equal to 0"),
        ("devices.0.tags.1.table", "coil", "devices[0].tags[1]", "type must be bool"),
        ("devices.0.tags.1.asset", "s/a/l/m9", "devices[0].tags[1].asset", "no asset 's/a/l/m9'"),
        ("devices.0.tags.1.group", "fast", "devices[0].tags[1].group", "no poll group 'fast'"),
        ("devices.0.tags.1.role", "state", "devices[0].tags[1].role", "already has a state tag"),
        ("devices.0.tags.0.enum", {0: "Running"}, "devices[0].tags[0]", "not state names"),
        ("devices.0.tags.0.enum", None, "devices[0].tags[0].enum", "needs enum"),
        ("devices.0.tags.0.name", "a/b", "devices[0].tags[0].name", "letters, digits"),
        ("devices.0.tags.0.speling", 1, "devices[0].tags[0].speling", "unknown field"),
        ("assets.0.path", "only/three/parts", "assets[0].path", "site/area/line/asset"),
        ("assets.0.ideal_cycle_time_s", 0, "assets[0].ideal_cycle_time_s", "greater than 0"),
        ("calendar", {"timezone": "Mars/Olympus"}, "calendar.timezone", "unknown time zone"),
        ("kpi", {"current": {"start": "yesterday"}}, "kpi.current.start", "ISO 8601"),
    ],
)
def test_bad_field_is_named(path: str, value: object, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(bad(path, value), "plant.yaml")
    locations = [loc for loc, _ in info.value.problems]
    reasons = " | ".join(r for _, r in info.value.problems)
    assert any(loc == f"plant.yaml: {where}" for loc in locations), locations
    assert why in reasons


def test_every_problem_is_reported_at_once() -> None:
    data = bad("devices.0.port", 0)
    data["devices"][0]["timeout_s"] = -1
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "plant.yaml")
    assert len(info.value.problems) == 2


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("assets:\n  - path: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings(f)
    assert f"{f}:" in str(info.value) and "YAML" in str(info.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_cli_ok_and_error(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    r = _cli("check-config", str(good))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr

    broken = tmp_path / "bad.yaml"
    broken.write_text(yaml.safe_dump(bad("devices.0.port", 70000)))
    r = _cli("check-config", str(broken))
    assert r.returncode == 2
    assert f"{broken}: devices[0].port" in r.stderr


@pytest.mark.parametrize(("url", "why"), [
    ("http://admin:pw@influx:8086", "must not hold credentials"),
    ("influx:8086", "not an http:// or https:// URL"),
])
def test_influx_url_is_checked(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"store": {"type": "influx", "api": "v1", "database": "plant", "url": url}},
                           "f.yaml")
    assert err.value.problems[0][0] == "f.yaml: store.url" and why in err.value.problems[0][1]
    assert ":pw@" not in str(err.value)  # the password is not echoed


@pytest.mark.parametrize(("url", "gzip", "compress"), [
    ("http://127.0.0.1:8086", "auto", False),
    ("http://127.8.9.1:8086", "auto", False),
    ("http://localhost:8086", "auto", False),
    ("https://LOCALHOST", "auto", False),
    ("http://[::1]:8086", "auto", False),
    ("http://influx:8086", "auto", True),  # another container or machine: no name lookup
    ("http://192.168.1.20:8086", "auto", True),
    ("https://cloud.example.com", "auto", True),
    ("http://127.0.0.1:8086", True, True),
    ("http://influx:8086", False, False),
    ("http://influx:8086", "yes", True),  # YAML 1.1 booleans in a string still read as one
])
def test_influx_gzip_auto_is_off_on_loopback_only(url: str, gzip: object, compress: bool) -> None:
    s = settings_from_dict({"store": {"type": "influx", "api": "v1", "database": "plant", "url": url,
                                      "gzip": gzip}}, "f.yaml").store
    assert isinstance(s, InfluxStoreSettings) and s.compress is compress


def test_influx_gzip_refuses_other_words() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"store": {"type": "influx", "api": "v1", "database": "plant",
                                      "gzip": "sometimes"}}, "f.yaml")
    assert err.value.problems[0][0] == "f.yaml: store.gzip"
    assert "True, False or 'auto'" in err.value.problems[0][1], err.value.problems


@pytest.mark.parametrize(("text", "start", "end"), [
    ("start: 06:00, end: 20:00", "06:00:00", "20:00:00"),  # YAML 1.1 made 20:00 the int 1200
    ("start: 6:00, end: 14:30", "06:00:00", "14:30:00"),   # ... and 6:00 the int 360
    ("start: '22:00', end: '06:00'", "22:00:00", "06:00:00"),
    ("start: 7:15:30, end: 19:00", "07:15:30", "19:00:00"),
])
def test_unquoted_shift_times_are_local_times(tmp_path: Path, text: str, start: str, end: str) -> None:
    p = tmp_path / "plant.yaml"
    p.write_text(f"assets: [{{path: s/a/l/m}}]\ncalendar:\n  shifts:\n    - {{name: day, {text}}}\n")
    shift = load_settings(p).calendar.shifts[0]
    assert (shift.start.isoformat(), shift.end.isoformat()) == (start, end)


def test_a_number_for_a_shift_time_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict({"calendar": {"shifts": [{"start": "06:00", "end": 1200}]}})
    assert info.value.problems == [
        ("<config>: calendar.shifts[0].end", "1200 is a number, not a local time: write it as 'HH:MM'")]


def test_other_yaml_numbers_are_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "plant.yaml"
    p.write_text("assets: [{path: s/a/l/m}]\napi: {port: 0x1F90}\nkpi: {coverage_min: 0.5}\n")
    s = load_settings(p)
    assert s.api.port == 8080 and s.kpi.coverage_min == 0.5
