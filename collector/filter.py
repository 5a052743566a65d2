"""On-change storage of polled tags: which samples of a polled batch go to the store.

One :class:`StorageFilter` per polled device (Modbus, OPC UA ``mode: poll``), applied by the
supervisor between the collector and the writer. Per tag it keeps, in numpy arrays indexed
by tag id, the last *stored* sample (time, value, quality, text) and the last sample it
withheld; a batch is filtered with a handful of vectorised operations over its columns.

A sample of an ``on_change`` tag is stored when

- it is the tag's first sample after a (re)connect or the end of a gap: every sample is
  stored until one dated at or after the gap's end is (:meth:`suspend` / :meth:`resume`),
  because the KPIs do not carry a value across a gap and need that sample to know the
  signal again;
- its value moved beyond the deadband from the last stored value (NaN to NaN is no move, a
  number to NaN or back is), or its text changed (texts compare exactly);
- its quality changed;
- ``max_interval_s`` have passed since the tag's last stored sample (the heartbeat), or its
  time went backwards.

Heartbeats and gap ends are measured on the gateway's clock: a sample's gateway timestamp
where the batch has one (OPC UA: a polled value keeps its *source* time while it does not
change), else its time (Modbus stamps samples with the gateway's clock).

A counter (the counter roles) also keeps the sample *before* a change when that one was
withheld: each increase is then bounded by the same two polls as with every-poll storage,
so the KPIs attribute it to the same span of time. And when the connection is lost or the
gateway stops, :meth:`withheld` hands back each tag's last poll not stored yet, so the last
value read before the gap is stored as with every-poll storage. With deadband 0 the KPIs
from on-change storage therefore equal those from every-poll storage (a test proves it).

Samples of one tag within a batch are taken in batch order; a batch holding several
samples of one tag is processed in rounds (the k-th sample of every tag in round k), so the
decisions are exactly those of taking the samples one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from config.base import DeviceBase, TagBase
from config.modbus import ModbusDevice
from config.opcua import OpcUaDevice
from config.signals import COUNTER_ROLES
from config.storage import Storage, effective_storage
from store.batch import TS_UNKNOWN, Batch

__all__ = ["StorageFilter", "device_filter", "polled"]

_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max
#: "no stored sample yet": older than any resume instant
_NEVER = _I64_MIN
_Idx = npt.NDArray[np.intp]


def polled(device: DeviceBase) -> bool:
    """Whether the device's tags are polled (Modbus, OPC UA mode poll): storage applies."""
    return isinstance(device, ModbusDevice) or (
        isinstance(device, OpcUaDevice) and device.mode == "poll"
    )


def device_filter(device: DeviceBase, tag_ids: Mapping[str, int]) -> StorageFilter | None:
    """The storage filter of a polled device's registered tags, or None for a device whose
    source reports by exception (subscriptions, MQTT): storage does not apply there."""
    if not polled(device):
        return None
    f = StorageFilter()
    tags: Sequence[TagBase] = getattr(device, "tags", ())
    f.configure(device, tags, tag_ids)
    return f


