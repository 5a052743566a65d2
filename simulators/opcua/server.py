"""The plant over OPC UA: an asyncua server with one OPC 40001-1-style machine per asset.

Address space (namespace :data:`NAMESPACE_URI`, string node ids that never change)::

    Objects/Machines                                  ns=<i>;s=Machines
      <asset name>                                    ns=<i>;s=<asset path>
        Identification/AssetId, /Name                 ns=<i>;s=<asset path>/Identification/...
        MachineryItemState/CurrentState   Int32       canonical MachineState code
        MachineryOperationMode/CurrentState Int32     canonical OperationMode code
        ChannelMode                       Int32       canonical ChannelMode code
        StopReason                        Int32       the PLC's stop reason code (0: none)
        TotalCount, GoodCount, RejectCount UInt32     cumulative, reset with the plant
        EnergyKwh, PowerKw, SpeedRpm, TemperatureC  Double
    Objects/Bulk/<first i of group>/<i>  Double      ns=<i>;s=bulk/<i>  (``extra_variables``)

Every signal's node id is ``ns=<i>;s=<asset path>/<signal>`` with ``<signal>`` one of
:data:`OPCUA_SIGNALS`.

Each machine object is also an event notifier: when a stop piece with a reason code begins
(the reason, state or mode changes to a stop with a code, from the ground-truth timeline),
the machine emits a ``MachineStopEventType`` event (a BaseEventType subtype with a
``ReasonCode`` Int32 field) whose Time is the exact instant the piece began, SourceName the
machine's name, Message ``"<name> stopped: <reason id>"`` (:func:`stop_message`) and
Severity 500. A stop without a code emits nothing, like a PLC that shows none.

Values come from the same :class:`Plant` as the Modbus servers, so the
ground truth is shared; each value carries the simulated instant as its SourceTimestamp and is
written only when it changes, so subscriptions see every change and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
from asyncua import Node, Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from config.signals import Role

from ..model import NATIVE_CODES
from ..plant import MachineValues, Plant
from ..ports import free_port
from ..ticker import Ticker

__all__ = [
    "EVENT_SEVERITY",
    "NAMESPACE_URI",
    "OPCUA_SIGNALS",
    "SECURITY_ALL",
    "OpcUaPlantServer",
    "SimUserManager",
    "serve_opcua",
    "stop_message",
]

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:tierproof:simulator"
APPLICATION_URI = "urn:tierproof:simulator:server"
ENDPOINT_PATH = "/tierproof/simulator"
_BULK_GROUP = 250

#: every endpoint the simulator offers by default: open, and two policies in both modes
SECURITY_ALL: tuple[ua.SecurityPolicyType, ...] = (
    ua.SecurityPolicyType.NoSecurity,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
)


@dataclass(frozen=True, slots=True)
class _Signal:
    variant: ua.VariantType
    role: Role
    get: Callable[[MachineValues], int | float]


#: signal (browse path below the machine) -> how it is typed, what it means, where it comes from
_SIGNALS: dict[str, _Signal] = {
    "MachineryItemState/CurrentState": _Signal(ua.VariantType.Int32, Role.STATE, lambda v: v.state),
    "MachineryOperationMode/CurrentState": _Signal(ua.VariantType.Int32, Role.MODE, lambda v: v.mode),
    "ChannelMode": _Signal(ua.VariantType.Int32, Role.CHANNEL_MODE, lambda v: v.channel_mode),
    "StopReason": _Signal(ua.VariantType.Int32, Role.STOP_REASON, lambda v: v.stop_reason),
    "TotalCount": _Signal(ua.VariantType.UInt32, Role.TOTAL_COUNT, lambda v: v.total % 2**32),
    "GoodCount": _Signal(ua.VariantType.UInt32, Role.GOOD_COUNT, lambda v: v.good % 2**32),
    "RejectCount": _Signal(ua.VariantType.UInt32, Role.REJECT_COUNT, lambda v: v.reject % 2**32),
    "EnergyKwh": _Signal(ua.VariantType.Double, Role.ENERGY_KWH, lambda v: v.energy_kwh),
    "PowerKw": _Signal(ua.VariantType.Double, Role.ANALOG, lambda v: v.power_kw),
    "SpeedRpm": _Signal(ua.VariantType.Double, Role.ANALOG, lambda v: v.speed_rpm),
    "TemperatureC": _Signal(ua.VariantType.Double, Role.ANALOG, lambda v: v.temperature_c),
}

#: signal name -> role, for writing collector configuration against the simulator
OPCUA_SIGNALS: dict[str, Role] = {name: s.role for name, s in _SIGNALS.items()}


#: refreshes further apart than this (simulated ns) always look for stop pieces between them
_EVENT_SCAN_NS = 2_000_000_000
#: the Severity of the simulator's stop events
EVENT_SEVERITY = 500
_REASON_IDS = {code: rid for rid, code in NATIVE_CODES["stop_reason"].items()}


def stop_message(name: str, reason_code: int) -> str:
    """The Message of a stop event: ``"<machine name> stopped: <reason id>"``."""
    return f"{name} stopped: {_REASON_IDS.get(reason_code, str(reason_code))}"


def _ts(t_ns: int) -> ua.DateTime:
    return ua.DateTime.fromtimestamp(t_ns / 1e9, UTC)


def _now() -> ua.DateTime:
    return ua.DateTime.now(UTC)


def _nid(key: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(key), ua.Int16(idx))


def _variable_item(parent: ua.NodeId, node: ua.NodeId, name: ua.QualifiedName) -> ua.AddNodesItem:
    """A read-only scalar Double variable, as ``Node.add_variable`` would make it."""
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name.Name)
    attrs.Description = ua.LocalizedText(name.Name)
    attrs.DataType = ua.NodeId(ua.Int32(ua.ObjectIds.Double))
    attrs.Value = ua.Variant(0.0, ua.VariantType.Double)
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = node
    item.BrowseName = name
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HasComponent))
    item.TypeDefinition = ua.NodeId(ua.Int32(ua.ObjectIds.BaseDataVariableType))
    item.NodeAttributes = attrs
    return item


class SimUserManager(UserManager):
    """Accepts the configured username/password pairs (and anonymous if allowed)."""

    def __init__(self, users: Mapping[str, str], anonymous: bool) -> None:
        self.users = dict(users)
        self.anonymous = anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            # certificate identity tokens are not offered (the session refuses them before
            # asking here), so this is an anonymous session; ``certificate`` is the secure
            # channel's client certificate, not an identity
            return User(role=UserRole.User) if self.anonymous else None
        expected = self.users.get(username)
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


class OpcUaPlantServer:
    """A running simulator (what :func:`serve_opcua` yields)."""

    def __init__(self, server: Server, plant: Plant, host: str, port: int, namespace_index: int,
                 cert_path: Path | None, clock: Callable[[], int]) -> None:
        self.server = server
        self.plant = plant
        self.host = host
        self.port = port
        self.namespace_index = namespace_index
        self.namespace_uri = NAMESPACE_URI
        self.endpoint = f"opc.tcp://{host}:{port}{ENDPOINT_PATH}"
        self.server_certificate_path = cert_path
        # SHA-1 of the DER, upper-case hex, colon-separated: the form collector.opcua and
        # OPC UA tools show
        self.server_certificate_thumbprint: str | None = (
            hashlib.sha1(cert_path.read_bytes()).digest().hex(":").upper() if cert_path else None
        )
        #: f"{asset}/{signal}" (and "bulk/<i>") -> "ns=<i>;s=..."
        self.node_ids: dict[str, str] = {}
        self.clock = clock
        self.last_refresh_ns: int | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._variant: dict[str, ua.VariantType] = {}
        self._last: dict[str, int | float] = {}
        self._bad: dict[str, int] = {}
        self._bulk: list[str] = []
        self._tick = 0
        self._running = False
        #: asset -> the stop event generator of its machine (events=True)
        self._events: dict[str, Any] = {}
        #: stop events emitted (the simulator's own count, for tests)
        self.events_emitted = 0
        self._event_sig: dict[str, tuple[int, int, int]] = {}

    # ------------------------------------------------------------------ building

    def _register(self, key: str, node: ua.NodeId, variant: ua.VariantType) -> None:
        self.node_ids[key] = node.to_string()
        self._nodes[key] = node
        self._variant[key] = variant

    async def _build(self, assets: Sequence[str], extra_variables: int, events: bool = True) -> None:
        idx = self.namespace_index
        objects = self.server.nodes.objects
        machines = await objects.add_folder(_nid("Machines", idx), ua.QualifiedName("Machines", idx))
        values = self.plant.values_at(self.clock())
        stop_type = None
        if events:
            stop_type = await self.server.create_custom_event_type(
                idx, "MachineStopEventType", ua.ObjectIds.BaseEventType,
                [("ReasonCode", ua.VariantType.Int32)])
        for asset in assets:
            v = values[asset]  # KeyError names an asset the plant does not have
            machine = await machines.add_object(_nid(asset, idx), ua.QualifiedName(v.name, idx))
            if stop_type is not None:
                gen = await self.server.get_event_generator(stop_type, machine.nodeid)
                gen.event.Severity = EVENT_SEVERITY
                self._events[asset] = gen
            ident = await machine.add_object(_nid(f"{asset}/Identification", idx),
                                             ua.QualifiedName("Identification", idx))
            for prop, text in (("AssetId", asset), ("Name", v.name)):
                await ident.add_property(_nid(f"{asset}/Identification/{prop}", idx),
                                         ua.QualifiedName(prop, idx), text, ua.VariantType.String)
            groups: dict[str, Node] = {}
            for signal, spec in _SIGNALS.items():
                parent = machine
                if "/" in signal:
                    group = signal.split("/", 1)[0]
                    if group not in groups:
                        groups[group] = await machine.add_object(
                            _nid(f"{asset}/{group}", idx), ua.QualifiedName(group, idx))
                    parent = groups[group]
                key = f"{asset}/{signal}"
                name = signal.rsplit("/", 1)[-1]
                var = await parent.add_variable(_nid(key, idx), ua.QualifiedName(name, idx),
                                                spec.get(v), spec.variant)
                self._register(key, var.nodeid, spec.variant)
        if extra_variables:
            bulk = await objects.add_folder(_nid("bulk", idx), ua.QualifiedName("Bulk", idx))
            # asyncua checks a new node against all its siblings (quadratic), so the bulk
            # variables sit in folders of _BULK_GROUP; their node ids do not show the folder
            items: list[ua.AddNodesItem] = []
            for g0 in range(0, extra_variables, _BULK_GROUP):
                folder = await bulk.add_folder(_nid(f"bulk/group/{g0}", idx),
                                               ua.QualifiedName(str(g0), idx))
                items += [_variable_item(folder.nodeid, _nid(f"bulk/{i}", idx),
                                         ua.QualifiedName(str(i), idx))
                          for i in range(g0, min(g0 + _BULK_GROUP, extra_variables))]
            results = await self.server.iserver.isession.add_nodes(items)
            for i, (item, res) in enumerate(zip(items, results, strict=True)):
                res.StatusCode.check()
                self._register(f"bulk/{i}", item.RequestedNewNodeId, ua.VariantType.Double)
                self._bulk.append(f"bulk/{i}")

    # ------------------------------------------------------------------ values

    async def _write(self, key: str, value: int | float, t_ns: int) -> None:
        dv = ua.DataValue(ua.Variant(value, self._variant[key]), SourceTimestamp=_ts(t_ns),
                          ServerTimestamp=_now())
        status = await self.server.iserver.aspace.write_attribute_value(
            self._nodes[key], ua.AttributeIds.Value, dv)
        if not status.is_good():
            raise RuntimeError(f"writing {key} = {value!r} failed: {status}")
        self._last[key] = value

    async def _emit_stops(self, asset: str, a: int, b: int) -> None:
        """A stop event for each stop piece with a reason code beginning in (a, b]."""
        tl = self.plant.timeline(asset, a, b + 1)
        st, md, rs = tl.state.astype(np.int64), tl.mode.astype(np.int64), tl.reason.astype(np.int64)
        change = (rs[1:] != rs[:-1]) | (st[1:] != st[:-1]) | (md[1:] != md[:-1])
        gen = self._events[asset]
        name = asset.rsplit("/", 1)[-1]
        for j in (np.flatnonzero(change & (rs[1:] != 0)) + 1).tolist():
            gen.event.ReasonCode = ua.Variant(int(rs[j]), ua.VariantType.Int32)
            await gen.trigger(time_attr=_ts(int(tl.seg_ns[j])), message=stop_message(name, int(rs[j])))
            self.events_emitted += 1

    async def refresh(self, t_ns: int | None = None) -> None:
        """Show every machine as it is at ``t_ns`` (default: the clock); write changes only;
        emit the stop events of (the last refresh, ``t_ns``]."""
        t = self.clock() if t_ns is None else t_ns
        last = self.last_refresh_ns
        values = self.plant.values_at(t)
        if last is not None and t > last:
            for asset in self._events:
                v = values[asset]
                sig = (v.state, v.mode, v.stop_reason)
                # in real time (refreshes a fraction of a second apart) a stop piece shows in
                # the values, and the timeline is read only when they change; a clock that
                # jumps further may hide whole pieces between two refreshes: read it always
                if t - last > _EVENT_SCAN_NS or sig != self._event_sig.get(asset):
                    await self._emit_stops(asset, last, t)
                self._event_sig[asset] = sig
        for asset, v in values.items():
            for signal, spec in _SIGNALS.items():
                key = f"{asset}/{signal}"
                if key not in self._nodes or key in self._bad:
                    continue
                value = spec.get(v)
                if self._last.get(key) != value:
                    await self._write(key, value, t)
        self._tick += 1
        for i, key in enumerate(self._bulk):
            if key not in self._bad:
                # every bulk value changes on every tick, whatever the clock does
                await self._write(key, self._tick + i * 1e-3, t)
        self.last_refresh_ns = t

    async def set_bad(self, key: str, status: int = ua.StatusCodes.BadSensorFailure) -> None:
        """Make the node of ``key`` ("<asset>/<signal>" or "bulk/<i>") report ``status`` and
        no value until :meth:`clear_bad`."""
        if not ua.StatusCode(ua.UInt32(status)).is_bad():
            raise ValueError(f"{status:#x} is not a bad status code")
        self._bad[key] = status
        dv = ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=ua.StatusCode(ua.UInt32(status)),
                          SourceTimestamp=_ts(self.clock()), ServerTimestamp=_now())
        await self.server.iserver.aspace.write_attribute_value(self._nodes[key], ua.AttributeIds.Value, dv)
        self._last.pop(key, None)

    async def clear_bad(self, key: str) -> None:
        """Give ``key`` good values again (from the next refresh, which this runs)."""
        self._bad.pop(key, None)
        await self.refresh()

    # ------------------------------------------------------------------ network

    @property
    def running(self) -> bool:
        return self._running

    async def stop(self) -> None:
        """Close the listening socket and every client connection; the address space and the
        simulation keep going, as a machine does when only its network goes away."""
        if not self._running:
            return
        assert self.server.bserver is not None
        await self.server.bserver.stop()
        self.server.bserver = None
        self._running = False

    async def start(self) -> None:
        """Listen again on the same host and port (after :meth:`stop`)."""
        if self._running:
            return
        # Server.start() cannot run twice (it would add its endpoints again), so only the
        # network side is rebuilt, with the policies the first start set up
        bserver = BinaryServer(self.server.iserver, self.host, self.port, self.server.limits)
        bserver.set_policies(self.server._policies)
        await bserver.start()
        self.server.bserver = bserver
        self._running = True


async def _server_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    cert_dir.mkdir(parents=True, exist_ok=True)
    key, cert = cert_dir / "server_key.pem", cert_dir / "server_cert.der"
    # reuses a present, valid pair; regenerates what is missing or invalid
    await setup_self_signed_certificate(
        key, cert, APPLICATION_URI, host, [ExtendedKeyUsageOID.SERVER_AUTH],
        {"organizationName": "tierproof", "commonName": "tierproof simulator"},
    )
    x509.load_der_x509_certificate(cert.read_bytes())  # fail here, not in a handshake
    return key, cert


@contextlib.asynccontextmanager
async def serve_opcua(
    plant: Plant,
    assets: Sequence[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    interval_s: float = 0.2,
    clock: Callable[[], int] = time.time_ns,
    security: Sequence[ua.SecurityPolicyType] = SECURITY_ALL,
    users: Mapping[str, str] | None = None,
    anonymous: bool = True,
    cert_dir: Path | str | None = None,
    extra_variables: int = 0,
    events: bool = True,
) -> AsyncIterator[OpcUaPlantServer]:
    """Run an OPC UA server showing ``assets`` (default: every asset of the plant).

    ``port=0`` picks a free port (read it from ``.port``). ``clock`` gives the simulated
    instant in ns (a constant clock freezes the machines). ``security`` lists the endpoints;
    any secure one needs the server certificate, which is generated into ``cert_dir`` (a
    temporary directory by default) and reused from there when present. ``users`` maps
    user names to passwords; ``anonymous`` allows sessions without a user. ``events``:
    each machine emits its stop events (module docstring).
    """
    if extra_variables < 0:
        raise ValueError("extra_variables must be >= 0")
    assets = list(plant.models) if assets is None else list(assets)
    port = port or free_port(host)
    with contextlib.ExitStack() as files:
        cert_path: Path | None = None
        key_path: Path | None = None
        if any(p is not ua.SecurityPolicyType.NoSecurity for p in security):
            where = Path(cert_dir) if cert_dir is not None else Path(
                files.enter_context(tempfile.TemporaryDirectory(prefix="tierproof-opcua-")))
            key_path, cert_path = await _server_certificate(where, socket.gethostname())

        server = Server(user_manager=SimUserManager(users or {}, anonymous))
        await server.init()
        server.set_endpoint(f"opc.tcp://{host}:{port}{ENDPOINT_PATH}")
        server.set_server_name("tierproof plant simulator")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy(list(security))
        tokens: list[type] = [ua.UserNameIdentityToken]
        if anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if cert_path and key_path:
            await server.load_certificate(str(cert_path))
            await server.load_private_key(str(key_path))
        idx = await server.register_namespace(NAMESPACE_URI)

        running = OpcUaPlantServer(server, plant, host, port, idx, cert_path, clock)
        await running._build(assets, extra_variables, events)
        await running.refresh()  # the first read already sees real values

        await server.start()
        running._running = True
        try:
            async with Ticker(running.refresh, interval_s, name="opcua-plant-update",
                              what="updating the simulated OPC UA variables", logger=log):
                yield running
        finally:
            # the internal server's clock task sleeps 1 s between ticks and stop() waits for
            # it; cancelling it first makes leaving immediate
            clock_task = server.iserver.time_task
            if clock_task is not None:
                clock_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock_task
                server.iserver.time_task = None
            await server.stop()  # after our stop() its bserver is None, which it skips
