"""Losses in the evidence pack (issue 19 item 4): ``losses.json`` and ``stops.csv`` of the
current window, with their inputs (the stop_reason samples, ``inputs/reason_events.csv``,
``inputs/stop_annotations.csv``), written by ``write_pack`` over a real SQLite store of the
simulated line 3 (OPC UA: assembler-01's reasons from OPC UA events, tester-01's from its
stop_reason tag, one stop annotated by an operator); ``verify_pack`` recomputes them from the
pack alone, and an edited number or reason, re-signed, is named by file and field."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.evidence import Mismatch, load_or_create_key, public_pem, verify_pack, write_pack
from api.evidence import layout as L
from api.evidence.pack import sign_pack
from api.losses import asset_stops, loss_body
from api.service import KpiService
from collector.opcua.events import event_text
from config import load_settings
from config.loader import shipped_config
from config.reasons import DEFAULT_REASONS
from config.settings import Settings
from config.times import to_ns
from simulators import Plant
from simulators.model import NATIVE_CODES
from simulators.opcua import NAMESPACE_URI, stop_message
from store.annotations import StopAnnotations, annotations_path
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.helpers import two_day_plant

EVENTS_ASSET = "demo/assembly/line3/assembler-01"
TAG_ASSET = "demo/assembly/line3/tester-01"
REASON_OF = {code: rid for rid, code in NATIVE_CODES["stop_reason"].items()}


def line3(data: dict[str, Any]) -> dict[str, Any]:
    """The demo reduced to line 3 (OPC UA), assembler-01's stop_reason tag replaced by a
    reason_event tag on its machine node."""
    keep = {EVENTS_ASSET, TAG_ASSET}
    data["assets"] = [a for a in data["assets"] if a["path"] in keep]
    data["devices"] = [d for d in data["devices"] if d["protocol"] == "opcua"]
    dev = data["devices"][0]
    dev["tags"] = [t for t in dev["tags"] if t["asset"] in keep
                   and not (t["asset"] == EVENTS_ASSET and t.get("role") == "stop_reason")]
    dev["tags"].append({"name": "stop_events", "asset": EVENTS_ASSET, "role": "reason_event",
                        "node_id": f"nsu={NAMESPACE_URI};s={EVENTS_ASSET}",
                        "events": {"map": [{"message": f"stopped: {r.id}$", "reason": r.id}
                                           for r in DEFAULT_REASONS]}})
    data.pop("declared", None)
    for key in ("lines", "sites", "areas"):
        data.pop(key, None)
    return data


def simulator_events(plant: Plant, asset: str, a: int, b: int) -> list[tuple[int, str]]:
    """(time, text) of the events the OPC UA simulator emits over (a, b]: one per stop piece
    with a reason code (simulators.opcua.server)."""
    tl = plant.timeline(asset, a, b)
    st, md, rs = (x.astype(np.int64) for x in (tl.state, tl.mode, tl.reason))
    change = (rs[1:] != rs[:-1]) | (st[1:] != st[:-1]) | (md[1:] != md[:-1])
    name = asset.rsplit("/", 1)[-1]
    return [(int(tl.seg_ns[j]), event_text(REASON_OF[int(rs[j])], name, "ns=2;i=1",
                                           stop_message(name, int(rs[j])), 500))
            for j in (np.flatnonzero(change & (rs[1:] != 0)) + 1).tolist()]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("evidence-losses")
    data = line3(yaml.safe_load(shipped_config("demo.yaml").read_text()))
    cfg, _ = two_day_plant(tmp, data)
    settings = load_settings(cfg)
    start = to_ns(datetime.fromisoformat(settings.kpi.baseline.start))
    end = to_ns(datetime.fromisoformat(settings.kpi.current.end))
    info: dict[str, Any] = {}
    with SqliteStore(Path(settings.store.path)) as store:
        tag = next(t for t in store.tags() if t.role == "reason_event")
        plant = Plant(settings, now=datetime.fromtimestamp(end / 1e9 + 300).astimezone())
        events = simulator_events(plant, EVENTS_ASSET, start, end)
        info["events"] = len(events)
        store.write(Batch(np.full(len(events), tag.tag_id, np.int32),
                          np.array([t for t, _ in events], np.int64), np.full(len(events), np.nan),
                          np.zeros(len(events), np.uint8), np.array([x for _, x in events], object)))
        # an operator gives one of tester-01's unassigned stops of the current window a reason
        service = KpiService(settings, store, rollups=False)
        cur = (to_ns(datetime.fromisoformat(settings.kpi.current.start)), end)
        tree = settings.reasons.tree()
        with service.snapshot():
            it = asset_stops(service, settings.asset(TAG_ASSET), *cur, tree, settings.reasons.small_stop_s)
        # the operator overrides the machine's reason (or gives one) of the longest stop
        k = int(np.argmax(it.events.end_ns - it.events.start_ns))
        code = int(it.events.reason[k])
        was = None if code < 0 else tree.ids[code]
        notes = StopAnnotations(annotations_path(settings.store))
        notes.add(TAG_ASSET, int(it.events.start_ns[k]), "no_operator", "break ran late",
                  "shift-lead", was, None if was is None else "tag")
        notes.close()
        info["annotated"], info["was"] = int(it.events.start_ns[k]), was
    return settings, info


@pytest.fixture(scope="module")
def pack(plant: tuple[Settings, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings, _ = plant
    out = tmp_path_factory.mktemp("pack") / "pack"
    key = load_or_create_key(out.parent / "key.pem")
    with SqliteStore(Path(settings.store.path)) as store:
        write_pack(out, settings, KpiService(settings, store), key)
    return out


def rows(p: Path) -> list[dict[str, str]]:
    with p.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_pack_holds_the_losses_and_verify_recomputes_them(
        pack: Path, plant: tuple[Settings, dict[str, Any]]) -> None:
    settings, info = plant
    manifest = json.loads((pack / L.MANIFEST).read_text())
    assert {L.LOSSES, L.STOPS, L.EVENTS, L.ANNOTATIONS} <= set(manifest["files"])
    losses = json.loads((pack / L.LOSSES).read_text())
    assessment = json.loads((pack / L.ASSESSMENT).read_text())
    assert losses["window"] == {"from": assessment["window"]["from"], "to": assessment["window"]["to"]}
    # what /losses answers for the window, computed on the gateway's store
    with SqliteStore(Path(settings.store.path)) as store:
        service = KpiService(settings, store, rollups=False)
        a, b = (to_ns(datetime.fromisoformat(losses["window"][k].replace("Z", "+00:00")))
                for k in ("from", "to"))
        tree = settings.reasons.tree()
        notes = StopAnnotations(annotations_path(settings.store))
        with service.snapshot():
            items = [asset_stops(service, x, a, b, tree, settings.reasons.small_stop_s, notes)
                     for x in settings.assets]
        notes.close()
    assert json.loads(json.dumps(loss_body(items, tree, settings.reasons.small_stop_s,
                                           losses["window"]))) == losses
    stops = rows(pack / L.STOPS)
    by_source = {s["reason_source"] for s in stops}
    assert {"opcua_event", "tag", "operator"} <= by_source
    ev = [s for s in stops if s["reason_source"] == "opcua_event"]
    assert all(s["asset"] == EVENTS_ASSET and s["event_source"] == "assembler-01"
               and s["source_tag"] == f"{EVENTS_ASSET}/stop_events" for s in ev)
    op = [s for s in stops if s["reason_source"] == "operator"]
    assert [(s["asset"], s["reason"], s["annotated_by"]) for s in op] == [
        (TAG_ASSET, "no_operator", "shift-lead")]
    assert op[0]["id"] == f"{TAG_ASSET}@{info['annotated']}"
    assert (op[0]["machine_reason"] or None) == info["was"]
    # per asset, loss type and reason: hours and parts
    for asset in (EVENTS_ASSET, TAG_ASSET):
        got = losses["assets"][asset]
        assert {t["loss_type"] for t in got["loss_types"]} >= {"breakdown", "small_stop", "speed_loss"}
        assert all("hours" in r and "parts" in r for r in got["reasons"])
    assert rows(pack / L.EVENTS) and len(rows(pack / L.ANNOTATIONS)) == 1
    report = verify_pack(pack)
    assert f"{L.STOPS}: {len(stops)} stops" in str(report)
    html = (pack / L.REPORT).read_text()
    assert 'id="pareto-table"' in html and '"pareto":[' in html


def _resign(pack: Path) -> None:
    manifest = json.loads((pack / L.MANIFEST).read_text())
    key = Ed25519PrivateKey.generate()
    (pack / L.PUBLIC_KEY).write_bytes(public_pem(key.public_key()))
    (pack / L.MANIFEST).unlink()
    (pack / L.SIGNATURE).unlink()
    sign_pack(pack, key, manifest["created"])


def test_an_edited_loss_figure_or_stop_reason_is_named(pack: Path, tmp_path: Path) -> None:
    copy = tmp_path / "a"
    shutil.copytree(pack, copy)
    doc = json.loads((copy / L.LOSSES).read_text())
    doc["assets"][EVENTS_ASSET]["loss_types"][1]["hours"] += 0.5
    (copy / L.LOSSES).write_text(json.dumps(doc, indent=2) + "\n")
    _resign(copy)
    with pytest.raises(Mismatch, match=rf"^{L.LOSSES}: assets\.{EVENTS_ASSET}\.loss_types\[1\]\.hours: "
                       "recomputed"):
        verify_pack(copy)

    copy = tmp_path / "b"
    shutil.copytree(pack, copy)
    text = (copy / L.STOPS).read_text().splitlines()
    i = next(k for k, line in enumerate(text) if ",opcua_event," in line)
    text[i] = text[i].replace(",opcua_event,", ",tag,", 1)
    (copy / L.STOPS).write_text("\n".join(text) + "\n")
    _resign(copy)
    with pytest.raises(Mismatch, match=rf"^{L.STOPS}: line {i + 1} .* reason_source: expected "
                       "opcua_event, found tag"):
        verify_pack(copy)

    copy = tmp_path / "c"
    shutil.copytree(pack, copy)
    # an event removed from the inputs: the stop it explained is unassigned on recomputation
    ev = (copy / L.EVENTS).read_text().splitlines()
    del ev[-1]
    (copy / L.EVENTS).write_text("\n".join(ev) + "\n")
    _resign(copy)
    with pytest.raises(Mismatch, match=rf"^{L.LOSSES}: "):
        verify_pack(copy)