class StorageFilter:
    """Per-tag on-change filter over columnar batches (see the module docstring).

    Tags never configured are stored every poll.
    """

    def __init__(self) -> None:
        self.points_in = 0
        self.points_out = 0
        self._n = 0
        # the configuration of each tag id
        self._every = np.empty(0, bool)  # every_poll (and ids never configured)
        self._abs = np.empty(0, np.float64)  # absolute deadband
        self._pct = np.empty(0, np.float64)  # percent deadband, as a fraction
        self._max_ns = np.empty(0, np.int64)  # heartbeat
        self._prior = np.empty(0, bool)  # counter: keep the sample before a change
        # its state: a sample older than _resume is from before the last gap
        self._resume = np.empty(0, np.int64)
        #: the last stored sample's gateway time (its time where the batch has no gateway
        #: times): heartbeats and gap ends are gateway time, and a polled OPC UA value keeps
        #: its source time while it does not change
        self._last_ts = np.empty(0, np.int64)
        self._last_v = np.empty(0, np.float64)
        self._last_q = np.empty(0, np.uint8)
        self._last_text = np.empty(0, object)
        self._pend = np.empty(0, bool)  # the last sample read was withheld:
        self._pend_ts = np.empty(0, np.int64)
        self._pend_v = np.empty(0, np.float64)
        self._pend_q = np.empty(0, np.uint8)
        self._pend_text = np.empty(0, object)
        self._pend_server = np.empty(0, np.int64)
        self._pend_gateway = np.empty(0, np.int64)
        self._stamp = np.empty(0, np.intp)  # scratch: finds a tag twice in one batch
        self._texts = False  # a text was ever stored (else texts need no comparing)
        self._bands = False  # some tag has a deadband (else a change is any difference)
        self._grow(64)

    # ------------------------------------------------------------------ configuration

    def _grow(self, size: int) -> None:
        if size <= self._n:
            return
        self._every = _extend(self._every, size, True)
        self._abs = _extend(self._abs, size, 0.0)
        self._pct = _extend(self._pct, size, 0.0)
        self._max_ns = _extend(self._max_ns, size, 0)
        self._prior = _extend(self._prior, size, False)
        self._resume = _extend(self._resume, size, _NEVER + 1)
        self._last_ts = _extend(self._last_ts, size, _NEVER)
        self._last_v = _extend(self._last_v, size, np.nan)
        self._last_q = _extend(self._last_q, size, 0)
        self._last_text = _extend(self._last_text, size, None)
        self._pend = _extend(self._pend, size, False)
        self._pend_ts = _extend(self._pend_ts, size, 0)
        self._pend_v = _extend(self._pend_v, size, np.nan)
        self._pend_q = _extend(self._pend_q, size, 0)
        self._pend_text = _extend(self._pend_text, size, None)
        self._pend_server = _extend(self._pend_server, size, TS_UNKNOWN)
        self._pend_gateway = _extend(self._pend_gateway, size, TS_UNKNOWN)
        self._stamp = _extend(self._stamp, size, -1)
        self._n = size

    def configure(self, device: DeviceBase, tags: Iterable[TagBase], tag_ids: Mapping[str, int]
                  ) -> None:
        """Set each tag's storage (its own, else the device's, else its role's default)."""
        dev_storage: Storage | None = getattr(device, "storage", None)
        for t in tags:
            tid = tag_ids.get(t.path)
            if tid is None:
                continue
            s = effective_storage(t.role, getattr(t, "storage", None), dev_storage)
            self.set(int(tid), s, counter=t.role in COUNTER_ROLES)

    def set(self, tag_id: int, storage: Storage, *, counter: bool = False) -> None:
        """Set one tag's storage; ``counter``: keep the sample before each change."""
        if tag_id < 0:
            raise ValueError(f"tag id {tag_id} is negative")
        if tag_id >= self._n:
            self._grow(max(tag_id + 1, 2 * self._n))
        every = storage.mode == "every_poll"
        self._every[tag_id] = every
        db = storage.deadband
        self._abs[tag_id] = db.value if db is not None and db.type == "absolute" else 0.0
        self._pct[tag_id] = db.value / 100.0 if db is not None and db.type == "percent" else 0.0
        self._max_ns[tag_id] = round(storage.max_interval_s * 1e9)
        self._bands = self._bands or db is not None
        self._prior[tag_id] = counter and not every

    # ------------------------------------------------------------------ gaps

    def _slots(self, tag_ids: Sequence[int] | None) -> slice | _Idx:
        if tag_ids is None:
            return slice(None)
        ids = np.asarray(tag_ids, np.intp)
        self._grow(int(ids.max()) + 1 if ids.size else 0)
        return ids

    def suspend(self, tag_ids: Sequence[int] | None = None) -> None:
        """A gap opened (of the device, or of these tags): store every sample until
        :meth:`resume` says when it ended."""
        self._resume[self._slots(tag_ids)] = _I64_MAX

    def resume(self, end_ns: int, tag_ids: Sequence[int] | None = None) -> None:
        """The gap ended at ``end_ns``: each tag's first sample dated at or after it is stored
        (samples are stored until then)."""
        self._resume[self._slots(tag_ids)] = end_ns

    def withheld(self) -> Batch:
        """Each tag's last sample not stored yet (call when the connection is lost, or at
        stop), now counted as stored."""
        s = np.flatnonzero(self._pend)
        if not s.size:
            return Batch.empty()
        out = self._pending_batch(s)
        self._stored(s, _beat(out.ts_ns, out.gateway_ts_ns), out.value, out.quality, out.text)
        self._pend[s] = False
        self.points_out += len(out)
        return out

    # ------------------------------------------------------------------ filtering

    def apply(self, batch: Batch) -> Batch:
        """The samples of ``batch`` to store, in batch order per tag (a withheld sample kept
        before a counter's change comes right before it)."""
        n = len(batch)
        self.points_in += n
        if n == 0:
            return batch
        tid = batch.tag_id
        top = int(tid.max())
        if top >= self._n:
            self._grow(max(top + 1, 2 * self._n))
        if int(tid.min()) < 0:
            raise ValueError("a batch holds a negative tag id")
        if self._every[tid].all():
            self.points_out += n
            return batch
        if batch.text is not None:
            self._texts = True
        pos = np.arange(n)
        self._stamp[tid] = pos
        if (self._stamp[tid] == pos).all():  # each tag once (the common case): one round
            keep, prior = self._round(batch, slice(None))
            kept = np.flatnonzero(keep)
            self._after_round(batch, slice(None), keep, kept)
            if not prior.size and len(kept) == n:
                out = batch
            elif not prior.size:
                out = _take(batch, kept)
            else:
                out = Batch.concat([self._pending_batch(prior), _take(batch, kept)])
            self.points_out += len(out)
            return out
        pieces: list[Batch] = []
        for idx in self._rounds(tid):
            keep, prior = self._round(batch, idx)
            if prior.size:
                pieces.append(self._pending_batch(prior))
            kept = idx[keep]
            pieces.append(_take(batch, kept))
            self._after_round(batch, idx, keep, kept)
        out = Batch.concat([p for p in pieces if len(p)]) if any(len(p) for p in pieces) \
            else Batch.empty()
        self.points_out += len(out)
        return out

    @staticmethod
    def _rounds(tid: npt.NDArray[np.int32]) -> list[_Idx]:
        """Batch positions split so that no round holds a tag twice; round k holds the k-th
        sample of each tag, in batch order."""
        n = len(tid)
        order = np.argsort(tid, kind="stable")
        st = tid[order]
        new = np.empty(n, bool)
        new[0] = True
        new[1:] = st[1:] != st[:-1]
        if new.all():
            return [np.arange(n)]
        starts = np.flatnonzero(new)
        rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
        return [np.sort(order[rank == k]) for k in range(int(rank.max()) + 1)]

    def _round(self, b: Batch, idx: _Idx | slice
               ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32]]:
        """Which of these samples (one per tag) to store, and the tags whose withheld sample
        must be stored before them."""
        s = b.tag_id[idx]
        ts = _beat(b.ts_ns[idx], b.gateway_ts_ns[idx] if b.gateway_ts_ns is not None else None)
        v, q = b.value[idx], b.quality[idx]
        lv = self._last_v[s]
        lts = self._last_ts[s]
        # NaN to NaN is no change (NaN != NaN)
        same = (v == lv) | ((v != v) & (lv != lv))
        if self._bands:
            with np.errstate(invalid="ignore", over="ignore"):
                band = self._abs[s] + self._pct[s] * np.where(np.isfinite(lv), np.abs(lv), 0.0)
                moved = ~same & ~(np.abs(v - lv) <= band)
        else:
            moved = ~same
        if b.text is not None:
            moved |= np.not_equal(b.text[idx], self._last_text[s]).astype(bool)
        elif self._texts:
            moved |= self._last_text[s] != None  # noqa: E711 (elementwise: a text before)
        change = moved | (q != self._last_q[s])
        beat = (ts >= lts + self._max_ns[s]) | (ts < lts)
        fresh = lts < self._resume[s]
        store = self._every[s] | fresh | change | beat
        prior = s[change & self._pend[s] & self._prior[s]]
        if prior.size:  # stored now, before the change: no longer pending
            self._stored(prior, _beat(self._pend_ts[prior], self._pend_gateway[prior]),
                         self._pend_v[prior], self._pend_q[prior],
                         self._pend_text[prior])
            self._pend[prior] = False
        return store, prior

    def _after_round(self, b: Batch, idx: _Idx | slice, keep: npt.NDArray[np.bool_], k: _Idx
                     ) -> None:
        """Note the samples at ``k`` (``idx[keep]``) as stored, the others as withheld."""
        ks = b.tag_id[k]
        self._stored(ks, _beat(b.ts_ns[k], b.gateway_ts_ns[k] if b.gateway_ts_ns is not None else None),
                     b.value[k], b.quality[k],
                     b.text[k] if b.text is not None else None)
        self._pend[ks] = False
        if len(k) == len(keep):
            return
        w = np.flatnonzero(~keep) if isinstance(idx, slice) else idx[~keep]
        ws = b.tag_id[w]
        self._pend[ws] = True
        self._pend_ts[ws] = b.ts_ns[w]
        self._pend_v[ws] = b.value[w]
        self._pend_q[ws] = b.quality[w]
        self._pend_text[ws] = b.text[w] if b.text is not None else None
        self._pend_server[ws] = b.server_ts_ns[w] if b.server_ts_ns is not None else TS_UNKNOWN
        self._pend_gateway[ws] = b.gateway_ts_ns[w] if b.gateway_ts_ns is not None else TS_UNKNOWN

    def _stored(self, s: npt.NDArray[np.integer[Any]], ts: npt.NDArray[np.int64],
                v: npt.NDArray[np.float64], q: npt.NDArray[np.uint8],
                text: npt.NDArray[np.object_] | None) -> None:
        self._last_ts[s] = ts
        self._last_v[s] = v
        self._last_q[s] = q
        if text is not None or self._texts:
            self._last_text[s] = text

    def _pending_batch(self, s: npt.NDArray[np.integer[Any]]) -> Batch:
        text = self._pend_text[s]
        server = self._pend_server[s]
        gateway = self._pend_gateway[s]
        return Batch(
            s.astype(np.int32),
            self._pend_ts[s].copy(),
            self._pend_v[s].copy(),
            self._pend_q[s].copy(),
            text.copy() if (text != None).any() else None,  # noqa: E711 (elementwise)
            server.copy() if (server != TS_UNKNOWN).any() else None,
            gateway.copy() if (gateway != TS_UNKNOWN).any() else None,
        )


_A = TypeVar("_A", bound=np.ndarray[Any, Any])


def _extend(a: _A, size: int, fill: object) -> _A:
    """``a`` grown to ``size`` elements, the new ones ``fill``."""
    out = np.full(size, fill, dtype=a.dtype)
    out[:len(a)] = a
    return cast(_A, out)


def _beat(ts: npt.NDArray[np.int64], gateway: npt.NDArray[np.int64] | None
          ) -> npt.NDArray[np.int64]:
    """The gateway time of samples where known, else their time."""
    if gateway is None:
        return ts
    return np.where(gateway != TS_UNKNOWN, gateway, ts)


def _take(b: Batch, idx: _Idx) -> Batch:
    return Batch(
        b.tag_id[idx], b.ts_ns[idx], b.value[idx], b.quality[idx],
        b.text[idx] if b.text is not None else None,
        b.server_ts_ns[idx] if b.server_ts_ns is not None else None,
        b.gateway_ts_ns[idx] if b.gateway_ts_ns is not None else None,
    )
