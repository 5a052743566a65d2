"""The demo command as a fixture: simulated plant -> Modbus -> collectors -> SQLite -> KPIs
-> API, started as a subprocess on free ports, shared by the API and dashboard tests; its
client sends the admin key the demo printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from config import shipped_config
from tests.helpers import demo_keys, running_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    tmp = tmp_path_factory.mktemp("demo")
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    with running_demo(tmp, data, health=(200,)) as (client, cfg, log):
        try:
            # the admin key the demo printed: every test of the shared demo sends it
            client.headers["X-API-Key"] = demo_keys(log)["admin"]
            yield client, cfg
        finally:
            print(log.read_text()[-3000:])
