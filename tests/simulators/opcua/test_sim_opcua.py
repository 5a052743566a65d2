"""The plant over a real OPC UA socket, read with asyncua's Client."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, Node, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import (
    SecurityPolicy,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from config.signals import ChannelMode, MachineState, OperationMode, Role
from simulators import MachineValues, Plant, datetime_ns
from simulators.opcua import (
    NAMESPACE_URI,
    OPCUA_SIGNALS,
    SECURITY_ALL,
    OpcUaPlantServer,
    serve_opcua,
)
from tests.helpers import Clock, wait_until

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
INTERVAL_S = 0.05
USERS = {"operator": "s3cret"}
CLIENT_URI = "urn:tierproof:test:client"

# The documented signals, written out independently of the code: browse path -> (type, value)
EXPECTED: dict[str, tuple[ua.VariantType, str]] = {
    "MachineryItemState/CurrentState": (ua.VariantType.Int32, "state"),
    "MachineryOperationMode/CurrentState": (ua.VariantType.Int32, "mode"),
    "ChannelMode": (ua.VariantType.Int32, "channel_mode"),
    "StopReason": (ua.VariantType.Int32, "stop_reason"),
    "TotalCount": (ua.VariantType.UInt32, "total"),
    "GoodCount": (ua.VariantType.UInt32, "good"),
    "RejectCount": (ua.VariantType.UInt32, "reject"),
    "EnergyKwh": (ua.VariantType.Double, "energy_kwh"),
    "PowerKw": (ua.VariantType.Double, "power_kw"),
    "SpeedRpm": (ua.VariantType.Double, "speed_rpm"),
    "TemperatureC": (ua.VariantType.Double, "temperature_c"),
}


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one server certificate for the module: generating an RSA key costs about a second
    return tmp_path_factory.mktemp("opcua-certs")


@pytest.fixture
async def served(plant: Plant, clock: Clock, cert_dir: Path) -> AsyncIterator[OpcUaPlantServer]:
    async with serve_opcua(plant, list(plant.models), clock=clock, interval_s=INTERVAL_S,
                           users=USERS, cert_dir=cert_dir) as s:
        yield s


async def settle(server: OpcUaPlantServer, clock: Clock) -> None:
    """Until the update loop has shown the plant at the clock's instant (waited for, not
    slept: a loaded machine may run the loop later than a few intervals on)."""
    await wait_until(lambda: (server.last_refresh_ns or 0) >= clock.t, 60,
                     "a refresh at the clock's instant")


def expected_value(v: MachineValues, signal: str) -> int | float:
    return float(getattr(v, EXPECTED[signal][1]))


async def read(client: Client, server: OpcUaPlantServer, keys: list[str]) -> list[ua.DataValue]:
    nodes = [client.get_node(server.node_ids[k]) for k in keys]
    return await client.read_attributes(nodes)


# --------------------------------------------------------------------------- address space


def test_signal_table_is_documented() -> None:
    assert set(OPCUA_SIGNALS) == set(EXPECTED)
    assert OPCUA_SIGNALS["MachineryItemState/CurrentState"] is Role.STATE
    assert OPCUA_SIGNALS["EnergyKwh"] is Role.ENERGY_KWH


async def test_browse_finds_every_machine(served: OpcUaPlantServer, plant: Plant) -> None:
    async with Client(served.endpoint) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        assert idx == served.namespace_index
        machines = await client.nodes.objects.get_child(f"{idx}:Machines")
        children = await machines.get_children()
        names: dict[str, Node] = {str((await c.read_browse_name()).Name): c for c in children}
        assert set(names) == {p.rsplit("/", 1)[-1] for p in plant.models}
        lathe = names["lathe-01"]
        assert lathe.nodeid.to_string() == f"ns={idx};s=demo/machining/line1/lathe-01"
        state = await lathe.get_child([f"{idx}:MachineryItemState", f"{idx}:CurrentState"])
        assert state.nodeid.to_string() == (
            f"ns={idx};s=demo/machining/line1/lathe-01/MachineryItemState/CurrentState")
        asset_id = await lathe.get_child([f"{idx}:Identification", f"{idx}:AssetId"])
        assert await asset_id.read_value() == "demo/machining/line1/lathe-01"
        # every node id is ns=<idx>;s=<asset path>/<signal>, and browsing reaches it
        for asset in plant.models:
            machine = names[asset.rsplit("/", 1)[-1]]
            for signal, (vtype, _) in EXPECTED.items():
                key = f"{asset}/{signal}"
                assert served.node_ids[key] == f"ns={idx};s={key}"
                node = await machine.get_child([f"{idx}:{part}" for part in signal.split("/")])
                assert node.nodeid == ua.NodeId.from_string(served.node_ids[key])
                assert await node.read_data_type_as_variant_type() == vtype


async def test_values_match_the_plant(served: OpcUaPlantServer, plant: Plant, clock: Clock) -> None:
    keys = [f"{a}/{s}" for a in plant.models for s in EXPECTED]
    async with Client(served.endpoint) as client:
        for step_s in (0, 3600, 2 * 86400 + 17):
            clock.t = datetime_ns(NOW) + step_s * 1_000_000_000
            await settle(served, clock)
            truth = plant.values_at(clock.t)
            got = await read(client, served, keys)
            for key, dv in zip(keys, got, strict=True):
                parts = key.split("/", 4)  # site/area/line/asset/signal
                v, signal = truth["/".join(parts[:4])], parts[4]
                assert dv.StatusCode is not None and dv.StatusCode.is_good(), key
                assert dv.Value is not None
                assert dv.Value.VariantType == EXPECTED[signal][0], key
                assert float(dv.Value.Value) == pytest.approx(expected_value(v, signal), rel=1e-12), key
                assert dv.SourceTimestamp is not None
                # written when the value last changed, at a simulated instant
                assert datetime_ns(dv.SourceTimestamp) <= clock.t
        # canonical codes, not native ones
        states = {truth[a].state for a in plant.models}
        assert states <= {int(m) for m in MachineState}
        assert {truth[a].mode for a in plant.models} <= {int(m) for m in OperationMode}
        assert {truth[a].channel_mode for a in plant.models} <= {int(m) for m in ChannelMode}


async def test_live_clock_values_within_one_interval(plant: Plant) -> None:
    async with serve_opcua(plant, ["demo/machining/line1/mill-01"], interval_s=0.2,
                           security=[ua.SecurityPolicyType.NoSecurity]) as s:
        key = "demo/machining/line1/mill-01/EnergyKwh"
        async with Client(s.endpoint) as client:
            # the instant of the server's latest refresh, not "now - 250 ms": on a loaded
            # machine a refresh may come late, and its value is still the clock's at that instant
            shown = s.last_refresh_ns
            value = await client.get_node(s.node_ids[key]).read_value()
            after = time.time_ns()
        assert shown is not None
        lo = plant.values_at(shown)["demo/machining/line1/mill-01"].energy_kwh
        hi = plant.values_at(after)["demo/machining/line1/mill-01"].energy_kwh
        assert lo <= value <= hi


async def test_subscription_sees_changes_with_source_time(served: OpcUaPlantServer, plant: Plant,
                                                          clock: Clock) -> None:
    asset = "demo/machining/line1/lathe-01"
    key = f"{asset}/TotalCount"
    got: asyncio.Queue[ua.DataValue] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node: Node, val: object, data: object) -> None:
            got.put_nowait(data.monitored_item.Value)  # type: ignore[attr-defined]

    async with Client(served.endpoint) as client:
        sub = await client.create_subscription(20, Handler())
        await sub.subscribe_data_change(client.get_node(served.node_ids[key]))
        first = await asyncio.wait_for(got.get(), 30)
        assert first.Value is not None
        assert first.Value.Value == plant.values_at(clock.t)[asset].total
        clock.t += 3600 * 1_000_000_000  # an hour later the lathe has made parts
        change = await asyncio.wait_for(got.get(), 30)
        assert change.Value is not None and change.SourceTimestamp is not None
        assert change.Value.Value == plant.values_at(clock.t)[asset].total != first.Value.Value
        assert datetime_ns(change.SourceTimestamp) // 1000 == clock.t // 1000
        await sub.delete()


# --------------------------------------------------------------------------- security


async def test_endpoints_and_certificate(served: OpcUaPlantServer, cert_dir: Path) -> None:
    assert served.server_certificate_path == cert_dir / "server_cert.der"
    der = served.server_certificate_path.read_bytes()
    assert served.server_certificate_thumbprint == ":".join(
        hashlib.sha1(der).hexdigest()[i:i + 2] for i in range(0, 40, 2)).upper()
    async with Client(served.endpoint) as client:
        endpoints = await client.get_endpoints()
    offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
    assert offered == {
        ("None", ua.MessageSecurityMode.None_),
        ("Basic256Sha256", ua.MessageSecurityMode.Sign),
        ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.Sign),
        ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt),
    }
    assert len(SECURITY_ALL) == 5
    secure = [e for e in endpoints if e.SecurityMode != ua.MessageSecurityMode.None_]
    assert all(e.ServerCertificate == der for e in secure)


async def test_certificate_is_reused(served: OpcUaPlantServer, plant: Plant, cert_dir: Path) -> None:
    async with serve_opcua(plant, ["demo/machining/line1/mill-01"], cert_dir=cert_dir) as again:
        assert again.port != served.port
        assert again.server_certificate_path == served.server_certificate_path
        assert again.server_certificate_thumbprint == served.server_certificate_thumbprint


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("client-cert")
    key, cert = d / "client_key.pem", d / "client_cert.der"
    asyncio.run(setup_self_signed_certificate(
        key, cert, CLIENT_URI, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"organizationName": "tests"}))
    return cert, key


@pytest.mark.parametrize(("policy", "mode"), [
    (SecurityPolicyBasic256Sha256, ua.MessageSecurityMode.SignAndEncrypt),
    (SecurityPolicyAes256Sha256RsaPss, ua.MessageSecurityMode.Sign),
])
async def test_secure_channel_with_user(served: OpcUaPlantServer, plant: Plant, clock: Clock,
                                        client_cert: tuple[Path, Path], policy: type[SecurityPolicy],
                                        mode: ua.MessageSecurityMode) -> None:
    cert, key = client_cert
    client = Client(served.endpoint)
    client.application_uri = CLIENT_URI
    client.set_user("operator")
    client.set_password(USERS["operator"])
    assert served.server_certificate_path is not None
    await client.set_security(policy, str(cert), str(key),
                              server_certificate=str(served.server_certificate_path), mode=mode)
    async with client:
        key_ = "demo/machining/line2/press-01/GoodCount"
        value = await client.get_node(served.node_ids[key_]).read_value()
        assert value == plant.values_at(clock.t)["demo/machining/line2/press-01"].good


@pytest.mark.parametrize(("user", "password"), [("operator", "wrong"), ("intruder", "s3cret")])
async def test_bad_user_is_refused(served: OpcUaPlantServer, user: str, password: str) -> None:
    client = Client(served.endpoint)
    client.set_user(user)
    client.set_password(password)
    with pytest.raises(ua.UaStatusCodeError) as err:
        await client.connect()
    assert err.value.code == ua.StatusCodes.BadUserAccessDenied
    client.disconnect_socket()


async def test_anonymous_can_be_refused(plant: Plant) -> None:
    async with serve_opcua(plant, ["demo/machining/line1/mill-01"], anonymous=False, users=USERS,
                           security=[ua.SecurityPolicyType.NoSecurity]) as s:
        assert s.server_certificate_path is None
        client = Client(s.endpoint)
        with pytest.raises(ua.UaStatusCodeError) as err:
            await client.connect()
        assert err.value.code == ua.StatusCodes.BadIdentityTokenRejected
        client.disconnect_socket()
        client = Client(s.endpoint)
        client.set_user("operator")
        client.set_password(USERS["operator"])
        async with client:
            node = client.get_node(s.node_ids["demo/machining/line1/mill-01/TotalCount"])
            assert await node.read_value() >= 0


# --------------------------------------------------------------------------- faults


async def test_stop_and_restart_on_the_same_port(served: OpcUaPlantServer, plant: Plant,
                                                 clock: Clock) -> None:
    key = "demo/machining/line1/mill-02/TotalCount"
    port = served.port
    client = Client(served.endpoint, timeout=2)
    async with client:
        await client.get_node(served.node_ids[key]).read_value()
        await served.stop()
        assert not served.running
        with pytest.raises((ConnectionError, asyncio.TimeoutError, ua.UaError)):
            await client.get_node(served.node_ids[key]).read_value()
    refused = Client(served.endpoint, timeout=2)
    with pytest.raises(OSError):
        await refused.connect()
    clock.t += 600 * 1_000_000_000  # time goes on while the network is down
    await served.start()
    assert served.running and served.port == port
    await settle(served, clock)
    async with Client(served.endpoint) as client:
        value = await client.get_node(served.node_ids[key]).read_value()
        assert value == plant.values_at(clock.t)["demo/machining/line1/mill-02"].total


async def test_set_bad_reports_bad_status(served: OpcUaPlantServer, plant: Plant, clock: Clock) -> None:
    key = "demo/machining/line2/robot-01/EnergyKwh"
    async with Client(served.endpoint) as client:
        node = client.get_node(served.node_ids[key])
        await served.set_bad(key, ua.StatusCodes.BadSensorFailure)
        clock.t += 60 * 1_000_000_000
        await settle(served, clock)  # updates do not overwrite a bad node
        dv = await node.read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode is not None and dv.StatusCode.value == ua.StatusCodes.BadSensorFailure
        with pytest.raises(ua.UaStatusCodeError):
            await node.read_value()
        await served.clear_bad(key)
        dv = await node.read_data_value()
        assert dv.StatusCode is not None and dv.StatusCode.is_good()
        assert dv.Value is not None
        assert dv.Value.Value == plant.values_at(clock.t)["demo/machining/line2/robot-01"].energy_kwh
    with pytest.raises(ValueError, match="not a bad status"):
        await served.set_bad(key, ua.StatusCodes.Good)


async def test_large_address_space(plant: Plant) -> None:
    # how long 5,000 variables take to start is a benchmark's question (bench_opcua), not a test's
    async with serve_opcua(plant, ["demo/machining/line1/lathe-01"], extra_variables=5000,
                           interval_s=0.2, security=[ua.SecurityPolicyType.NoSecurity]) as s:
        assert s.node_ids["bulk/4999"] == f"ns={s.namespace_index};s=bulk/4999"
        async with Client(s.endpoint) as client:
            nodes = [client.get_node(s.node_ids[f"bulk/{i}"]) for i in (0, 2500, 4999)]
            first = await client.read_values(nodes)
            # every tick raises them all; wait for a tick (a loaded machine may delay it)
            deadline = time.monotonic() + 60
            while True:
                second = await client.read_values(nodes)
                if all(b > a for a, b in zip(first, second, strict=True)):
                    break
                assert time.monotonic() < deadline, (first, second)
                await asyncio.sleep(0.1)
