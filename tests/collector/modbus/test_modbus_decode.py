"""Decoding over a real socket: every type x byte order against values encoded with struct."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from collector.modbus.codec import encode_value
from config.signals import Quality
from simulators.modbus import RegisterImage
from tests.collector.modbus_helpers import StartServer, by_name, ids_for, mdevice, mtag, poll_once

ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")

# (type, struct code, a value whose bytes all differ, so a wrong order cannot pass)
NUMERIC = [
    ("int16", "h", -12345),
    ("uint16", "H", 0xA1B2),
    ("int32", "i", -123456789),
    ("uint32", "I", 0xA1B2C3D4),
    ("float32", "f", -1234.5625),  # exact in float32
    ("int64", "q", -1234567890123456),  # below 2**53: exact in float64
    ("uint64", "Q", 0x0011B2C3D4E5F607),
    ("float64", "d", -98765.4321),
]


def struct_words(code: str, value: float, order: str) -> list[int]:
    """The registers a device with this byte order holds, built independently of the codec:
    ABCD big-endian, DCBA little-endian, BADC bytes swapped in each word, CDAB words reversed."""
    big = struct.pack(">" + code, value)
    if order == "ABCD":
        raw = big
    elif order == "DCBA":
        raw = struct.pack("<" + code, value)
    elif order == "BADC":
        raw = b"".join(big[i + 1:i + 2] + big[i:i + 1] for i in range(0, len(big), 2))
    else:  # CDAB
        raw = b"".join(big[i:i + 2] for i in reversed(range(0, len(big), 2)))
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def ascii_words(raw: bytes, low_byte_first: bool = False) -> list[int]:
    pairs = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    return [int.from_bytes(p[::-1] if low_byte_first else p, "big") for p in pairs]


def test_test_encodings_differ_per_order() -> None:
    # guards the tests below: were the images alike, ignoring the order would pass them
    for _, code, value in NUMERIC:
        images = {tuple(struct_words(code, value, o)) for o in ORDERS}
        assert len(images) == (2 if struct.calcsize(code) == 2 else 4)


@pytest.mark.parametrize(("type_", "code", "value"), NUMERIC, ids=[n[0] for n in NUMERIC])
@pytest.mark.parametrize("order", ORDERS)
def test_encode_value_matches_struct(type_: str, code: str, value: float, order: str) -> None:
    # the simulators' encoder must write what a real device of that order holds
    words = encode_value(value, type_, order)  # type: ignore[arg-type]
    assert words == struct_words(code, value, order)


async def test_every_type_and_byte_order(start_server: StartServer) -> None:
    image = RegisterImage()
    tags = []
    expected: dict[str, float] = {}
    address = 0
    for type_, code, value in NUMERIC:
        for order in ORDERS:
            name = f"{type_}_{order}"
            words = struct_words(code, value, order)
            image.set_registers("holding", address, words)
            tags.append(mtag(name, address, type_, byte_order=order))
            expected[name] = float(value)
            address += len(words) + 1  # a spare register between tags
    server = await start_server({1: image})
    dev = mdevice(server.port, tags, coalesce_gap=1)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name][1] == Quality.GOOD, name
        assert got[name][0] == value, name
    assert batch.text is None


async def test_input_registers_scale_offset_bits_and_strings(start_server: StartServer) -> None:
    image = RegisterImage()
    image.set_registers("input", 0, [1234])
    image.set_registers("input", 1, struct_words("i", -5000, "CDAB"))
    image.set_registers("input", 3, [0b1010_0000_0000_0101])
    image.set_registers("input", 4, ascii_words(b"  HELLO-42\0\0"))  # padded both sides
    image.set_registers("input", 10, ascii_words(b"ABCDE\0", low_byte_first=True))
    tags = [
        mtag("raw", 0, "uint16", table="input", scale=0.1, offset=-5.0),
        mtag("power", 1, "int32", table="input", byte_order="CDAB", scale=0.01),
        *[mtag(f"bit{b}", 3, "bit", bit=b, table="input") for b in range(16)],
        mtag("text", 4, "string", length=6, table="input"),
        mtag("text_badc", 10, "string", length=3, table="input", byte_order="BADC"),
    ]
    server = await start_server({1: image})
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert got["raw"][0] == pytest.approx(1234 * 0.1 - 5.0)
    assert got["power"][0] == pytest.approx(-50.0)
    bits = {b: got[f"bit{b}"][0] for b in range(16)}
    assert bits == {b: float((0b1010_0000_0000_0101 >> b) & 1) for b in range(16)}
    assert sum(bits.values()) == 4  # not all zero or all one
    assert got["text"][2] == "HELLO-42"
    assert math.isnan(got["text"][0])
    assert got["text_badc"][2] == "ABCDE"
    assert got["raw"][2] is None
    assert all(q == Quality.GOOD for _, q, _ in got.values())
    # every tag shares one request: all four input blocks are adjacent
    assert server.requests == {4: 1}


async def test_coils_and_discrete_inputs(start_server: StartServer) -> None:
    image = RegisterImage()
    coils = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    image.set_bits("coil", 20, coils)
    image.set_bits("discrete", 7, [True, False, True])
    tags = [mtag(f"c{i}", 20 + i, "bool", table="coil") for i in range(10)]
    tags += [mtag(f"d{i}", 7 + i, "bool", table="discrete") for i in range(3)]
    server = await start_server({1: image})
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert [got[f"c{i}"][0] for i in range(10)] == [float(b) for b in coils]
    assert [got[f"d{i}"][0] for i in range(3)] == [1.0, 0.0, 1.0]
    assert server.requests == {1: 1, 2: 1}


async def test_several_unit_ids_on_one_connection(start_server: StartServer) -> None:
    units = {u: RegisterImage() for u in (1, 2, 7)}
    for u, image in units.items():
        image.set_registers("holding", 5, [u * 111])
    server = await start_server(units)
    tags = [mtag(f"u{u}", 5, unit_id=u) for u in units]
    dev = mdevice(server.port, tags)
    ids = ids_for(dev)
    batch, _ = await poll_once(dev, ids)
    got = by_name(batch, dev, ids)
    assert {n: v for n, (v, _, _) in got.items()} == {"u1": 111.0, "u2": 222.0, "u7": 777.0}
    assert sorted(u for u, *_ in server.request_log) == [1, 2, 7]
