"""tierproof's Modbus collector against npm modbus-serial 8.0.25 (pinned in
node/package-lock.json), not pymodbus: its ServerTCP (Modbus TCP), its ServerSerial (Modbus
RTU) through a socat pty pair, and the same ServerSerial behind socat listening on TCP (RTU
over TCP, as a transparent serial-to-Ethernet converter passes frames). Started as
subprocesses (node/modbus_server.js), collected by the real supervisor, writer and
SqliteStore.

What modbus-serial 8.0.25 does, as found here (not as our simulator does it):

- It keeps no register tables: it calls the application's vector functions once per
  register (or once for a multi-register read, when the vector has one, for counts > 1)
  and once per coil / discrete input. An error the vector reports becomes an exception
  response with ``err.modbusErrorCode``, or 4 (slave device failure) without one. It has no
  address range check of its own; a read of 0 items is answered with exception 2.
- A vector function that never calls back leaves the request unanswered (a silent unit).
  A table without a vector function (e.g. no ``getDiscreteInput``) is never answered either.
- ServerTCP answers every unit id with ``unitID: 255`` (the default); any other ``unitID``
  makes it ignore requests for other units silently.
- An error reported by a callback-style ``getMultipleInputRegisters`` without a values
  array is answered with exception 4 whatever its ``modbusErrorCode`` (it reads
  ``values[i]`` first, and the TypeError wins); the script passes ``[]`` with the error.
- It always answers with the request's function code; to test an answer with another one
  (issue 9's regression) the script rewrites byte 7 of its frames on the socket.
- ServerSerial ends a request frame after 30 ms of silence on the line (its default
  ``interval``), not after the RTU t3.5.
- It has no RTU-over-TCP server; here socat (a converter's role) bridges a TCP port to a
  pty on which ServerSerial serves.
- Linux ptys refuse parity and 7 data bits (EINVAL): the RTU tests run 8N1.
"""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import NodePeer

from collector import Supervisor
from config.modbus import ModbusDevice, ModbusTag
from config.signals import Quality
from store.sqlite import SqliteStore
from store.writer import Writer

# the socat pty pair and wait helper of the collector tests: one copy of each
from tests.collector.modbus_helpers import pty_pair
from tests.helpers import FAST, free_port, register, wait_until

END = 2**62
ASSET = "interop/modbus/line1/m1"

# ------------------------------------------------------------------ registers, by hand

_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
          "int64": "q", "uint64": "Q", "float64": "d"}


