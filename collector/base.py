"""The Collector protocol: one driver per protocol, run by the supervisor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

import numpy as np
import numpy.typing as npt

from config.base import DeviceBase, TagBase
from store.base import TagRecord
from store.batch import Batch

log = logging.getLogger("tierproof.collector")


class Collector(Protocol):
    """An async context manager: entering connects (raising ``ConnectError`` when the device
    cannot be reached), exiting closes. ``batches()`` yields columnar batches until the
    connection is lost, when it raises ``ConnectError``. Reconnect and backoff are the
    supervisor's job, never the driver's.

    A request the device refuses (e.g. a Modbus exception response) is not a lost
    connection: the driver yields those tags with a bad quality and keeps going.
    """

    device: DeviceBase

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...


class CollectorFactory(Protocol):
    def __call__(self, device: DeviceBase, tag_ids: Mapping[str, int]) -> Collector: ...


class Scaling(NamedTuple):
    """Per-tag linear scaling, stored = raw * scale + offset (see :func:`scaling`)."""

    scale: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64]

    def apply(self, value: npt.NDArray[np.float64], idx: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """Scale ``value``, whose row k is a sample of tag ``idx[k]``."""
        return value * self.scale[idx] + self.offset[idx]


def scaling(tags: Sequence[TagBase]) -> Scaling | None:
    """The tags' scale and offset as arrays, or None when every tag has 1 and 0 (the common
    case, which then costs nothing per batch)."""
    scale = np.array([t.scale for t in tags], dtype=np.float64)
    offset = np.array([t.offset for t in tags], dtype=np.float64)
    if bool(np.all(scale == 1.0) and np.all(offset == 0.0)):
        return None
    return Scaling(scale, offset)


def tag_record(device: DeviceBase, tag: TagBase) -> TagRecord:
    """The store's view of one tag of a device."""
    return TagRecord(
        path=tag.path, asset=tag.asset, role=tag.role.value, device=device.name,
        protocol=str(getattr(device, "protocol", "")), unit=tag.unit, enum=tag.enum,
    )


def unregistered_tags(device: DeviceBase, tags: Sequence[TagBase], tag_ids: Mapping[str, int]
                      ) -> list[tuple[str, str]]:
    """(location, reason) for each of the device's tags that has no id in the store."""
    return [
        (f"devices[{device.name}].tags[{i}]", f"tag {t.path} has no tag id (not registered in the store)")
        for i, t in enumerate(tags)
        if t.path not in tag_ids
    ]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until every one has ended.

    Python 3.11's ``asyncio.wait_for`` (which pymodbus awaits) can swallow a cancellation that
    arrives just as its inner future completes, so one ``cancel()`` may not end a task:
    cancel again until it does.
    """
    pending = {t for t in tasks if not t.done()}
    done_all = set(pending)
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for t in done_all:
        if not t.cancelled() and t.exception() is not None:
            log.debug("task %s ended with %r while stopping", t.get_name(), t.exception())
