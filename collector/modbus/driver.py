"""Modbus collector (TCP, RTU on a serial line, RTU over TCP): polls holding/input registers,
coils and discrete inputs.

Tags of the same unit id, table and poll group are coalesced into as few requests as the
device allows (``max_registers_per_request`` / ``max_bits_per_request``, joining tags at most
``coalesce_gap`` unused registers apart). The answers of all requests of a poll are
decoded together by a :class:`~collector.modbus.codec.Decoder` precomputed with the plan.
Every poll group runs its own drift-free loop at its interval; each poll yields one
:class:`~store.batch.Batch`. Requests go through the device's
:class:`~collector.modbus.line.ModbusLine`, which sends them one at a time on an RTU line
shared by several devices.

A Modbus exception response is about the tags of that request, not the connection: the
collector re-reads a failed coalesced request tag by tag, marks exactly the tags that fail
(quality ``BAD_CONFIG`` for illegal address / function / value, ``BAD_DEVICE_FAILURE`` for
the rest, value NaN, reason in :attr:`ModbusCollector.tag_errors`), then requests those tags
alone and only every ``bad_tag_retry_s`` seconds until they read again. Gateway exceptions
(0x0A, 0x0B: the unit behind a gateway cannot be reached, ``BAD_NOT_CONNECTED``) and busy
answers mark the whole request for that poll without isolating anything.

A unit id that does not answer in ``timeout_s`` while another unit of the device does (one
meter silent on an RTU line, or behind a gateway that does not say 0x0B) is *silent*: its
tags get ``BAD_NOT_CONNECTED`` once, a gap of its assets opens (``gap_events``, recorded by the
supervisor), and it is asked again every ``bad_tag_retry_s`` until it answers, which closes
the gap; the other units keep their cadence. When no unit of the device answers, or on a lost
connection, or on an answer that does not match its request (another function code, another
length: the stream is out of step, nothing on it can be trusted), :meth:`ModbusCollector.batches`
raises :class:`~config.errors.ConnectError`; the supervisor records a gap and reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pymodbus.exceptions import ModbusException, ModbusIOException

from config.base import DeviceBase
from config.errors import ConfigError, ConnectError
from config.modbus import ModbusDevice, ModbusTag
from config.signals import Quality
from store.batch import Batch

from ..base import cancel_and_wait, scaling, unregistered_tags
from . import logs
from .codec import Decoder
from .line import ModbusLine, acquire_line, release_line
from .plan import (
    BIT_TABLES,
    FUNCTION,
    READERS,
    REQUEST_WIDE,
    SILENT,
    ZEROS,
    BadTag,
    Group,
    Request,
    Unit,
    describe,
    quality,
)

__all__ = ["ModbusCollector"]

log = logging.getLogger("tierproof.collector.modbus")


@dataclass(slots=True)
class ModbusStats:
    polls: int = 0
    requests: int = 0
    overruns: int = 0  # poll ticks skipped because a poll took longer than its interval
    splits: int = 0  # coalesced requests re-read tag by tag after an exception
    no_answer: int = 0  # requests a unit did not answer within timeout_s


class ModbusCollector:
    """Collects one :class:`~config.modbus.ModbusDevice` (several unit ids, one line).

    ``tag_ids`` maps tag paths to store ids; every tag of the device must be in it.
    ``bad_tag_retry_s`` (default: the device's) is how often a tag that the device refuses,
    or a unit that does not answer, is retried.
    """

    device: DeviceBase

    def __init__(
        self,
        device: DeviceBase,
        tag_ids: Mapping[str, int],
        *,
        bad_tag_retry_s: float | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not isinstance(device, ModbusDevice):
            raise ConfigError(f"device {device.name}: ModbusCollector needs a modbus device")
        self.device = device
        self._dev = device
        self._tags: list[ModbusTag] = list(device.tags)
        self._clock = clock
        self.bad_tag_retry_s = device.bad_tag_retry_s if bad_tag_retry_s is None else bad_tag_retry_s
        problems = unregistered_tags(device, self._tags, tag_ids)
        for i, t in enumerate(self._tags):
            loc = f"devices[{device.name}].tags[{i}]"
            limit = self._limit(t.table)
            if t.width > limit:
                problems.append(
                    (loc, f"tag {t.path} spans {t.width} items, more than the {limit} "
                          f"per request the device allows")
                )
        if problems:
            raise ConfigError(f"device {device.name}: cannot collect its tags", problems)
        self._ids = np.array([tag_ids[t.path] for t in self._tags], dtype=np.int32)
        #: tag path -> why the device refuses it (cleared when the tag reads again)
        self.tag_errors: dict[str, str] = {}
        self.stats = ModbusStats()
        self._bad: dict[int, BadTag] = {}
        self._solo: set[int] = set()  # requested alone: bad, or refused in any larger request
        self._no_gap: set[int] = set()  # never joined across unused registers
        self._groups: dict[str, Group] = {}
        for name in sorted({t.group for t in self._tags}):
            self._groups[name] = self._plan(name)
        self._units: dict[int, Unit] = {}
        for i, t in enumerate(self._tags):
            u = self._units.setdefault(t.unit_id, Unit([], ()))
            u.tags.append(i)
            if t.asset not in u.assets:
                u.assets += (t.asset,)
        #: ("open" | "close", "unit <id>", ts_ns, reason, assets): gaps of a silent unit's
        #: assets, drained by the supervisor (see collector.supervisor.ReportsPartGaps)
        self.gap_events: list[tuple[str, str, int, str | None, tuple[str, ...]]] = []
        self._line: ModbusLine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._warned_precision: set[int] = set()

    # ------------------------------------------------------------------ plan

    def _limit(self, table: str) -> int:
        if table in BIT_TABLES:
            return self._dev.max_bits_per_request
        return self._dev.max_registers_per_request

    def _plan(self, group: str) -> Group:
        """Coalesce the group's tags into requests (rebuilt when a tag turns bad or recovers)."""
        members = [i for i, t in enumerate(self._tags) if t.group == group]
        blocks: list[tuple[list[int], int | None]] = []
        by_key: dict[tuple[int, str], list[int]] = {}
        for i in members:
            if i in self._solo:
                blocks.append(([i], i if i in self._bad else None))
            else:
                t = self._tags[i]
                by_key.setdefault((t.unit_id, t.table), []).append(i)
        for (_, table), idxs in sorted(by_key.items()):
            blocks.extend((b, None) for b in self._coalesce(idxs, self._limit(table)))
        requests: list[Request] = []
        order: list[int] = []
        # per stream (False: registers, True: bits): tags, their stream offsets, output positions
        streams: dict[bool, tuple[list[ModbusTag], list[int], list[int]]] = {
            False: ([], [], []), True: ([], [], [])
        }
        size = {False: 0, True: 0}
        for block, bad in blocks:
            tags = [self._tags[i] for i in block]
            start = min(t.address for t in tags)
            count = max(t.address + t.width for t in tags) - start
            bits = tags[0].table in BIT_TABLES
            lo = len(order)
            s_tags, s_offsets, s_positions = streams[bits]
            for k, t in enumerate(tags):
                s_tags.append(t)
                s_offsets.append(size[bits] + t.address - start)
                s_positions.append(lo + k)
            order.extend(block)
            requests.append(Request(
                unit=tags[0].unit_id, table=tags[0].table, start=start, count=count,
                members=block, bits=bits, base=size[bits],
                lo=lo, hi=len(order), bad=bad,
                errored=any(t.path in self.tag_errors for t in tags),
            ))
            size[bits] += count
        tags = [self._tags[i] for i in order]
        sc = scaling(tags)
        return Group(
            name=group,
            interval=self._dev.group_interval(group),
            requests=requests,
            tag_id=self._ids[np.array(order, dtype=np.intp)] if order else np.empty(0, np.int32),
            scale=None if sc is None else sc.scale,
            offset=None if sc is None else sc.offset,
            has_text=any(t.type == "string" for t in tags),
            registers=Decoder(streams[False][0], streams[False][1], bit_table=False,
                              positions=streams[False][2]),
            bits=Decoder(streams[True][0], streams[True][1], bit_table=True,
                         positions=streams[True][2]),
            register_count=size[False],
            bit_count=size[True],
        )

    def _coalesce(self, idxs: list[int], limit: int) -> list[list[int]]:
        ordered = sorted(idxs, key=lambda i: (self._tags[i].address, -self._tags[i].width))
        blocks: list[list[int]] = []
        start = end = 0
        for i in ordered:
            t = self._tags[i]
            if blocks:
                prev = blocks[-1][-1]
                gap = 0 if (i in self._no_gap or prev in self._no_gap) else self._dev.coalesce_gap
                new_end = max(end, t.address + t.width)
                if t.address - end <= gap and new_end - start <= limit:
                    blocks[-1].append(i)
                    end = new_end
                    continue
            blocks.append([i])
            start, end = t.address, t.address + t.width
        return blocks

    def _replan(self, group: str) -> None:
        self._groups[group] = self._plan(group)

    # ------------------------------------------------------------------ connection

    async def __aenter__(self) -> Self:
        self._line = await acquire_line(self._dev)
        log.info("%s: connected to %s", self._dev.name, self._line.describe())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._cancel_tasks()
        line, self._line = self._line, None
        if line is not None:
            release_line(line)

    async def _cancel_tasks(self) -> None:
        # the poll loops also stop by themselves once they are no longer in _tasks
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def _read(self, unit: int, table: str, address: int, count: int
                    ) -> list[int] | list[bool] | int:
        """Data, or the Modbus exception code the device answered with (``SILENT``: no answer).

        The one place pymodbus errors become tierproof errors.
        """
        line = self._line
        d = self._dev
        if line is None or not line.connected:
            raise ConnectError(f"{d.name}: connection to {d.line} lost")
        self.stats.requests += 1
        what = f"unit {unit} (read {table} {address}+{count})"
        try:
            rr = await line.request(
                lambda client: getattr(client, READERS[table])(address, count=count, device_id=unit)
            )
        except ModbusIOException as exc:
            # pymodbus 3.16 has no exception type of its own for "no answer in time"
            if line.connected and "No response" in str(exc):
                return self._no_answer(unit)
            raise ConnectError(f"{d.name}: no valid answer from {d.line} {what}: {exc}") from exc
        except (ModbusException, OSError, TimeoutError) as exc:
            raise ConnectError(f"{d.name}: no valid answer from {d.line} {what}: {exc}") from exc
        fc = FUNCTION[table]
        got = int(rr.function_code)
        if got & 0x7F != fc:
            # a late answer to an earlier request, or a broken server or gateway: whatever
            # comes next on this connection cannot be matched to its request either
            raise ConnectError(
                f"{d.name}: {d.line} {what} answered with function code {got} to a request with "
                f"function code {fc}: the answer does not belong to the request; reconnecting"
            )
        self._answered(unit)
        if rr.isError():
            return int(rr.exception_code)
        data: list[int] | list[bool] = rr.bits if table in BIT_TABLES else rr.registers
        # bits come in whole bytes: up to 7 padding bits; registers must match exactly
        if len(data) < count or (table not in BIT_TABLES and len(data) != count):
            items = "bits" if table in BIT_TABLES else "registers"
            raise ConnectError(
                f"{d.name}: {d.line} {what} answered {len(data)} {items} "
                f"instead of {count}: the answer does not match the request; reconnecting"
            )
        return data

    def _answered(self, unit: int) -> None:
        u = self._units.get(unit)
        if u is None:
            return
        u.last_ok_ns = self._clock()
        if u.silent:
            log.info("%s: unit %d answers again", self._dev.name, unit)
            u.silent = False
        if not u.answered:
            u.answered = True
            # closes the gap of this unit left open by an earlier connection, if there is one
            self.gap_events.append(("close", f"unit {unit}", u.last_ok_ns, None, u.assets))

    def _no_answer(self, unit: int) -> int:
        """Unit ``unit`` did not answer in time: it is silent, unless it is the only one."""
        self.stats.no_answer += 1
        d = self._dev
        u = self._units[unit]
        now = asyncio.get_running_loop().time()
        u.next_due = now + self.bad_tag_retry_s
        if u.silent:
            return SILENT
        u.silent = True
        reason = f"unit {unit} does not answer on {d.line} (no reply within {d.timeout_s:g} s)"
        if all(x.silent for x in self._units.values()):
            raise ConnectError(
                f"{d.name}: no unit answers on {d.line} (no reply within {d.timeout_s:g} s)"
            )
        log.warning("%s: %s; asking it again every %g s", d.name, reason, self.bad_tag_retry_s)
        start = u.last_ok_ns if u.last_ok_ns is not None else self._clock()
        self.gap_events.append(("open", f"unit {unit}", start, reason, u.assets))
        return SILENT

    # ------------------------------------------------------------------ polling

    async def batches(self) -> AsyncIterator[Batch]:
        """One batch per poll of each group, until the connection is lost (ConnectError)."""
        if self._line is None:
            raise ConnectError(f"{self._dev.name}: not connected (use 'async with collector')")
        await self._cancel_tasks()
        # small: a slow consumer must hold the poll loops back, not queue up stale polls
        queue: asyncio.Queue[Batch | BaseException] = asyncio.Queue(maxsize=2 * len(self._groups))
        self._tasks = [
            asyncio.create_task(self._poll_loop(g, queue), name=f"modbus {self._dev.name} {g}")
            for g in self._groups
        ]
        try:
            while True:
                item = await queue.get()
                logs.tick()  # the summaries of pymodbus's rate-limited lines, once a minute
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await self._cancel_tasks()

    async def _poll_loop(self, name: str, queue: asyncio.Queue[Batch | BaseException]) -> None:
        loop = asyncio.get_running_loop()
        interval = self._groups[name].interval
        due = loop.time()
        me = asyncio.current_task()
        try:
            while me in self._tasks:
                batch = await self._poll(name)
                if len(batch):
                    await queue.put(batch)
                # next tick on the fixed grid start + k*interval, so that polls do not drift;
                # ticks missed by a slow poll are skipped, never made up in a burst
                due += interval
                now = loop.time()
                if due <= now:
                    missed = int((now - due) // interval) + 1
                    due += missed * interval
                    self.stats.overruns += missed
                await asyncio.sleep(due - now)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which raises it
            await queue.put(exc)

    async def _poll(self, name: str) -> Batch:
        group = self._groups[name]
        n = len(group.tag_id)
        values = np.empty(n, np.float64)
        quality = np.zeros(n, np.uint8)
        ts = np.empty(n, np.int64)
        text = np.full(n, None, dtype=object) if group.has_text else None
        keep: npt.NDArray[np.bool_] | None = None
        now = asyncio.get_running_loop().time()
        replan = False
        # the answers of all requests, concatenated, decoded at once after the last one
        registers: list[int] = []
        bits: list[bool] = []
        refused: list[tuple[Request, int]] = []
        silenced: set[int] = set()  # units that stopped answering during this poll
        for req in group.requests:
            stream: list[Any] = bits if req.bits else registers
            unit = self._units[req.unit]
            if req.unit in silenced:  # its other requests: bad now, without waiting for them
                ts[req.lo:req.hi] = self._clock()
                refused.append((req, SILENT))
                stream.extend(ZEROS[:req.count])
                continue
            if (req.bad is not None and now < self._bad[req.bad].next_due) or (
                unit.silent and now < unit.next_due
            ):
                if keep is None:
                    keep = np.ones(n, bool)
                keep[req.lo:req.hi] = False
                stream.extend(ZEROS[:req.count])
                continue
            was_silent = unit.silent
            data = await self._read(req.unit, req.table, req.start, req.count)
            ts[req.lo:req.hi] = self._clock()
            if data == SILENT and was_silent:  # still silent: its gap says so already
                if keep is None:
                    keep = np.ones(n, bool)
                keep[req.lo:req.hi] = False
                stream.extend(ZEROS[:req.count])
                continue
            if data == SILENT:
                silenced.add(req.unit)
            if isinstance(data, int):
                refused.append((req, data))
                stream.extend(ZEROS[:req.count])
                continue
            stream.extend(data if len(data) == req.count else data[:req.count])
            if req.errored:
                replan |= self._recovered(req)
        if registers:
            group.registers.decode(registers, values, text, quality)
            if group.registers.wide_ints and (quality == Quality.UNCERTAIN).any():
                self._warn_precision(group, quality)
        if bits:
            group.bits.decode(bits, values)
        for req, code in refused:
            lo, hi = req.lo, req.hi
            replan |= await self._refused(
                req, code, values[lo:hi], quality[lo:hi],
                text[lo:hi] if text is not None else None, ts[lo:hi],
            )
        if group.scale is not None and group.offset is not None:
            values *= group.scale
            values += group.offset
        self.stats.polls += 1
        if replan:
            self._replan(name)
        if keep is not None:
            return Batch(group.tag_id[keep], ts[keep], values[keep], quality[keep],
                         text[keep] if text is not None else None)
        return Batch(group.tag_id.copy(), ts, values, quality, text)

    def _warn_precision(self, group: Group, quality: npt.NDArray[np.uint8]) -> None:
        for k in np.flatnonzero(quality == Quality.UNCERTAIN):
            tag_id = int(group.tag_id[k])
            if tag_id not in self._warned_precision:
                self._warned_precision.add(tag_id)
                path = self._tags[int(np.flatnonzero(self._ids == tag_id)[0])].path
                log.warning(
                    "%s: tag %s: a 64-bit integer beyond +-2**53 is stored rounded to the "
                    "nearest float64 (quality uncertain)", self._dev.name, path,
                )

    def _recovered(self, req: Request) -> bool:
        req.errored = False
        for i in req.members:
            self.tag_errors.pop(self._tags[i].path, None)
        if req.bad is None:
            return False
        t = self._tags[req.bad]
        log.info("%s: tag %s reads again", self._dev.name, t.path)
        del self._bad[req.bad]
        self._solo.discard(req.bad)
        return True

    def _fail(self, i: int, code: int, isolate: bool) -> Quality:
        """Record why tag i failed; with ``isolate``, request it alone at the slow cadence."""
        t = self._tags[i]
        q = quality(code)
        where = f"{t.table} {t.address}{'' if t.width == 1 else f'..{t.address + t.width - 1}'}"
        if code == SILENT:
            reason = (f"unit {t.unit_id} does not answer (no reply within {self._dev.timeout_s:g} s); "
                      f"asked again every {self.bad_tag_retry_s:g} s")
        else:
            reason = f"{describe(code)} reading {where} of unit {t.unit_id}"
        if self.tag_errors.get(t.path) != reason and code != SILENT:  # a silent unit: logged once
            log.warning("%s: tag %s: %s", self._dev.name, t.path, reason)
        self.tag_errors[t.path] = reason
        if isolate:
            due = asyncio.get_running_loop().time() + self.bad_tag_retry_s
            self._bad[i] = BadTag(q, reason, due)
            self._solo.add(i)
        return q

    async def _refused(
        self,
        req: Request,
        code: int,
        out: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        text: npt.NDArray[np.object_] | None,
        ts: npt.NDArray[np.int64],
    ) -> bool:
        """Handle an exception answer to ``req``; return whether the group must be replanned."""
        out[:] = np.nan
        if text is not None:
            text[:] = None
        req.errored = True
        if code in REQUEST_WIDE:
            for j, i in enumerate(req.members):
                quality[j] = self._fail(i, code, isolate=False)
            if req.bad is not None:
                self._bad[req.bad].next_due = (
                    asyncio.get_running_loop().time() + self.bad_tag_retry_s
                )
            return False
        if len(req.members) == 1:
            i = req.members[0]
            was_bad = i in self._bad
            quality[0] = self._fail(i, code, isolate=True)
            return not was_bad
        # find exactly which tags the device refuses: read each alone
        self.stats.splits += 1
        table_bits = req.table in BIT_TABLES
        failed = 0
        for j, i in enumerate(req.members):
            t = self._tags[i]
            data = await self._read(t.unit_id, t.table, t.address, t.width)
            ts[j] = self._clock()
            if isinstance(data, int):
                quality[j] = self._fail(i, code=data, isolate=data not in REQUEST_WIDE)
                failed += 1
                continue
            self.tag_errors.pop(t.path, None)
            Decoder([t], [0], bit_table=table_bits).decode(
                data, out[j:j + 1], text[j:j + 1] if text is not None else None,
                quality[j:j + 1],
            )
        if failed == 0:
            # every tag reads alone, so the device refuses the span itself (an illegal unused
            # register inside it, or a shorter request limit than configured)
            spans_gap = req.count > sum(self._tags[i].width for i in req.members)
            target = self._no_gap if spans_gap and not self._no_gap.issuperset(req.members) \
                else self._solo
            target.update(req.members)
            log.warning(
                "%s: unit %d refuses %s %d+%d (%s) but each of its tags reads alone; "
                "%s", self._dev.name, req.unit, req.table, req.start, req.count,
                describe(code),
                "no longer joining these tags across gaps" if target is self._no_gap
                else "reading these tags one by one",
            )
        return True
