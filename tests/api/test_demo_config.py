"""``tierproof demo``'s served configuration: the fingerprint an auditor computes from the file
alone, the runtime overrides the demo made, and the window of a default KPI request."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_demo_serves_the_fingerprint_of_its_file(demo: tuple[httpx.Client, Path]) -> None:
    client, cfg = demo
    r = subprocess.run([sys.executable, "-m", "api.cli", "check-config", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    from_file = r.stdout.splitlines()[-1].rsplit(" ", 1)[-1]

    body = client.get("/api/v1/config").json()
    assert body["config_fingerprint"] == from_file
    kpis = client.get("/api/v1/kpis").json()
    assert kpis["config_fingerprint"] == from_file
    # what the demo set at runtime is in force and listed, not fingerprinted
    overrides = body["runtime_overrides"]
    assert "store.path" in overrides
    assert body["settings"]["store"]["path"].endswith("demo.db")
    mqtt = [i for i, d in enumerate(body["settings"]["devices"]) if d["protocol"] == "mqtt"]
    assert [f"devices[{i}].broker" for i in mqtt] == [p for p in overrides if p.endswith(".broker")]
    assert body["settings"]["devices"][mqtt[0]]["broker"].startswith("mqtt://127.0.0.1:")
    # the default window: the demo's kpi.current (now-14d .. now) resolved once
    w = kpis["window"]
    assert _at(w["to"]) - _at(w["from"]) == timedelta(days=14)
