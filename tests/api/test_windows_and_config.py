"""Windows resolved once per request, the fingerprint of the file's meaning, and
GET /api/v1/config -- in process, against an empty SQLite store (no collecting)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from api.cli import _with_store_path
from config import load_settings, settings_from_dict, shipped_config
from config.fingerprint import REDACTED, config_fingerprint, redact, runtime_overrides
from config.settings import Settings
from simulators.servers import embedded_brokers
from store.sqlite import SqliteStore
from tests.helpers import key_headers

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("influx-pass-Zq81", "mqtt-pass-Kx07", "opcua-pass-Wm52")


def get(settings: Settings, tmp: Path, url: str, params: dict[str, str] | None = None) -> httpx.Response:
    """One GET against the app for ``settings`` over an empty SQLite store in ``tmp``."""

    async def run() -> httpx.Response:
        # in tmp: the keys file of settings without a store path (api.auth) is data/ there
        with SqliteStore(tmp / "w.db") as store, contextlib.chdir(tmp):
            headers = key_headers(settings)  # api.auth: every test sends a key
            app = create_app(settings, store=store, collect=False)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tierproof", headers=headers
            ) as c:
                return await c.get(url, params=params)

    return asyncio.run(run())


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _demo_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(shipped_config("demo.yaml").read_text())
    return data


# --------------------------------------------------------------------------- windows


def test_the_default_window_is_exactly_seven_days(tmp_path: Path) -> None:
    settings = settings_from_dict({})  # kpi.current: now-7d .. now
    r = get(settings, tmp_path, "/api/v1/kpis")
    assert r.status_code == 200, r.text
    w = r.json()["window"]
    # to the ns: the API's ISO times are exact to the µs, and now is a whole µs
    assert _at(w["to"]) - _at(w["from"]) == timedelta(days=7)


def test_fixed_dates_in_config_and_parameters(tmp_path: Path) -> None:
    settings = settings_from_dict({"kpi": {
        "current": {"start": "2026-11-01T00:00:00+08:00", "end": "2026-11-08T00:00:00+08:00"},
        "baseline": {"start": "2026-10-01", "end": "2026-10-08"},
    }})
    w = get(settings, tmp_path, "/api/v1/kpis").json()["window"]
    assert w == {"from": "2026-10-31T16:00:00Z", "to": "2026-11-07T16:00:00Z"}
    # a bare date is the local midnight of calendar.timezone (UTC here, the default); a
    # parameter overrides one end (test_plant_time.py: other zones)
    w = get(settings, tmp_path, "/api/v1/kpis", {"from": "2026-11-05"}).json()["window"]
    assert w == {"from": "2026-11-05T00:00:00Z", "to": "2026-11-07T16:00:00Z"}


def test_relative_windows_share_one_now(tmp_path: Path) -> None:
    """kpi.current now-7d .. now and kpi.baseline now-14d .. now-7d meet exactly."""
    settings = settings_from_dict({"kpi": {"baseline": {"start": "now-14d", "end": "now-7d"}}})
    r = get(settings, tmp_path, "/api/v1/kpis/deltas")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["baseline_window"]["to"] == body["window"]["from"]
    assert _at(body["window"]["to"]) - _at(body["baseline_window"]["from"]) == timedelta(days=14)
    assert set(body) >= {"window", "baseline_window", "criteria_version", "algorithm_version",
                         "config_fingerprint", "bootstrap", "deltas"}


def test_deltas_without_a_baseline_are_a_problem(tmp_path: Path) -> None:
    r = get(settings_from_dict({}), tmp_path, "/api/v1/kpis/deltas")
    assert r.status_code == 422 and "baseline" in r.json()["detail"]
    r = get(settings_from_dict({}), tmp_path, "/api/v1/kpis/deltas",
            {"baseline_from": "now", "baseline_to": "now-1d"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_ignores_formatting_and_runtime_overrides(tmp_path: Path) -> None:
    data = _demo_data()
    base = load_settings(shipped_config("demo.yaml"))
    fp = config_fingerprint(base)
    # the same meaning written otherwise: no comments, no anchors, other key order, a
    # default written out
    other = copy.deepcopy(data)
    other = dict(reversed(list(other.items())))
    other["api"] = {"port": 8000, "host": "127.0.0.1"}
    f = tmp_path / "other.yaml"
    f.write_text(yaml.safe_dump(other, sort_keys=True))
    assert config_fingerprint(load_settings(f)) == fp
    # runtime overrides change the settings in force, not the fingerprint
    moved = _with_store_path(base, tmp_path / "elsewhere.db")
    assert moved.store.path != base.store.path  # type: ignore[union-attr]
    assert config_fingerprint(moved) == fp
    assert runtime_overrides(moved) == ["store.path"] and runtime_overrides(base) == []
    # a change of meaning changes it
    changed = copy.deepcopy(data)
    changed["assets"][0]["ideal_cycle_time_s"] = 46
    f.write_text(yaml.safe_dump(changed))
    assert config_fingerprint(load_settings(f)) != fp


def test_two_demo_runs_with_other_data_dirs_and_broker_ports_have_one_fingerprint(
    tmp_path: Path,
) -> None:
    """What ``tierproof demo`` does to the loaded file: its store in --data-dir, then the
    embedded MQTT broker's URL (a free port) filled in."""
    file = load_settings(shipped_config("demo.yaml"))

    async def run(data_dir: Path) -> tuple[str, str | None, list[str]]:
        settings = _with_store_path(file, data_dir / "demo.db")
        async with embedded_brokers(settings) as settings:
            broker = next(d.broker for d in settings.devices if d.protocol == "mqtt")
            return config_fingerprint(settings), broker, runtime_overrides(settings)

    fp1, broker1, over1 = asyncio.run(run(tmp_path / "a"))
    fp2, broker2, over2 = asyncio.run(run(tmp_path / "b"))
    assert broker1 and broker2 and broker1 != broker2  # really another port
    assert fp1 == fp2 == config_fingerprint(file)
    assert over1 == over2 and "store.path" in over1
    assert any(p.startswith("devices[") and p.endswith("].broker") for p in over1)


