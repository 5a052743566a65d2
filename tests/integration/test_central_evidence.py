"""An evidence pack of the central tierproof (issue 12 item 3's enterprise): two gateways of
two sites write to one real InfluxDB 1.6, a tierproof whose configuration has both sites'
assets and no devices writes the pack (``tierproof evidence``), and ``tierproof verify``
checks it from the pack alone.

The central configuration declares no tags: the central learns each asset's tags, roles and
raw -> canonical enumerations from the tag register the gateways wrote to InfluxDB. Before
the pack carried them (``inputs/tags.csv``), verify refused the first sample ("tag ... is not
a tag of config.yaml"): no central pack verified."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.evidence import Mismatch, load_or_create_key, verify_pack
from api.evidence import layout as L
from api.evidence.keys import key_path
from api.evidence.pack import sign_pack
from api.gateway import tag_records
from api.rollups import RollupMaintainer
from api.service import KpiService
from config import load_settings
from config.times import to_ns
from simulators import Plant
from store import InfluxStore
from tests.helpers import free_port, in_shift_end, shift_demo
from tests.influx_servers import InfluxDB16

pytestmark = [pytest.mark.influxdb, pytest.mark.slow]

H = 3600 * 10**9
ROOT = Path(__file__).resolve().parents[2]
SITES = ("site-a", "site-b")
#: the API key of the central's serve (api.auth.keys)
KEY = "central-evidence-test-key-0123456789"
AUTH = {"keys": [{"name": "tests", "scope": "read", "key": KEY}]}


def gateway_config(site: str, seed: int, influx_url: str, tmp: Path) -> dict[str, Any]:
    """The demo's line 1 (three CNC machines on one Modbus device) as site ``site``."""
    demo = shift_demo()
    keep = [a for a in demo["assets"] if a["path"].startswith("demo/machining/line1/")]
    (device,) = [copy.deepcopy(d) for d in demo["devices"] if d["name"] == "line1-cnc"]
    device.update(name=f"{site}-line1-cnc")
    for t in device["tags"]:
        t["asset"] = t["asset"].replace("demo/", f"{site}/", 1)
    return {
        "version": 1,
        "calendar": demo["calendar"],
        "assets": [{**a, "path": a["path"].replace("demo/", f"{site}/", 1)} for a in keep],
        "devices": [device],
        "store": {"type": "influx", "api": "v1", "url": influx_url, "database": "tierproof",
                  "meta_path": str(tmp / site / "meta.db")},
        "kpi": {"rollups": True},
        "simulation": {**demo["simulation"], "seed": seed},
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "--log-level", "WARNING", *args],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