def words(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """The registers a device holding ``value`` sends, written out independently of
    collector.modbus.codec: ``order`` names where the big-endian bytes A B C D ... sit."""
    big = struct.pack(">" + _CODES[type_], value)
    regs = [big[i:i + 2] for i in range(0, len(big), 2)]  # big-endian words, high first
    if order in ("DCBA", "CDAB"):
        regs = regs[::-1]  # low word first
    if order in ("DCBA", "BADC"):
        regs = [w[::-1] for w in regs]  # low byte first in each word
    return [int.from_bytes(w, "big") for w in regs]


def test_words_by_hand() -> None:
    # anchors for the helper: 1.5f is 0x3FC00000
    assert words(1.5, "float32", "ABCD") == [0x3FC0, 0x0000]
    assert words(1.5, "float32", "CDAB") == [0x0000, 0x3FC0]
    assert words(1.5, "float32", "BADC") == [0xC03F, 0x0000]
    assert words(1.5, "float32", "DCBA") == [0x0000, 0xC03F]
    assert words(0x0102030405060708, "uint64", "CDAB") == [0x0708, 0x0506, 0x0304, 0x0102]


# ------------------------------------------------------------------ fixtures


class JsModbus:
    """modbus_server.js as a peer, with its commands."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.peer = NodePeer("modbus_server.js", *args)

    def start(self) -> None:
        self.peer = NodePeer("modbus_server.js", *self.args)
        self.peer.start()

    def kill(self) -> None:
        self.peer.stop(signal.SIGKILL)

    def set(self, unit: int, table: str, address: int, regs: list[int]) -> None:
        self.peer.command(cmd="set", unit=unit, table=table, address=address, words=regs)

    def bits(self, unit: int, table: str, address: int, bits: list[bool]) -> None:
        self.peer.command(cmd="bits", unit=unit, table=table, address=address, bits=bits)

    def exception(self, unit: int, table: str, address: int, code: int) -> None:
        self.peer.command(cmd="exception", unit=unit, table=table, address=address, code=code)

    def command(self, **cmd: Any) -> dict[str, Any]:
        return self.peer.command(**cmd)


@pytest.fixture
def js_tcp() -> Iterator[JsModbus]:
    server = JsModbus("tcp", str(free_port()))
    server.start()
    try:
        yield server
    finally:
        server.peer.stop()


def tcp_device(server: JsModbus, tags: list[ModbusTag], **kw: Any) -> ModbusDevice:
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("poll_interval_s", 0.1)
    kw.setdefault("backoff", FAST)
    return ModbusDevice(protocol="modbus", name="js", host="127.0.0.1", port=int(server.args[1]),
                        tags=tags, **kw)


def tag(name: str, address: int, type_: str = "uint16", **kw: Any) -> ModbusTag:
    kw.setdefault("asset", ASSET)
    return ModbusTag(name=name, address=address, type=type_, **kw)  # type: ignore[arg-type]


class Run:
    """A Supervisor collecting ``devices`` into ``store``, and ways to look at the result."""

    def __init__(self, store: SqliteStore, *devices: ModbusDevice) -> None:
        self.store = store
        self.devices = devices
        self.ids = register(store, *devices)
        self.writer = Writer(store)
        self.sup = Supervisor(list(devices), store, self.writer, self.ids)

    async def __aenter__(self) -> Run:
        await self.sup.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sup.stop()
        await self.writer.close()

    def health(self, name: str | None = None) -> Any:
        return next(h for h in self.sup.status() if name is None or h.name == name)

    def latest(self, path: str) -> tuple[float, int] | None:
        got = self.store.latest([self.ids[path]]).get(self.ids[path])
        return None if got is None else (got.value, got.quality)

    def latest_text(self, path: str) -> str | None:
        got = self.store.latest([self.ids[path]]).get(self.ids[path])
        return None if got is None else got.text

    async def delivered(self, n: int, name: str | None = None) -> None:
        start = self.health(name).samples_delivered
        await wait_until(lambda: self.health(name).samples_delivered >= start + n, 30,
                         what=f"{n} more samples")
        await self.writer.flush()


# ------------------------------------------------------------------ Modbus TCP

TYPES: list[tuple[str, float]] = [
    ("int16", -2), ("uint16", 65535), ("int32", -123456789), ("uint32", 4_000_000_000),
    ("float32", -1234.5), ("int64", -(2**40) - 7), ("uint64", 2**53 - 1),
    ("float64", math.pi),
]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


async def test_every_type_order_and_table(js_tcp: JsModbus, sqlite_store: SqliteStore) -> None:
    tags: list[ModbusTag] = []
    expect: dict[str, tuple[float, int]] = {}
    address = {"holding": 0, "input": 0}
    for type_, value in TYPES:
        for order in ORDERS if type_ not in ("int16", "uint16") else ["ABCD", "DCBA"]:
            table = ("holding", "input")[len(tags) % 2]  # each type and order in both, overall
            regs = words(value, type_, order)
            js_tcp.set(1, table, address[table], regs)
            name = f"{type_}_{order}_{table}"
            tags.append(tag(name, address[table], type_, table=table, byte_order=order))
            expect[name] = (float(value), Quality.GOOD)
            address[table] += len(regs) + 1  # one unused register between tags
    # beyond 2**53: rounded, uncertain
    js_tcp.set(1, "holding", 500, words(2**60 + 1, "uint64"))
    tags.append(tag("u64_big", 500, "uint64"))
    expect["u64_big"] = (float(2**60), Quality.UNCERTAIN)
    # a register bit, a string, coils, discrete inputs; unit 2 with its own table
    js_tcp.set(1, "holding", 600, [0b1000_0000_0000_1000, 0x5055, 0x4D50, 0x2D37, 0])
    tags += [tag("bit3", 600, "bit", bit=3), tag("bit4", 600, "bit", bit=4),
             tag("bit15", 600, "bit", bit=15), tag("text", 601, "string", length=4)]
    expect.update({"bit3": (1.0, 0), "bit4": (0.0, 0), "bit15": (1.0, 0)})
    js_tcp.bits(1, "coil", 0, [True, False, True])
    js_tcp.bits(1, "discrete", 10, [False, True])
    tags += [tag("coil0", 0, "bool", table="coil"), tag("coil1", 1, "bool", table="coil"),
             tag("coil2", 2, "bool", table="coil"), tag("di10", 10, "bool", table="discrete"),
             tag("di11", 11, "bool", table="discrete")]
    expect.update({"coil0": (1.0, 0), "coil1": (0.0, 0), "coil2": (1.0, 0), "di10": (0.0, 0),
                   "di11": (1.0, 0)})
    js_tcp.set(2, "holding", 0, [777])
    tags.append(tag("unit2", 0, unit_id=2, asset="interop/modbus/line1/m2"))
    expect["unit2"] = (777.0, 0)
    dev = tcp_device(js_tcp, tags, coalesce_gap=2)
    async with Run(sqlite_store, dev) as run:
        await run.delivered(3 * len(tags))
        got = {t.name: run.latest(t.path) for t in tags if t.name != "text"}
        assert run.latest_text(f"{ASSET}/text") == "PUMP-7"
        assert run.health().tag_errors == {} and run.health().bad_samples == 0
    assert got == expect
    calls = js_tcp.command(cmd="calls")["ok"]
    assert {k.split("/")[1] for k in calls} == {"1", "2", "3", "4"}


async def test_exception_responses(js_tcp: JsModbus, sqlite_store: SqliteStore) -> None:
    js_tcp.set(1, "holding", 0, list(range(100, 110)))
    js_tcp.set(1, "input", 0, [5, 6])
    js_tcp.exception(1, "holding", 3, 2)  # illegal data address
    js_tcp.exception(1, "holding", 7, 4)  # server device failure
    js_tcp.exception(1, "input", 1, 6)  # busy: the whole request, next poll again
    tags = [tag(f"h{i}", i) for i in range(10)] + [
        tag("i0", 0, table="input"), tag("i1", 1, table="input"),
        tag("absent", 0, unit_id=9, asset="interop/modbus/line1/m9"),  # script: exception 11
    ]
    dev = tcp_device(js_tcp, tags, bad_tag_retry_s=0.3)
    async with Run(sqlite_store, dev) as run:
        await run.delivered(40)
        q = {t.name: run.latest(t.path) for t in tags}
        errors = run.health().tag_errors
        assert run.health().state == "connected"
        # the collector re-read the refused request tag by tag: only h3 and h7 are bad
        for i in (0, 1, 2, 4, 5, 6, 8, 9):
            assert q[f"h{i}"] == (100.0 + i, Quality.GOOD)
        assert q["h3"] is not None and q["h3"][1] == Quality.BAD_CONFIG and math.isnan(q["h3"][0])
        assert ("Modbus exception 2 (illegal data address) reading holding 3 of unit 1"
                in errors[f"{ASSET}/h3"])
        assert q["h7"] is not None and q["h7"][1] == Quality.BAD_DEVICE_FAILURE
        assert "Modbus exception 4 (server device failure)" in errors[f"{ASSET}/h7"]
        for name in ("i0", "i1"):
            assert q[name] is not None and q[name][1] == Quality.BAD_DEVICE_FAILURE
        assert "server device busy" in errors[f"{ASSET}/i0"]
        assert q["absent"] is not None and q["absent"][1] == Quality.BAD_NOT_CONNECTED
        assert "gateway target device failed to respond" in errors["interop/modbus/line1/m9/absent"]

        # fixed on the device: the refused tags read again (retried every 0.3 s)
        js_tcp.exception(1, "holding", 3, 0)
        js_tcp.exception(1, "holding", 7, 0)
        js_tcp.exception(1, "input", 1, 0)
        await wait_until(lambda: set(run.health().tag_errors) == {"interop/modbus/line1/m9/absent"},
                         30, what="tags reading again")
        await run.delivered(20)
        assert run.latest(f"{ASSET}/h3") == (103.0, Quality.GOOD)
        assert run.latest(f"{ASSET}/i1") == (6.0, Quality.GOOD)
    assert sqlite_store.gaps(None, 0, END) == []  # exceptions are not outages


async def test_server_restart_is_a_gap_then_data_again(
    js_tcp: JsModbus, sqlite_store: SqliteStore
) -> None:
    js_tcp.set(1, "holding", 0, [1, 2])
    tags = [tag("a", 0), tag("b", 1)]
    dev = tcp_device(js_tcp, tags)
    async with Run(sqlite_store, dev) as run:
        await run.delivered(6)
        js_tcp.kill()  # the process dies: connections reset, port closed
        await wait_until(lambda: run.health().gap_open_since is not None, 30, what="a gap")
        assert run.health().state != "connected"
        gaps = sqlite_store.gaps("js", 0, END)
        assert len(gaps) == 1 and gaps[0].end_ns is None and gaps[0].asset is None
        js_tcp.start()  # a new process on the same port, with new values
        js_tcp.set(1, "holding", 0, [10, 20])
        await wait_until(lambda: run.latest(f"{ASSET}/b") == (20.0, Quality.GOOD), 30,
                         what="data after the restart")
        assert run.health().gap_open_since is None and run.health().reconnects >= 1
    (gap,) = sqlite_store.gaps("js", 0, END)
    assert gap.end_ns is not None and gap.end_ns > gap.start_ns
    series = sqlite_store.read(run.ids[f"{ASSET}/a"], 0, END)
    assert set(series.value.tolist()) == {1.0, 10.0}
    # the old server's values before the gap, the new one's after its start (the gap closes
    # when the first batch is delivered, a moment after its answer arrived and was stamped)
    assert (series.ts_ns[series.value == 1.0] <= gap.start_ns).all()
    assert (series.ts_ns[series.value == 10.0] > gap.start_ns).all()


async def test_wrong_function_code_is_a_gap_at_once(
    js_tcp: JsModbus, sqlite_store: SqliteStore
) -> None:
    """Issue 9's regression: modbus-serial's answers rewritten to function code 4 (a well
    formed read-input answer) for a read of holding registers (3)."""
    js_tcp.set(1, "holding", 0, [1, 2])
    js_tcp.set(1, "input", 0, [66, 66])
    tags = [tag("a", 0), tag("b", 1)]
    dev = tcp_device(js_tcp, tags, bad_tag_retry_s=3600)
    async with Run(sqlite_store, dev) as run:
        await run.delivered(6)
        js_tcp.command(cmd="mangle_fc", fc=4)
        await wait_until(lambda: run.health().gap_open_since is not None, 30, what="a gap")
        reason = "answered with function code 4 to a request with function code 3"
        assert reason in (run.health().last_error or "")
        (gap,) = sqlite_store.gaps("js", 0, END)
        assert reason in gap.reason
        js_tcp.command(cmd="mangle_fc", fc=None)
        await wait_until(lambda: run.health().gap_open_since is None, 30, what="the gap closed")
        await run.delivered(4)
        assert run.health().bad_samples == 0
    series = sqlite_store.read(run.ids[f"{ASSET}/a"], 0, END)
    assert set(series.value.tolist()) == {1.0}  # never the 66 of the wrong answer


async def test_silent_unit_over_tcp(js_tcp: JsModbus, sqlite_store: SqliteStore) -> None:
    js_tcp.set(1, "holding", 0, [1])
    js_tcp.set(3, "holding", 0, [3])
    js_tcp.command(cmd="silent", unit=3, on=True)
    tags = [tag("one", 0), tag("three", 0, unit_id=3, asset="interop/modbus/line1/m3")]
    dev = tcp_device(js_tcp, tags, timeout_s=1.0, bad_tag_retry_s=0.5)
    async with Run(sqlite_store, dev) as run:
        await wait_until(lambda: sqlite_store.gaps(None, 0, END) != [], 30, what="unit 3's gap")
        await run.delivered(10)
        assert run.latest(f"{ASSET}/one") == (1.0, Quality.GOOD)
        three = run.latest("interop/modbus/line1/m3/three")
        assert three is not None and three[1] == Quality.BAD_NOT_CONNECTED
        (gap,) = sqlite_store.gaps(None, 0, END)
        assert (gap.asset, gap.end_ns) == ("interop/modbus/line1/m3", None)
        js_tcp.command(cmd="silent", unit=3, on=False)
        await wait_until(lambda: run.latest("interop/modbus/line1/m3/three") == (3.0, 0), 30,
                         what="unit 3 answering")
        assert run.health().reconnects == 0
    (gap,) = sqlite_store.gaps(None, 0, END)
    assert gap.end_ns is not None


# ------------------------------------------------------------------ Modbus RTU


@pytest.fixture
def js_rtu(tmp_path: Path) -> Iterator[tuple[JsModbus, str]]:
    """modbus-serial's ServerSerial on one end of a pty pair; yields it and the other end."""
    with pty_pair(tmp_path) as (client_end, server_end):
        server = JsModbus("serial", server_end, "19200")
        server.start()
        try:
            yield server, client_end
        finally:
            server.peer.stop()


def rtu_tags() -> list[ModbusTag]:
    return [tag("u1_f", 0, "float32", unit_id=1, byte_order="CDAB"),
            tag("u1_c", 0, "bool", table="coil", unit_id=1),
            tag("u2_q", 0, "int64", unit_id=2, table="input", asset="interop/modbus/line1/m2"),
            tag("u3", 0, unit_id=3, asset="interop/modbus/line1/m3")]


def load_rtu(server: JsModbus) -> None:
    server.set(1, "holding", 0, words(-1234.5, "float32", "CDAB"))
    server.bits(1, "coil", 0, [True])
    server.set(2, "input", 0, words(-(2**40), "int64"))
    server.set(3, "holding", 0, [3])
    server.command(cmd="silent", unit=3, on=True)


async def check_rtu_line(run: Run, server: JsModbus, store: SqliteStore) -> None:
    await wait_until(lambda: store.gaps(None, 0, END) != [], 30, what="unit 3's gap")
    await run.delivered(10)
    assert run.latest(f"{ASSET}/u1_f") == (-1234.5, 0)
    assert run.latest(f"{ASSET}/u1_c") == (1.0, 0)
    assert run.latest("interop/modbus/line1/m2/u2_q") == (-(2.0**40), 0)
    u3 = run.latest("interop/modbus/line1/m3/u3")
    assert u3 is not None and u3[1] == Quality.BAD_NOT_CONNECTED
    (gap,) = store.gaps(None, 0, END)
    assert gap.asset == "interop/modbus/line1/m3" and "unit 3 does not answer" in gap.reason
    server.command(cmd="silent", unit=3, on=False)
    await wait_until(lambda: run.latest("interop/modbus/line1/m3/u3") == (3.0, 0), 30,
                     what="unit 3 answering")
    assert run.health().reconnects == 0 and run.health().gap_open_since is None


async def test_rtu_serial_line_with_a_silent_unit(
    js_rtu: tuple[JsModbus, str], sqlite_store: SqliteStore
) -> None:
    server, tty = js_rtu
    load_rtu(server)
    dev = ModbusDevice(protocol="modbus", name="rtu", transport="rtu",
                       serial={"port": tty, "parity": "none"}, tags=rtu_tags(),
                       timeout_s=1.0, poll_interval_s=0.1, bad_tag_retry_s=0.5, backoff=FAST)
    async with Run(sqlite_store, dev) as run:
        await check_rtu_line(run, server, sqlite_store)


async def test_rtu_over_tcp_through_a_converter(
    js_rtu: tuple[JsModbus, str], sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    """socat plays the serial-to-Ethernet converter: TCP on one side, the serial line on
    which modbus-serial serves on the other, bytes passed through unchanged."""
    server, tty = js_rtu
    load_rtu(server)
    port = free_port()
    # one connection, no fork: a forked child for a probe connection would stay on the
    # serial line for a moment and read answers meant for the next one
    converter = subprocess.Popen(
        ["socat", "-d", "-d", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
         f"FILE:{tty},raw,echo=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert converter.stderr is not None
        seen = []
        while not any("listening on" in line for line in seen):
            line = converter.stderr.readline()  # socat -d -d says when it listens
            if not line:
                raise AssertionError(f"socat converter exited: {''.join(seen)}")
            seen.append(line)
        dev = ModbusDevice(protocol="modbus", name="conv", transport="rtu_over_tcp",
                           host="127.0.0.1", port=port, tags=rtu_tags(), timeout_s=1.0,
                           poll_interval_s=0.1, bad_tag_retry_s=0.5, backoff=FAST)
        async with Run(sqlite_store, dev) as run:
            await check_rtu_line(run, server, sqlite_store)
    finally:
        converter.terminate()
        converter.wait(10)
        if converter.stderr is not None:
            converter.stderr.close()
    assert os.path.exists(tty)
