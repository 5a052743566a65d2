"""The OPC UA collector against a real in-process asyncua server on a free port."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509

from collector import COLLECTORS
from collector.opcua import OpcUaCollector, thumbprint
from config.errors import ConnectError
from config.signals import Quality
from tests.collector.opcua_helpers import (
    BYTES,
    GUID,
    URI,
    Collected,
    ids_for,
    make_cert,
    odevice,
    opcua_server,
    otag,
)
from tests.helpers import wait_until

G, U, B, CFG = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD), int(Quality.BAD_CONFIG)


def all_forms(ns: int) -> list:
    b64 = __import__("base64").b64encode(BYTES).decode()
    return [
        otag("num", f"ns={ns};i=5", scale=2.0),
        otag("temp", f"ns={ns};s=temp"),
        otag("guid", f"ns={ns};g={GUID}"),
        otag("blob", f"ns={ns};b={b64}"),
        otag("flag", f"nsu={URI};s=flag"),
        otag("text", f"nsu={URI};s=recipe"),
    ]


async def test_registry_has_opcua() -> None:
    assert COLLECTORS["opcua"] is OpcUaCollector


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_node_id_form_and_changes(mode: str) -> None:
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, all_forms(srv.ns), mode=mode)
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: len(run.latest) == 6, what="a sample of every tag")
                got = {k: v[:3] for k, v in run.latest.items()}
                assert got == {
                    "num": (3.0, G, None),  # 1.5 * scale 2
                    "temp": (20.0, G, None),
                    "guid": (7.0, G, None),
                    "blob": (3.0, G, None),
                    "flag": (1.0, G, None),
                    "text": (pytest.approx(math.nan, nan_ok=True), G, "A1"),
                }
                assert c.tag_errors == {}
                # a change with a source timestamp from the past: ts_ns is the source's
                src = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
                await srv.set("temp", 21.5, source_ts=src)
                await srv.set("flag", False)
                await wait_until(lambda: run.latest["temp"][0] == 21.5, what="the temp change")
                await wait_until(lambda: run.latest["flag"][0] == 0.0, what="the flag change")
                assert run.latest["temp"][3] == int(src.timestamp()) * 10**9 + 678_000_000
                assert run.error is None
            finally:
                await run.stop()


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_bad_status_and_missing_node(mode: str) -> None:
    async with opcua_server() as srv:
        tags = [
            otag("num", f"ns={srv.ns};i=5"),
            otag("temp", f"ns={srv.ns};s=temp"),
            otag("ghost", f"ns={srv.ns};s=no_such_node"),
            otag("elsewhere", "nsu=urn:not:there;i=1"),
        ]
        dev = odevice(srv.endpoint, tags, mode=mode)
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: len(run.latest) == 4, what="a sample of every tag")
                assert run.latest["ghost"][:2] == (pytest.approx(math.nan, nan_ok=True), CFG)
                assert run.latest["elsewhere"][:2] == (pytest.approx(math.nan, nan_ok=True), CFG)
                assert "BadNodeIdUnknown" in c.tag_errors[f"{tags[2].path}"]
                assert "urn:not:there" in c.tag_errors[f"{tags[3].path}"]
                assert run.latest["temp"][:2] == (20.0, G)
                # a bad status: BAD and NaN, never the last good value
                await srv.set("num", 9.0, status=ua.StatusCodes.BadSensorFailure)
                await wait_until(lambda: run.latest["num"][1] == B, what="num to turn bad")
                assert math.isnan(run.latest["num"][0])
                await srv.set("num", 4.0, status=ua.StatusCodes.UncertainLastUsableValue)
                await wait_until(lambda: run.latest["num"][1] == U, what="num to turn uncertain")
                assert run.latest["num"][0] == 4.0
                await srv.set("temp", 22.0)
                await wait_until(lambda: run.latest["temp"][0] == 22.0, what="temp to keep going")
                assert run.latest["temp"][1] == G
                assert run.error is None
            finally:
                await run.stop()


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_server_stop_raises_connect_error(mode: str) -> None:
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp")], mode=mode)
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: "temp" in run.latest, what="a first sample")
                await srv.server.stop()
                await wait_until(lambda: run.error is not None, what="batches() to fail")
                assert isinstance(run.error, ConnectError), repr(run.error)
                assert dev.name in str(run.error)
            finally:
                await run.stop()
            await srv.server.start()  # so that the fixture's stop has something to stop


async def test_split_over_subscriptions() -> None:
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, all_forms(srv.ns), max_items_per_subscription=4)
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: len(run.latest) == 6, what="a sample of every tag")
                assert len(c._subs) == 2
            finally:
                await run.stop()


async def test_unreachable_endpoint() -> None:
    from tests.helpers import free_port

    dev = odevice(f"opc.tcp://127.0.0.1:{free_port()}/", [otag("t", "ns=2;i=1")])
    with pytest.raises(ConnectError, match=r"ua1: cannot connect to opc\.tcp://127\.0\.0\.1"):
        async with OpcUaCollector(dev, ids_for(dev)):
            pass


@pytest.mark.parametrize(
    ("user", "password", "ok"), [("op", "secret", True), ("op", "wrong", False), ("eve", "x", False)]
)
async def test_username_auth(user: str, password: str, ok: bool) -> None:
    async with opcua_server(users=True) as srv:
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp")],
                      username=user, password=password)
        if ok:
            async with OpcUaCollector(dev, ids_for(dev)) as c:
                assert c.tag_errors == {}
        else:
            with pytest.raises(ConnectError, match=rf"rejected user '{user}'.*check username and password"):
                async with OpcUaCollector(dev, ids_for(dev)):
                    pass


async def test_secure_channel_trusts_only_listed_server_certificates(tmp_path: Path) -> None:
    server_pki = await make_cert(tmp_path, "server", "urn:tierproof:test:server", server=True)
    other_cert, _ = await make_cert(tmp_path, "other", "urn:tierproof:test:other", server=True)
    client_cert, client_key = await make_cert(tmp_path, "gw", "urn:tierproof:test:gateway", server=False)
    async with opcua_server(pki=server_pki) as srv:
        secure = {
            "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
            "certificate": str(client_cert), "private_key": str(client_key),
        }
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp")], mode="poll",
                      trusted_certificates=[str(server_pki[0])], **secure)
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: "temp" in run.latest, what="a sample over the secure channel")
                assert run.latest["temp"][:2] == (20.0, G)
            finally:
                await run.stop()

        untrusting = odevice(srv.endpoint, dev.tags, mode="poll",
                             trusted_certificates=[str(other_cert)], **secure)
        thumb = thumbprint(x509.load_der_x509_certificate(server_pki[0].read_bytes()))
        with pytest.raises(ConnectError) as ei:
            async with OpcUaCollector(untrusting, ids):
                pass
        msg = str(ei.value)
        assert thumb in msg and "is not trusted" in msg and "trusted_certificates" in msg, msg


async def test_absolute_deadband_reaches_the_server() -> None:
    async with opcua_server() as srv:
        dev = odevice(srv.endpoint, [otag("temp", f"ns={srv.ns};s=temp")],
                      deadband={"type": "absolute", "value": 1.0})
        ids = ids_for(dev)
        async with OpcUaCollector(dev, ids) as c:
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: "temp" in run.latest, what="the initial value")
                await srv.set("temp", 20.5)  # within the deadband: not reported
                await srv.set("temp", 25.0)
                await wait_until(lambda: run.latest["temp"][0] == 25.0, what="the large change")
                assert [s[0] for _, s in run.history] == [20.0, 25.0]
            finally:
                await run.stop()
