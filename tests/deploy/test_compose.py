"""The Docker deployment, checked structurally (Docker cannot run here).

docker-compose.yml is parsed and interpolated the way ``docker compose`` does it (``${VAR}``,
``${VAR:-default}``, ``${VAR:?message}``, ``$$``), and then every place that names the same thing must agree:
service names and ports vs deploy/gateway.yaml (loaded through tierproof's real loader with
the environment compose gives the gateway), InfluxDB's initial org/bucket/token vs the
gateway's store and Grafana's datasource, Mosquitto's listener and password file vs the
gateway's broker and credentials, and the Dockerfile vs the compose commands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from config import ConfigError, load_settings
from config.modbus import ModbusDevice
from config.mqtt import MqttDevice
from config.opcua import OpcUaDevice
from config.settings import Settings
from config.store import InfluxStoreSettings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_CONFIG = "/etc/tierproof/gateway.yaml"
_COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")
#: what compose must refuse to start without: no working default secret ships
SECRETS = ("INFLUX_TOKEN", "INFLUX_ADMIN_PASSWORD", "MQTT_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
           "TIERPROOF_READ_KEY")


class Unset(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty: compose refuses to start."""


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """What docker compose does to every string of the file before using it."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        value = env.get(m.group(1))
        if value:
            return value
        if m.group(2) == "?":
            raise Unset(f"{m.group(1)}: {m.group(3)}")
        assert m.group(2) is not None, f"compose needs {m.group(1)} set (no default): {node!r}"
        return m.group(3)

    return _COMPOSE_VAR.sub(sub, node)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves anchors and <<
    return interpolate(raw, env or {})  # type: ignore[no-any-return]


def container_port(service: dict[str, Any]) -> list[int]:
    return [int(str(p).rsplit(":", 1)[1]) for p in service.get("ports", [])]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (a ./path or a named volume)."""
    out = {}
    for v in service.get("volumes", []):
        src, dst, *_ = v.split(":")
        out[dst] = src
    return out


def gateway_settings(c: dict[str, Any], service: str = "gateway") -> Settings:
    """deploy/gateway.yaml as the container sees it: through the real loader, with exactly
    the environment compose gives that service."""
    env = {k: str(v) for k, v in c["services"][service]["environment"].items()}
    return load_settings(ROOT / "deploy" / "gateway.yaml", env=env)


