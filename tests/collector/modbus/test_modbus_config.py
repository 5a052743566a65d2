"""Modbus transport settings are validated at load: a bad field names the file, the field
path and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from config import ConfigError, load_settings
from config.modbus import ModbusDevice

ASSET = "s/a/l/m1"


def device(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"protocol": "modbus", "name": "meters",
                         "tags": [{"name": "e", "asset": ASSET, "address": 0}]}
    d.update(kw)
    return d


def load(tmp_path: Path, *devices: dict[str, Any]) -> Any:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump({"assets": [{"path": ASSET}], "devices": list(devices)}))
    return load_settings(path)


def test_rtu_device_loads_with_spec_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, device(transport="rtu", serial={"port": "/dev/ttyUSB0"}))
    d = s.devices[0]
    assert isinstance(d, ModbusDevice) and d.serial is not None
    assert (d.serial.baudrate, d.serial.bytesize, d.serial.parity, d.serial.stopbits) == (
        19200, 8, "even", 1)
    assert d.bad_tag_retry_s == 30.0
    # t3.5 at 19200 8E1 (11 bits a character) is 2.005 ms
    assert d.frame_gap() == pytest.approx(3.5 * 11 / 19200)
    assert d.line == "/dev/ttyUSB0"
    fast = ModbusDevice(protocol="modbus", name="x", transport="rtu",
                        serial={"port": "/dev/ttyS1", "baudrate": 115200})
    assert fast.frame_gap() == 0.00175  # the spec's floor above 19200 baud
    over_tcp = ModbusDevice(protocol="modbus", name="y", transport="rtu_over_tcp", host="10.0.0.9",
                            port=4001, frame_gap_s=0.01)
    assert (over_tcp.line, over_tcp.frame_gap()) == ("10.0.0.9:4001", 0.01)


@pytest.mark.parametrize(("fields", "where", "reason"), [
    ({"transport": "rtu"}, "devices[0]", "transport rtu needs serial"),
    ({"transport": "rtu", "host": "10.0.0.1", "serial": {"port": "/dev/ttyUSB0"}},
     "devices[0]", "host is for transports tcp and rtu_over_tcp"),
    ({"host": "10.0.0.1", "serial": {"port": "/dev/ttyUSB0"}}, "devices[0]",
     "serial is only for transport rtu"),
    ({"transport": "rtu_over_tcp"}, "devices[0]", "transport rtu_over_tcp needs host"),
    ({"host": "10.0.0.1", "frame_gap_s": 0.01}, "devices[0]", "frame_gap_s is for the RTU"),
    ({"transport": "rs485", "host": "10.0.0.1"}, "devices[0].transport", "'tcp', 'rtu'"),
    ({"transport": "rtu", "serial": {"port": "/dev/ttyUSB0", "parity": "E"}},
     "devices[0].serial.parity", "'none', 'even' or 'odd'"),
    ({"transport": "rtu", "serial": {"port": "/dev/ttyUSB0", "baudrate": 0}},
     "devices[0].serial.baudrate", "greater than 0"),
    ({"transport": "rtu", "serial": {"port": "/dev/ttyUSB0", "stopbits": 3}},
     "devices[0].serial.stopbits", "1 or 2"),
    ({"transport": "rtu", "serial": {"port": "/dev/ttyUSB0", "speed": 9600}},
     "devices[0].serial.speed", "unknown field"),
    ({"host": "10.0.0.1", "bad_tag_retry_s": 0}, "devices[0].bad_tag_retry_s",
     "greater than 0"),
])
def test_bad_modbus_transport_fields(
    tmp_path: Path, fields: dict[str, Any], where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, device(**fields))
    locs = [loc for loc, _ in info.value.problems]
    assert any(loc.startswith(f"{tmp_path / 'plant.yaml'}: {where}") for loc in locs), locs
    assert any(reason in r for _, r in info.value.problems), info.value.problems


def test_devices_sharing_a_serial_line_must_agree(tmp_path: Path) -> None:
    a = device(transport="rtu", serial={"port": "/dev/ttyUSB0", "baudrate": 9600})
    b = device(name="other", transport="rtu", serial={"port": "/dev/ttyUSB0", "baudrate": 19200},
               tags=[{"name": "f", "asset": ASSET, "address": 1}])
    with pytest.raises(ConfigError) as info:
        load(tmp_path, a, b)
    assert info.value.problems == [(
        f"{tmp_path / 'plant.yaml'}: devices[1].serial",
        "differs from devices[0] (meters) on the same line /dev/ttyUSB0; devices sharing a "
        "line must use the same serial",
    )]
    # the same settings (and another port) are fine
    c = {**b, "serial": {"port": "/dev/ttyUSB0", "baudrate": 9600}}
    d = {**b, "name": "third", "serial": {"port": "/dev/ttyUSB1"},
         "tags": [{"name": "g", "asset": ASSET, "address": 2}]}
    assert len(load(tmp_path, a, c, d).devices) == 3
