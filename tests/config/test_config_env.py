"""``${VAR}`` and ``${VAR:-default}`` in configuration values (config.loader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings

CONFIG = """\
# ${NOT_SET_ANYWHERE} in a comment is left alone
assets:
  - path: s/a/l/m1
devices:
  - protocol: modbus
    name: plc1
    host: ${PLC_HOST}
    port: ${PLC_PORT:-1502}
    tags:
      - {name: good, asset: s/a/l/m1, role: good_count, address: 0}
store:
  type: influx
  url: http://${INFLUX_HOST:-influxdb}:8086
  token: "${INFLUX_TOKEN}"
  org: plant
  bucket: "$${literal}"
"""


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


def test_values_come_from_the_environment_or_defaults(tmp_path: Path) -> None:
    env = {"PLC_HOST": "10.0.0.7", "INFLUX_TOKEN": "s3cr#t: x"}
    s = load_settings(write(tmp_path), env=env)
    d = s.devices[0]
    assert (d.host, d.port) == ("10.0.0.7", 1502)  # a default, converted to the field's type
    assert s.store.type == "influx"
    assert s.store.url == "http://influxdb:8086"
    assert s.store.token is not None and s.store.token.get_secret_value() == "s3cr#t: x"
    assert s.store.bucket == "${literal}"


def test_set_values_win_over_defaults_and_empty_means_default(tmp_path: Path) -> None:
    env = {"PLC_HOST": "h", "PLC_PORT": "15020", "INFLUX_TOKEN": "t", "INFLUX_HOST": ""}
    s = load_settings(write(tmp_path), env=env)
    assert s.devices[0].port == 15020
    assert s.store.url == "http://influxdb:8086"


def test_unset_variable_without_default_names_file_line_and_variable(tmp_path: Path) -> None:
    p = write(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings(p, env={"PLC_HOST": "h"})
    assert f"{p}:14: environment variable INFLUX_TOKEN is not set" in str(err.value)
    assert err.value.problems[0][0] == f"{p}:14"


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "assets: []\nstore: {type: sqlite, path: 's3cret-${BROKEN'}\n")
    with pytest.raises(ConfigError, match=rf"{p}:2: malformed") as err:
        load_settings(p, env={})
    assert "s3cret" not in str(err.value)  # the value may be a password: never echoed


def test_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLC_HOST", "from-env")
    monkeypatch.setenv("INFLUX_TOKEN", "t")
    assert load_settings(write(tmp_path)).devices[0].host == "from-env"
