"""The MQTT collector's speed-ups change nothing it stores: the JSON fast path (whole columns
per message) gives exactly the rows, drops and errors of the field-by-field path, and the
64 KiB read buffer under paho delivers every message, over plain TCP and TLS, through a real
Mosquitto, with payloads far larger than one read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mqtt_broker import ASSET, device, publish_all, publisher

from collector import MqttCollector
from config.mqtt import MqttDevice
from store.batch import Batch
from tests.mosquitto import Mosquitto

TYPES = ["float", "int", "bool", "string"]
PATHS = ("a.b", "a.c", "d", "e.0", "a.b.c")
DEV = MqttDevice.model_validate({
    "name": "x", "protocol": "mqtt", "broker": "mqtt://127.0.0.1:1",
    "subscriptions": [{"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}",
                       "timestamp_field": "ts"}],
    "tags": [{"asset": "p/a/L1/M1", "name": f"{ty}_{f.replace('.', '_')}", "field": f, "type": ty}
             for ty in TYPES for f in PATHS],
})
IDS = {t.path: k for k, t in enumerate(DEV.tags)}


class _Never:
    """A fast-path extractor that never applies: forces the field-by-field path."""

    def floats(self, doc: Any) -> None:
        return None


def _rows(c: MqttCollector) -> tuple[Any, ...]:
    out = (list(c._r_idx), list(c._r_ts), [repr(v) for v in c._r_val], list(c._r_q),
           dict(c._r_text), dict(c.dropped), dict(c.tag_errors))
    for col in (c._r_idx, c._r_ts, c._r_val, c._r_q, c._r_text, c._r_gw):
        col.clear()
    c.dropped.clear()
    c.tag_errors.clear()
    return out


scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 3),
                   st.floats(allow_nan=True), st.sampled_from([1e308 * 10, 0.0, 2.0]), st.text(max_size=3),
                   st.integers(10**400, 10**400 + 1))
value = st.recursive(scalar, lambda ch: st.one_of(
    st.lists(ch, max_size=3), st.dictionaries(st.sampled_from(["b", "c", "0", "x"]), ch, max_size=3)),
    max_leaves=6)
document = st.fixed_dictionaries(
    {"ts": st.one_of(st.integers(0, 2**45), st.integers(-5, 5), st.integers(2**62, 2**64), st.floats(),
                     st.none(), st.text(max_size=2))},
    optional={"a": st.one_of(value, st.fixed_dictionaries({"b": scalar, "c": scalar})), "d": scalar,
              "e": value})


@settings(max_examples=3000, suppress_health_check=list(HealthCheck), deadline=None)
@given(document)
def test_json_fast_path_equals_field_by_field(doc: dict[str, Any]) -> None:
    fast, slow = MqttCollector(DEV, IDS, clock=lambda: 5), MqttCollector(DEV, IDS, clock=lambda: 5)
    payload = json.dumps(doc).encode()
    route = fast._route("js/L1/M1")
    for ty in TYPES:
        for subset in (("a.b", "d"), ("a.c",), ("e.0",), ("a.b.c",), ("a.b", "a.c", "d")):
            fields = [(i, p) for i, p in route[2] if DEV.tags[i].type == ty and ".".join(p) in subset]
            extract = fast._fast_fields(fields)
            fast._json("js/L1/M1", route[1], fields, extract, payload, 5)
            slow._json("js/L1/M1", route[1], fields, (_Never(), extract[1]), payload, 5)
            assert _rows(fast) == _rows(slow), (doc, ty, subset)


@pytest.mark.mqtt
@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_read_buffer_delivers_every_message(mosquitto: Mosquitto, transport: str) -> None:
    tags = [{"asset": ASSET, "name": "s", "type": "string"},
            {"asset": ASSET, "name": "a", "field": "x.a", "type": "float"},
            {"asset": ASSET, "name": "i", "field": "x.i", "type": "int"},
            {"asset": ASSET, "name": "t", "field": "x.t", "type": "bool"}]
    subs = [{"topic": "tp/+/+/+", "template": "tp/{line}/{asset}/{signal}"},
            {"topic": "js/+/+", "format": "json", "template": "js/{line}/{asset}", "timestamp_field": "ts"}]
    extra: dict[str, Any] = {}
    url = mosquitto.url
    if transport == "tls":
        url = f"mqtts://{mosquitto.host}:{mosquitto.tls_port}"
        extra = {"tls": {"ca_file": str(mosquitto.ca_file), "cert_file": str(mosquitto.client_cert),
                         "key_file": str(mosquitto.client_key)}, "connect_timeout_s": 5}
    # texts beyond the default max_text_bytes (64 KiB): many 64 KiB reads for one message
    dev = device(url, subs, tags, qos=1, clean_session=False, client_id=f"buf-{transport}",
                 max_text_bytes=400_000, **extra)
    ids = {f"{ASSET}/{n}": k for k, n in enumerate("sait", 1)}
    big = "Z" * 300_000
    msgs: list[tuple[str, bytes | str]] = []
    for k in range(3000):
        if k % 500 == 7:
            msgs.append(("tp/L1/M1/s", big + str(k)))
        x = {"a": k * 0.5 if k % 3 else k, "i": k if k % 4 else float(k), "t": bool(k % 2)}
        doc: dict[str, Any] = {"ts": 1_700_000_000_000 + k, "x": x}
        if k % 1000 == 11:
            doc["x"]["i"] = 1.5  # wrong type for an int tag
        if k % 1000 == 13:
            doc["x"]["t"] = 1  # 0/1 for a bool tag: accepted
        if k % 1000 == 17:
            doc["x"]["a"] = 10**400  # too large for a float: wrong type
        if k % 1000 == 19:
            doc["x"]["a"] = None  # null: stored as bad quality, no value
        msgs.append(("js/L1/M1", json.dumps(doc)))
    got: list[Batch] = []
    async with MqttCollector(dev, ids) as c:
        with publisher(mosquitto) as pub:
            publish_all(pub, msgs)
        async with asyncio.timeout(60):
            async for batch in c.batches():
                got.append(batch)
                c.stored(batch)
                if c.stats.messages >= len(msgs) and not c._r_idx:
                    break
        assert c.stats.acked == len(msgs)
    tid = np.concatenate([g.tag_id for g in got])
    val = np.concatenate([g.value for g in got])
    texts = [t for g in got if g.text is not None for t in g.text if t is not None]
    assert len(texts) == 6 and all(t.startswith(big) for t in texts)
    a = val[tid == 2]
    assert len(a) == 3000 - 3 and int(np.isnan(a).sum()) == 3  # 3 overflows dropped, 3 nulls kept
    i = val[tid == 3]
    assert len(i) == 3000 - 3 and i[:5].tolist() == [0, 1, 2, 3, 4]
    t = val[tid == 4]
    assert len(t) == 3000 and t[13] == 1.0
    assert c.dropped == {"wrong type": 6}
    for g in got:
        if g.text is not None:
            assert [x is not None for x in g.text] == (g.tag_id == 1).tolist()
