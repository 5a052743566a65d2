"""A minimal in-process asyncua server and builders for the OPC UA collector tests.

Not the simulator (simulators/opcua/server.py): a handful of variables, one of each node id
form, that a test changes as it likes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

from collector.opcua import OpcUaCollector
from config.opcua import OpcUaDevice, OpcUaTag
from store.batch import Batch
from tests.helpers import free_port

ASSET = "site/area/line/m1"
URI = "urn:tierproof:test"
GUID = uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")
BYTES = b"\x01\x02tp"

Sample = tuple[float, int, object, int]  # value, quality, text, ts_ns


class Users(UserManager):
    """One user: op / secret."""

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            return User(role=UserRole.User)  # anonymous
        if username == "op" and password == "secret":
            return User(role=UserRole.User)
        return None


@dataclass
class TestServer:
    server: Server
    port: int
    ns: int
    vars: dict[str, Node] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/tp/"

    async def set(self, name: str, value: Any, *, status: int = ua.StatusCodes.Good,
                  source_ts: datetime | None = None, variant: ua.VariantType | None = None) -> None:
        node = self.vars[name]
        vt = variant or (await node.read_data_type_as_variant_type())
        dv = ua.DataValue(
            ua.Variant(value, vt), StatusCode=ua.StatusCode(status),
            SourceTimestamp=source_ts or datetime.now(UTC), ServerTimestamp=datetime.now(UTC),
        )
        await node.write_value(dv)


async def make_cert(directory: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and its key (PEM) for 127.0.0.1."""
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert, key = directory / f"{name}-cert.der", directory / f"{name}-key.pem"
    await setup_self_signed_certificate(key, cert, uri, "127.0.0.1", use, {"commonName": name})
    return cert, key


@asynccontextmanager
async def opcua_server(
    users: bool = False, pki: tuple[Path, Path] | None = None
) -> AsyncIterator[TestServer]:
    """A running server on a free 127.0.0.1 port with variables of every node id form
    (``pki``: its certificate and key, offering Basic256Sha256 SignAndEncrypt too):

    num  ns=<ns>;i=5       float 1.5
    temp ns=<ns>;s=temp    float 20.0
    guid ns=<ns>;g=<GUID>  int32 7
    blob ns=<ns>;b=<BYTES> float 3.0
    flag ns=<ns>;s=flag    bool True
    text ns=<ns>;s=recipe  string "A1"
    """
    server = Server(user_manager=Users()) if users else Server()
    await server.init()
    port = free_port()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/tp/")
    if pki is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    else:
        await server.load_certificate(str(pki[0]))
        await server.load_private_key(str(pki[1]))
        server.set_security_policy([
            ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ])
    ns = await server.register_namespace(URI)
    obj = await server.nodes.objects.add_object(ua.NodeId("m1", ns), "m1")
    ts = TestServer(server, port, ns)
    specs: list[tuple[str, ua.NodeId, Any, ua.VariantType]] = [
        ("num", ua.NodeId(5, ns), 1.5, ua.VariantType.Double),
        ("temp", ua.NodeId("temp", ns), 20.0, ua.VariantType.Double),
        ("guid", ua.NodeId(GUID, ns, ua.NodeIdType.Guid), 7, ua.VariantType.Int32),
        ("blob", ua.NodeId(BYTES, ns, ua.NodeIdType.ByteString), 3.0, ua.VariantType.Double),
        ("flag", ua.NodeId("flag", ns), True, ua.VariantType.Boolean),
        ("text", ua.NodeId("recipe", ns), "A1", ua.VariantType.String),
    ]
    for name, nid, value, vt in specs:
        ts.vars[name] = await obj.add_variable(nid, name, ua.Variant(value, vt))
    await server.start()
    try:
        yield ts
    finally:
        await server.stop()


def otag(name: str, node_id: str, **kw: Any) -> OpcUaTag:
    kw.setdefault("asset", ASSET)
    return OpcUaTag(name=name, node_id=node_id, **kw)


def odevice(endpoint: str, tags: list[OpcUaTag], name: str = "ua1", **kw: Any) -> OpcUaDevice:
    """A device with short intervals and timeouts for tests."""
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("publishing_interval_ms", 50)
    kw.setdefault("poll_interval_s", 0.1)
    return OpcUaDevice(protocol="opcua", name=name, endpoint=endpoint, tags=tags, **kw)


def ids_for(device: OpcUaDevice) -> dict[str, int]:
    return {t.path: 100 + i for i, t in enumerate(device.tags)}


def samples(batch: Batch, device: OpcUaDevice, ids: dict[str, int]) -> list[tuple[str, Sample]]:
    """(tag name, (value, quality, text, ts_ns)) for every row of a batch."""
    name_of = {ids[t.path]: t.name for t in device.tags}
    out = []
    for k in range(len(batch)):
        text = batch.text[k] if batch.text is not None else None
        out.append((name_of[int(batch.tag_id[k])],
                    (float(batch.value[k]), int(batch.quality[k]), text, int(batch.ts_ns[k]))))
    return out


class Collected:
    """Runs a collector's batches() in a task and keeps the latest sample of each tag."""

    def __init__(self, collector: OpcUaCollector, device: OpcUaDevice, ids: dict[str, int]) -> None:
        self.collector, self.device, self.ids = collector, device, ids
        self.latest: dict[str, Sample] = {}
        self.history: list[tuple[str, Sample]] = []
        self.batches = 0
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            async for b in self.collector.batches():
                self.batches += 1
                for name, s in samples(b, self.device, self.ids):
                    self.latest[name] = s
                    self.history.append((name, s))
        except BaseException as exc:
            self.error = exc
            raise

    def start(self) -> Collected:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