def _secret_config(tmp_path: Path, influx_password: str) -> Path:
    data = _demo_data()
    data["store"] = {"type": "influx", "api": "v1", "database": "plant", "username": "gw",
                     "password": "${INFLUX_PASSWORD}", "meta_path": str(tmp_path / "meta.db")}
    for d in data["devices"]:
        if d["protocol"] == "mqtt":
            d.update(broker="mqtt://127.0.0.1:1883", username="gw", password=SECRETS[1])
        if d["protocol"] == "opcua":
            d.update(username="gw", password=SECRETS[2])
    f = tmp_path / "secret.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_config_endpoint_redacts_every_secret(tmp_path: Path) -> None:
    f = _secret_config(tmp_path, SECRETS[0])
    settings = load_settings(f, env={"INFLUX_PASSWORD": SECRETS[0]})
    r = get(settings, tmp_path, "/api/v1/config")
    assert r.status_code == 200, r.text
    for secret in SECRETS:
        assert secret not in r.text
    body = r.json()
    assert body["settings"]["store"]["password"] == REDACTED == body["redacted_as"]
    assert body["settings"]["store"]["username"] == "gw"  # not a secret
    mqtt = next(d for d in body["settings"]["devices"] if d["protocol"] == "mqtt")
    assert mqtt["password"] == REDACTED
    assert body["calendar"]["timezone"] == "Asia/Shanghai"
    assert body["config_fingerprint"] == config_fingerprint(settings)
    assert body["runtime_overrides"] == []
    # the secret's value is not in the fingerprint: an auditor without it reproduces it
    other = load_settings(f, env={"INFLUX_PASSWORD": "anything"})
    assert config_fingerprint(other) == body["config_fingerprint"]
    # the schema is in OpenAPI
    spec = get(settings, tmp_path, "/openapi.json").json()
    assert "ConfigOut" in spec["components"]["schemas"]
    assert "/api/v1/config" in spec["paths"] and "/api/v1/kpis/deltas" in spec["paths"]


@pytest.mark.parametrize(("value", "want"), [
    ("mqtt://gw:s3cret@broker:1883", f"mqtt://gw:{REDACTED}@broker:1883"),
    ("https://user:p%40ss@influx.example/x", f"https://user:{REDACTED}@influx.example/x"),
    ("mqtt://gw@broker:1883", "mqtt://gw@broker:1883"),
    ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
])
def test_redact_url_passwords(value: str, want: str) -> None:
    assert redact({"url": value}) == {"url": want}
    assert redact({"token": "abc", "nested": [{"password": "x"}]}) == {
        "token": REDACTED, "nested": [{"password": REDACTED}]}


def test_check_config_prints_the_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(shipped_config("demo.yaml").read_text())
    want = config_fingerprint(load_settings(f))
    for args in ([str(f)], ["--config", str(f)]):
        r = subprocess.run([sys.executable, "-m", "api.cli", "check-config", *args],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert f"{f}: fingerprint {want}" in r.stdout.splitlines()
