"""The tierproof command line as a user runs it (subprocesses, real sockets)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from config import load_settings, parse_instant, shipped_config
from simulators.truth import truth
from tests.mosquitto import Mosquitto

AT = "2026-11-18T09:17:23+00:00"
#: a warning about a device that answered late (or not in time), which CPU load on a shared
#: test machine causes; every other warning of a clean start is a defect
LATE = r"no reply within|timed out|no answer within|did not answer"


def tierproof(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command() -> None:
    r = tierproof("--help")
    assert r.returncode == 0
    for cmd in ("demo", "run", "check-config", "simulate", "assess"):
        assert cmd in r.stdout
    for cmd in ("demo", "run", "check-config", "simulate", "assess"):
        sub = tierproof(cmd, "--help")
        assert sub.returncode == 0 and "usage: tierproof " + cmd in sub.stdout


@pytest.mark.parametrize(("window", "days_back"), [("current", 0), ("baseline", 14)])
def test_simulate_truth_writes_the_window(tmp_path: Path, window: str, days_back: int) -> None:
    """``--truth`` writes the truth of the config's window in the API's names and shape (the
    demo's windows are two weeks each: baseline now-28d .. now-14d, current now-14d .. now)."""
    out = tmp_path / "truth.json"
    r = tierproof("simulate", "--truth", str(out), "--at", AT, "--window", window)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    settings = load_settings(shipped_config("demo.yaml"))
    now = parse_instant(AT)
    end = now - timedelta(days=days_back)
    assert set(data) == {"window", "assets", "lines", "total"}
    assert parse_instant(data["window"]["from"]) == end - timedelta(days=14)
    assert parse_instant(data["window"]["to"]) == end
    assert data["window"]["from"] in r.stdout and window in r.stdout
    assert sorted(data["assets"]) == sorted(a.path for a in settings.assets)
    expect = truth(settings, end - timedelta(days=14), end, now=now)
    assert data == json.loads(json.dumps(expect))
    for entry in data["assets"].values():
        for k in ("availability", "effectiveness", "quality_ratio", "oee"):
            assert 0 < entry[k] <= 1.5
        assert entry["elements"]["pq"] > 0


def test_simulate_window_needs_the_config_window(tmp_path: Path) -> None:
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["kpi"].pop("baseline", None)
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    r = tierproof("simulate", "--config", str(cfg), "--truth", str(tmp_path / "t.json"),
                  "--window", "baseline", "--at", AT)
    assert r.returncode == 2 and "kpi.baseline" in r.stderr
    assert not (tmp_path / "t.json").exists()


@pytest.mark.mqtt
def test_run_collects_from_simulated_plant(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`tierproof simulate` serves the machines, `tierproof run` collects them: two processes
    (the MQTT line through a real Mosquitto, as in production)."""
    from tests.helpers import config_key_headers, free_port, on_free_ports, wait_for

    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    on_free_ports(data)
    for d in data["devices"]:
        if d["protocol"] == "mqtt":
            d["broker"] = mosquitto.url
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "run.db")}
    api_port = free_port()
    data["api"] = {"host": "127.0.0.1", "port": api_port}
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))

    sim_log, gw_log = tmp_path / "simulate.log", tmp_path / "run.log"
    with sim_log.open("w") as so, gw_log.open("w") as go:
        sim = subprocess.Popen([sys.executable, "-m", "api.cli", "simulate", "--config", str(cfg)],
                               stdout=so, stderr=subprocess.STDOUT)
        # the machines are up before the gateway, as in a plant (else it rightly warns that
        # it cannot connect); the Sparkplug node is up first too, and waits for its births
        wait_for(lambda: "simulating" in sim_log.read_text() or sim.poll() is not None, 60,
                 "the simulated machines")
        gw = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "--config", str(cfg)],
                              stdout=go, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                          headers=config_key_headers(cfg)) as c:
            def delivered() -> bool:
                st = c.get("/api/v1/collector/status").json()
                return len(st) == len(data["devices"]) and all(
                    d["state"] == "connected" and d["samples_delivered"] > 50 for d in st)

            wait_for(delivered, 60, "the gateway to collect from the simulator")
            time.sleep(2)
            # a clean start: nothing dropped (the Sparkplug node waited for the gateway's
            # STATE before its births, though it was up first), no error to read
            for d in c.get("/api/v1/collector/status").json():
                assert d["dropped"] == {}, d
            k = c.get("/api/v1/kpis", params={"from": "now-10m"}).json()
            # live data only (no backfill): every machine's state is known for what was seen
            for path, entry in k["assets"].items():
                assert entry["evidence"]["tags"], path
                assert all(t["samples"] > 0 for t in entry["evidence"]["tags"]), path
    finally:
        for p in (gw, sim):  # the gateway first: machines stopping under it would be lost
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                pytest.fail(f"{p.args} did not stop on Ctrl-C")
    assert gw.returncode == 0, gw_log.read_text()[-3000:]
    assert sim.returncode == 0, sim_log.read_text()[-3000:]
    # ... and no warning in either log (e.g. asyncua's session timeout, data before birth)
    # (but a poll the loaded test machine answered late: a fact of the load, not of the start)
    for log in (gw_log, sim_log):
        alarms = re.findall(r"^\S+ \S+ (?:WARNING|ERROR|CRITICAL) .*$", log.read_text(), re.M)
        assert [a for a in alarms if not re.search(LATE, a)] == [], (log.name, alarms)


def test_version_is_the_installed_distribution() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    r = tierproof("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tierproof {project['version']}"
