"""SIGTERM (what Docker and systemd send) and SIGINT stop ``tierproof run`` cleanly: polling
stops, the writer flushes, heartbeats are written, every sample the collectors delivered for
storing is in the store, and the process exits 0. A second signal exits at once. Real processes, real
Modbus sockets, the real SQLite file read afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config import shipped_config
from store import SqliteStore
from tests.helpers import config_key_headers, free_port, on_free_ports, wait_for


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The demo's Modbus lines served by ``tierproof simulate``; a config for ``run``."""
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    data["devices"] = [d for d in data["devices"] if d["protocol"] == "modbus"]
    on_free_ports(data)
    data["store"] = {"type": "sqlite", "path": str(tmp_path / "run.db")}
    data["api"] = {"host": "127.0.0.1", "port": free_port()}
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    with (tmp_path / "simulate.log").open("w") as log:
        sim = subprocess.Popen([sys.executable, "-m", "api.cli", "simulate", "--config", str(cfg)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        yield cfg, data
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            pytest.fail("tierproof simulate did not stop on SIGTERM")
        assert sim.returncode == 0, (tmp_path / "simulate.log").read_text()[-3000:]


def start_run(cfg: Path, data: dict[str, Any], log: Path) -> tuple[subprocess.Popen[bytes], list[Any]]:
    """``tierproof run`` collecting every device; returns it and its collector status."""
    with log.open("w") as out:
        gw = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "--config", str(cfg)],
                              stdout=out, stderr=subprocess.STDOUT)
    with httpx.Client(base_url=f"http://127.0.0.1:{data['api']['port']}", timeout=10,
                      headers=config_key_headers(cfg)) as c:
        def delivered() -> list[Any] | None:
            st: list[Any] = c.get("/api/v1/collector/status").json()
            ok = len(st) == len(data["devices"]) and all(
                d["state"] == "connected" and d["samples_delivered"] > 200 for d in st)
            return st if ok else None

        status: list[Any] = wait_for(delivered, 60, "the gateway to collect from the simulator")
    return gw, status


def test_sigterm_stops_run_cleanly(tmp_path: Path, plant: tuple[Path, dict[str, Any]]) -> None:
    cfg, data = plant
    log = tmp_path / "run.log"
    gw, status = start_run(cfg, data, log)
    before = time.time_ns()
    gw.send_signal(signal.SIGTERM)
    try:
        rc = gw.wait(timeout=60)
    except subprocess.TimeoutExpired:
        gw.kill()
        pytest.fail(f"tierproof run did not stop on SIGTERM:\n{log.read_text()[-3000:]}")
    after = time.time_ns()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "SIGTERM: stopping" in text

    with SqliteStore(Path(data["store"]["path"])) as store:
        ids = [t.tag_id for t in store.tags()]
        stored = sum(len(store.read(i, 0, after, prior=False)) for i in ids)
        for d in data["devices"]:
            # the stop wrote a last heartbeat: the next start bridges no time it did not see
            alive = store.last_alive(d["name"])
            assert alive is not None and before <= alive <= after, (d["name"], alive, before)
        # nothing left open, and no gap claims the gateway stopped seeing the plant
        assert all(g.end_ns is not None for g in store.gaps(None, 0, after))
    # every sample delivered until the signal (at least the count seen just before) is stored
    # (state and counters are stored on change: the status says how many of the delivered)
    assert stored >= sum(d["samples_stored"] for d in status) > 0


def test_sigint_is_the_same_clean_stop(tmp_path: Path, plant: tuple[Path, dict[str, Any]]) -> None:
    cfg, data = plant
    log = tmp_path / "run.log"
    gw, status = start_run(cfg, data, log)
    gw.send_signal(signal.SIGINT)
    assert gw.wait(timeout=60) == 0, log.read_text()[-3000:]
    with SqliteStore(Path(data["store"]["path"])) as store:
        stored = sum(len(store.read(t.tag_id, 0, time.time_ns(), prior=False)) for t in store.tags())
    assert stored >= sum(d["samples_stored"] for d in status) > 0


def test_a_second_signal_exits_at_once(tmp_path: Path, plant: tuple[Path, dict[str, Any]]) -> None:
    cfg, data = plant
    log = tmp_path / "run.log"
    gw, _ = start_run(cfg, data, log)
    # both arrive before the event loop has run a single step of the clean stop (two different
    # signals: the kernel merges a second SIGTERM that arrives while the first is pending)
    os.kill(gw.pid, signal.SIGTERM)
    os.kill(gw.pid, signal.SIGINT)
    rc = gw.wait(timeout=60)
    text = log.read_text()
    assert rc in (128 + signal.SIGTERM, 128 + signal.SIGINT), text[-3000:]
    assert "second stop signal" in text and "exiting without a clean stop" in text