def test_a_central_pack_verifies(influxdb16: InfluxDB16, tmp_path: Path) -> None:
    now = in_shift_end(datetime.now(UTC))
    t0 = to_ns(now)
    gateways = []
    for seed, site in enumerate(SITES, start=7):
        data = gateway_config(site, seed, influxdb16.url, tmp_path)
        path = tmp_path / f"{site}.yaml"
        path.write_text(yaml.safe_dump(data))
        settings = load_settings(path)
        with InfluxStore(settings.store) as store:  # type: ignore[arg-type]
            ids = store.register_tags(tag_records(settings))
            for batch in Plant(settings, now=now).history_batches(ids, t0 - 8 * H, t0):
                store.write(batch)
            # gap markers in the central database: the whole device of site-a unreachable for
            # an hour; one edge node (asset) of site-b offline for half an hour
            asset = data["assets"][1]["path"] if site == "site-b" else None
            g = store.open_gap(data["devices"][0]["name"], t0 - 2 * H, f"test gap at {site}", asset)
            store.close_gap(g, t0 - 2 * H + (H // 2 if asset else H))
            # the gateway's hourly roll-up rows, as its maintainer writes them to InfluxDB
            RollupMaintainer(KpiService(settings, store), backfill_days=None).run_once()
        gateways.append(data)
    central = {
        "version": 1, "calendar": gateways[0]["calendar"],
        "assets": [a for g in gateways for a in g["assets"]],
        "store": {"type": "influx", "api": "v1", "url": influxdb16.url, "database": "tierproof",
                  "meta_path": str(tmp_path / "central" / "meta.db")},
        "api": {"host": "127.0.0.1", "port": free_port(), "auth": AUTH},
        "kpi": {"rollups": True},
    }
    cpath = tmp_path / "central.yaml"
    cpath.write_text(yaml.safe_dump(central))
    iso = lambda ns: datetime.fromtimestamp(ns / 1e9, UTC).isoformat()  # noqa: E731
    pack = tmp_path / "pack"
    out = cli("evidence", "--config", str(cpath), "--out", str(pack),
              "--baseline-from", iso(t0 - 8 * H), "--baseline-to", iso(t0 - 4 * H),
              "--from", iso(t0 - 4 * H), "--to", iso(t0))
    assert out.returncode == 0, out.stderr[-3000:]
    out = cli("verify", str(pack))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "OK:" in out.stdout and "4 gap rows" in out.stdout, out.stdout  # 3 assets of a, 1 of b

    # the pack holds both sites' assets, their gaps, and the tags with the gateways' mapping
    assessment = json.loads((pack / L.ASSESSMENT).read_text())
    assets = sorted(a["path"] for g in gateways for a in g["assets"])
    assert sorted(assessment["assets"]) == assets
    # the central reads whole hours from the gateways' roll-ups where it can (verify
    # recomputes every hour from raw samples; an asset's "rollups" is not compared)
    assert all(assessment["assets"][a]["rollups"]["whole_hours"] == 4 for a in assets)
    assert all(assessment["assets"][a]["elements"]["known_s"] > 0 for a in assets)
    tags = list(csv.DictReader((pack / L.TAGS).read_text().splitlines()))
    assert {t["asset"] for t in tags} == set(assets)
    state = next(t for t in tags if t["role"] == "state")
    enum = json.loads(state["enum"])
    assert state["device"] == "site-a-line1-cnc" and enum and all(k.isdigit() for k in enum)
    gaps = list(csv.DictReader((pack / L.GAPS).read_text().splitlines()))
    assert sorted((g["asset"].split("/")[0], g["reason"]) for g in gaps) == \
        [("site-a", "test gap at site-a")] * 3 + [("site-b", "test gap at site-b")]

    # the same pack from the central's API (tierproof serve over central.yaml) verifies too
    windows = {"baseline_from": iso(t0 - 8 * H), "baseline_to": iso(t0 - 4 * H),
               "from": iso(t0 - 4 * H), "to": iso(t0)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "serve.log"
    with log.open("wb") as f:
        serve = subprocess.Popen([sys.executable, "-m", "api.cli", "--log-level", "WARNING", "serve",
                                  "--config", str(cpath)], cwd=ROOT, env=env, stdout=f,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert serve.poll() is None, log.read_text()[-3000:]
            try:
                r = httpx.get(f"http://127.0.0.1:{central['api']['port']}/api/v1/evidence",
                              params=windows, headers={"X-API-Key": KEY}, timeout=120)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
    finally:
        serve.terminate()
        serve.wait(20)
    assert r.status_code == 200, r.text[:2000]
    api_pack = tmp_path / "api-pack"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        z.extractall(api_pack)
    assert (api_pack / L.TAGS).read_text() == (pack / L.TAGS).read_text()
    assert "asset-days" in str(verify_pack(api_pack))

    # tags.csv is what verify maps raw values by: another mapping, even re-signed with the
    # gateway's key, does not reproduce the state timeline
    central_settings = load_settings(cpath)
    key = load_or_create_key(key_path(central_settings))
    text = (pack / L.TAGS).read_text()
    first = next(iter(enum))
    swapped = {k: enum[first] if k != first else next(v for v in enum.values() if v != enum[first])
               for k in enum}
    (pack / L.TAGS).write_text(text.replace(state["enum"].replace('"', '""'),
                                            json.dumps(swapped, separators=(",", ":")).replace('"', '""'), 1))
    assert (pack / L.TAGS).read_text() != text
    manifest = json.loads((pack / L.MANIFEST).read_text())
    sign_pack(pack, key, manifest["created"])
    with pytest.raises(Mismatch) as err:
        verify_pack(pack)
    assert err.value.file in (L.STATES, L.HOURLY, L.LOSSES), str(err.value)  # the first to differ
