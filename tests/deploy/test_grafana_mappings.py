"""The shipped Grafana dashboard names every machine's state and mode by the canonical
OPC 40001-1 names, whatever native codes the machine's protocol stores (issue 18: a running
Modbus lathe, native 2, was shown as "NotExecuting", the canonical name of 2).

Docker does not run here: the file is checked against the demo configuration, machine by
machine, independently of the generator (api/grafana.py) that wrote it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.grafana import dashboard_json
from config import load_settings, shipped_config
from config.errors import ConfigError
from config.signals import canonical_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/plant.json"
#: the colour of each canonical name, the same for every machine
COLOURS = {"NotAvailable": "#808080", "OutOfService": "red", "NotExecuting": "yellow",
           "Executing": "green", "None": "#808080", "Maintenance": "orange", "Setup": "blue",
           "Processing": "green"}


def _timeline(dash: dict[str, Any], role: str) -> dict[str, Any]:
    (panel,) = [p for p in dash["panels"] if p["type"] == "state-timeline"
                and f"\"role\" = '{role}'" in p["targets"][0]["query"]]
    return panel


def _mapping(mappings: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    (m,) = mappings
    assert m["type"] == "value"
    return {int(raw): (o["text"], o["color"]) for raw, o in m["options"].items()}


@pytest.mark.parametrize("role", ["state", "mode"])
def test_every_machine_is_named_by_its_own_enum(role: str) -> None:
    dash = json.loads(DASHBOARD.read_text())
    settings = load_settings(shipped_config("demo.yaml"))
    panel = _timeline(dash, role)
    (target,) = panel["targets"]
    # a series is named <line>/<asset>: the query groups by both, the alias says so
    assert re.search(r'GROUP BY time\(\$__interval\), "line", "asset"', target["query"])
    assert target["alias"] == "$tag_line/$tag_asset"
    assert 'FROM "tierproof"' in target["query"]
    overrides = {o["matcher"]["options"]: o for o in panel["fieldConfig"]["overrides"]}
    assert all(o["matcher"]["id"] == "byName" for o in overrides.values())
    machines = {}
    for device in settings.devices:
        for tag in device.tags:
            if tag.role == role:
                _, _, line, asset = tag.asset.split("/")
                machines[f"{line}/{asset}"] = tag.enum
    assert len(machines) == len(settings.assets) == 11
    assert set(overrides) == set(machines), "one override per machine, no other"
    for name, enum in machines.items():
        (prop,) = overrides[name]["properties"]
        assert prop["id"] == "mappings"
        got = _mapping(prop["value"])
        assert enum is not None, name
        assert {raw: text for raw, (text, _) in got.items()} == enum, name
        assert all(colour == COLOURS[text] for text, colour in got.values()), name
    # a tag without an enum carries canonical codes: the panel's default is the canonical one
    default = _mapping(panel["fieldConfig"]["defaults"]["mappings"])
    assert [default[i][0] for i in range(len(default))] == canonical_names(
        next(t.role for d in settings.devices for t in d.tags if t.role == role))


def test_a_running_modbus_machine_reads_executing() -> None:
    """The case of the issue: the Modbus machines' native codes differ from the canonical
    ones (lathe: 2 = Executing, 1 = NotExecuting; mode 1 = Processing, 3 = Maintenance)."""
    dash = json.loads(DASHBOARD.read_text())
    state = {o["matcher"]["options"]: _mapping(o["properties"][0]["value"])
             for o in _timeline(dash, "state")["fieldConfig"]["overrides"]}
    mode = {o["matcher"]["options"]: _mapping(o["properties"][0]["value"])
            for o in _timeline(dash, "mode")["fieldConfig"]["overrides"]}
    for name in ("line1/lathe-01", "line1/mill-01", "line1/mill-02", "line2/press-01",
                 "line2/robot-01", "line2/washer-01"):
        assert state[name][2] == ("Executing", "green") and state[name][1][0] == "NotExecuting"
        assert mode[name][1] == ("Processing", "green") and mode[name][3][0] == "Maintenance"
    # OPC UA and MQTT machines store canonical codes
    assert state["line3/assembler-01"][2][0] == "NotExecuting"
    assert mode["line4/palletizer-01"][1][0] == "Maintenance"


def test_the_shipped_dashboard_is_generated_from_the_config(tmp_path: Path) -> None:
    """plant.json is `tierproof grafana`'s output for the demo plant; deploy/gateway.yaml has
    the same tags (test_compose.py) and the same measurement."""
    settings = load_settings(shipped_config("demo.yaml"))
    assert DASHBOARD.read_text() == dashboard_json(settings), (
        "regenerate: tierproof grafana --config config/demo.yaml "
        "--output deploy/grafana/dashboards/plant.json")
    deploy = yaml.safe_load((ROOT / "deploy/gateway.yaml").read_text())
    assert deploy["store"].get("measurement", "tierproof") == "tierproof"
    out = tmp_path / "plant.json"
    r = subprocess.run([sys.executable, "-m", "api.cli", "grafana", "--config",
                        str(shipped_config("demo.yaml")), "--output", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == DASHBOARD.read_text()
    # the dashboard says what calendar the KPIs use
    assert "Asia/Shanghai" in json.loads(out.read_text())["description"]


def test_two_machines_shown_alike_with_different_codes_are_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(shipped_config("demo.yaml").read_text())
    # press-01 becomes a second line1/lathe-01 (another area), with canonical codes
    data["assets"].append({"path": "demo/other/line1/lathe-01", "ideal_cycle_time_s": 10})
    data["devices"][1]["tags"] = [
        {**t, "asset": "demo/other/line1/lathe-01", "enum": {0: "NotAvailable", 1: "OutOfService",
                                                            2: "NotExecuting", 3: "Executing"}}
        for t in data["devices"][1]["tags"] if t.get("role") == "state" and t["unit_id"] == 1]
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=r"demo/machining/line1/lathe-01 and "
                       r"demo/other/line1/lathe-01 are both shown as 'line1/lathe-01'"):
        dashboard_json(load_settings(cfg))