def mosquitto_conf() -> dict[str, str]:
    out = {}
    for line in (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def datasources(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = {k: str(v) for k, v in c["services"]["grafana"]["environment"].items()}
    raw = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/tierproof.yaml").read_text())
    return {d["uid"]: d for d in interpolate(raw, env)["datasources"]}


#: every secret set, the rest at compose's defaults
SET = {"INFLUX_TOKEN": "s3cret-T0ken", "INFLUX_ADMIN_PASSWORD": "adm1n-pw", "MQTT_PASSWORD": "pw#1:x",
       "GRAFANA_ADMIN_PASSWORD": "graf-pw", "TIERPROOF_READ_KEY": "rk-" + "0123456789abcdef" * 2}
ENVS = [
    pytest.param(SET, id="secrets only"),
    pytest.param({**SET, "INFLUX_ORG": "acme", "INFLUX_BUCKET": "press_shop", "MQTT_USERNAME": "gw",
                  "TIERPROOF_HOST_PORT": "18000", "TIERPROOF_PUBLISH_ADDRESS": "0.0.0.0"},
                 id="a .env file"),
]


@pytest.mark.parametrize("secret", SECRETS)
def test_no_secret_has_a_default(secret: str) -> None:
    """Compose refuses to start without each secret, naming it; so does the shipped
    .env.example as copied (its secrets are empty); and the gateway without its API key."""
    with pytest.raises(Unset, match=rf"^{secret}: set {secret} in .env"):
        compose({k: v for k, v in SET.items() if k != secret})
    example = dict(line.split("=", 1) for line in (ROOT / "deploy/.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example[secret] == ""
    with pytest.raises(Unset):
        compose(example)


def test_the_gateway_does_not_start_without_its_api_key() -> None:
    env = {k: str(v) for k, v in compose(SET)["services"]["gateway"]["environment"].items()}
    del env["TIERPROOF_READ_KEY"]
    with pytest.raises(ConfigError,
                       match=r"deploy/gateway.yaml:\d+: environment variable TIERPROOF_READ_KEY"):
        load_settings(ROOT / "deploy" / "gateway.yaml", env=env)
    env["TIERPROOF_READ_KEY"] = "short"
    with pytest.raises(ConfigError,
                       match=r"api.auth.keys\[0\].key: an API key must be at least 32 characters"):
        load_settings(ROOT / "deploy" / "gateway.yaml", env=env)


def test_services_images_and_dependencies() -> None:
    c = compose(SET)
    s = c["services"]
    assert set(s) == {"influxdb", "mosquitto", "simulators", "gateway", "grafana"}
    assert s["influxdb"]["image"] == "influxdb:2"
    assert s["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert s["grafana"]["image"].startswith("grafana/grafana")
    for name in ("gateway", "simulators"):
        assert s[name]["build"] == "." and s[name]["image"] == "tierproof:local"
    assert s["gateway"]["command"] == ["run", "--config", GATEWAY_CONFIG]
    assert s["simulators"]["command"] == ["simulate", "--config", GATEWAY_CONFIG]
    assert s["gateway"]["depends_on"] == {
        "influxdb": {"condition": "service_healthy"},
        "mosquitto": {"condition": "service_started"},
        "simulators": {"condition": "service_started"},
    }
    assert set(s["grafana"]["depends_on"]) == {"influxdb", "gateway"}
    assert set(s["simulators"]["depends_on"]) == {"mosquitto"}
    assert "healthcheck" in s["influxdb"]  # service_healthy needs one
    for svc in s.values():
        for dep in svc.get("depends_on", {}):
            assert dep in s


def test_volumes_exist_and_state_is_on_named_volumes() -> None:
    c = compose(SET)
    declared = set(c["volumes"])
    used = set()
    for name, svc in c["services"].items():
        for dst, src in mounts(svc).items():
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name}: bind mount {src} does not exist in the repo"
            else:
                assert src in declared, f"{name}: volume {src} is not declared"
                used.add(src)
            assert dst.startswith("/")
    assert used == declared
    s = c["services"]
    assert mounts(s["influxdb"])["/var/lib/influxdb2"] == "influxdb-data"
    assert mounts(s["gateway"])[GATEWAY_CONFIG] == "./deploy/gateway.yaml"
    assert mounts(s["simulators"])[GATEWAY_CONFIG] == "./deploy/gateway.yaml"
    # spool and metadata must survive a container restart: they sit on the gateway's volume
    g = gateway_settings(c)
    assert isinstance(g.store, InfluxStoreSettings)
    state = [d for d, src in mounts(s["gateway"]).items() if src == "gateway-data"]
    assert state == ["/var/lib/tierproof"]
    for p in (g.store.spool.path, g.store.meta_path):
        assert Path(p).is_relative_to(state[0]), p


@pytest.mark.parametrize("env", ENVS)
def test_gateway_config_agrees_with_influxdb(env: dict[str, str]) -> None:
    c = compose(env)
    init = c["services"]["influxdb"]["environment"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert len(init["DOCKER_INFLUXDB_INIT_PASSWORD"]) >= 8  # influxd setup refuses shorter ones
    for service in ("gateway", "simulators"):  # the simulators load the same file
        st = gateway_settings(c, service).store
        assert isinstance(st, InfluxStoreSettings)
        assert st.api == "v2"
        url = urlparse(st.url)
        assert url.hostname == "influxdb" and url.port in container_port(c["services"]["influxdb"])
        assert st.token is not None
        assert st.token.get_secret_value() == init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
        assert st.org == init["DOCKER_INFLUXDB_INIT_ORG"]
        assert st.bucket == st.database == init["DOCKER_INFLUXDB_INIT_BUCKET"]
    if env:
        assert init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == env["INFLUX_TOKEN"]


@pytest.mark.parametrize("env", ENVS)
def test_devices_point_at_the_simulators_and_mosquitto(env: dict[str, str]) -> None:
    c = compose(env)
    g = gateway_settings(c)
    conf = mosquitto_conf()
    listener_port = int(conf["listener"].split()[0])
    kinds = set()
    for d in g.devices:
        kinds.add(type(d))
        if isinstance(d, ModbusDevice):
            assert d.host == "simulators"
        elif isinstance(d, OpcUaDevice):
            assert urlparse(d.endpoint).hostname == "simulators"
        elif isinstance(d, MqttDevice):
            assert d.host_port == ("mosquitto", listener_port, False)
            assert listener_port in container_port(c["services"]["mosquitto"])
            m_env = c["services"]["mosquitto"]["environment"]
            assert d.username == m_env["MQTT_USERNAME"]
            assert d.password is not None and d.password.get_secret_value() == m_env["MQTT_PASSWORD"]
    assert kinds == {ModbusDevice, OpcUaDevice, MqttDevice}
    # the broker only lets in the user whose password file its start command writes
    assert conf["allow_anonymous"] == "false"
    cmd = " ".join(c["services"]["mosquitto"]["command"])
    assert f'mosquitto_passwd -c -b {conf["password_file"]} "$MQTT_USERNAME" "$MQTT_PASSWORD"' in cmd
    assert Path(conf["password_file"]).parent.as_posix() in mounts(c["services"]["mosquitto"])
    assert mounts(c["services"]["mosquitto"])["/mosquitto/config/mosquitto.conf"] == (
        "./deploy/mosquitto/mosquitto.conf")


@pytest.mark.parametrize("env", ENVS)
def test_api_port_and_healthcheck(env: dict[str, str]) -> None:
    c = compose(env)
    g = gateway_settings(c)
    ports = c["services"]["gateway"]["ports"]
    assert [int(p.rsplit(":", 1)[1]) for p in ports] == [g.api.port]
    # published on the loopback interface unless the .env says otherwise; the gateway listens on
    # all interfaces of its container, and asks every request for a key
    published = env.get("TIERPROOF_PUBLISH_ADDRESS", "127.0.0.1")
    assert ports[0].rsplit(":", 1)[0] == f"{published}:" + env.get("TIERPROOF_HOST_PORT", "8000")
    assert g.api.host == "0.0.0.0" and g.api.auth.required
    assert [(k.name, k.scope, k.key.get_secret_value()) for k in g.api.auth.keys] == [
        ("grafana", "read", env["TIERPROOF_READ_KEY"])]
    docker = (ROOT / "Dockerfile").read_text()
    assert f"http://127.0.0.1:{g.api.port}/api/v1/health" in docker
    assert f"EXPOSE {g.api.port}" in docker


def test_dockerfile_runs_the_gateway() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in docker.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    entry = json.loads(next(ln for ln in lines if ln.startswith("ENTRYPOINT")).split(None, 1)[1])
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD")).split(None, 1)[1])
    assert entry + cmd == ["tierproof", "run", "--config", GATEWAY_CONFIG]
    assert "pip install ." in docker
    for package in ("config", "collector", "store", "kpi", "api", "simulators"):
        assert f"COPY {package} ./{package}" in docker
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "tests" in ignored and "config" not in ignored


@pytest.mark.parametrize("env", ENVS)
def test_grafana_datasource_and_dashboard_agree(env: dict[str, str]) -> None:
    c = compose(env)
    st = gateway_settings(c).store
    assert isinstance(st, InfluxStoreSettings) and st.token is not None
    ds = datasources(c)
    influx = ds["tierproof-influxdb"]
    assert influx["type"] == "influxdb" and influx["url"] == st.url
    assert influx["jsonData"]["version"] == "InfluxQL"
    assert influx["jsonData"]["dbName"] == st.database
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"]["httpHeaderValue1"] == f"Token {st.token.get_secret_value()}"
    key = gateway_settings(c).api.auth.keys[0].key.get_secret_value()
    assert ds["tierproof-api"]["jsonData"]["httpHeaderName1"] == "X-API-Key"
    assert ds["tierproof-api"]["secureJsonData"]["httpHeaderValue1"] == key
    api = urlparse(ds["tierproof-api"]["url"])
    assert (api.hostname, api.port) == ("gateway", gateway_settings(c).api.port)
    plugins = c["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"].split(",")
    assert ds["tierproof-api"]["type"] in plugins

    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/tierproof.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    g_mounts = mounts(c["services"]["grafana"])
    assert g_mounts[path] == "./deploy/grafana/dashboards"
    assert g_mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dash = json.loads((ROOT / "deploy/grafana/dashboards/plant.json").read_text())
    home = c["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/plant.json"
    used = {p["datasource"]["uid"] for p in dash["panels"]}
    used |= {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert used == set(ds)
    queries = " ".join(t.get("query", "") for p in dash["panels"] for t in p["targets"])
    assert f'FROM "{st.measurement}"' in queries
    for role in ("state", "good", "reject", "energy_kwh"):
        assert role in queries
    assert any("oee" in t.get("root_selector", "") for p in dash["panels"] for t in p["targets"])


def test_simulators_publish_what_the_gateway_subscribes_to() -> None:
    from simulators.servers import mqtt_publications

    c = compose(SET)
    (d,) = [d for d in gateway_settings(c, "simulators").devices if isinstance(d, MqttDevice)]
    pubs = mqtt_publications(d)
    assert {style for style, _, _ in pubs} == {sub.format for sub in d.subscriptions}
    published = set()
    for _, _, assets in pubs:
        published |= set(assets)
    assert published == {t.asset for t in d.tags}


def test_the_plant_is_the_demo_plant() -> None:
    """deploy/gateway.yaml is config/demo.yaml with other addresses, credentials, store and
    API: a change to the demo plant must be made here too."""
    demo = load_settings(ROOT / "config" / "demo.yaml")
    deploy = gateway_settings(compose(SET))
    assert deploy.assets == demo.assets
    assert deploy.calendar == demo.calendar and deploy.kpi == demo.kpi
    assert deploy.simulation == demo.simulation and deploy.declared == demo.declared
    assert [d.name for d in deploy.devices] == [d.name for d in demo.devices]
    for a, b in zip(deploy.devices, demo.devices, strict=True):
        assert a.tags == b.tags, f"device {a.name}: tags differ from config/demo.yaml"
        differ = {k for k in type(a).model_fields if getattr(a, k) != getattr(b, k)}
        assert differ <= {"host", "endpoint", "broker", "username", "password"}, (a.name, differ)


def test_a_missing_secret_is_named_with_file_and_line() -> None:
    c = compose(SET)
    env = {k: str(v) for k, v in c["services"]["gateway"]["environment"].items()}
    del env["INFLUX_TOKEN"]
    with pytest.raises(ConfigError, match=r"deploy/gateway.yaml:\d+: environment variable INFLUX_TOKEN"):
        load_settings(ROOT / "deploy" / "gateway.yaml", env=env)
