"""The demo command as a fixture: simulated plant -> Modbus -> collectors -> SQLite -> KPIs
-> API, started as a subprocess on free ports, shared by the API and dashboard tests; its
client sends the admin key the demo printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from config import shipped_config
from tests.helpers import demo_keys, free_port, on_free_ports, wait_for


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    tmp = tmp_path_factory.mktemp("demo")
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    on_free_ports(data)
    cfg = tmp / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    port = free_port()
    log = (tmp / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--config", str(cfg), "--port", str(port),
         "--data-dir", str(tmp / "data"), "--duration", "600"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_for(lambda: proc.poll() is None and client.get("/api/v1/health").status_code == 200,
              90, "the demo's API to answer")
        # the admin key the demo printed: every test of the shared demo sends it
        client.headers["X-API-Key"] = demo_keys(tmp / "demo.log")["admin"]
        yield client, cfg
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print((tmp / "demo.log").read_text()[-3000:])
