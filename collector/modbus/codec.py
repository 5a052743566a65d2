"""Modbus register decoding, vectorised with numpy.

A :class:`Decoder` is built once per poll group (when the poll plan is made) and turns the
concatenated registers or bits of all the group's requests into float64 values with a few
numpy operations per poll: tags of the same (type, byte order) are decoded together by one
fancy-index gather into a byte buffer followed by one dtype view.

Byte orders name where the value's big-endian bytes A B C D (most significant first) sit in
the registers as read (each register's high byte first):

========  =================================  ===========================
order     32-bit registers                   meaning
========  =================================  ===========================
ABCD      ``[AB] [CD]``                      big-endian (Modbus default)
DCBA      ``[DC] [BA]``                      little-endian
BADC      ``[BA] [DC]``                      bytes swapped in each word
CDAB      ``[CD] [AB]``                      words swapped (low word first)
========  =================================  ===========================

The same rules extend to 16 bits (DCBA and BADC swap the two bytes) and 64 bits (CDAB puts
the four words in reverse order). Bit numbers of type ``bit`` refer to the register value as
read (bit 0 = least significant); byte order does not apply to them. Strings are ASCII with
the high byte first in each register, or low byte first with BADC / DCBA; NULs and spaces
around them are stripped and the text ends at the first remaining NUL.

Batch values are float64, which holds every integer up to 2**53 (9,007,199,254,740,992)
exactly. An int64 or uint64 beyond +-2**53 is stored as the nearest float64 (relative error
below 2**-53; e.g. 2**53 + 1 reads 2**53, and a counter near 2**60 moves in steps of 256) and
its sample gets quality ``UNCERTAIN`` (1): still usable, but visibly not exact.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from config.modbus import REGISTER_WIDTH, ByteOrder, ModbusTag
from config.signals import Quality

__all__ = [
    "EXACT_INT_LIMIT",
    "NUMERIC_DTYPES",
    "Decoder",
    "byte_permutation",
    "encode_value",
]

#: big-endian numpy dtype of each numeric Modbus type
NUMERIC_DTYPES: dict[str, str] = {
    "int16": ">i2", "uint16": ">u2", "int32": ">i4", "uint32": ">u4", "float32": ">f4",
    "int64": ">i8", "uint64": ">u8", "float64": ">f8",
}

#: every integer of magnitude up to this is exact in float64; 64-bit integers beyond it are
#: rounded and stored with quality UNCERTAIN
EXACT_INT_LIMIT = 2**53

_WIDE_INTS = frozenset({"int64", "uint64"})

_STRUCT_CODES = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
    "int64": "q", "uint64": "Q", "float64": "d",
}


def byte_permutation(words: int, order: ByteOrder) -> npt.NDArray[np.intp]:
    """perm[k] = index, in the registers' byte stream, of the value's k-th big-endian byte."""
    k = np.arange(2 * words)
    if order == "ABCD":
        return k
    if order == "DCBA":
        return k[::-1].copy()
    if order == "BADC":
        return k ^ 1
    # CDAB: whole words in reverse order, bytes inside each word big-endian
    word, byte = np.divmod(k, 2)
    return (2 * (words - 1 - word) + byte).astype(np.intp)


def encode_value(value: float | str, type_: str, order: ByteOrder = "ABCD",
                 length: int | None = None) -> list[int]:
    """Registers holding ``value`` as a tag of this type and order would read it.

    The inverse of the decoder, for simulators. ``string`` needs ``length`` (registers);
    ``bit`` is not a whole register and cannot be encoded here.
    """
    if type_ == "string":
        if length is None:
            raise ValueError("a string needs length (registers)")
        raw = str(value).encode("ascii")
        if len(raw) > 2 * length:
            raise ValueError(f"{value!r} does not fit in {length} registers")
        buf = np.frombuffer(raw.ljust(2 * length, b"\0"), np.uint8)
        if order in ("BADC", "DCBA"):
            buf = buf.reshape(-1, 2)[:, ::-1].ravel()
        return [int(w) for w in buf.view(">u2")]
    if type_ not in _STRUCT_CODES:
        raise ValueError(f"cannot encode type {type_!r} as whole registers")
    code = _STRUCT_CODES[type_]
    number: float | int = float(value) if code in "fd" else int(value)
    big = np.frombuffer(struct.pack(">" + code, number), np.uint8)
    words = REGISTER_WIDTH[type_]
    stream = np.empty(2 * words, np.uint8)
    stream[byte_permutation(words, order)] = big
    return [int(w) for w in stream.view(">u2")]


@dataclass(frozen=True, slots=True)
class _NumericGroup:
    pos: npt.NDArray[np.intp]  # where the values go in the request's output
    idx: npt.NDArray[np.intp]  # (n, bytes): gather indices into the byte stream
    dtype: np.dtype[np.generic]
    wide: bool  # int64 / uint64: may not fit float64 exactly


@dataclass(frozen=True, slots=True)
class _BitGroup:
    pos: npt.NDArray[np.intp]
    word: npt.NDArray[np.intp]
    shift: npt.NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class _StringTag:
    pos: int
    start: int  # byte offset in the stream
    stop: int
    swap: bool


class Decoder:
    """Decodes a stream of registers (or of bits) into the values of many tags at once.

    The stream is what one request returned, or the concatenated answers of all requests
    of a poll: ``offsets[i]`` is where tag i's first register (bit) sits in that stream and
    ``positions[i]`` (default ``i``) where its value goes in the output. All tags must be of
    register tables, or all of bit tables (``bit_table``). Scale and offset are not applied
    here: the caller applies them to the whole poll at once.
    """

    def __init__(
        self,
        tags: Sequence[ModbusTag],
        offsets: Sequence[int],
        *,
        bit_table: bool,
        positions: Sequence[int] | None = None,
    ) -> None:
        if len(offsets) != len(tags):
            raise ValueError("one offset per tag")
        pos_of = list(range(len(tags))) if positions is None else list(positions)
        self.n = len(tags)
        self.bit_table = bit_table
        self.has_text = any(t.type == "string" for t in tags)
        #: some tag is an int64 / uint64 (decode may mark samples UNCERTAIN)
        self.wide_ints = any(t.type in _WIDE_INTS for t in tags)
        self._numeric: list[_NumericGroup] = []
        self._bits: list[_BitGroup] = []
        self._strings: list[_StringTag] = []
        self._bool_pos = np.array(pos_of, dtype=np.intp)
        self._bool_idx = np.array(offsets, dtype=np.intp)
        if bit_table:
            return
        by_kind: dict[tuple[str, str], list[int]] = {}
        for i, t in enumerate(tags):
            if t.type == "string":
                assert t.length is not None
                off = 2 * offsets[i]
                self._strings.append(_StringTag(
                    pos_of[i], off, off + 2 * t.length, t.byte_order in ("BADC", "DCBA")
                ))
            elif t.type == "bit":
                by_kind.setdefault(("bit", "ABCD"), []).append(i)
            else:
                by_kind.setdefault((t.type, t.byte_order), []).append(i)
        for (kind, order), members in by_kind.items():
            pos = np.array([pos_of[i] for i in members], dtype=np.intp)
            offs = np.array([offsets[i] for i in members], dtype=np.intp)
            if kind == "bit":
                shifts = np.array([tags[i].bit for i in members], dtype=np.uint16)
                self._bits.append(_BitGroup(pos, offs, shifts))
                continue
            words = REGISTER_WIDTH[kind]
            perm = byte_permutation(words, order)  # type: ignore[arg-type]
            idx = (2 * offs)[:, None] + perm[None, :]
            self._numeric.append(
                _NumericGroup(pos, idx, np.dtype(NUMERIC_DTYPES[kind]), kind in _WIDE_INTS)
            )

    def decode(
        self,
        data: Sequence[int] | Sequence[bool] | npt.NDArray[np.generic],
        out: npt.NDArray[np.float64],
        text: npt.NDArray[np.object_] | None = None,
        quality: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write the decoded values into ``out`` and strings into ``text`` (value NaN).

        With ``quality``, an int64 / uint64 beyond +-2**53 (rounded in float64) is marked
        ``UNCERTAIN`` there.
        """
        if self.n == 0:
            return
        if self.bit_table:
            bits = np.asarray(data, dtype=bool)
            out[self._bool_pos] = bits[self._bool_idx]
            return
        regs = np.asarray(data, dtype=np.uint16)
        stream = regs.astype(">u2").view(np.uint8)
        for g in self._numeric:
            raw = stream[g.idx].view(g.dtype)[:, 0]
            out[g.pos] = raw
            if g.wide and quality is not None:
                # compared as integers: the float64 copy has already lost the difference
                inexact = (raw > EXACT_INT_LIMIT) if g.dtype.kind == "u" else (
                    (raw > EXACT_INT_LIMIT) | (raw < -EXACT_INT_LIMIT)
                )
                if inexact.any():
                    quality[g.pos[inexact]] = Quality.UNCERTAIN
        for b in self._bits:
            out[b.pos] = (regs[b.word] >> b.shift) & 1
        for s in self._strings:
            out[s.pos] = np.nan
            if text is not None:
                text[s.pos] = _text(stream[s.start:s.stop], s.swap)


def _text(raw: npt.NDArray[np.uint8], swap: bool) -> str:
    if swap:
        raw = raw.reshape(-1, 2)[:, ::-1]
    data = raw.tobytes().strip(b"\0 ")
    # a C string may carry garbage after its terminator
    data = data.split(b"\0", 1)[0]
    return data.decode("ascii", errors="replace")
