"""An enterprise over one central InfluxDB: two gateways, one central tierproof.

Two ``tierproof run`` processes, each a gateway of its own site (``site-a``, ``site-b``: three
simulated CNC machines each, served over Modbus TCP by a ``tierproof simulate`` process of
its own), write to one real InfluxDB 1.6. Each site's last six hours of history are written
first through the gateway's own store (as its demo backfill does), so that its roll-up
maintainer has closed hours to compute at start and writes their rows to InfluxDB. Then a
central tierproof -- ``serve`` over a configuration with the assets of both sites and no
devices, and ``run`` over the same file -- answers ``/api/v1/kpis`` for the enterprise.

Asserted: every central figure's elements equal, to 1e-9 relative, the sum of the two
gateways' own answers for their sites, and each asset's equal a raw computation (no roll-ups)
over the same database; the central read whole hours from the gateways' roll-ups and says how
many it computed from raw samples (after a late write at one gateway: exactly the hours that
write touched); ``run`` without devices answers as ``serve`` does; ``assess`` over the central file
judges the tiers.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from api.gateway import tag_records
from api.service import KpiService
from config import load_settings
from config.times import to_ns
from simulators import Plant
from store import Batch, InfluxStore
from tests.helpers import free_port, in_shift_end, shift_demo
from tests.influx_servers import InfluxDB16

pytestmark = [pytest.mark.influxdb, pytest.mark.slow]

H = 3600 * 10**9
SITES = ("site-a", "site-b")
ROOT = Path(__file__).resolve().parents[2]
#: elements that add up over assets (the others are per-unit flags or window lengths)
SKIP = {"window_s", "shared_pru_s"}
#: the API key every process of the test accepts, given in the configuration (api.auth.keys)
KEY = "enterprise-test-key-0123456789abcdef"
AUTH = {"keys": [{"name": "tests", "scope": "read", "key": KEY}]}


def gateway_config(site: str, seed: int, influx_url: str, tmp: Path) -> dict[str, Any]:
    """The demo's line 1 (three CNC machines on one Modbus device) as site ``site``."""
    demo = shift_demo()
    keep = [a for a in demo["assets"] if a["path"].startswith("demo/machining/line1/")]
    (device,) = [copy.deepcopy(d) for d in demo["devices"] if d["name"] == "line1-cnc"]
    device.update(name=f"{site}-line1-cnc", port=free_port())
    for t in device["tags"]:
        t["asset"] = t["asset"].replace("demo/", f"{site}/", 1)
    return {
        "version": 1,
        "calendar": demo["calendar"],
        "assets": [{**a, "path": a["path"].replace("demo/", f"{site}/", 1)} for a in keep],
        "devices": [device],
        "store": {"type": "influx", "api": "v1", "url": influx_url, "database": "tierproof",
                  "meta_path": str(tmp / site / "meta.db"), "spool": {"path": str(tmp / site / "spool")}},
        "api": {"host": "127.0.0.1", "port": free_port(), "auth": AUTH},
        "kpi": {"rollups": True},
        "simulation": {**demo["simulation"], "seed": seed, "history_days": 0.25},
    }


