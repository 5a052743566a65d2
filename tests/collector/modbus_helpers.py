"""Builders and waiting helpers for the collector tests (imported by the test modules)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from collector.modbus import ModbusCollector
from config.modbus import ModbusDevice, ModbusTag
from simulators.modbus import ModbusSimServer
from store.batch import Batch

ASSET = "site/area/line/m1"

#: the start_server fixture: start_server(units=None, port=0) -> running server
StartServer = Callable[..., Awaitable[ModbusSimServer]]
Sample = tuple[float, int, object]  # value, quality, text


def mtag(name: str, address: int, type: str = "uint16", **kw: Any) -> ModbusTag:
    """A Modbus tag on asset ASSET (override with asset=...)."""
    kw.setdefault("asset", ASSET)
    return ModbusTag(name=name, address=address, type=type, **kw)  # type: ignore[arg-type]


def mdevice(port: int, tags: list[ModbusTag], name: str = "plc1", **kw: Any) -> ModbusDevice:
    """A Modbus device on 127.0.0.1:port with short timeouts for tests; polls every 30 s
    unless told otherwise, so that a test sees exactly one poll when it wants one."""
    kw.setdefault("timeout_s", 0.5)
    kw.setdefault("poll_interval_s", 30.0)
    return ModbusDevice(
        protocol="modbus", name=name, host="127.0.0.1", port=port, tags=tags, **kw
    )


def rtu_device(tty: str, tags: list[ModbusTag], name: str = "rtu1", **kw: Any) -> ModbusDevice:
    """A Modbus RTU device on serial port ``tty`` (19200 8N1 unless told otherwise: Linux
    pseudo-terminals refuse parity and 7 data bits with EINVAL)."""
    kw.setdefault("timeout_s", 0.5)
    kw.setdefault("poll_interval_s", 30.0)
    serial = kw.pop("serial", {})
    return ModbusDevice(
        protocol="modbus", name=name, transport="rtu",
        serial={"port": tty, "parity": "none", **serial},
        tags=tags, **kw,
    )


@contextlib.contextmanager
def pty_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals made by Debian's ``socat`` (a null-modem cable): what
    is written to one is read from the other. Yields their paths. A missing socat fails."""
    a, b = directory / "ttyA", directory / "ttyB"
    proc = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (a.exists() and b.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"socat made no pty pair: {proc.communicate()[1]}")
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def ids_for(*devices: ModbusDevice) -> dict[str, int]:
    """Tag ids 100, 101, ... in configuration order."""
    out: dict[str, int] = {}
    for d in devices:
        for t in d.tags:
            out[t.path] = 100 + len(out)
    return out


def by_name(batch: Batch, device: ModbusDevice, ids: dict[str, int]) -> dict[str, Sample]:
    """tag name -> (value, quality, text) of one batch."""
    name_of = {ids[t.path]: t.name for t in device.tags}
    out: dict[str, Sample] = {}
    for k in range(len(batch)):
        text = batch.text[k] if batch.text is not None else None
        out[name_of[int(batch.tag_id[k])]] = (float(batch.value[k]), int(batch.quality[k]), text)
    return out


async def poll_once(
    device: ModbusDevice, ids: dict[str, int], **kw: Any
) -> tuple[Batch, ModbusCollector]:
    """Connect, take the first batch, disconnect."""
    async with ModbusCollector(device, ids, **kw) as c:
        gen = c.batches()
        try:
            batch = await asyncio.wait_for(anext(gen), 20)
        finally:
            await gen.aclose()
    return batch, c