def central_config(gateways: list[dict[str, Any]], influx_url: str, tmp: Path) -> dict[str, Any]:
    """Every gateway's assets, no devices, the one database (config/examples/central.yaml)."""
    return {
        "version": 1,
        "calendar": gateways[0]["calendar"],
        "assets": [a for g in gateways for a in g["assets"]],
        "store": {"type": "influx", "api": "v1", "url": influx_url, "database": "tierproof",
                  "meta_path": str(tmp / "central" / "meta.db"),
                  "spool": {"path": str(tmp / "central" / "spool")}},
        "api": {"host": "127.0.0.1", "port": free_port(), "auth": AUTH},
        "kpi": {"rollups": True},
    }


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by the test, stopped (SIGTERM, then SIGKILL) at its end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.terminate()
    for p in started:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def tierproof(procs: list[subprocess.Popen[bytes]], log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        p = subprocess.Popen([sys.executable, "-m", "api.cli", "--log-level", "WARNING", *args],
                             cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def get_kpis(port: int, p: subprocess.Popen[bytes], log: Path, params: dict[str, str],
             timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        if p.poll() is not None:
            raise AssertionError(f"{log.name} exited {p.returncode}:\n{log.read_text()[:3000]}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/kpis", params=params, timeout=30,
                          headers={"X-API-Key": KEY})
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no KPIs from {log.name}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def rows_per_asset(influx: InfluxDB16, lo: int, hi: int) -> dict[str, int]:
    by = '"site", "area", "line", "asset"'
    got = influx.query('SELECT count("reach_ns") FROM "tierproof_rollup" WHERE "key" != \'\' '
                       f"AND time >= {lo} AND time < {hi} GROUP BY {by}", "tierproof")
    out: dict[str, int] = {}
    for s in got["results"][0].get("series", []):  # type: ignore[index]
        out["/".join(s["tags"][k] for k in ("site", "area", "line", "asset"))] = s["values"][0][1]
    return out


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def test_central_tierproof_assesses_two_gateways_over_one_influxdb(
    influxdb16: InfluxDB16, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    # the history ends 13 min 7 s before the latest 20:00 of the shift calendar (its late
    # shift): the window below lies in shifts at any time of day or week, and starts and ends
    # inside an hour. With the wall clock instead, from about 20:00 to 23:00 UTC and from
    # Saturday 20:00 to Sunday 23:00 UTC it lay wholly outside the shifts (at other hours of
    # the night partly), and the sums compared below were zeros
    now = in_shift_end(datetime.now(UTC)) - timedelta(minutes=13, seconds=7)
    t0 = to_ns(now)
    hf = t0 // H * H
    # from where the history begins (no hour's roll-up reaches back before it), to 10 minutes
    # into the last hour that every gateway has closed
    window = {"from": datetime.fromtimestamp((t0 - 6 * H) / 1e9, UTC).isoformat(),
              "to": datetime.fromtimestamp((hf - H + 10 * 60 * 10**9) / 1e9, UTC).isoformat()}
    whole = range(-(-(t0 - 6 * H) // H) * H, hf - H, H)  # the window's whole hours

    gateways = []
    for seed, site in enumerate(SITES, start=7):
        data = gateway_config(site, seed, influxdb16.url, tmp_path)
        path = tmp_path / f"{site}.yaml"
        path.write_text(yaml.safe_dump(data))
        settings = load_settings(path)
        # the history, through the gateway's own store and metadata (its tag ids)
        with InfluxStore(settings.store) as store:  # type: ignore[arg-type]
            ids = store.register_tags(tag_records(settings))
            for batch in Plant(settings, now=now).history_batches(ids, t0 - 6 * H, t0):
                store.write(batch)
        tierproof(procs, tmp_path / f"{site}-sim.log", "simulate", "--config", str(path),
                  "--at", now.isoformat())
        run = tierproof(procs, tmp_path / f"{site}-run.log", "run", "--config", str(path))
        gateways.append((site, data, run))

    # each gateway computes its closed hours' rows at start and writes them to InfluxDB
    deadline = time.monotonic() + 240  # generous: the gateways start under the suite's load
    assets = [a["path"] for _, g, _ in gateways for a in g["assets"]]
    while (have := rows_per_asset(influxdb16, whole[0], whole[-1] + H)) != {a: len(whole) for a in assets}:
        for site, _, run in gateways:
            assert run.poll() is None, (tmp_path / f"{site}-run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"roll-up rows of the window's hours: {have}"
        time.sleep(0.5)

    central = central_config([g for _, g, _ in gateways], influxdb16.url, tmp_path)
    cpath = tmp_path / "central.yaml"
    cpath.write_text(yaml.safe_dump(central))
    serve = tierproof(procs, tmp_path / "serve.log", "serve", "--config", str(cpath))
    run_data = {**central, "api": {"host": "127.0.0.1", "port": free_port(), "auth": AUTH},
                "store": {**central["store"], "meta_path": str(tmp_path / "central-run" / "meta.db"),
                          "spool": {"path": str(tmp_path / "central-run" / "spool")}}}
    rpath = tmp_path / "central-run.yaml"
    rpath.write_text(yaml.safe_dump(run_data))
    run_central = tierproof(procs, tmp_path / "central-run.log", "run", "--config", str(rpath))

    enterprise = get_kpis(central["api"]["port"], serve, tmp_path / "serve.log", window)
    sites = {site: get_kpis(g["api"]["port"], run, tmp_path / f"{site}-run.log", window)
             for site, g, run in gateways}
    also = get_kpis(run_data["api"]["port"], run_central, tmp_path / "central-run.log", window)

    # the enterprise is the sum of its sites, as each gateway computes its own
    total = enterprise["total"]["elements"]
    assert total["pbt_s"] > 0 and total["known_s"] > 0 and total["pq"] > 0, total  # compared: not zeros
    for name, value in total.items():
        if name in SKIP or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        parts = [sites[s]["total"]["elements"][name] for s in SITES]
        assert close(value, sum(parts)), (name, value, parts)
    assert sorted(enterprise["assets"]) == sorted(assets)
    for site in SITES:
        for path, entry in sites[site]["assets"].items():
            assert enterprise["assets"][path]["elements"] == pytest.approx(entry["elements"], rel=1e-9)
    assert also["assets"].keys() == enterprise["assets"].keys()
    for path, entry in also["assets"].items():  # run without devices is the same central
        assert entry["elements"] == pytest.approx(enterprise["assets"][path]["elements"], rel=1e-9)

    # whole hours came from the gateways' roll-ups, and the answer says which did not
    used = {p: e["rollups"] for p, e in enterprise["assets"].items()}
    n = len(whole)
    assert all(u["whole_hours"] == n and u["from_rollups"] + u["from_raw_samples"] == n
               for u in used.values()), used
    assert all(u["from_rollups"] == n for u in used.values()), used  # rows reach back no further

    # a late write at one gateway (here a sample of site-a's lathe written again, as a replay
    # of its spool would) voids exactly the hours it touches: the central computes those from
    # raw samples, and says so
    lathe = "site-a/machining/line1/lathe-01"
    gw_settings = load_settings(tmp_path / "site-a.yaml")
    with InfluxStore(gw_settings.store) as store:  # type: ignore[arg-type]
        # a sample in the window's later whole hours (the energy meter runs on standby too)
        tag = next(t for t in store.tags() if t.path == f"{lathe}/energy_kwh")
        s = store.read(tag.tag_id, whole[-2], whole[-1] + H, prior=True)
        i = len(s.ts_ns) // 2
        store.write(Batch(np.array([tag.tag_id], np.int32), s.ts_ns[i:i + 1], s.value[i:i + 1],
                          s.quality[i:i + 1]))
    touched = sum(1 for h in whole if h + H > int(s.ts_ns[i]))
    again = get_kpis(central["api"]["port"], serve, tmp_path / "serve.log", window)
    used = {p: e["rollups"] for p, e in again["assets"].items()}
    assert used[lathe] == {"whole_hours": n, "from_rollups": n - touched, "from_raw_samples": touched}
    assert all(u["from_rollups"] == n for p, u in used.items() if p != lathe), used

    # and every asset equals a raw computation over the same database
    settings = load_settings(cpath)
    with InfluxStore(settings.store) as store:  # type: ignore[arg-type]
        store.discover_tags(assets)
        raw = KpiService(settings, store, rollups=False).kpis(
            datetime.fromisoformat(window["from"]), datetime.fromisoformat(window["to"]))
    for path, entry in raw["assets"].items():
        for got in (enterprise, again):
            assert got["assets"][path]["elements"] == pytest.approx(entry["elements"], rel=1e-9)
        assert "rollups" not in entry
    # the enterprise's tier assessment from the command line, over the same central file
    out = subprocess.run([sys.executable, "-m", "api.cli", "assess", "--config", str(cpath),
                          "--from", window["from"], "--to", window["to"], "--format", "json"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assessed = json.loads(out.stdout)
    assert assessed["config_fingerprint"] == enterprise["config_fingerprint"]
    assert assessed["figures"] and assessed["tiers"]
    print(json.dumps({"whole_hours": n, "voided_hours": touched, "pq_enterprise": total["pq"],
                      "pq_sites": [sites[s]["total"]["elements"]["pq"] for s in SITES]}))
